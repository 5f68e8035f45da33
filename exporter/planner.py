"""The exit planner: which exits this replica measures, and which of them a target run may use.

It holds what the pure functions of ``exporter.plan`` work on, as it changes.

The consensus gives the exits and their weights; ``exits:`` in the config
selects among them (top-N and the sample are drawn from the whole consensus,
seeded by its valid-after time, so every replica draws the same), then the
shard keeps this replica's share.  A target run may use a selected exit only if
the exit's policy accepts the target's port, which tor answers from the exit's
server descriptor; a "no" may only mean the descriptor has not arrived yet, so
only "yes" answers are remembered, until the next consensus.

Threads: ``refresh`` runs on the tor-keeper thread (when probing starts) and on
stem's event thread (each NEWCONSENSUS); ``candidates`` on APScheduler's
threads (one per target run); ``consensus``, ``selected`` and ``plan`` are read
by lane threads (pinning) and web threads (status, scrapes).  All state below is
held by ``_lock``; tor is asked about exit policies outside it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from exporter.config import ExitSelection, Target
from exporter.plan import select_exits
from exporter.shard import Shard
from exporter.tor.consensus import Consensus, allows_port, read_exits
from exporter.tor.relay import ExitRelay


def target_port(url: str) -> int:
    """The TCP port a target's URL connects to."""
    return urlsplit(url).port or (443 if url.startswith("https") else 80)


class ExitPlanner:
    """Consensus → selected exits → per-target candidates, with a plan per target for the metrics."""

    def __init__(self, shard: Shard, selection: Callable[[], ExitSelection]):
        """``selection`` gives the ``exits:`` config in force (it changes on reload)."""
        self._shard = shard
        self._selection = selection
        self._lock = threading.Lock()
        self._controller = None  # tor's controller while probing, else None
        self._consensus: Consensus | None = None
        self._selected: tuple[ExitRelay, ...] = ()
        self._port_ok: set[tuple[str, int]] = set()  # (fingerprint, port) tor said the policy accepts
        self._plan: dict[str, tuple[float, tuple[str, ...]]] = {}  # target → (interval, exits it may use)

    def refresh(self, controller, country_of: Callable[[str], str]) -> Consensus:
        """Re-read exits and weights from tor's consensus; forget what the old one allowed."""
        consensus = read_exits(controller, country_of)
        # selection first, then the shard: every replica then agrees on top-N and on the sample
        selected = self._shard.owned(select_exits(consensus.exits, self._selection(),
                                                  random.Random(consensus.valid_after.timestamp())))
        with self._lock:
            self._controller, self._consensus, self._selected = controller, consensus, tuple(selected)
            self._port_ok = set()
        return consensus

    def detach(self) -> None:
        """Tor went away: no candidates until the next ``refresh`` (the last consensus is still shown)."""
        with self._lock:
            self._controller = None

    @property
    def consensus(self) -> Consensus | None:
        with self._lock:
            return self._consensus

    @property
    def selected(self) -> tuple[ExitRelay, ...]:
        with self._lock:
            return self._selected

    def owned_exits(self) -> list[ExitRelay]:
        """Every exit of the consensus this replica owns (selected or not): the series it exports."""
        consensus = self.consensus
        return self._shard.owned(consensus.exits) if consensus else []

    def candidates(self, target: Target) -> list[ExitRelay]:
        """Selected exits whose exit policy allows the target's port."""
        port = target_port(target.url)
        with self._lock:
            controller, selected, known, port_ok = self._controller, self._selected, set(self._port_ok), self._port_ok
        if controller is None:
            return []
        allowed = [exit for exit in selected
                   if (exit.fingerprint, port) in known or allows_port(controller, exit.fingerprint, port)]
        with self._lock:
            if self._port_ok is port_ok:  # still the same consensus
                self._port_ok.update((exit.fingerprint, port) for exit in allowed)
            self._plan[target.name] = (target.interval, tuple(exit.fingerprint for exit in allowed))
        return allowed

    def plan(self, targets: tuple[Target, ...]) -> tuple[tuple[str, float, tuple[str, ...]], ...]:
        """Per configured target: its interval and the exits its last run could use."""
        with self._lock:
            return tuple((t.name, *self._plan[t.name]) for t in targets if t.name in self._plan)
