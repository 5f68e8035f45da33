"""The values a fetch produces: responses, the fetch result and fetch errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Response:
    """One HTTP document response as the detector sees it.

    ``headers`` keeps wire order and repeated names (``Set-Cookie`` appears
    once per cookie); look-ups are case-insensitive.
    """

    url: str
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name``, in order."""
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]

    @property
    def cookie_names(self) -> list[str]:
        """Names of the cookies this response sets."""
        return [v.split("=", 1)[0].strip() for v in self.header_values("set-cookie") if "=" in v]


# Why a probe got no answer: a small fixed set, used as the `reason` label.
ERROR_REASONS = ("timeout", "connection", "circuit", "tls", "too_large", "browser", "internal")


class FetchError(Exception):
    """A fetch that got no answer; ``reason`` is one of ERROR_REASONS."""

    def __init__(self, reason: str, message: str):
        if reason not in ERROR_REASONS:
            raise ValueError(f"unknown fetch error reason {reason!r}")
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FetchResult:
    """What one fetch saw.

    ``first`` is the first document response (before redirects or a
    challenge's reload); ``final`` is the page the user ends up on (for a
    browser, the final DOM).  ``outcome`` is set only by browser fetchers:
    ``cleared``, ``interactive`` or ``blocked``, with ``clear_seconds`` for
    ``cleared``.
    """

    first: Response
    final: Response
    redirects: tuple[str, ...] = ()
    load_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    outcome: str | None = None
    clear_seconds: float | None = None


@dataclass(frozen=True)
class Lane:
    """One parallel probing slot: a SocksPort of our tor, pinned to one exit at a time.

    Tor tells streams from different lanes apart by the SocksPort's
    SessionGroup, which STREAM events report as ``SESSION_GROUP``.
    """

    index: int
    socks_host: str
    socks_port: int
    session_group: int


class Fetcher(Protocol):
    """The one interface every fetcher kind implements."""

    name: str

    def fetch(self, url: str, lane: Lane, timeout: float) -> FetchResult:
        """Load ``url`` through ``lane``; raise FetchError when there is no answer."""

    def screenshot(self, lane: Lane) -> bytes | None:
        """A PNG of the last page fetched on ``lane`` (browsers), or None."""

    def close(self) -> None:
        """Release browsers and connections."""
