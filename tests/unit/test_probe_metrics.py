import shutil
import subprocess
import time
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)
from support.spine_values import LANE, fetched, page, relay, target

from exporter.build import revision
from exporter.change import Baseline
from exporter.config import Expectation
from exporter.metrics import (
    FetcherInfo,
    ProbeMetrics,
    Snapshot,
    StateCollector,
    gate_runs,
)
from exporter.probe import ProbeResult, judge, run_probe
from exporter.state import Measurement, State
from exporter.values import (
    DIRECT_LANE,
    BrowserRestart,
    ErrorReason,
    FetchError,
    Response,
    StreamClosed,
    Verdict,
)


def by_status(response):
    """A stand-in classifier: 403 is a Cloudflare challenge, 429 a block, 200 ok."""
    return {403: Verdict("challenge", "cloudflare", ("cf-mitigated",)), 429: Verdict("block", "generic"),
            200: Verdict("ok")}[response.status]


class FakeFetcher:
    name = "http"

    def __init__(self, outcome):
        self.outcome = outcome

    def fetch(self, url, lane, timeout):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def close(self):
        pass


def test_judge_takes_the_stronger_of_first_and_final():
    cleared = fetched(page(403), page(200))
    assert judge(cleared, by_status).kind == "challenge"
    redirected_to_block = fetched(page(200), page(429))
    assert judge(redirected_to_block, by_status).kind == "block"


@pytest.mark.parametrize("outcome, expect", [
    (fetched(page(403)), ("challenge", None)),
    (FetchError("timeout", "slow"), (None, "timeout")),
    (RuntimeError("bug"), (None, "internal")),
])
def test_run_probe_never_raises(outcome, expect):
    result = run_probe(target(), relay(1), FakeFetcher(outcome), LANE, by_status, timeout=5)
    assert (result.verdict.kind if result.verdict else None, result.error_reason) == expect


def test_a_page_too_complex_to_compare_is_a_probe_error(monkeypatch):
    """Reading a page has a budget (exporter.markup): past it the probe records page_too_complex."""
    monkeypatch.setattr("exporter.markup.MAX_TOKENS", 100)
    direct = page(200)
    baseline = Baseline.learn([direct, direct])
    hostile = Response(direct.url, 200, direct.headers, "<p>x</p>" * 200)
    result = run_probe(target(), relay(1), FakeFetcher(fetched(hostile)), LANE, by_status, 5, baseline)
    assert (result.verdict, result.error_reason) == (None, "page_too_complex")
    assert "HTML tokens" in result.error_message


def render(registry, openmetrics=False):
    return (generate_openmetrics if openmetrics else generate_latest)(registry).decode()


def sample(text, line_prefix):
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix + " ")]
    assert len(values) == 1, (line_prefix, values)
    return values[0]


def make_metrics(exits, **snapshot):
    registry = CollectorRegistry()
    metrics, state = ProbeMetrics(registry), State()
    pairs = (("news", "http"),)
    registry.register(StateCollector(lambda: Snapshot(exits=tuple(exits), pairs=pairs, tor_version="0.4.9.11",
                                                      **snapshot), state))
    metrics.prepare(pairs, exits)
    return registry, metrics, state


def series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_zero_series_before_the_first_probe_are_the_error_reasons_and_closed_streams_only():
    exits = [relay(1, 0.75, "DE"), relay(2, 0.25, "US")]
    registry, metrics, _ = make_metrics(exits)
    metrics.prepare([("news", "http")], exits, direct=[("news", "http")])
    counters = [line for line in series(render(registry))
                if line.split("{")[0].split(" ")[0].endswith(("_total", "_bucket", "_count", "_sum"))]
    assert counters == [f'captcha_probe_errors_total{{fetcher="http",reason="{reason}",route="tor",target="news"}} 0.0'
                        for reason in ErrorReason] + [
        f'captcha_probe_errors_total{{fetcher="http",reason="{reason}",route="direct",target="news"}} 0.0'
        for reason in ErrorReason if reason != "circuit"] + [
        f'captcha_streams_closed_total{{reason="{reason}"}} 0.0' for reason in StreamClosed], "no circuit without tor"
    metrics.browsers("chromium")
    restarts = [line for line in series(render(registry)) if line.startswith("captcha_browser_restarts_total")]
    assert len(restarts) == len(BrowserRestart) and all(line.endswith(" 0.0") for line in restarts)


