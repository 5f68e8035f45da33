"""A real Prometheus scrapes the real exporter on the test bed, with the rules and dashboards of a team's mixin config.

The files are the monitoring mixin rendered with mixin/example-config.yaml:
another job name, Grafana and runbook address than the shipped ones (the unit
tests run the same catalog against a stand-in with both).

Phase 1: the edge injects, challenges, blocks and errors on the exits of ``news``;
``shop`` is a normal page everywhere and has a day of backfilled normal
history (same job, instance and series), so its 1-day baseline is real.
Through the HTTP API: every recording rule and panel query returns data
(except the commented allow-list), every alert expression evaluates, every
rule is healthy, and the challenge spike alert is not firing.

Phase 2: every exit gets a challenge on ``shop``; the spike alert (its
``for:`` shortened, nothing else changed) reaches ``firing``.
"""

from __future__ import annotations

import math
import time

import pytest
from support import rendered_mixin
from support.exporter_process import exporter_config
from support.prometheus_process import RunningPrometheus, backfill, write_test_config
from support.promql_catalog import alert_exprs, catalog

from testbed.policy import load_policy
from testbed.ports import free_ports

pytestmark = pytest.mark.e2e

SPIKE = "CaptchaChallengeRateSpike"
SPIKE_FOR = "15s"
INTERVAL = "5s"  # scrape and rule evaluation
SPIKE_TARGET = "shop"
JOB = rendered_mixin.custom()["job"]

_NO_WIDGET = "no edge page embeds a CAPTCHA widget, so captcha_widgets_total has no series"
_BROWSER_ONLY = "challenge outcomes and clear times are only seen by a browser fetcher; this test runs http only"
_NO_BROWSER = "browser restarts are counted for browser fetchers only; this test runs http only"
# Queries that cannot return data here, each with why. Every other catalog entry must.
NO_DATA_HERE = {
    "grafana/dashboards/overview.json:Widgets by provider:A": _NO_WIDGET,
    "grafana/dashboards/target.json:Widgets (per hour):A": _NO_WIDGET,
    "grafana/dashboards/target.json:Challenge outcomes (per hour):A": _BROWSER_ONLY,
    "grafana/dashboards/target.json:Challenge clear time:A": _BROWSER_ONLY,
    "grafana/dashboards/target.json:Challenge clear time:B": _BROWSER_ONLY,
    "grafana/dashboards/exporter-health.json:Browser restarts (per hour):A": _NO_BROWSER,
}
# Queries that usually return nothing here but may: checked for errors only.
MAY_HAVE_NO_DATA = {
    "grafana/dashboards/exporter-health.json:Circuit failures by reason:A":
        "the counter has no series until a circuit fails, which on the test bed happens only by chance",
}
ROOT = rendered_mixin.custom_root()


@pytest.fixture
def edge_policy(testbed):
    """Set the edge's policy from a ``sites`` mapping; the bed's policy is restored afterwards."""
    previous = testbed.edge.policy
    yield lambda sites: testbed.edge.set_policy(load_policy({"sites": sites}))
    testbed.edge.set_policy(previous)


@pytest.fixture
def start_prometheus():
    started = []

    def start(config, data_dir, address) -> RunningPrometheus:
        prometheus = RunningPrometheus(config, data_dir, address)
        started.append(prometheus)
        prometheus.wait_ready()
        return prometheus

    yield start
    for prometheus in started:
        assert prometheus.stop() == 0, prometheus.log.read_text()[-3000:]


def normal_day(instance: str, countries: list[str], end: float) -> tuple[str, int]:
    """OpenMetrics text: one answered, unchallenged probe per country every minute for 22 hours until ``end``
    (all inside a 1-day window for the next hour). Returns the text and the probes it counts."""
    steps = 22 * 60
    lines = ["# HELP captcha_probes Probes that got an answer.", "# TYPE captcha_probes counter"]
    for country in countries:
        labels = (f'job="{JOB}",instance="{instance}",target="{SPIKE_TARGET}",fetcher="http",'
                  f'country="{country}"')
        lines += [f"captcha_probes_total{{{labels}}} {step} {end - (steps - 1 - step) * 60:.0f}"
                  for step in range(steps)]
    return "\n".join(lines + ["# EOF", ""]), (steps - 1) * len(countries)


def has_data(result: list[dict]) -> bool:
    return any(not math.isnan(float(series["value"][1])) for series in result)


