"""A real Prometheus scrapes the real exporter on the test bed, with the rules and dashboards of a team's mixin config.

The files are the monitoring mixin rendered with mixin/example-config.yaml:
another job name, Grafana and runbook address than the shipped ones (the unit
tests run the same catalog against a stand-in with both).

Three sites stand for the three cases of the direct control (each target's
probes without Tor, ``route="direct"``): ``shop`` (A) will challenge every
exit but not direct, ``login`` (B) challenges direct from the start and every
exit too once staged, ``static`` (C) challenges nobody.  A and B have a day of
backfilled normal history (same job, instance and series), so their 1-day
baselines are real.  ``news`` injects, challenges, blocks and errors on its
exits; ``forum`` challenges through two exits and serves a "lite" page through
a third, which its ``expect`` (the real title) counts as unexpected.

Phase 1: through the HTTP API, every recording rule and panel query returns
data (except the commented allow-list), the Tor / direct split included, every
alert expression evaluates, every rule is healthy, and no spike alert is
pending or firing.  Prometheus alone answers "which exits challenged forum in
the last hour", and so does the exporter's /api/v1/probes.

Phase 2: A and B challenge every exit.  The Tor-only spike alert (its ``for:``
shortened, nothing else changed) fires for A and never even goes pending for
B, whose direct probes are challenged too; "challenges everyone" fires for B
only.
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
EVERYONE = "CaptchaTargetChallengesEveryone"
ALERT_FOR = "15s"
INTERVAL = "5s"  # scrape and rule evaluation
TOR_ONLY, EVERYBODY, NOBODY = "shop", "login", "static"  # sites A, B and C
SPIKED = (TOR_ONLY, EVERYBODY)  # the targets with a backfilled day of normal history
JOB = rendered_mixin.custom()["job"]
FORUM_TITLE = "Tinkerers' Board – Index"

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
    """OpenMetrics text: for each SPIKED target, one answered, unchallenged probe through Tor per country every
    minute for 22 hours until ``end`` (all inside a 1-day window for the next hour). Returns the text and the
    probes it counts per target."""
    steps = 22 * 60
    lines = ["# HELP captcha_probes Probes that got an answer.", "# TYPE captcha_probes counter"]
    for target in SPIKED:
        for country in countries:
            labels = (f'job="{JOB}",instance="{instance}",target="{target}",fetcher="http",route="tor",'
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


def values(prometheus: RunningPrometheus, expr: str, label: str) -> dict[str, float]:
    return {series["metric"].get(label, ""): float(series["value"][1]) for series in prometheus.query(expr)}


def test_rules_dashboards_tor_against_direct_and_alerts_on_live_data(testbed, edge_policy, run_exporter,
                                                                      start_prometheus, tmp_path):
    state = testbed.state()
    names = [e["nickname"] for e in state["exits"]]
    fingerprint = {e["nickname"]: e["fingerprint"] for e in state["exits"]}
    assert len(names) >= 4, "the mixed policy needs four exits"
    sites = {"news": {"default": "ok", "exits": {names[0]: "injected", names[1]: "challenge", names[2]: "block",
                                                 names[3]: "error"}},
             "forum": {"default": "ok", "exits": {names[0]: "challenge", names[1]: "challenge",
                                                  names[2]: "different"}},
             TOR_ONLY: {"default": "ok"},
             EVERYBODY: {"default": "ok", "exits": {"direct": "challenge"}},  # "direct": fetches without Tor
             NOBODY: {"default": "ok"}}
    edge_policy(sites)

    exporter_port, prometheus_port = free_ports(2)
    instance, address = f"127.0.0.1:{exporter_port}", f"127.0.0.1:{prometheus_port}"
    config = write_test_config(tmp_path, instance, address, INTERVAL, alert_for={SPIKE: ALERT_FOR, EVERYONE: ALERT_FOR},
                               rules_root=ROOT, job_name=JOB)
    # History ends 65 minutes ago: older than anything scraped, and outside the 1h windows.
    history, history_probes = normal_day(instance, sorted({e["country"] for e in state["exits"]}),
                                         time.time() - 65 * 60)
    backfill(history, tmp_path / "prometheus-data", tmp_path)

    exporter_settings = exporter_config(state, exporter_port, tmp_path / "exporter-data")
    exporter_settings["targets"] = [{"name": site, "url": state["edge"]["sites"][site]} for site in sites]
    exporter_settings["targets"][1]["expect"] = {"status": 200, "title": FORUM_TITLE}
    exporter = run_exporter(exporter_settings)
    prometheus = start_prometheus(config, tmp_path / "prometheus-data", address)

    # Phase 1: every recording rule and panel query has data, every alert expression evaluates.
    wait_for(lambda: missing_data(prometheus), 150, "these queries still return no data")
    assert set(NO_DATA_HERE) | set(MAY_HAVE_NO_DATA) <= {source for source, _ in catalog(root=ROOT)}, \
        "an allow-list names a query that is gone"
    answered = [source for source, expr in catalog(root=ROOT)  # an error answer fails here, allow-listed or not
                if has_data(prometheus.query(expr)) and source in NO_DATA_HERE]
    assert not answered, "these now return data: take them off NO_DATA_HERE"
    records = [rule["name"] for rule in prometheus.rules() if rule["type"] == "recording"
               and not any(source.endswith(f":{rule['name']}") for source in NO_DATA_HERE)]
    # A panel can have data one evaluation before the recording rule it shares inputs with.
    wait_for(lambda: [record for record in records if not prometheus.query(record)], 60,
             "these recording rules have no series")
    for source, expr in alert_exprs(ROOT):
        prometheus.query(expr)
    wait_for(lambda: [rule["name"] for rule in prometheus.rules() if rule["health"] == "unknown"],
             30, "rules not evaluated yet")
    unhealthy = [(rule["name"], rule["health"], rule.get("lastError")) for rule in prometheus.rules()
                 if rule["health"] != "ok" or rule.get("lastError")]
    assert not unhealthy

    # The backfilled day is the spiked targets' baseline, and no spike alert is pending or firing: not for A or
    # C (no challenges), not for news (its ~25 % challenge ratio is also its own 1-day baseline), and not for B,
    # whose direct probes alone are challenged so far.
    for target in SPIKED:
        baseline = prometheus.query(f'target_fetcher:captcha_probes:increase1d{{target="{target}",route="tor"}}')
        assert baseline and float(baseline[0]["value"][1]) >= history_probes, baseline
    # A challenge series starts at its first challenge, at 1, so increase() needs a second one to see it.
    news_ratio = 'target_fetcher:captcha_challenges_per_probes:ratio_rate1h{target="news",route="tor"}'
    wait_for(lambda: [s["value"][1] for s in prometheus.query(news_ratio) if float(s["value"][1]) == 0] or
             not prometheus.query(news_ratio), 60, "news's challenge ratio is still 0 or absent")
    assert prometheus.alerts(SPIKE) == [], "the spike alert is pending or firing before any spike"

    # The split: direct probes of B are challenged, of A and C not; Tor probes of none of the three.
    ratio_1h = 'target_fetcher:captcha_challenges_per_probes:ratio_rate1h{{route="{}",target=~"{}"}}'
    three = f"{TOR_ONLY}|{EVERYBODY}|{NOBODY}"
    # While B's direct series are young the ratio overshoots 1: it divides the live challenge increase by the
    # probe increase the counts group recorded up to one evaluation earlier.
    wait_for(lambda: abs(values(prometheus, ratio_1h.format("direct", EVERYBODY), "target").get(EVERYBODY, 0) - 1)
             > 0.1, 240, "B's direct challenge ratio has not settled near 1")
    assert values(prometheus, ratio_1h.format("direct", three), "target") == {
        TOR_ONLY: 0, EVERYBODY: pytest.approx(1, abs=0.1), NOBODY: 0}
    assert values(prometheus, ratio_1h.format("tor", three), "target") == {TOR_ONLY: 0, EVERYBODY: 0, NOBODY: 0}

    # Which exits challenged forum in the last hour: Prometheus alone (the target × exit runs), and the JSON API.
    challenged = {fingerprint[names[0]], fingerprint[names[1]]}
    forum_exits = ('max by (fingerprint) (max_over_time(captcha_exit_gate_probes'
                   '{target="forum",verdict="challenge"}[1h]))')
    wait_for(lambda: set(values(prometheus, forum_exits, "fingerprint")) != challenged, 60,
             "the exits that challenged forum, from Prometheus")
    api = exporter.get("/api/v1/probes?target=forum&verdict=challenge&route=tor&since=1h&limit=1000").json()
    assert api["status"] == "success" and not api["data"]["truncated"]
    assert {p["exit"]["fingerprint"] for p in api["data"]["probes"]} == challenged
    since = values(prometheus, forum_exits.replace("gate_probes", "gate_since_timestamp_seconds"), "fingerprint")
    assert all(time.time() - 600 < when <= time.time() for when in since.values()), "challenged since the start"
    # forum's "lite" page through the third exit is no page its expect allows; the direct one is
    unexpected = 'sum by (route) (increase(captcha_page_changed_total{target="forum",kind="unexpected"}[1h]))'
    wait_for(lambda: not values(prometheus, unexpected, "route").get("tor"), 60, "forum's unexpected page counted")
    assert "direct" not in values(prometheus, unexpected, "route")

    # Phase 2: A and B challenge every exit (B's direct probes stay challenged).
    seen_spiking: set[str] = set()

    def not_yet_firing() -> bool:
        spikes = prometheus.alerts(SPIKE)
        seen_spiking.update(alert["labels"]["target"] for alert in spikes)
        firing = {alert["labels"]["target"] for alert in spikes if alert["state"] == "firing"}
        everyone = {alert["labels"]["target"] for alert in prometheus.alerts(EVERYONE) if alert["state"] == "firing"}
        return not (TOR_ONLY in firing and EVERYBODY in everyone)

    edge_policy({**sites, TOR_ONLY: {"default": "challenge"},
                 EVERYBODY: {"default": "challenge", "exits": {"direct": "challenge"}}})
    wait_for(not_yet_firing, 480, "the Tor spike alert for A and the challenges-everyone alert for B")
    firing = prometheus.alerts(SPIKE)
    assert {(a["labels"]["job"], a["labels"]["target"], a["labels"]["fetcher"], a["labels"]["route"])
            for a in firing} == {(JOB, TOR_ONLY, "http", "tor")}
    assert seen_spiking == {TOR_ONLY}, "B's Tor spike never even went pending: its direct probes met it too"
    everyone = prometheus.alerts(EVERYONE)
    assert {(a["labels"]["target"], a["labels"]["route"], a["labels"]["severity"]) for a in everyone} == \
        {(EVERYBODY, "direct", "info")}
    ratio = values(prometheus, ratio_1h.format("tor", three), "target")
    assert ratio[TOR_ONLY] > 0.2 and ratio[EVERYBODY] > 0.5 and ratio[NOBODY] == 0
