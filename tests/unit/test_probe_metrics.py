import shutil
import subprocess
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)
from support.spine_values import LANE, fetched, page, relay, target

from exporter.build import revision
from exporter.change import Baseline
from exporter.metrics import ProbeMetrics, Snapshot, StateCollector
from exporter.probe import ProbeResult, judge, run_probe
from exporter.state import State
from exporter.values import (
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
    counters = [line for line in series(render(registry))
                if line.split("{")[0].split(" ")[0].endswith(("_total", "_bucket", "_count", "_sum"))]
    assert counters == [f'captcha_probe_errors_total{{fetcher="http",reason="{reason}",target="news"}} 0.0'
                        for reason in ErrorReason] + [
        f'captcha_streams_closed_total{{reason="{reason}"}} 0.0' for reason in StreamClosed]
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
    assert sample(render(registry), 'captcha_probe_errors_total{fetcher="http",reason="circuit",target="news"}') == 0
    for exit, status in ((exits[0], 403), (exits[1], 200)):
        result = run_probe(target(), exit, FakeFetcher(fetched(page(status))), LANE, by_status, 5)
        state.record(result)
        metrics.observe(result)
    text = render(registry)
    assert sample(text, 'captcha_probes_total{country="DE",fetcher="http",target="news"}') == 1
    assert sample(text, 'captcha_challenges_total{country="DE",fetcher="http",provider="cloudflare",'
                        'target="news"}') == 1
    assert sample(text, f'captcha_exit_challenges_total{{fingerprint="{exits[0].fingerprint}"}}') == 1
    assert f'captcha_exit_challenges_total{{fingerprint="{exits[1].fingerprint}"}}' not in text, "born at its first"
    assert sample(text, 'captcha_weighted_challenge_ratio{fetcher="http",target="news"}') == pytest.approx(0.75)
    assert sample(text, 'captcha_exit_coverage_ratio{fetcher="http",target="news"}') == pytest.approx(1.0)
    assert sample(text, 'captcha_page_load_seconds_count{fetcher="http",target="news"}') == 2
    assert sample(text, f'captcha_exit_info{{country="US",fingerprint="{exits[1].fingerprint}",'
                        f'nickname="exit2"}}') == 1
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