def missing_data(prometheus: RunningPrometheus) -> list[str]:
    return [source for source, expr in catalog(root=ROOT) if source not in NO_DATA_HERE | MAY_HAVE_NO_DATA
            and not has_data(prometheus.query(expr))]


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while (result := check()) and time.monotonic() < deadline:
        time.sleep(5)
    assert not result, f"after {timeout:.0f} s, {what}: {result}"


def test_rules_dashboards_and_spike_alert_on_live_data(testbed, edge_policy, run_exporter, start_prometheus,
                                                        tmp_path):
    state = testbed.state()
    names = [e["nickname"] for e in state["exits"]]
    assert len(names) >= 4, "the mixed policy needs four exits"
    news = {"default": "ok", "exits": {names[0]: "injected", names[1]: "challenge", names[2]: "block",
                                       names[3]: "error"}}
    edge_policy({"news": news, SPIKE_TARGET: {"default": "ok"}})

    exporter_port, prometheus_port = free_ports(2)
    instance, address = f"127.0.0.1:{exporter_port}", f"127.0.0.1:{prometheus_port}"
    config = write_test_config(tmp_path, instance, address, INTERVAL, alert_for={SPIKE: SPIKE_FOR}, rules_root=ROOT,
                               job_name=JOB)
    # History ends 65 minutes ago: older than anything scraped, and outside the 1h windows.
    history, history_probes = normal_day(instance, sorted({e["country"] for e in state["exits"]}),
                                         time.time() - 65 * 60)
    backfill(history, tmp_path / "prometheus-data", tmp_path)

    run_exporter(exporter_config(state, exporter_port, tmp_path / "exporter-data"))
    prometheus = start_prometheus(config, tmp_path / "prometheus-data", address)

    # Phase 1: every recording rule and panel query has data, every alert expression evaluates.
    wait_for(lambda: missing_data(prometheus), 150, "these queries still return no data")
    assert set(NO_DATA_HERE) | set(MAY_HAVE_NO_DATA) <= {source for source, _ in catalog(root=ROOT)}, \
        "an allow-list names a query that is gone"
    answered = [source for source, expr in catalog(root=ROOT)  # an error answer fails here, allow-listed or not
                if has_data(prometheus.query(expr)) and source in NO_DATA_HERE]
    assert not answered, "these now return data: take them off NO_DATA_HERE"
    records = [rule["name"] for rule in prometheus.rules() if rule["type"] == "recording"]
    for record in records:
        if not any(source.endswith(f":{record}") for source in NO_DATA_HERE):
            assert prometheus.query(record), f"recording rule {record} has no series"
    for source, expr in alert_exprs(ROOT):
        prometheus.query(expr)
    wait_for(lambda: [rule["name"] for rule in prometheus.rules() if rule["health"] == "unknown"],
             30, "rules not evaluated yet")
    unhealthy = [(rule["name"], rule["health"], rule.get("lastError")) for rule in prometheus.rules()
                 if rule["health"] != "ok" or rule.get("lastError")]
    assert not unhealthy

    # The backfilled day is the spike target's baseline, and the spike alert is quiet: for shop (no
    # challenges) and for news, whose ~25 % challenge ratio is also its own 1-day baseline.
    baseline = prometheus.query(f'target_fetcher:captcha_probes:increase1d{{target="{SPIKE_TARGET}"}}')
    assert baseline and float(baseline[0]["value"][1]) >= history_probes, baseline
    # A challenge series starts at its first challenge, at 1, so increase() needs a second one to see it.
    news_ratio = 'target_fetcher:captcha_challenges_per_probes:ratio_rate1h{target="news"}'
    wait_for(lambda: [s["value"][1] for s in prometheus.query(news_ratio) if float(s["value"][1]) == 0] or
             not prometheus.query(news_ratio), 60, "news's challenge ratio is still 0 or absent")
    assert prometheus.alerts(SPIKE) == [], "the spike alert is pending or firing before any spike"

    # Phase 2: every exit is challenged on the spike target; the alert goes pending, then fires.
    edge_policy({"news": news, SPIKE_TARGET: {"default": "challenge"}})
    wait_for(lambda: not [a for a in prometheus.alerts(SPIKE) if a["state"] == "firing"], 180,
             "the spike alert is not firing")
    firing = prometheus.alerts(SPIKE)
    assert {(a["labels"]["job"], a["labels"]["target"], a["labels"]["fetcher"]) for a in firing} == \
        {(JOB, SPIKE_TARGET, "http")}
    ratio = prometheus.query(f'target_fetcher:captcha_challenges_per_probes:ratio_rate1h{{target="{SPIKE_TARGET}"}}')
    assert float(ratio[0]["value"][1]) > 0.2
