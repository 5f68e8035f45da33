"""First-hop choice, failure reasons, and the pinner's circuit/stream handling against a scripted controller."""

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import stem
from stem.control import EventType

from exporter.tor.circuit import (
    CircuitPinner,
    choose_first_hop,
    choose_path,
    host_denied,
    reason_for_circ_event,
    reason_for_extend_error,
)
from exporter.tor.relay import ExitRelay
from exporter.values import CircuitError, CircuitFailure, Lane

EXIT = ExitRelay("E" * 40, "exit", "10.1.0.5", frozenset({"Running", "Exit"}), 100, 1.0)


@dataclass
class Relay:
    fingerprint: str
    address: str
    flags: list = field(default_factory=lambda: ["Running", "Fast", "Stable", "Valid"])
    nickname: str = "relay"


def chosen(relays, family=(), exclude=frozenset(), runs=50):
    rng = random.Random(7)
    return {getattr(choose_first_hop(EXIT, family, relays, exclude, rng), "fingerprint", None) for _ in range(runs)}


def test_first_hop_is_never_the_exit_its_family_excluded_or_not_running():
    relays = [
        Relay("E" * 40, "10.2.0.1"),
        Relay("F" * 40, "10.3.0.1"),  # family, named by $FP~nick
        Relay("1" * 40, "10.4.0.1", ["Fast", "Stable"]),  # not Running
        Relay("2" * 40, "10.5.0.1"),  # excluded (failed before)
        Relay("3" * 40, "10.6.0.1"),
        Relay("4" * 40, "10.7.0.1", nickname="Cousin"),  # family, named by nickname
    ]
    assert chosen(relays, family=["$" + "F" * 40 + "~fam", "cousin"], exclude={"2" * 40}) == {"3" * 40}


def test_other_slash16_preferred_over_fast_stable_then_fast_stable_preferred():
    relays = [Relay("1" * 40, "10.1.9.9"), Relay("2" * 40, "10.9.0.1", ["Running"])]
    assert chosen(relays) == {"2" * 40}  # other /16 beats Fast+Stable in the exit's /16
    relays.append(Relay("3" * 40, "10.8.0.1"))
    assert chosen(relays) == {"3" * 40}  # other /16 and Fast+Stable beats both


def test_same_slash16_is_a_fallback_when_nothing_else_is_left():
    relays = [Relay("1" * 40, "10.1.0.7", ["Running"]), Relay("2" * 40, "10.1.0.8")]
    assert chosen(relays) == {"2" * 40}
    assert chosen(relays[:1]) == {"1" * 40}
    assert chosen([]) == {None}


def test_choice_is_uniform_within_the_best_tier():
    relays = [Relay(f"{i}" * 40, f"10.{20 + i}.0.1") for i in range(1, 4)]
    assert chosen(relays, runs=200) == {r.fingerprint for r in relays}


@pytest.mark.parametrize("circ_reason, reason", [
    ("TIMEOUT", "timeout"), ("MEASUREMENT_EXPIRED", "timeout"), ("DESTROYED", "destroyed"),
    ("CHANNEL_CLOSED", "destroyed"), ("CONNECTFAILED", "connect_failed"), ("NOPATH", "connect_failed"),
    ("RESOURCELIMIT", "other"), (None, "other"),
])
def test_circ_event_reasons(circ_reason, reason):
    assert reason_for_circ_event(circ_reason) == reason
    assert reason in set(CircuitFailure)


def test_extend_errors():
    assert reason_for_extend_error(stem.InvalidRequest("552", "No descriptor for \"$AB\"")) == "no_descriptor"
    assert reason_for_extend_error(stem.InvalidRequest("552", "Unknown router \"$AB\"")) == "no_descriptor"
    assert reason_for_extend_error(stem.ProtocolError("garbled")) == "other"
    with pytest.raises(ValueError):
        CircuitError("bogus", "no such reason")