def test_no_created_series():
    registry, metrics, _ = make_metrics([relay(1, 1.0)])
    metrics.observe(run_probe(target(), relay(1, 1.0), FakeFetcher(fetched(page(403))), LANE, by_status, 5))
    for text in (render(registry), render(registry, openmetrics=True)):
        assert "_created" not in text and "captcha_probes_total" in text


def test_results_become_counters_ratios_and_info():
    exits = [relay(1, 0.75, "DE"), relay(2, 0.25, "US")]
    registry, metrics, state = make_metrics(exits)
    assert sample(render(registry), 'captcha_probe_errors_total{fetcher="http",reason="circuit",route="tor",'
                                    'target="news"}') == 0
    for exit, status in ((exits[0], 403), (exits[1], 200)):
        result = run_probe(target(), exit, FakeFetcher(fetched(page(status))), LANE, by_status, 5)
        state.record(result)
        metrics.observe(result)
    text = render(registry)
    assert sample(text, 'captcha_probes_total{country="DE",fetcher="http",route="tor",target="news"}') == 1
    assert sample(text, 'captcha_challenges_total{country="DE",fetcher="http",provider="cloudflare",route="tor",'
                        'target="news"}') == 1
    assert sample(text, f'captcha_exit_challenges_total{{fingerprint="{exits[0].fingerprint}"}}') == 1
    assert f'captcha_exit_challenges_total{{fingerprint="{exits[1].fingerprint}"}}' not in text, "born at its first"
    assert sample(text, 'captcha_weighted_challenge_ratio{fetcher="http",target="news"}') == pytest.approx(0.75)
    assert sample(text, 'captcha_exit_coverage_ratio{fetcher="http",target="news"}') == pytest.approx(1.0)
    assert sample(text, 'captcha_page_load_seconds_count{fetcher="http",route="tor",target="news"}') == 2
    assert sample(text, f'captcha_exit_info{{as_name="",asn="",continent="??",country="US",'
                        f'fingerprint="{exits[1].fingerprint}",nickname="exit2"}}') == 1
    assert f'captcha_exporter_build_info{{revision="{revision()}",tor_version="0.4.9.11",version=' in text


def test_tor_up_and_target_schedules():
    registry, _, _ = make_metrics([relay(1, 1.0)], tor_up=True,
                                  schedules=(("news", 600.0, 10), ("slow", 3600.0, 5)))
    text = render(registry)
    assert sample(text, "captcha_tor_up") == 1
    assert sample(text, 'captcha_target_interval_seconds{target="slow"}') == 3600
    assert sample(text, 'captcha_target_exits_per_run{target="slow"}') == 5
    assert sample(render(make_metrics([])[0]), "captcha_tor_up") == 0


def test_browser_restarts_count_by_fetcher_and_reason():
    registry, metrics, _ = make_metrics([relay(1, 1.0)])
    restarted = metrics.browsers("tor-browser-safer")
    restarted(BrowserRestart.CRASHED)
    restarted(BrowserRestart.CRASHED)
    text = render(registry)
    assert sample(text, 'captcha_browser_restarts_total{fetcher="tor-browser-safer",reason="crashed"}') == 2
    assert sample(text, 'captcha_browser_restarts_total{fetcher="tor-browser-safer",reason="hung"}') == 0


def test_every_update_is_announced():
    heard = []
    metrics = ProbeMetrics(CollectorRegistry(), changed=lambda: heard.append(1))
    metrics.prepare([("news", "http")], [relay(1)])
    metrics.observe(run_probe(target(), relay(1), FakeFetcher(fetched(page(403))), LANE, by_status, 5))
    metrics.circuit_failed("timeout")
    metrics.browsers("chromium")(BrowserRestart.HUNG)
    assert len(heard) == 4


def test_openmetrics_output_carries_probe_ids_as_exemplars():
    registry, metrics, state = make_metrics([relay(1, 1.0)])
    result = run_probe(target(), relay(1, 1.0), FakeFetcher(fetched(page(403))), LANE, by_status, 5)
    metrics.observe(result)
    text = render(registry, openmetrics=True)
    assert f'# {{probe_id="{result.probe_id}"}}' in text


def test_removed_targets_and_exits_leave_no_series():
    registry = CollectorRegistry()
    metrics = ProbeMetrics(registry)
    metrics.prepare([("news", "http"), ("shop", "http")], [relay(1), relay(2)])
    for exit in (relay(1), relay(2)):
        metrics.observe(run_probe(target(), exit, FakeFetcher(fetched(page(403))), LANE, by_status, 5))
    assert 'target="news"' in render(registry) and relay(1).fingerprint in render(registry)
    metrics.prepare([("shop", "http")], [relay(2)])
    text = render(registry)
    assert 'target="news"' not in text and 'target="shop"' in text
    assert relay(1).fingerprint not in text and relay(2).fingerprint in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by .ci/run")
