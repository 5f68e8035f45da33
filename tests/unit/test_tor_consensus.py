"""Exit probability as Tor Metrics computes it, and reading exits from a consensus."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import stem
from stem.descriptor.networkstatus import NetworkStatusDocumentV3
from stem.descriptor.router_status_entry import RouterStatusEntryMicroV3
from stem.exit_policy import ExitPolicy

from exporter.tor.consensus import allows_port, exit_probabilities, read_exits


@dataclass
class Entry:
    fingerprint: str
    bandwidth: int
    flags: list = field(default_factory=lambda: ["Running", "Exit"])
    nickname: str = "relay"
    address: str = "127.0.0.1"


WEIGHTS = {"Wee": 10000, "Wed": 5000, "Wgd": 2500}


def test_exit_only_and_guard_exit_use_wee_and_wed():
    entries = [
        Entry("A", 100),  # 100 × 1.0 = 100
        Entry("B", 300, ["Running", "Exit", "Guard"]),  # 300 × 0.5 = 150
        Entry("C", 250),  # 250
    ]
    assert exit_probabilities(entries, WEIGHTS) == pytest.approx({"A": 0.2, "B": 0.3, "C": 0.5})


def test_badexit_not_running_and_non_exits_get_no_probability():
    entries = [
        Entry("A", 100),
        Entry("BAD", 900, ["Running", "Exit", "BadExit"]),
        Entry("DOWN", 900, ["Exit", "Valid"]),
        Entry("MIDDLE", 900, ["Running", "Fast", "Guard"]),
        Entry("B", 300),
    ]
    assert exit_probabilities(entries, WEIGHTS) == pytest.approx({"A": 0.25, "B": 0.75})


def test_probabilities_sum_to_one_with_unequal_weights():
    entries = [Entry(f"R{i}", 7 * i + 3, ["Running", "Exit"] + (["Guard"] if i % 2 else [])) for i in range(50)]
    probabilities = exit_probabilities(entries, {"Wee": 9000, "Wed": 3001})
    assert len(probabilities) == 50
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-12)
    # a guard+exit with the same weight as an exit-only relay is less likely by Wed/Wee
    pair = exit_probabilities([Entry("G", 10, ["Running", "Exit", "Guard"]), Entry("E", 10)], {"Wee": 9000, "Wed": 3000})
    assert pair["G"] / pair["E"] == pytest.approx(3000 / 9000)


def test_missing_weights_count_as_one_and_zero_bandwidth_gives_zero():
    entries = [Entry("A", 1, ["Running", "Exit", "Guard"]), Entry("B", 3)]
    assert exit_probabilities(entries, {}) == pytest.approx({"A": 0.25, "B": 0.75})
    assert exit_probabilities([Entry("Z", 0)], WEIGHTS) == {"Z": 0.0}


class ConsensusController:
    """Answers GETINFO with a consensus built by stem; nothing else."""

    def __init__(self, text: bytes):
        self.text = text.decode()

    def get_info(self, key):
        if key == "dir/status-vote/current/consensus-microdesc":
            return self.text
        raise stem.InvalidArguments("552", f"Unrecognized key {key}")


def test_read_exits_from_a_microdesc_consensus():
    entries = [
        RouterStatusEntryMicroV3.create({"r": f"exit{i} {ident} 2026-11-22 00:00:00 127.0.0.{20 + i} 5000 0",
                                         "s": flags, "w": f"Bandwidth={bw} Unmeasured=1"})
        for i, (ident, flags, bw) in enumerate([
            ("AAAAAAAAAAAAAAAAAAAAAAAAAAA", "Exit Running Valid", 20),
            ("BBBBBBBBBBBBBBBBBBBBBBBBBBB", "Exit Guard Running Valid", 40),
            ("CCCCCCCCCCCCCCCCCCCCCCCCCCC", "Fast Running Valid", 99),
        ])
    ]
    text = NetworkStatusDocumentV3.content(
        {"network-status-version": "3 microdesc", "valid-after": "2026-11-22 02:00:00",
         "bandwidth-weights": "Wed=5000 Wee=10000"},
        routers=entries,
    )
    consensus = read_exits(ConsensusController(text), country_of=lambda address: {"127.0.0.20": "DE"}.get(address, "??"))
    assert consensus.valid_after == datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    by_nickname = {relay.nickname: relay for relay in consensus.exits}
    assert set(by_nickname) == {"exit0", "exit1"}
    assert by_nickname["exit0"].probability == pytest.approx(0.5)  # 20 × 1.0 vs 40 × 0.5
    assert by_nickname["exit1"].probability == pytest.approx(0.5)
    assert by_nickname["exit0"].country == "DE" and by_nickname["exit1"].country == "??"
    assert by_nickname["exit0"].fingerprint == "0" * 40 and "Guard" in by_nickname["exit1"].flags
    assert len(consensus.relays) == 3


class Descriptor:
    def __init__(self, *rules):
        self.exit_policy = ExitPolicy(*rules)


def test_allows_port_reads_the_full_policy_including_loopback():
    loopback_only = Descriptor("accept 127.0.0.0/8:*", "reject *:*")
    assert allows_port(loopback_only, "F" * 40, 80)
    web_only = Descriptor("accept *:443", "reject *:*")
    assert allows_port(web_only, "F" * 40, 443)
    assert not allows_port(web_only, "F" * 40, 80)


def test_allows_port_without_a_descriptor_is_false():
    class NoDescriptors:
        def get_server_descriptor(self, fingerprint):
            raise stem.DescriptorUnavailable(f"no descriptor for {fingerprint}")

    assert not allows_port(NoDescriptors(), "F" * 40, 80)


def test_watch_consensus_calls_back_off_the_event_thread_until_unwatched():
    import threading

    from stem.control import EventType

    from exporter.tor.consensus import watch_consensus

    class EventController:
        listeners = {}

        def add_event_listener(self, listener, event_type):
            self.listeners[event_type] = listener

        def remove_event_listener(self, listener):
            self.listeners = {k: v for k, v in self.listeners.items() if v != listener}

    controller = EventController()
    called = threading.Event()
    threads = []

    def callback():
        threads.append(threading.current_thread())
        called.set()

    unwatch = watch_consensus(controller, callback)
    controller.listeners[EventType.NEWCONSENSUS](object())
    assert called.wait(5)
    assert threads[0] is not threading.current_thread()
    unwatch()
    assert controller.listeners == {}
