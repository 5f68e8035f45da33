"""The tor supervisor: a reload that changes nothing about tor keeps it; one that does reopens it."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from exporter import supervisor as supervisor_module
from exporter.config import TorConfig
from exporter.supervisor import TorSupervisor


class FakeTor:
    def __init__(self, config: TorConfig, lanes: int):
        self.config, self.lanes, self.closed = config, lanes, False
        self.controller = self
        self.version = "0.4.8.0"

    def is_alive(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


class Harness:
    """A supervisor over fake tors; the config and the lane count in force can be changed."""

    def __init__(self, monkeypatch):
        self.config, self.lane_count = TorConfig(torrc={"Log": ("notice stdout",)}), 2
        self.tors: list[FakeTor] = []
        self.sessions = []
        self.closed_sessions = []
        self.started = threading.Event()
        self.not_ready = 0  # session starts that fail first
        monkeypatch.setattr(supervisor_module, "open_tor", self._open)
        self.supervisor = TorSupervisor(lambda: self.config, lambda: self.lane_count, self._start_session)

    def _open(self, config, lanes):
        self.tors.append(FakeTor(config, lanes))
        return self.tors[-1]

    def _start_session(self, session) -> None:
        if self.not_ready:  # a launched tor without a consensus yet
            self.not_ready -= 1
            raise LookupError("tor has no consensus yet")
        self.sessions.append(session)
        session.on_close(lambda: self.closed_sessions.append(session))
        self.started.set()

    def reload(self, **changes) -> None:
        """Change the config in force (or ``lanes``) and restart, as Exporter.reload does."""
        count = len(self.sessions)
        self.lane_count = changes.pop("lanes", self.lane_count)
        self.config = replace(self.config, **changes)
        self.supervisor.restart()
        deadline = time.monotonic() + 10
        while len(self.sessions) == count or self.supervisor.session is not self.sessions[-1]:
            assert time.monotonic() < deadline, "no new session"
            time.sleep(0.01)


@pytest.fixture
def harness(monkeypatch):
    monkeypatch.setattr(supervisor_module, "WATCHDOG_SECONDS", 0.05)
    running = Harness(monkeypatch)
    running.supervisor.start()
    assert running.started.wait(10)
    yield running
    running.supervisor.stop()


@pytest.mark.parametrize("change", [{"circuit_timeout": 45.0}, {"hops": 2}, {"deny_hosts": ("*.ads.example",)}],
                         ids=["circuit_timeout", "hops", "deny_hosts"])
def test_a_reload_that_changes_nothing_about_tor_keeps_it(harness, change):
    harness.reload(**change)  # read by the session's circuit pinner, not by tor
    assert len(harness.tors) == 1 and not harness.tors[0].closed
    assert harness.sessions[1].tor is harness.tors[0]
    assert harness.closed_sessions == [harness.sessions[0]]  # probing restarted with the new config


@pytest.mark.parametrize("change", [
    {"torrc": {"Log": ("info stdout",)}},
    {"executable": "/opt/tor/bin/tor"},
    {"control_host": "127.0.0.2"},
    {"lanes": 3},
])
def test_a_reload_that_changes_tor_or_the_lanes_reopens_it(harness, change):
    harness.reload(**change)
    assert len(harness.tors) == 2
    assert harness.tors[0].closed and not harness.tors[1].closed
    assert harness.sessions[1].tor is harness.tors[1]


def test_stop_closes_the_session_and_the_kept_tor(harness):
    harness.reload(circuit_timeout=45.0)
    harness.supervisor.stop()
    assert harness.closed_sessions == harness.sessions
    assert all(tor.closed for tor in harness.tors)


def test_a_lost_tor_is_reopened(harness):
    harness.tors[0].closed = True  # the control connection died
    deadline = time.monotonic() + 10
    while len(harness.tors) < 2:
        assert time.monotonic() < deadline, "tor was not reopened"
        time.sleep(0.05)
    assert harness.closed_sessions[:1] == harness.sessions[:1]


def test_a_session_that_cannot_start_yet_is_tried_again_on_the_same_tor(monkeypatch):
    """A launched tor has no consensus in its first seconds; relaunching it then never let it bootstrap."""
    monkeypatch.setattr(supervisor_module, "WATCHDOG_SECONDS", 0.05)
    harness = Harness(monkeypatch)
    harness.not_ready = 2
    harness.supervisor.start()
    try:
        assert harness.started.wait(10)  # after waiting 1 s, then 2 s
        assert len(harness.tors) == 1 and not harness.tors[0].closed
        assert harness.sessions[0].tor is harness.tors[0]
    finally:
        harness.supervisor.stop()
    assert harness.tors[0].closed


def test_stop_while_a_session_cannot_start_closes_tor(monkeypatch):
    harness = Harness(monkeypatch)
    harness.not_ready = 1000
    harness.supervisor.start()
    deadline = time.monotonic() + 10
    while not harness.tors:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    harness.supervisor.stop()
    while not harness.tors[0].closed:
        assert time.monotonic() < deadline, "tor left open"
        time.sleep(0.01)
    assert len(harness.tors) == 1