class ScriptedController:
    """Plays tor: CIRC events for each EXTENDCIRCUIT per ``outcomes``, records every command."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)  # per build: "BUILT", ("FAILED", reason), "SILENT", or an exception
        self.listeners = {}
        self.calls = []
        self.conf = {"__LeaveStreamsUnattached": "0", "__DisablePredictedCircuits": "0"}
        self.next_id = 10
        self.alive = True

    def is_alive(self):
        return self.alive

    def get_conf(self, name, default=None):
        return self.conf.get(name, default)

    def set_options(self, params):
        self.calls.append(("set_options", dict(params)))
        self.conf.update(dict(params))

    def add_event_listener(self, listener, event_type):
        self.listeners[event_type] = listener

    def remove_event_listener(self, listener):
        self.listeners = {k: v for k, v in self.listeners.items() if v != listener}

    def get_server_descriptor(self, fingerprint):
        raise ValueError("Tor is currently not configured to retrieve server descriptors")

    def get_microdescriptor(self, fingerprint):
        return SimpleNamespace(family=["$" + "F" * 40])

    def extend_circuit(self, circuit_id, path):
        self.calls.append(("extend", tuple(path)))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        self.next_id += 1
        new_id = str(self.next_id)
        # the events arrive before EXTENDCIRCUIT's reply has been handed back
        self.circ(str(self.next_id + 100), "BUILT")  # someone else's circuit
        if outcome == "BUILT":
            self.circ(new_id, "BUILT")
        elif outcome != "SILENT":
            self.circ(new_id, outcome[0], outcome[1])
        return new_id

    def circ(self, circ_id, status, reason=None, remote_reason=None):
        self.listeners[EventType.CIRC](SimpleNamespace(id=circ_id, status=status, reason=reason,
                                                       remote_reason=remote_reason))

    def close_circuit(self, circuit_id):
        self.calls.append(("close_circuit", circuit_id))

    def attach_stream(self, stream_id, circuit_id):
        self.calls.append(("attach", stream_id, circuit_id))

    def close_stream(self, stream_id, reason):
        self.calls.append(("close_stream", stream_id))

    def stream(self, stream_id, status, host, group, reason=None):
        event = SimpleNamespace(id=stream_id, status=status, target_address=host, target_port=443, reason=reason,
                                remote_reason=None,
                                keyword_args={"SESSION_GROUP": str(group)} if group is not None else {})
        self.listeners[EventType.STREAM](event)


LANES = [Lane(0, "127.0.0.1", 9150, 1000), Lane(1, "127.0.0.1", 9151, 1001)]
RELAYS = [Relay("1" * 40, "10.2.0.1"), Relay("2" * 40, "10.3.0.1"), Relay("F" * 40, "10.4.0.1")]


def handled(pinner):
    """Wait until the pinner's stream worker has handled every STREAM event fired so far."""
    pinner._stream_events.join()


def attach_blocked_until_set(controller) -> threading.Event:
    """Make ATTACHSTREAM block until the returned event is set (a slow control connection); forget
    the calls so far."""
    go_on = threading.Event()

    def slow_attach(stream_id, circuit_id):
        go_on.wait(10)
        controller.calls.append(("attach", stream_id, circuit_id))

    controller.attach_stream = slow_attach
    controller.calls.clear()
    return go_on


def started(outcomes, failures=None, timeout=5.0, hops=2, deny=(), closed=None):
    controller = ScriptedController(outcomes)
    failures = [] if failures is None else failures
    pinner = CircuitPinner(controller, LANES, deny, on_failure=failures.append, timeout=timeout,
                           descriptor_wait=0.05, hops=hops, on_closed=(closed if closed is not None else []).append)
    pinner.start()
    return controller, pinner


def test_start_and_stop_take_and_give_back_stream_attachment():
    controller, pinner = started(["BUILT"])
    assert controller.conf == {"__LeaveStreamsUnattached": "1", "__DisablePredictedCircuits": "1"}
    assert set(controller.listeners) == {EventType.CIRC, EventType.STREAM}
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    pinner.stop()
    assert controller.conf == {"__LeaveStreamsUnattached": "0", "__DisablePredictedCircuits": "0"}
    assert controller.listeners == {}
    assert ("close_circuit", circuit) in controller.calls


def test_pin_builds_two_hops_avoiding_family_and_closes_the_previous_circuit():
    controller, pinner = started(["BUILT", "BUILT"])
    first = pinner.pin(LANES[0], EXIT, RELAYS)
    second = pinner.pin(LANES[0], EXIT, RELAYS)
    builds = [call[1] for call in controller.calls if call[0] == "extend"]
    assert all(len(path) == 2 and path[1] == EXIT.fingerprint and path[0] != "F" * 40 for path in builds)
    assert first != second and pinner.circuit_of(LANES[0]) == second
    assert ("close_circuit", first) in controller.calls and ("close_circuit", second) not in controller.calls


