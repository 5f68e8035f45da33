"""How many lanes may work at once when ``schedule.concurrency`` is ``auto`` and probes are plain HTTP.

A probe through Tor mostly waits: on circuit round trips of a few hundred
milliseconds each, while the exporter burns milliseconds of CPU on it.  By
Little's law, keeping ``c`` CPUs busy takes ``c × wait / burn`` probes in
flight.  The limit learns both figures while it runs: ``wait`` is the mean
wall time of a lane's probes, ``burn`` the exporter's whole CPU time (every
thread: lanes, tor's events, the store, the exposition) divided by the probes
finished meanwhile.  It aims at half the CPUs, leaving the other half to tor's
client (which spends about as much per probe) and to the rest of the machine,
and never goes above the lanes opened (the cap) nor below one.

Browser lanes are not limited here: a warm browser keeps about a CPU busy and
holds hundreds of MiB, so their number follows CPUs and memory
(``scheduler.auto_lanes``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

CPU_SHARE = 0.5  # of the machine's CPUs, for the exporter's own work
LEARN_EVERY = 16  # probes between two decisions


class LaneLimit:
    """A gate in front of the lanes: at most ``limit`` work at once, ``limit`` learnt from the probes."""

    def __init__(self, cpus: int, first: int, cap: int, cpu_clock: Callable[[], float] = time.process_time):
        """``first``: the limit until enough probes are seen; ``cap``: the lanes there are."""
        self.cpus, self.cap = cpus, cap
        self._cpu_clock = cpu_clock
        self._condition = threading.Condition()
        self._busy = 0
        self._limit = max(1, min(first, cap))
        self._probes = 0
        self._wall = 0.0
        self._cpu_mark = cpu_clock()

    @property
    def limit(self) -> int:
        with self._condition:
            return self._limit

    def acquire(self) -> None:
        """Wait until fewer than ``limit`` lanes work, then count this one in."""
        with self._condition:
            self._condition.wait_for(lambda: self._busy < self._limit)
            self._busy += 1

    def release(self) -> None:
        with self._condition:
            self._busy -= 1
            self._condition.notify_all()

    def learn(self, probes: int, wall_seconds: float) -> None:
        """A lane spent ``wall_seconds`` on ``probes`` probes (0: on a circuit for the probes to come).

        Called for every probe rather than every exit, so the limit moves after the first
        LEARN_EVERY probes, not after the first exits' whole lists of targets."""
        with self._condition:
            self._probes += probes
            self._wall += wall_seconds
            if self._probes < LEARN_EVERY:
                return
            now = self._cpu_clock()
            cpu, self._cpu_mark = now - self._cpu_mark, now
            wait, burn = self._wall / self._probes, max(cpu, 1e-6) / self._probes
            self._probes, self._wall = 0, 0.0
            limit = max(1, min(self.cap, math.ceil(self.cpus * CPU_SHARE * wait / burn)))
            if limit != self._limit:
                log.info("lanes", extra={"limit": limit, "cap": self.cap, "wait_seconds": f"{wait:.3f}",
                                         "cpu_seconds": f"{burn:.4f}"})
                self._limit = limit
                self._condition.notify_all()
