"""What the exporter remembers between probes: the last measurement and attempt per exit (in memory;
exporter.store persists them).

The weighted challenge ratio and the exit coverage are computed from the last
answered probe of each exit within the window, weighted by exit probability.
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

    def record(self, result: ProbeResult) -> None:
        with self._lock:
            self._attempted.setdefault(result.target, {})[result.exit.fingerprint] = result.started
            if result.verdict is not None:
                self._last.setdefault((result.target, result.fetcher), {})[result.exit.fingerprint] = Measurement(
                    result.verdict.kind, result.verdict.provider, result.started, result.probe_id)

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
