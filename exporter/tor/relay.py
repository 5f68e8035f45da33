"""An exit relay as the exporter sees it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExitRelay:
    """One exit from the consensus.

    ``probability`` is the exit probability as Tor Metrics computes it
    (consensus weight × Wee or Wed / 10000, normalised over all exits);
    ``country`` is an uppercase ISO 3166 alpha-2 code, or "??"; ``continent`` a
    two-letter continent code (GeoIP2: AF AN AS EU NA OC SA), or "??";
    ``asn`` the autonomous system as ``AS<number>`` and ``as_name`` its
    organisation, or "" when no ASN database knows the address.
    """

    fingerprint: str
    nickname: str
    address: str
    flags: frozenset[str]
    bandwidth: int
    probability: float
    country: str = "??"
    continent: str = "??"
    asn: str = ""
    as_name: str = ""
