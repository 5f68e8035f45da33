"""Every recording rule and panel query returns data from a real Prometheus.

The scraped endpoint is a stand-in built from the metrics table in
docs/architecture.md (one series per metric, counters growing every second,
plus the standard process metrics), so this checks the queries against the
contract, not the exporter; the live check against the real exporter runs on
the test bed. It runs on the shipped rules and dashboards, and on those of a
team's mixin config (another job name). Prometheus listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, MetricsHandler, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from support import promql_catalog, rendered_mixin

ROOT = Path(__file__).resolve().parents[2]

LABEL_VALUES = {"target": "news", "fetcher": "chromium", "country": "DE", "provider": "cloudflare",
                "reason": "timeout", "outcome": "cleared", "kind": "injected", "fingerprint": "A" * 40,
                "nickname": "exit1", "version": "0.1.0", "revision": "0123456789ab",
                "tor_version": "0.4.9.1"}
WAIT_SECONDS = 60


class ContractCollector:
    """One series per contract metric; counters grow by one per second since start."""

    def __init__(self):
        self.started = time.time()

    def gauge_value(self, name: str, now: float) -> float:
        if name == "captcha_consensus_valid_after_timestamp_seconds":
            return now - 600
        if name.endswith("_timestamp_seconds"):
            return now
        if name.endswith("_ratio") or name == "captcha_exit_weight":
            return 0.25
        return 1

    def collect(self):
        now = time.time()
        elapsed = now - self.started
        yield from ProcessCollector(pid=lambda: "self", registry=None).collect()
        for name, kind, label_names in promql_catalog.contract_table():
            labels = sorted(label_names)
            values = [LABEL_VALUES[label] for label in labels]
            if kind == "counter":
                family = CounterMetricFamily(name.removesuffix("_total"), name, labels=labels)
                family.add_metric(values, elapsed)
            elif kind == "histogram":
                family = HistogramMetricFamily(name, name, labels=labels)
                family.add_metric(values, [("5.0", elapsed / 2), ("+Inf", elapsed)], sum_value=elapsed * 4)
            else:
                family = GaugeMetricFamily(name, name, labels=labels)
                family.add_metric(values, self.gauge_value(name, now))
            yield family


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        data = json.load(response)["data"]
    return [r for r in data["result"] if r["value"][1] != "NaN"] if data["resultType"] == "vector" else []


@pytest.fixture(scope="module", params=["shipped", "custom"])
def root(request) -> Path:
    return ROOT if request.param == "shipped" else rendered_mixin.custom_root()


@pytest.fixture(scope="module")
def prometheus(root, tmp_path_factory):
    job = rendered_mixin.custom()["job"] if root != ROOT else rendered_mixin.DEFAULTS["job"]
    registry = CollectorRegistry()
    registry.register(ContractCollector())
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    threading.Thread(target=exporter.serve_forever, daemon=True).start()

    work = tmp_path_factory.mktemp("prometheus")
    shutil.copytree(root / "prometheus" / "rules", work / "rules")
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules/*.yml]\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_address[1]}']}}]\n")
    port = free_port()
    process = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("w"))
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        exporter.shutdown()
        exporter.server_close()


def test_every_recording_rule_and_panel_query_returns_data(prometheus, root):
    pending = dict(promql_catalog.catalog(root=root))
    assert len(pending) > 50
    deadline = time.monotonic() + WAIT_SECONDS
    while pending and time.monotonic() < deadline:
        time.sleep(2)
        try:
            pending = {s: e for s, e in pending.items() if not query(prometheus, e)}
        except OSError:  # not listening yet
            continue
    assert not pending, "queries without data:\n" + "\n".join(pending)

