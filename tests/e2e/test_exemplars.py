"""Exemplars end to end, in the demo's setup: a load-time exemplar leads to the exporter's page of that probe.

The exporter runs with the demo's config (testbed.demo.demo_config) and the
demo's own Prometheus (testbed.demo.start_prometheus: exemplar storage on).
The Target dashboard's "Page load time" query goes to Prometheus'
/api/v1/query_exemplars, as Grafana sends it; the probe id of each exemplar,
put into the datasource's link (grafana/provisioning), must be a /probe/<id>
page the exporter serves.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
import yaml
from support.promql_catalog import substitute

from testbed.demo import RULES_DIR, demo_config, start_prometheus
from testbed.ports import free_ports

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TARGET = "news"


def panel_query(dashboard: str, title: str) -> dict:
    panels = json.loads((ROOT / "grafana" / "dashboards" / dashboard).read_text())["panels"]
    (panel,) = [p for p in panels if p["title"] == title]
    return next(t for t in panel["targets"] if t.get("exemplar"))


def exemplar_link() -> str:
    """The datasource's exemplar link, as Grafana sees it once provisioning has turned $$ into $."""
    sources = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (destination,) = sources["datasources"][0]["jsonData"]["exemplarTraceIdDestinations"]
    return destination["url"].replace("$$", "$")


def test_a_load_time_exemplar_leads_to_its_probe_page(testbed, run_exporter, tmp_path):
    (port,) = free_ports(1)
    config = demo_config(testbed.state(), f"127.0.0.1:{port}", "5s", chromium=False, data_dir=tmp_path / "data")
    exporter = run_exporter(config)
    prometheus, url = start_prometheus(tmp_path, f"127.0.0.1:{port}", RULES_DIR)
    try:
        target = panel_query("target.json", "Page load time")
        query = substitute(target["expr"], {"target": TARGET})
        assert "captcha_page_load_seconds_bucket" in query
        deadline, found = time.monotonic() + 120, []
        while not found and time.monotonic() < deadline:
            time.sleep(5)
            try:
                answer = requests.get(f"{url}api/v1/query_exemplars", timeout=10, params={
                    "query": query, "start": time.time() - 3600, "end": time.time()}).json()
            except requests.ConnectionError:  # not listening yet
                continue
            assert answer["status"] == "success", answer
            found = [(series["seriesLabels"], exemplar) for series in answer["data"]
                     for exemplar in series["exemplars"]]
        assert found, "Prometheus stored no exemplar for the load-time query"

        for labels, exemplar in found[:5]:
            assert labels["__name__"] == "captcha_page_load_seconds_bucket" and labels["target"] == TARGET
            probe_id = exemplar["labels"]["probe_id"]
            link = exemplar_link().replace("${__value.raw}", probe_id)
            path = link.split("/probe/", 1)[1]
            page = exporter.get(f"/probe/{path}")
            assert page.status_code == 200, (link, page.status_code)
            assert f"Probe {probe_id}" in page.text and TARGET in page.text
            assert float(exemplar["value"]) > 0  # a load time in seconds
    finally:
        prometheus.terminate()
        prometheus.wait(30)
