"""Which exits a target run takes: the operator's selection, then least recently tried first."""

from __future__ import annotations

import random
from collections.abc import Sequence

from exporter.config import ExitSelection
from exporter.tor.relay import ExitRelay


def select_exits(exits: Sequence[ExitRelay], selection: ExitSelection,
                 rng: random.Random | None = None) -> list[ExitRelay]:
    """Apply the ``exits:`` config: fingerprint, country and flag filters, then top-N or a weighted sample."""
    chosen = [
        e for e in exits
        if (not selection.fingerprints or e.fingerprint in selection.fingerprints)
        and (not selection.countries or e.country in selection.countries)
        and all(flag in e.flags for flag in selection.flags)
    ]
    if selection.top is not None:
        chosen = sorted(chosen, key=lambda e: (-e.probability, e.fingerprint))[: selection.top]
    elif selection.sample is not None:
        chosen = weighted_sample(chosen, selection.sample, rng or random.Random())
    return chosen


def weighted_sample(exits: Sequence[ExitRelay], n: int, rng: random.Random) -> list[ExitRelay]:
    """n distinct exits, each draw proportional to exit probability (Efraimidis–Spirakis keys)."""
    keyed = [(rng.random() ** (1.0 / e.probability), e) for e in exits if e.probability > 0]
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [e for _, e in keyed[:n]]


def next_exits(candidates: Sequence[ExitRelay], n: int, last_attempted: dict[str, float]) -> list[ExitRelay]:
    """The n exits tried longest ago (never tried first); heavier exits break ties."""
    order = sorted(candidates, key=lambda e: (last_attempted.get(e.fingerprint, float("-inf")),
                                              -e.probability, e.fingerprint))
    return order[:n]
