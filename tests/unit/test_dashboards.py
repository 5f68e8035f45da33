"""Grafana dashboards and provisioning: structural checks of the JSON.

Grafana cannot run here and the grafana-foundation-sdk wheel ships no JSON
Schema, so these tests assert the dashboard-linter rules and the classic
dashboard model's constraints (kinds/dashboard/dashboard_kind.cue) directly,
and parse every query with promtool. They check the shipped dashboards and
those of a team's mixin config (mixin/example-config.yaml) alike.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from support import promql_catalog, rendered_mixin

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "geomap"}
UNITS = {"percentunit", "s", "short", "none", "opm", "bytes"}
# series every scrape or the standard process collector gives, beside the exporter's own contract
STANDARD_SERIES = {"up", "scrape_duration_seconds", "process_resident_memory_bytes", "process_cpu_seconds_total",
                   "process_start_time_seconds"}
TOR_METRICS_RELAY = "https://metrics.torproject.org/rs.html#details/${__data.fields.fingerprint}"
ONLINE_BASEMAPS = {"default", "carto", "osm-standard", "esri-xyz", "xyz"}
TEXT_FIELDS_WITH_VARIABLES = ("expr", "url")


ROOTS = {"shipped": ROOT, "custom": rendered_mixin.custom_root()}
# "shipped:overview.json" → the dashboard
DASHBOARDS = {f"{kind}:{path.name}": json.loads(path.read_text())
              for kind, root in ROOTS.items() for path in promql_catalog.dashboard_files(root)}
SHIPPED_UIDS = {d["uid"] for name, d in DASHBOARDS.items() if name.startswith("shipped:")}


def panels():
    for name, dashboard in DASHBOARDS.items():
        for panel in dashboard["panels"]:
            yield pytest.param(dashboard, panel, id=f"{name}:{panel['title']}")


def shipped(file_name: str) -> dict:
    return DASHBOARDS[f"shipped:{file_name}"]


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def strings_in(node, keys=TEXT_FIELDS_WITH_VARIABLES):
    """Every string under one of ``keys`` anywhere in the JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from strings_in(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item, keys)


