"""Run the real Prometheus (Debian's 2.42) on loopback with the shipped config and rules (e2e helpers).

``write_test_config`` writes the shipped ``prometheus/prometheus.yml`` and the
rule files of ``rules_root`` (the repository's, or the mixin rendered with a
team's config) into a work directory with only what a test must change: the
job name the rules select, scrape targets on loopback, short scrape/evaluation
intervals, no Alertmanager (alerts are read from ``/api/v1/alerts``), and
optionally shorter ``for:`` on named alerts.
``backfill`` writes history as TSDB blocks with ``promtool tsdb
create-blocks-from openmetrics``; Prometheus loads blocks found in its data
directory at start, as long as they are older than anything it then scrapes.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "prometheus"
JOB = "captcha-exporter"


def write_test_config(workdir: Path, exporter_address: str, prometheus_address: str, interval: str = "5s",
                      alert_for: dict[str, str] | None = None, rules_root: Path = ROOT, job_name: str = JOB) -> Path:
    """Write ``workdir/prometheus.yml`` and ``workdir/rules/``; return the config path."""
    config = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    del config["alerting"]  # the shipped file names a non-loopback Alertmanager
    own_address = {JOB: exporter_address, "prometheus": prometheus_address}
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        job["static_configs"] = [{"targets": [own_address[job["job_name"]]]}]
        if job["job_name"] == JOB:
            job["job_name"] = job_name
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))

    rules = workdir / "rules"
    rules.mkdir()
    alert_for = dict(alert_for or {})
    for shipped in sorted((rules_root / "prometheus" / "rules").glob("*.yml")):
        document = yaml.safe_load(shipped.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") in alert_for:
                    rule["for"] = alert_for.pop(rule["alert"])
        (rules / shipped.name).write_text(yaml.safe_dump(document, sort_keys=False))
    assert not alert_for, f"no such alerts in the shipped rules: {sorted(alert_for)}"
    return path


def backfill(openmetrics: str, data_dir: Path, workdir: Path) -> None:
    """Turn OpenMetrics text (timestamps in seconds, ending in ``# EOF``) into blocks under ``data_dir``."""
    source = workdir / "backfill.om"
    source.write_text(openmetrics)
    data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


class RunningPrometheus:
    """``prometheus`` started on ``address`` (127.0.0.1 only), read through its HTTP API."""

    def __init__(self, config: Path, data_dir: Path, address: str):
        self.url = f"http://{address}"
        self.log = config.parent / "prometheus.log"
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
             f"--web.listen-address={address}", "--web.enable-lifecycle"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited:\n" + self.log.read_text()[-3000:]
            try:
                if requests.get(f"{self.url}/-/ready", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise AssertionError("prometheus not ready:\n" + self.log.read_text()[-3000:])

    def api(self, path: str, **params) -> dict:
        """The ``data`` of a successful API answer; an error answer fails with Prometheus' message."""
        body = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30).json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's result (a vector, or a one-element list for a scalar)."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [{"value": data["result"]}]

    def rules(self) -> list[dict]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def alerts(self, name: str) -> list[dict]:
        return [alert for alert in self.api("alerts")["alerts"] if alert["labels"]["alertname"] == name]

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
