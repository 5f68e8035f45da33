import pytest
from support.spine_values import fetched, page, relay

from exporter.probe import ProbeResult
from exporter.state import Measurement, State, weighted_ratio
from exporter.values import Verdict


def m(kind, when=100.0):
    return Measurement(kind=kind, provider="", time=when, probe_id="x")


def test_weighted_ratio_over_measured_weight():
    weights = {"A": 0.5, "B": 0.3, "C": 0.2}
    ratio, coverage = weighted_ratio({"A": m("challenge"), "B": m("ok")}, weights, since=0)
    assert ratio == pytest.approx(0.5 / 0.8)
    assert coverage == pytest.approx(0.8)


def test_old_measurements_and_unknown_exits_do_not_count():
    weights = {"A": 0.5, "B": 0.5}
    ratio, coverage = weighted_ratio({"A": m("challenge", 10.0), "B": m("ok", 200.0), "Z": m("challenge")},
                                     weights, since=100.0)
    assert ratio == 0.0
    assert coverage == pytest.approx(0.5)


def test_nothing_measured_gives_no_ratio():
    assert weighted_ratio({}, {"A": 1.0}, since=0) == (None, 0.0)


def test_state_keeps_last_answer_and_every_attempt():
    state = State()
    exit = relay(1)
    answered = ProbeResult("p1", "news", "http", exit, 10.0, 0.1, verdict=Verdict("challenge", "cloudflare"),
                           fetch=fetched(page(403)))
    failed = ProbeResult("p2", "news", "http", exit, 20.0, 0.1, error_reason="timeout", error_message="slow")
    state.record(answered)
    state.record(failed)
    assert state.last_measured("news", "http")[exit.fingerprint].kind == "challenge"
    assert state.last_attempted("news")[exit.fingerprint] == 20.0
    state.forget_targets(["other"])
    assert state.last_measured("news", "http") == {} and state.last_attempted("news") == {}


def test_restore_takes_over_persisted_measurements():
    state = State()
    state.restore({("news", "http"): {"A": m("block")}}, {"news": {"A": 5.0}})
    assert state.last_measured("news", "http")["A"].kind == "block"
    assert state.last_attempted("news") == {"A": 5.0}