def test_failed_builds_retry_with_another_first_hop_and_report_reasons():
    failures = []
    controller, pinner = started([("FAILED", "TIMEOUT"), stem.InvalidRequest("552", "No descriptor for x")], failures)
    with pytest.raises(CircuitError) as raised:
        pinner.pin(LANES[0], EXIT, RELAYS)
    first_hops = [call[1][0] for call in controller.calls if call[0] == "extend"]
    assert sorted(first_hops) == ["1" * 40, "2" * 40]  # two different hops, then nothing left
    assert failures == ["timeout", "no_descriptor", "no_first_hop"]
    assert raised.value.reason == "no_first_hop"
    assert pinner.circuit_of(LANES[0]) is None


def test_a_failed_repin_leaves_the_lane_without_its_previous_circuit():
    controller, pinner = started(["BUILT", ("FAILED", "DESTROYED"), ("FAILED", "DESTROYED")])
    previous = pinner.pin(LANES[0], EXIT, RELAYS)
    with pytest.raises(CircuitError) as raised:
        pinner.pin(LANES[0], EXIT, RELAYS)
    assert raised.value.reason == "no_first_hop"
    assert ("close_circuit", previous) in controller.calls
    assert pinner.circuit_of(LANES[0]) is None


def test_a_missing_descriptor_is_waited_for_before_the_next_try():
    failures = []
    controller, pinner = started([stem.InvalidRequest("552", "No descriptor for x"), "BUILT"], failures)
    began = time.monotonic()
    assert pinner.pin(LANES[0], EXIT, RELAYS) == "11"
    assert time.monotonic() - began >= 0.05
    assert failures == ["no_descriptor"]


def test_a_build_that_never_completes_times_out_and_is_closed():
    failures = []
    controller, pinner = started(["SILENT", "BUILT"], failures, timeout=0.2)
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    assert failures == ["timeout"]
    assert ("close_circuit", "11") in controller.calls and circuit == "12"


def test_a_build_fails_at_once_when_tor_goes_away():
    failures = []
    controller, pinner = started(["SILENT", "SILENT", "SILENT"], failures, timeout=30)
    controller.alive = False
    started_at = time.monotonic()
    with pytest.raises(CircuitError):
        pinner.pin(LANES[0], EXIT, RELAYS)
    assert time.monotonic() - started_at < 5, "did not wait for the 30 s build timeout"
    assert "other" in failures and "timeout" not in failures


def test_pin_builds_three_hops_when_asked_each_relay_once():
    relays = RELAYS + [Relay("3" * 40, "10.5.0.1")]
    controller, pinner = started(["BUILT"], hops=3)
    pinner.pin(LANES[0], EXIT, relays)
    (path,) = [call[1] for call in controller.calls if call[0] == "extend"]
    assert len(path) == 3 and path[2] == EXIT.fingerprint and len(set(path)) == 3 and "F" * 40 not in path
    assert choose_path(EXIT, ["$" + "F" * 40], RELAYS, hops=3, exclude={"1" * 40}) is None  # one relay left


def test_every_stream_of_a_pinned_lane_goes_to_its_circuit_whatever_its_host():
    closed = []
    controller, pinner = started(["BUILT", "BUILT"], closed=closed)
    c0 = pinner.pin(LANES[0], EXIT, RELAYS)
    c1 = pinner.pin(LANES[1], EXIT, RELAYS)
    controller.calls.clear()
    controller.stream("1", "NEW", "news.test", 1000)
    controller.stream("2", "NEW", "NEWS.test", 1001)
    controller.stream("3", "NEW", "challenges.cloudflare.com", 1000)  # the page's vendor frame
    controller.stream("4", "NEW", "news.test", 7)  # another session group: not ours
    controller.stream("5", "NEW", "news.test", None)  # no session group at all
    controller.stream("6", "SUCCEEDED", "news.test", 1000)  # nothing to do
    handled(pinner)
    assert controller.calls == [("attach", "1", c0), ("attach", "2", c1), ("attach", "3", c0)]
    assert closed == []


def test_a_stream_of_a_lane_no_probe_runs_on_is_closed_and_counted_as_stray():
    closed = []
    controller, pinner = started(["BUILT"], closed=closed)
    controller.stream("1", "NEW", "update.googleapis.com", 1000)  # before any probe
    pinner.pin(LANES[0], EXIT, RELAYS)
    pinner.release(LANES[0])  # the probe is over
    controller.stream("2", "NEW", "news.test", 1000)  # the last page, still busy
    handled(pinner)
    assert [c for c in controller.calls if c[0] in ("attach", "close_stream")] == [
        ("close_stream", "1"), ("close_stream", "2")]
    assert closed == ["stray", "stray"]


