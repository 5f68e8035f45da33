"""Which exits this replica measures when n replicas share the work (`--shard i/n`).

An exit belongs to the shard given by a jump consistent hash (Lamping and
Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm", 2014) of the first
8 bytes of SHA-256 over its uppercase hex fingerprint. Every replica computes
the same owner for every fingerprint without talking to the others, so n
replicas cover each exit exactly once and a restart of one changes nothing for
the rest; going from n to n+1 replicas moves only about 1/(n+1) of the exits.
Python's ``hash()`` is salted per process and is never used.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

_SPEC = re.compile(r"(\d+)/(\d+)")
_ORDINAL = re.compile(r".*-(\d+)")
_MASK64 = (1 << 64) - 1
_LCG_MULTIPLIER = 2862933555777941757  # the paper's 64-bit linear congruential step

Exit = TypeVar("Exit")


def jump_hash(key: int, buckets: int) -> int:
    """The bucket in [0, buckets) of a 64-bit key; a key changes bucket only to the newly added one."""
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * _LCG_MULTIPLIER + 1) & _MASK64
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def fingerprint_key(fingerprint: str) -> int:
    """A 64-bit key that is the same in every process: SHA-256 of the uppercase hex fingerprint."""
    digest = hashlib.sha256(fingerprint.strip().lstrip("$").upper().encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``; ``Shard(0, 1)`` owns every exit."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1} (0-based), got {self.index}")

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """``"i/n"``: shard i of n, counting from 0."""
        match = _SPEC.fullmatch(spec.strip())
        if match is None:
            raise ValueError(f"shard must be INDEX/COUNT with whole numbers, e.g. 0/3, got {spec!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def from_hostname(cls, hostname: str, count: int) -> Shard:
        """The shard of a StatefulSet pod: its name ends in ``-<ordinal>``, and the ordinal is the index."""
        match = _ORDINAL.fullmatch(hostname.strip().split(".", 1)[0])
        if match is None:
            raise ValueError(f"hostname {hostname!r} does not end in -<ordinal> like a StatefulSet pod's")
        return cls(int(match.group(1)), count)

    def owns(self, fingerprint: str) -> bool:
        return self.count == 1 or jump_hash(fingerprint_key(fingerprint), self.count) == self.index

    def owned(self, exits: Iterable[Exit]) -> list[Exit]:
        """The exits (anything with a ``fingerprint``) this shard measures, in their order."""
        return [e for e in exits if self.owns(e.fingerprint)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