def test_promtool_accepts_the_exposition():
    registry, metrics, state = make_metrics([relay(1, 1.0)])
    result = run_probe(target(), relay(1, 1.0), FakeFetcher(fetched(page(403))), LANE, by_status, 5)
    state.record(result)
    metrics.observe(result)
    check = subprocess.run(["promtool", "check", "metrics"], input=generate_latest(registry),
                           capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_plan_pending_and_oldest_attempt():
    exits = [relay(1), relay(2), relay(3), relay(4)]
    registry, state = CollectorRegistry(), State()
    now = time.time()
    plan = (("news", 600.0, tuple(e.fingerprint for e in exits)),)
    backing_off = frozenset({exits[3].fingerprint})
    registry.register(StateCollector(lambda: Snapshot(exits=tuple(exits), plan=plan, backing_off=backing_off), state))
    text = render(registry)
    assert sample(text, 'captcha_plan_pending{target="news"}') == 4
    assert "captcha_plan_oldest_attempt_timestamp_seconds{" not in text, "no time while no exit was tried"
    for exit, when in ((exits[0], now - 30), (exits[1], now - 700), (exits[3], now - 9000)):
        state.record(ProbeResult("p", "news", "http", exit, when, 0.1, error_reason="timeout", error_message="slow"))
    text = render(registry)
    assert sample(text, 'captcha_plan_pending{target="news"}') == 3, "due: never tried, tried 700 s and 9000 s ago"
    # the exit never tried and the one backing off are left out of the oldest attempt
    assert sample(text, 'captcha_plan_oldest_attempt_timestamp_seconds{target="news"}') == pytest.approx(now - 700)
    assert sample(text, "captcha_exits_backing_off") == 1


def test_the_direct_route_is_its_own_series_without_country_or_exit():
    exits = [relay(1, 1.0, "DE")]
    registry, metrics, state = make_metrics(exits)
    tor = run_probe(target(), exits[0], FakeFetcher(fetched(page(403))), LANE, by_status, 5)
    direct = run_probe(target(), None, FakeFetcher(fetched(page(403))), DIRECT_LANE, by_status, 5)
    assert (direct.route, direct.exit) == ("direct", None)
    assert state.record(tor).kind == "challenge" and state.record(direct) is None, "the direct route has no exit"
    for result in (tor, direct):
        metrics.observe(result)
    text = render(registry)
    assert sample(text, 'captcha_challenges_total{country="DE",fetcher="http",provider="cloudflare",route="tor",'
                        'target="news"}') == 1
    assert sample(text, 'captcha_challenges_total{country="",fetcher="http",provider="cloudflare",route="direct",'
                        'target="news"}') == 1
    assert sample(text, f'captcha_exit_challenges_total{{fingerprint="{exits[0].fingerprint}"}}') == 1, \
        "the direct probe counts for no exit"
    assert sample(text, 'captcha_weighted_challenge_ratio{fetcher="http",target="news"}') == 1.0


def test_an_unexpected_normal_page_is_a_change_of_its_own_kind_on_either_route():
    expecting = replace(target(), expect=Expectation(status=200, title="Front page"))
    exits = [relay(1, 1.0, "DE")]
    registry, metrics, _ = make_metrics(exits)
    lite = FakeFetcher(fetched(page(200, "<title>News  lite</title>")))
    results = [run_probe(expecting, exits[0], lite, LANE, by_status, 5),
               run_probe(expecting, None, lite, DIRECT_LANE, by_status, 5),
               run_probe(expecting, exits[0], FakeFetcher(fetched(page(200, "<title> Front\npage </title>"))),
                         LANE, by_status, 5),
               run_probe(expecting, exits[0], FakeFetcher(fetched(page(403, "<title>x</title>"))), LANE, by_status, 5)]
    assert [r.unexpected for r in results] == ["title 'News lite', expected 'Front page'"] * 2 + [None, None], \
        "titles compare with whitespace collapsed; a gate page is no normal page"
    assert results[0].needs_evidence and not results[2].needs_evidence
    for result in results:
        metrics.observe(result)
    text = render(registry)
    assert sample(text, 'captcha_page_changed_total{country="DE",fetcher="http",kind="unexpected",route="tor",'
                        'target="news"}') == 1
    assert sample(text, 'captcha_page_changed_total{country="",fetcher="http",kind="unexpected",route="direct",'
                        'target="news"}') == 1


def test_gate_runs_say_since_when_and_for_how_many_probes_an_exit_met_a_gate():
    exits = [relay(1, 0.5), relay(2, 0.5)]
    registry, _, state = make_metrics(exits)
    now = time.time()
    statuses = {exits[0]: (200, 403, 403, 403), exits[1]: (403, 200)}
    for exit, sequence in statuses.items():
        for step, status in enumerate(sequence):
            result = ProbeResult(f"p{step}", "news", "http", exit, now - 100 + step, 0.1,
                                 verdict=by_status(page(status)), fetch=fetched(page(status)))
            state.record(result)
    text = render(registry)
    labels = f'fetcher="http",fingerprint="{exits[0].fingerprint}",target="news",verdict="challenge"'
    assert sample(text, f"captcha_exit_gate_since_timestamp_seconds{{{labels}}}") == pytest.approx(now - 99)
    assert sample(text, f"captcha_exit_gate_probes{{{labels}}}") == 3
    assert exits[1].fingerprint not in text.split("captcha_exit_gate_probes")[-1], "its last probe was ok"


def test_gate_runs_are_bounded_to_those_that_began_first():
    runs = {f"{n:040X}": Measurement("challenge", "cloudflare", 500.0, "p", since=float(n)) for n in range(10)}
    runs["F" * 40] = Measurement("block", "akamai", 500.0, "p", since=0.5)
    runs["E" * 40] = Measurement("ok", "", 500.0, "p", since=0.0)
    runs["D" * 40] = Measurement("challenge", "cloudflare", 10.0, "p", since=0.0)  # before the window
    kept = gate_runs(runs, since=100.0, limit=3)
    assert [(fingerprint[-1], m.kind) for fingerprint, m in kept] == [("0", "challenge"), ("F", "block"),
                                                                      ("1", "challenge")]
    assert len(gate_runs(runs, since=100.0)) == 11


def test_exit_facts_first_seen_onionoo_and_fetcher_info():
    exits = [replace(relay(1, 1.0), continent="EU", asn="AS64500", as_name="Example Hosting")]
    infos = (FetcherInfo("chromium-de", "chromium", "chrome", "131.0.6778.85", "prefs.intl.accept_languages=de"),)
    registry, _, _ = make_metrics(exits, first_seen={exits[0].fingerprint: 1.5e9, "F" * 40: 1.0},
                                  onionoo_success_time=1.7e9, fetchers=infos)
    text = render(registry)
    assert sample(text, f'captcha_exit_info{{as_name="Example Hosting",asn="AS64500",continent="EU",country="DE",'
                        f'fingerprint="{exits[0].fingerprint}",nickname="exit1"}}') == 1
    assert sample(text, f'captcha_exit_first_seen_timestamp_seconds{{fingerprint="{exits[0].fingerprint}"}}') == 1.5e9
    assert "F" * 40 not in text, "only exits in the consensus"
    assert sample(text, "captcha_onionoo_last_success_timestamp_seconds") == 1.7e9
    assert sample(text, 'captcha_fetcher_info{browser="chrome",fetcher="chromium-de",kind="chromium",'
                        'sandbox="",settings="prefs.intl.accept_languages=de",version="131.0.6778.85"}') == 1


def test_proof_of_work_gates_export_solve_time_and_last_difficulty():
    exits = [relay(1, 1.0, "DE")]
    registry, metrics, _state = make_metrics(exits)
    gate = page(200, '<script id="anubis_challenge" type="application/json">{"rules": {"difficulty": 4}}</script>')
    cleared = fetched(gate, page(200), outcome="cleared", clear_seconds=1.7)

    def anubis(response):
        return Verdict("challenge", "anubis") if "anubis_challenge" in response.body else Verdict("ok")

    result = run_probe(target(), exits[0], FakeFetcher(cleared), LANE, anubis, 5)
    assert result.pow_difficulty == 4
    metrics.observe(result)
    interactive = fetched(page(403), outcome="interactive")
    metrics.observe(run_probe(target(), exits[0], FakeFetcher(interactive), LANE, by_status, 5))
    text = render(registry)
    assert sample(text, 'captcha_pow_difficulty{provider="anubis",target="news"}') == 4
    assert sample(text, 'captcha_pow_solve_seconds_sum{provider="anubis",target="news"}') == pytest.approx(1.7)
    assert sample(text, 'captcha_pow_solve_seconds_count{provider="anubis",target="news"}') == 1
    assert 'captcha_pow_solve_seconds_count{provider="cloudflare"' not in text, "not a proof of work"
    assert 'captcha_pow_difficulty{provider="cloudflare"' not in text