def test_a_stream_the_left_page_opens_late_goes_to_its_circuit_before_the_lane_is_released():
    """Chromium fetches a favicon after the tab left the page: tor reports the stream once its
    SOCKS request arrives, after the probe; it goes to the page's circuit, and the lane is
    released only once it has been quiet."""
    closed = []
    controller, pinner = started(["BUILT"], closed=closed)
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    controller.calls.clear()
    late = threading.Timer(0.2, controller.stream, ("1", "NEW", "news.test", 1000))
    late.start()
    started_at = time.monotonic()
    pinner.release_when_quiet(LANES[0], quiet=0.4, limit=3.0)
    waited = time.monotonic() - started_at
    assert controller.calls == [("attach", "1", circuit), ("close_circuit", circuit)] and closed == []
    assert 0.6 <= waited < 2.0  # quiet for 0.4 s after the late stream at 0.2 s
    controller.stream("2", "NEW", "news.test", 1000)  # now the lane is released: stray
    handled(pinner)
    assert closed == ["stray"]


def test_a_stream_tor_reported_before_the_release_is_handled_before_it():
    """A STREAM event still queued for the worker holds the release, however long ago it came."""
    controller, pinner = started(["BUILT"])
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    attaching = attach_blocked_until_set(controller)
    controller.stream("1", "NEW", "news.test", 1000)
    threading.Timer(0.5, attaching.set).start()
    pinner.release_when_quiet(LANES[0], quiet=0.1, limit=3.0)
    assert controller.calls == [("attach", "1", circuit), ("close_circuit", circuit)]


def test_a_lane_that_never_goes_quiet_is_released_at_the_limit():
    controller, pinner = started(["BUILT"])
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    busy = threading.Event()

    def open_streams():
        for number in range(100):
            if busy.wait(0.05):
                return
            controller.stream(str(number), "NEW", "news.test", 1000)

    threading.Thread(target=open_streams, daemon=True).start()
    started_at = time.monotonic()
    pinner.release_when_quiet(LANES[0], quiet=0.3, limit=0.8)
    waited = time.monotonic() - started_at
    busy.set()
    assert 0.8 <= waited < 1.5 and pinner.circuit_of(LANES[0]) is None
    assert ("close_circuit", circuit) in controller.calls


def test_another_lanes_streams_do_not_hold_a_release():
    controller, pinner = started(["BUILT", "BUILT"])
    pinner.pin(LANES[0], EXIT, RELAYS)
    pinner.pin(LANES[1], EXIT, RELAYS)
    threading.Timer(0.2, controller.stream, ("1", "NEW", "news.test", 1001)).start()
    started_at = time.monotonic()
    pinner.release_when_quiet(LANES[0], quiet=0.4, limit=3.0)
    assert time.monotonic() - started_at < 0.55


def test_denied_hosts_are_closed_and_counted():
    closed = []
    controller, pinner = started(["BUILT"], deny=("tracker.example", "*.ads.example"), closed=closed)
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    controller.calls.clear()
    for stream_id, host in enumerate(("Tracker.Example", "x.ads.example", "ads.example", "news.test"), start=1):
        controller.stream(str(stream_id), "NEW", host, 1000)
    handled(pinner)
    assert controller.calls == [("close_stream", "1"), ("close_stream", "2"), ("attach", "3", circuit),
                                ("attach", "4", circuit)]
    assert closed == ["denied", "denied"]


def test_host_patterns():
    assert host_denied("a.b.example.", ["*.b.example"]) and host_denied("x.test", ["x.test"])
    assert not host_denied("b.example", ["*.b.example"]) and not host_denied("notb.example", ["*.b.example"])


ONION = "ytsjjeqwpgh2k2gtqhnxw7a6wnlwxlqsredtzyym4dhuljduzwtqksad.onion"


def test_onion_streams_are_handed_back_to_tor_never_to_the_exit_circuit():
    controller, pinner = started(["BUILT"])
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    controller.calls.clear()
    controller.stream("1", "NEW", ONION, 1000)  # on a pinned lane
    controller.stream("2", "NEW", ONION.upper(), 1001)  # on a lane never pinned
    controller.stream("3", "DETACHED", ONION, 1000, reason="TIMEOUT")  # tor's to retry now
    controller.stream("4", "NEW", ONION, 7)  # another controller's
    controller.stream("5", "NEW", "news.test", 1000)
    handled(pinner)
    assert controller.calls == [("attach", "1", "0"), ("attach", "2", "0"), ("attach", "5", circuit)]


