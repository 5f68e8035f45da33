"""Prometheus config, recording rules and alerts: promtool plus the project's conventions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import promql_catalog

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
PROBE_INTERVAL_SECONDS = 600  # the default schedule.interval the rules assume


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def rules(kind: str) -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if kind in rule]


def alerts() -> list[dict]:
    return rules("alert")


def seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


def shipped_dashboard_uids() -> set[str]:
    import json

    return {json.loads(p.read_text())["uid"] for p in promql_catalog.DASHBOARD_FILES}


def test_prometheus_config_is_valid():
    result = promtool("check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_job_is_named_for_the_alerts():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["captcha-exporter"]["static_configs"][0]["targets"] == ["exporter:9981"]
    assert seconds(jobs["captcha-exporter"]["scrape_interval"]) < 300, "series would go stale between scrapes"


def test_rules_pass_lint_fatal():
    result = promtool("check", "rules", "--lint-fatal", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass():
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_notice_a_broken_threshold(tmp_path):
    """The promtool tests can fail: raise the spike threshold and they must."""
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    alerts_file = tmp_path / "prometheus" / "rules" / "captcha-alerts.yml"
    text = alerts_file.read_text()
    assert "ratio_rate1h > 0.2" in text
    alerts_file.write_text(text.replace("ratio_rate1h > 0.2", "ratio_rate1h > 2", 1))
    result = promtool("test", "rules", "prometheus/tests/alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "CaptchaChallengeRateSpike" in result.stdout + result.stderr


def test_recording_rule_names_follow_level_metric_operations():
    for rule in rules("record"):
        level, metric, operations = rule["record"].split(":")
        assert re.fullmatch(r"[a-z_]+", level) and re.fullmatch(r"[a-z0-9_]+", operations), rule["record"]
        assert metric.startswith("captcha_") and not metric.endswith("_total"), rule["record"]
        if "_per_" in metric:
            assert operations.startswith("ratio_"), rule["record"]


def test_rules_use_only_contract_metrics_and_recorded_series():
    known = set(promql_catalog.contract_metrics()) | {r["record"] for r in rules("record")} | {"up"}
    for source, expr in promql_catalog.recording_exprs() + promql_catalog.alert_exprs():
        used = set(re.findall(r"\b((?:[a-z_]+:)?captcha_[a-z0-9_]+(?::[a-z0-9_]+)?|up)\b(?=\s*[{\[)\s])", expr))
        assert used, source
        assert used <= known, f"{source}: unknown series {used - known}"


def test_ratios_sum_before_dividing():
    """Never average ratios: a division's operands are sums or recorded sums."""
    for rule in rules("record") + alerts():
        assert "avg" not in rule["expr"], rule.get("record") or rule["alert"]


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_alert_follows_mixin_conventions(alert):
    name = alert["alert"]
    assert re.fullmatch(r"Captcha[A-Z][A-Za-z]+", name)
    assert alert["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = alert["annotations"]
    assert "{{" not in annotations["summary"], "summary must be a static headline"
    assert "{{" in annotations["description"], "description must be templated"
    assert annotations["runbook_url"].endswith(f"docs/runbooks.md#{name.lower()}")
    dashboard_uid = re.search(r"/d/([\w-]+)", annotations["dashboard_url"]).group(1)
    assert dashboard_uid in shipped_dashboard_uids()
    assert seconds(alert["for"]) >= 2 * PROBE_INTERVAL_SECONDS


def test_every_alert_has_a_runbook_section():
    headings = set(re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE))
    assert {a["alert"] for a in alerts()} <= headings


def test_every_alert_is_tested_firing_and_not_firing():
    fired, quiet = set(), set()
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names <= fired, f"never tested firing: {names - fired}"
    assert names <= quiet, f"never tested quiet: {names - quiet}"
