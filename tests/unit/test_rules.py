"""Prometheus config, recording rules and alerts: promtool plus the project's conventions.

Every check of the rules runs on the shipped files (the mixin's output with
its default config) and on the files of a team's config
(mixin/example-config.yaml: another job, Grafana and runbook address).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import promql_catalog, rendered_mixin

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
PROBE_INTERVAL_SECONDS = 600  # the default schedule.interval the findings' `for:` assume
# each scenario of prometheus/tests/scenarios_test.yml and the alert it is about
SCENARIOS = {
    "tor down from the start, while Prometheus scrapes the exporter fine": "CaptchaTorDown",
    "an hourly target is not late after 30 minutes; a 10-minute target is": "CaptchaTargetNotProbed",
    "one stuck shard of three, whose healthy siblings keep probing the same target": "CaptchaTargetNotProbed",
}



def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def custom_root() -> Path:
    """The mixin rendered with a team's config (mixin/example-config.yaml)."""
    return rendered_mixin.custom_root()


@pytest.fixture(scope="module", params=["shipped", "custom"])
def root(request) -> Path:
    """Where prometheus/ and grafana/ are: the repository, or the mixin rendered with a team's config."""
    return ROOT if request.param == "shipped" else request.getfixturevalue("custom_root")


def rules(root: Path, kind: str) -> list[dict]:
    return [rule for path in promql_catalog.rule_files(root) for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if kind in rule]


def seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