def test_detached_streams_are_reattached_once_unless_the_exit_ended_them():
    controller, pinner = started(["BUILT"])
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    controller.calls.clear()
    controller.stream("1", "DETACHED", "news.test", 1000, reason="TIMEOUT")
    controller.stream("1", "DETACHED", "news.test", 1000, reason="TIMEOUT")
    controller.stream("2", "DETACHED", "news.test", 1000, reason="END")
    handled(pinner)
    assert controller.calls == [("attach", "1", circuit), ("close_stream", "1"), ("close_stream", "2")]


def test_streams_of_a_lane_whose_circuit_tor_closed_are_closed_and_counted_as_such(caplog):
    closed = []
    controller, pinner = started(["BUILT", "BUILT"], closed=closed)
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    with caplog.at_level(logging.WARNING, logger="exporter.tor.circuit"):
        controller.circ(circuit, "CLOSED", "DESTROYED", "CHANNEL_CLOSED")  # a relay sent DESTROY
    assert pinner.circuit_of(LANES[0]) is None
    assert pinner.lost(LANES[0]) == f"circuit {circuit} closed by tor: DESTROYED/CHANNEL_CLOSED"
    assert [(r.message, r.reason, r.remote_reason) for r in caplog.records] == [
        ("pinned circuit closed by tor", "DESTROYED", "CHANNEL_CLOSED")]
    controller.calls.clear()
    controller.stream("1", "NEW", "news.test", 1000)  # the probe still runs: not stray
    controller.stream("2", "NEW", "news.test", 1001)  # lane 1 was never pinned
    handled(pinner)
    assert controller.calls == [("close_stream", "1"), ("close_stream", "2")]
    assert closed == ["circuit_closed", "stray"]
    pinner.pin(LANES[0], EXIT, RELAYS)  # the next probe's circuit
    assert pinner.lost(LANES[0]) is None


def test_a_circuit_we_released_is_not_reported_lost():
    controller, pinner = started(["BUILT"])
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    pinner.release(LANES[0])
    controller.circ(circuit, "CLOSED", "REQUESTED")  # tor's answer to our CLOSECIRCUIT
    assert pinner.lost(LANES[0]) is None


def test_a_failed_attach_closes_the_stream():
    controller, pinner = started(["BUILT"])
    pinner.pin(LANES[0], EXIT, RELAYS)

    def refuse(stream_id, circuit_id):
        raise stem.InvalidRequest("552", "Unknown circuit")

    controller.attach_stream = refuse
    controller.calls.clear()
    controller.stream("1", "NEW", "news.test", 1000)
    handled(pinner)
    assert controller.calls == [("close_stream", "1")]


def test_stream_events_are_handled_off_stems_event_thread():
    """The STREAM listener returns at once even while a controller command blocks: stem's event
    thread must never wait on the control connection, or closing it deadlocks."""
    controller, pinner = started(["BUILT"])
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    release = attach_blocked_until_set(controller)
    started_at = time.monotonic()
    controller.stream("1", "NEW", "news.test", 1000)
    assert time.monotonic() - started_at < 1.0 and controller.calls == []
    release.set()
    handled(pinner)
    assert controller.calls == [("attach", "1", circuit)]
    pinner.stop()


def test_a_denied_internationalised_host_is_denied_as_the_browser_asks_for_it():
    """The config says *.bücher.example; Chromium and requests ask tor for xn--bcher-kva.example."""
    from exporter.config import parse_config

    config = parse_config("targets: [{name: a, url: 'http://a/'}]\ntor: {deny_hosts: ['*.b\u00fccher.example']}\n")
    closed = []
    controller, pinner = started(["BUILT"], deny=config.tor.deny_hosts, closed=closed)
    circuit = pinner.pin(LANES[0], EXIT, RELAYS)
    controller.calls.clear()
    controller.stream("1", "NEW", "cdn.xn--bcher-kva.example", 1000)
    controller.stream("2", "NEW", "a", 1000)
    handled(pinner)
    assert controller.calls == [("close_stream", "1"), ("attach", "2", circuit)]
    assert closed == ["denied"]