def test_the_four_dashboards_ship():
    assert SHIPPED_UIDS == {"captcha-overview", "captcha-target", "captcha-relay", "captcha-exporter-health"}
    assert {d["uid"] for d in DASHBOARDS.values()} == SHIPPED_UIDS, "a config does not move a dashboard"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_model(name):
    dashboard = DASHBOARDS[name]
    raw = json.dumps(dashboard)
    assert 8 <= len(dashboard["uid"]) <= 40
    assert dashboard.get("id") is None
    assert "__inputs" not in dashboard and "__requires" not in dashboard and "${DS_" not in raw
    assert isinstance(dashboard["schemaVersion"], int) and 39 <= dashboard["schemaVersion"] <= 42
    assert isinstance(dashboard["refresh"], str)
    assert dashboard["title"] and dashboard["description"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_variables(name):
    dashboard = DASHBOARDS[name]
    defined = variables(dashboard)
    sources = [v for v in defined.values() if v["type"] == "datasource"]
    assert sources == [defined["datasource"]] and defined["datasource"]["query"] == "prometheus"
    assert defined["datasource"]["label"] == "Data source"
    for variable in defined.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE
            assert variable["refresh"] == 2
            assert re.match(r"label_values\(", variable["definition"])
            assert variable["query"]["query"] == variable["definition"]
    texts = [*strings_in(dashboard["panels"]), *strings_in(dashboard["links"]),
             *(v.get("definition", "") for v in defined.values())]
    used = {a or b for text in texts for a, b in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", text)}
    assert {u for u in used if not u.startswith("__")} <= set(defined)
    for variable in defined.values():
        if variable.get("multi"):
            for expr in strings_in(dashboard["panels"], keys=("expr",)):
                assert f'="${variable["name"]}"' not in expr, "multi-value variables need =~"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_layout(name):
    dashboard = DASHBOARDS[name]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    occupied = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["h"] > 0 and 0 < grid["w"] <= 24 and 0 <= grid["x"] < 24 and grid["x"] + grid["w"] <= 24
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells


@pytest.mark.parametrize("dashboard, panel", panels())
def test_panel(dashboard, panel):
    assert panel["type"] in PANEL_TYPES
    assert panel["title"] and panel["description"]
    assert panel["datasource"] == DATASOURCE
    assert panel["targets"], "panel without queries"
    ref_ids = [t["refId"] for t in panel["targets"]]
    assert len(ref_ids) == len(set(ref_ids))
    for target in panel["targets"]:
        assert target["datasource"] == DATASOURCE
        if target["format"] == "table":
            assert target["instant"] and not target["range"]
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["unit"] in UNITS
    if re.search(r"\b(ratio|coverage)\b", panel["title"], flags=re.IGNORECASE):
        assert defaults["unit"] == "percentunit"
    steps = defaults["thresholds"]["steps"]
    assert steps[0]["value"] is None
    values = [s["value"] for s in steps[1:]]
    assert values == sorted(values)


@pytest.mark.parametrize("dashboard, panel", panels())
def test_queries_follow_the_linter_rules(dashboard, panel):
    for target in panel["targets"]:
        expr = target["expr"]
        for window in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", expr
        counters = re.findall(r"\b\w+_total\b", expr)
        wrapped = re.findall(r"\b(?:rate|irate|increase)\(\w+_total(?:\{[^}]*\})?\[", expr)
        assert len(wrapped) == len(counters), f"a *_total outside rate/increase: {expr}"
        assert re.search(r'\bjob=~"\$job"', expr), "every query selects the dashboard's job"


@pytest.mark.parametrize("kind", sorted(ROOTS))
def test_queries_use_only_contract_metrics_and_recorded_series(kind):
    recorded = {name.split(":", 1)[1] for name, _ in promql_catalog.recording_exprs(ROOTS[kind])}
    known = set(promql_catalog.contract_metrics()) | recorded | STANDARD_SERIES
    for source, expr in promql_catalog.dashboard_exprs(root=ROOTS[kind]):
        used = set(re.findall(r"\b((?:[a-z_]+:)?[a-z_][a-z0-9_]*(?::[a-z0-9_]+)?)\{", expr))
        assert used, source
        assert used <= known, f"{source}: unknown series {used - known}"


def test_generator_knows_the_contract_labels():
    dashboards = rendered_mixin.module("mixin.dashboards")
    contract = promql_catalog.contract_metrics()
    for metric, labels in dashboards.METRIC_LABELS.items():
        if metric in contract:
            assert labels == contract[metric], metric
        else:
            assert metric in STANDARD_SERIES or ":" in metric, f"{metric} is in no contract"


@pytest.mark.parametrize("kind", sorted(ROOTS))
def test_every_query_parses(kind, tmp_path):
    """promtool parses each query (variables substituted) as a recording rule."""
    exprs = promql_catalog.dashboard_exprs(root=ROOTS[kind])
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": expr} for i, (_, expr) in enumerate(exprs)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_links_point_at_shipped_dashboards():
    links = [url for d in DASHBOARDS.values() for url in strings_in(d, keys=("url",))]
    internal = [url for url in links if url.startswith("/d/")]
    assert internal, "no drill-down links"
    for url in internal:
        assert re.match(r"/d/([\w-]+)", url).group(1) in SHIPPED_UIDS, url


def test_geomap_works_offline_with_uppercase_country_lookup():
    maps = [p for d in DASHBOARDS.values() for p in d["panels"] if p["type"] == "geomap"]
    assert maps
    for panel in maps:
        options = panel["options"]
        assert options["basemap"]["type"] not in ONLINE_BASEMAPS
        assert options["basemap"]["config"]["src"].startswith("public/")
        for layer in options["layers"]:
            assert layer["location"] == {"mode": "lookup", "lookup": "country",
                                         "gazetteer": "public/gazetteer/countries.json"}
        for target in panel["targets"]:
            assert target["format"] == "table" and "by (country)" in target["expr"]


def test_provisioning_points_grafana_at_the_dashboards():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "captcha-exporter.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


def exemplar_panels(dashboard: dict) -> dict[str, dict]:
    return {p["title"]: p for p in dashboard["panels"] if any(t.get("exemplar") for t in p["targets"])}


def test_load_time_and_challenge_panels_show_exemplars():
    shown = exemplar_panels(shipped("target.json"))
    assert {"Page load time", "Challenges and blocks (per hour)", "Challenge outcomes (per hour)"} <= set(shown)
    for name, dashboard in DASHBOARDS.items():
        for title, panel in exemplar_panels(dashboard).items():
            assert panel["type"] == "timeseries", f"{name}:{title}: only time series draw exemplars"
            for target in panel["targets"]:
                if target.get("exemplar"):  # exemplars belong to raw series; recorded ones have none
                    assert ":" not in target["expr"].split("{")[0] and target["range"], f"{name}:{title}"


def test_the_datasource_links_an_exemplar_to_the_exporters_probe_page():
    """The exemplar label is the one the exporter sets, and the link is a probe page the exporter serves."""
    from exporter.evidence import PROBE_ID
    from exporter.web import _PROBE_PATH

    (source,) = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    (destination,) = source["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "probe_id"
    assert 'exemplar = {"probe_id": result.probe_id}' in (ROOT / "exporter" / "metrics.py").read_text()
    # provisioning expands $VAR: $$ leaves Grafana's ${__value.raw} for the link
    template = destination["url"].replace("$$", "$")
    exporter_url = rendered_mixin.module("mixin.config").DEFAULT.exporter_url
    assert template == f"{exporter_url}/probe/${{__value.raw}}"
    probe_id = "20261122T031500Z-a1b2c3"
    assert PROBE_ID.fullmatch(probe_id)
    path = template.replace("${__value.raw}", probe_id).removeprefix(exporter_url)
    assert _PROBE_PATH.fullmatch(path).group(1) == probe_id


def test_relay_search_links_each_exit_to_tor_metrics_and_finds_it_by_nickname():
    relay = shipped("relay-search.json")
    variables_ = variables(relay)
    assert variables_["nickname"]["definition"] == 'label_values(captcha_exit_info{job=~"$job"}, nickname)'
    assert 'nickname=~"$nickname"' in variables_["fingerprint"]["definition"]
    linked = {panel["title"] for panel in relay["panels"]
              if TOR_METRICS_RELAY in [link["url"] for o in panel["fieldConfig"]["overrides"]
                                       for p in o["properties"] if p["id"] == "links" for link in p["value"]]}
    assert {"Relay", "Exits with the nickname"} <= linked
    overview = json.dumps(shipped("overview.json"))
    assert TOR_METRICS_RELAY in overview, "the most challenged exits link to Tor Metrics too"
