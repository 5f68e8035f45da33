"""What the exporter remembers between probes: the last measurement and attempt per exit (in memory;
exporter.store persists them).

The weighted challenge ratio and the exit coverage are computed from the last
answered probe of each exit within the window, weighted by exit probability.
Each measurement also carries its run: since when, and for how many probes in
a row, the exit has given the target (with that fetcher) this verdict; the
target × exit drill-down exports the runs of challenges and blocks.  Only
probes through Tor are remembered here: the direct route has no exit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.probe import ProbeResult


@dataclass(frozen=True)
class Measurement:
    """The last answered probe of one exit for one target and fetcher."""

    kind: str
    provider: str
    time: float
    probe_id: str
    since: float | None = None  # when the run of this kind began (None: with this probe)
    run: int = 1  # probes in the run, this one included

    def __post_init__(self):
        if self.since is None:
            object.__setattr__(self, "since", self.time)

    def followed_by(self, kind: str, provider: str, time: float, probe_id: str) -> Measurement:
        """The next measurement of the same exit: the run goes on while the kind stays the same."""
        if kind == self.kind:
            return Measurement(kind, provider, time, probe_id, self.since, self.run + 1)
        return Measurement(kind, provider, time, probe_id)


class State:
    def __init__(self):
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], dict[str, Measurement]] = {}
        self._attempted: dict[str, dict[str, float]] = {}

    def restore(self, last: dict[tuple[str, str], dict[str, Measurement]],
                attempted: dict[str, dict[str, float]]) -> None:
        """Take over what a previous run persisted (see exporter.store)."""
        with self._lock:
            self._last = {key: dict(value) for key, value in last.items()}
            self._attempted = {key: dict(value) for key, value in attempted.items()}

    def record(self, result: ProbeResult) -> Measurement | None:
        """Remember a probe through Tor; returns its measurement (None for no answer or no exit)."""
        if result.exit is None:
            return None
        fingerprint = result.exit.fingerprint
        with self._lock:
            self._attempted.setdefault(result.target, {})[fingerprint] = result.started
            if result.verdict is None:
                return None
            last = self._last.setdefault((result.target, result.fetcher), {})
            facts = (result.verdict.kind, result.verdict.provider, result.started, result.probe_id)
            previous = last.get(fingerprint)
            last[fingerprint] = measurement = previous.followed_by(*facts) if previous else Measurement(*facts)
            return measurement

    def last_attempted(self, target: str) -> dict[str, float]:
        """When each exit was last tried for ``target`` (answered or not), by fingerprint."""
        with self._lock:
            return dict(self._attempted.get(target, {}))

    def last_measured(self, target: str, fetcher: str) -> dict[str, Measurement]:
        with self._lock:
            return dict(self._last.get((target, fetcher), {}))

    def keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._last)

    def forget_targets(self, keep: Iterable[str]) -> None:
        """Drop what is known about targets no longer configured."""
        keep = set(keep)
        with self._lock:
            self._last = {k: v for k, v in self._last.items() if k[0] in keep}
            self._attempted = {k: v for k, v in self._attempted.items() if k in keep}


def weighted_ratio(measurements: dict[str, Measurement], weights: dict[str, float],
                   since: float) -> tuple[float | None, float]:
    """(weighted challenge ratio, coverage) over exits measured since ``since``.

    ratio = Σ weight × [last probe challenged] / Σ weight of measured exits (None if none);
    coverage = Σ weight of measured exits (weights are exit probabilities, summing to 1).
    """
    measured = challenged = 0.0
    for fingerprint, measurement in measurements.items():
        weight = weights.get(fingerprint, 0.0)
        if measurement.time < since or weight <= 0:
            continue
        measured += weight
        if measurement.kind == "challenge":
            challenged += weight
    return (challenged / measured if measured > 0 else None), measured
