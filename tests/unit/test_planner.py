"""The exit planner: selection, shard, port filter with its cache, and the plan the metrics read."""

import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from support.spine_values import relay, target

from exporter import planner as planner_module
from exporter.config import ExitSelection
from exporter.planner import ExitPlanner
from exporter.shard import Shard
from exporter.tor.consensus import Consensus

EXITS = [relay(1, 0.1), relay(2, 0.2), relay(3, 0.3), relay(4, 0.4)]


@pytest.fixture
def tor(monkeypatch):
    """A consensus of EXITS and exit policies answered from ``tor.policy`` (fingerprint → allowed)."""

    Tor = SimpleNamespace(policy={}, asked=[],
                          consensus=Consensus(exits=EXITS, relays=[], valid_after=datetime(2026, 1, 1, tzinfo=UTC)))

    monkeypatch.setattr(planner_module, "read_exits", lambda controller, country_of: Tor.consensus)

    def allows_port(controller, fingerprint, port):
        Tor.asked.append(fingerprint)
        return Tor.policy.get(fingerprint, False)

    monkeypatch.setattr(planner_module, "allows_port", allows_port)
    return Tor


def test_selection_then_shard(tor):
    planner = ExitPlanner(Shard(0, 1), lambda: ExitSelection(top=2))
    planner.refresh(object(), lambda address: "DE")
    assert [e.nickname for e in planner.selected] == ["exit4", "exit3"]
    assert len(planner.owned_exits()) == 4  # the exported series cover every exit of the consensus


def test_only_a_yes_is_remembered_until_the_next_consensus(tor):
    planner = ExitPlanner(Shard(0, 1), ExitSelection)
    planner.refresh(object(), lambda address: "DE")
    tor.policy = {EXITS[0].fingerprint: True}
    assert planner.candidates(target("news")) == [EXITS[0]]
    tor.asked.clear()
    tor.policy = {EXITS[0].fingerprint: False, EXITS[1].fingerprint: True}  # exit2's descriptor arrived
    assert planner.candidates(target("news")) == [EXITS[0], EXITS[1]]
    assert EXITS[0].fingerprint not in tor.asked  # its yes was remembered
    planner.refresh(object(), lambda address: "DE")
    assert planner.candidates(target("news")) == [EXITS[1]]  # a new consensus asks again


def test_an_answer_for_the_old_consensus_is_not_kept(tor):
    planner = ExitPlanner(Shard(0, 1), ExitSelection)
    planner.refresh(object(), lambda address: "DE")
    tor.policy = {e.fingerprint: True for e in EXITS}
    refreshed = threading.Event()

    def allows_port_during_refresh(controller, fingerprint, port):
        if not refreshed.is_set():
            refreshed.set()
            planner.refresh(object(), lambda address: "DE")  # NEWCONSENSUS while the run asks tor
        return True

    planner_module.allows_port = allows_port_during_refresh
    planner.candidates(target("news"))
    tor.asked.clear()
    planner_module.allows_port = lambda controller, fingerprint, port: tor.asked.append(fingerprint) or True
    planner.candidates(target("news"))
    assert len(tor.asked) == 4  # the answers given before the refresh were not cached for the new one


def test_no_candidates_without_tor_and_the_plan_per_target(tor):
    planner = ExitPlanner(Shard(0, 1), ExitSelection)
    assert planner.candidates(target("news")) == []
    planner.refresh(object(), lambda address: "DE")
    tor.policy = {EXITS[2].fingerprint: True}
    planner.candidates(target("news"))
    assert planner.plan((target("news"), target("shop"))) == (("news", 60.0, (EXITS[2].fingerprint,)),)
    planner.detach()
    assert planner.candidates(target("news")) == []
    assert planner.consensus is not None  # the last consensus is still shown