def test_prometheus_config_is_valid():
    result = promtool("check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_job_is_named_for_the_alerts():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["captcha-exporter"]["static_configs"][0]["targets"] == ["exporter:10981"]
    assert seconds(jobs["captcha-exporter"]["scrape_interval"]) < 300, "series would go stale between scrapes"


def test_shipped_files_are_the_mixin_output_with_the_default_config():
    result = subprocess.run([sys.executable, "-m", "mixin", "--check"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_the_drift_check_notices_an_edited_file(tmp_path):
    rendered_mixin.render(tmp_path, config=None)
    edited = tmp_path / "prometheus" / "rules" / "captcha-alerts.yml"
    edited.write_text(edited.read_text().replace("for: 15m", "for: 5m"))
    result = subprocess.run([sys.executable, "-m", "mixin", "--check", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1 and "prometheus/rules/captcha-alerts.yml" in result.stderr


def test_a_bad_override_is_named():
    result = subprocess.run([sys.executable, "-m", "mixin", "--check", "--config", "/dev/stdin"], cwd=ROOT,
                            input="thresholds: {not_probed_interval: 4}\n", capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2 and "unknown key 'not_probed_interval'" in result.stderr


def test_the_custom_files_use_the_custom_job_and_addresses(custom_root):
    custom = rendered_mixin.custom()
    text = (custom_root / "prometheus" / "rules" / "captcha-alerts.yml").read_text()
    assert 'job="captcha-exporter"' not in text and f'job="{custom["job"]}"' in text
    for rule in rules(custom_root, "alert"):
        assert rule["annotations"]["dashboard_url"].startswith(custom["grafana_url"] + "/d/")
        assert rule["annotations"]["runbook_url"].startswith(custom["runbook_url"] + "#")


def test_rules_pass_lint_fatal(root):
    result = promtool("check", "rules", "--lint-fatal", *map(str, promql_catalog.rule_files(root)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(root):
    tests = sorted((root / "prometheus" / "tests").glob("*.yml"))
    assert len(tests) == 3
    result = promtool("test", "rules", *map(str, tests), cwd=root)
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


@pytest.mark.parametrize("scenario, alert", SCENARIOS.items(), ids=list(SCENARIOS))
def test_each_scenario_fails_without_its_alert(scenario, alert, tmp_path):
    """Each failure-mode scenario passes as shipped and fails once its alert is gone."""
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    tests_file = tmp_path / "prometheus" / "tests" / "scenarios_test.yml"
    document = yaml.safe_load(tests_file.read_text())
    document["tests"] = [test for test in document["tests"] if test["name"] == scenario]
    assert document["tests"], scenario
    tests_file.write_text(yaml.safe_dump(document, sort_keys=False))
    passed = promtool("test", "rules", "prometheus/tests/scenarios_test.yml", cwd=tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr

    alerts_file = tmp_path / "prometheus" / "rules" / "captcha-alerts.yml"
    alerts = yaml.safe_load(alerts_file.read_text())
    for group in alerts["groups"]:
        group["rules"] = [rule for rule in group["rules"] if rule.get("alert") != alert]
    alerts_file.write_text(yaml.safe_dump(alerts, sort_keys=False))
    failed = promtool("test", "rules", "prometheus/tests/scenarios_test.yml", cwd=tmp_path)
    assert failed.returncode != 0 and alert in failed.stdout + failed.stderr, failed.stdout


def test_recording_rule_names_follow_level_metric_operations(root):
    for rule in rules(root, "record"):
        level, metric, operations = rule["record"].split(":")
        assert re.fullmatch(r"[a-z_]+", level) and re.fullmatch(r"[a-z0-9_]+", operations), rule["record"]
        assert metric.startswith("captcha_") and not metric.endswith("_total"), rule["record"]
        if "_per_" in metric:
            assert operations.startswith("ratio_"), rule["record"]


def test_rules_use_only_contract_metrics_and_recorded_series(root):
    known = set(promql_catalog.contract_metrics()) | {r["record"] for r in rules(root, "record")} | {"up"}
    for source, expr in promql_catalog.recording_exprs(root) + promql_catalog.alert_exprs(root):
        used = set(re.findall(r"\b((?:[a-z_]+:)?captcha_[a-z0-9_]+(?::[a-z0-9_]+)?|up)\b(?=\s*[{\[)\s])", expr))
        assert used, source
        assert used <= known, f"{source}: unknown series {used - known}"


def test_raw_series_are_selected_by_the_job(root):
    """Every selector of an exporter series (not a recorded one) carries the config's job matcher."""
    job = rendered_mixin.custom()["job"] if root != ROOT else rendered_mixin.DEFAULTS["job"]
    for source, expr in promql_catalog.recording_exprs(root) + promql_catalog.alert_exprs(root):
        for name, selector in re.findall(r"(?<![:\w])(captcha_[a-z0-9_]+|up)(?![:\w])(\{[^}]*\})?", expr):
            assert f'job="{job}"' in selector, f"{source}: {name}{selector}"


def test_ratios_sum_before_dividing(root):
    """Never average ratios: a division's operands are sums or recorded sums."""
    for rule in rules(root, "record") + rules(root, "alert"):
        assert "avg" not in rule["expr"], rule.get("record") or rule["alert"]


def test_alerts_follow_mixin_conventions(root):
    uids = {json.loads(p.read_text())["uid"] for p in promql_catalog.dashboard_files(root)}
    for alert in rules(root, "alert"):
        name = alert["alert"]
        assert re.fullmatch(r"Captcha[A-Z][A-Za-z]+", name)
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        annotations = alert["annotations"]
        assert "{{" not in annotations["summary"], "summary must be a static headline"
        assert "{{" in annotations["description"], "description must be templated"
        assert annotations["runbook_url"].endswith(f"#{name.lower()}")
        assert re.search(r"/d/([\w-]+)", annotations["dashboard_url"]).group(1) in uids
        if "target_fetcher" in alert["expr"]:  # findings about sites: at least two default probe intervals
            assert seconds(alert["for"]) >= 2 * PROBE_INTERVAL_SECONDS, name


def test_health_alerts_judge_each_instance():
    """An alert on the exporter's own series never sums instances away: one stuck replica must show."""
    for alert in rules(ROOT, "alert"):
        if "target_fetcher" not in alert["expr"]:
            assert "without (instance)" not in alert["expr"] and "by (job)" not in alert["expr"].split("unless")[0]


def test_every_alert_has_a_runbook_section():
    headings = set(re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE))
    assert {a["alert"] for a in rules(ROOT, "alert")} <= headings


def test_runbooks_link_only_to_files_that_exist():
    for link in re.findall(r"\]\(([^)#:]+)\)|`(docs/[\w./-]+)`", RUNBOOKS.read_text()):
        path = link[0] or link[1]
        assert (RUNBOOKS.parent / path).exists() or (ROOT / path).exists(), path


def test_every_alert_is_tested_firing_and_not_firing():
    fired, quiet = set(), set()
    for path in sorted((PROMETHEUS / "tests").glob("*.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {a["alert"] for a in rules(ROOT, "alert")}
    assert names <= fired, f"never tested firing: {names - fired}"
    assert names <= quiet, f"never tested quiet: {names - quiet}"
