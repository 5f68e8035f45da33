"""An exit relay as the exporter sees it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExitRelay:
    """One exit from the consensus.

    ``probability`` is the exit probability as Tor Metrics computes it
    (consensus weight × Wee or Wed / 10000, normalised over all exits);
    ``country`` is an uppercase ISO 3166 alpha-2 code, or "??".
    """

    fingerprint: str
    nickname: str
    address: str
    flags: frozenset[str]
    bandwidth: int
    probability: float
    country: str = "??"
