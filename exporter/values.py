"""The small values passed between the parts of a probe: tor → fetch → verdict → metrics.

Every package may import this module, and this module imports none of them, so
``tor/`` and ``detect/`` need not reach into ``fetch/`` for a ``Lane`` or a
``Response``.  The closed sets of label values (verdict kinds, challenge
outcomes, error, circuit-failure and browser-restart reasons) are
``StrEnum``s: a member *is* its string, so it compares, formats and exports as
the label value it names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol


class VerdictKind(StrEnum):
    """What a page is to the person who asked for it (README: Verdicts)."""

    OK = "ok"  # the normal page
    WIDGET = "widget"  # a normal page that embeds a CAPTCHA
    CHALLENGE = "challenge"  # the page is replaced by an interstitial challenge
    BLOCK = "block"  # a hard "access denied"
    ERROR = "error"  # the site or its CDN failed

    @property
    def severity(self) -> int:
        """When the first response and the final page disagree, the user met the more severe one:
        a challenge that cleared by itself was still a challenge."""
        return _SEVERITY[self]


_SEVERITY = {VerdictKind.OK: 0, VerdictKind.WIDGET: 1, VerdictKind.ERROR: 2, VerdictKind.BLOCK: 3,
             VerdictKind.CHALLENGE: 4}


class ChallengeOutcome(StrEnum):
    """How a challenge ended in a real browser."""

    CLEARED = "cleared"  # it went away by itself (JS or proof of work)
    INTERACTIVE = "interactive"  # still there when the wait ran out: it wants a person
    BLOCKED = "blocked"  # it turned into a block page


class ErrorReason(StrEnum):
    """Why a probe got no answer: the `reason` label of captcha_probe_errors_total."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    CIRCUIT = "circuit"
    TLS = "tls"
    TOO_LARGE = "too_large"
    BROWSER = "browser"
    PAGE_TOO_COMPLEX = "page_too_complex"  # more HTML tokens than a page is read for
    INTERNAL = "internal"


class CircuitFailure(StrEnum):
    """Why a circuit build failed: the `reason` label of captcha_circuit_failures_total."""

    TIMEOUT = "timeout"
    DESTROYED = "destroyed"
    CONNECT_FAILED = "connect_failed"
    NO_DESCRIPTOR = "no_descriptor"
    NO_FIRST_HOP = "no_first_hop"
    OTHER = "other"


class BrowserRestart(StrEnum):
    """Why a warm browser was replaced: the `reason` label of captcha_browser_restarts_total."""

    RECYCLE_AFTER = "recycle_after"  # it served `recycle_after` probes
    MEMORY_LIMIT = "memory_limit"  # its process tree outgrew `memory_limit`
    LANE_CHANGED = "lane_changed"  # its lane's SocksPort changed (tor was reconnected)
    CRASHED = "crashed"  # it was found dead, or died during a probe
    HUNG = "hung"  # a page load hung, or the watchdog killed it
    LAUNCH_FAILED = "launch_failed"  # a new browser could not be started


class Route(StrEnum):
    """How a probe reached the target: the `route` label of every verdict metric.

    Only ``tor`` probes go through an exit (per-exit series and the exit-weighted
    ratios are Tor's); ``direct`` is the control without Tor, from the exporter's
    own address; ``onion`` is the target's onion service, through tor but with no
    exit (client and service meet at a rendezvous point inside the Tor network).
    """

    TOR = "tor"
    DIRECT = "direct"
    ONION = "onion"


class StreamClosed(StrEnum):
    """Why the exporter closed a stream of a lane: the `reason` label of captcha_streams_closed_total."""

    STRAY = "stray"  # opened while no probe ran on the lane
    CIRCUIT_CLOSED = "circuit_closed"  # opened during a probe after tor closed the lane's circuit
    DENIED = "denied"  # to a host in tor.deny_hosts


class ProbeError(Exception):
    """A step of a probe that failed for a known reason.

    ``reason`` is a member of the subclass's ``reasons`` (an unknown reason is a
    bug and raises ValueError); ``str()`` is the one-line message.
    """

    reasons: ClassVar[type[StrEnum]]

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = self.reasons(reason)


class FetchError(ProbeError):
    """A fetch that got no answer."""

    reasons = ErrorReason


class CircuitError(ProbeError):
    """No circuit could be built for a lane."""

    reasons = CircuitFailure


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

    @property
    def direct(self) -> bool:
        """The direct lane has no SocksPort: its fetches leave this machine without Tor."""
        return self.socks_port == 0


# The lane of the direct control: fetchers run without a proxy (browsers of their own, kept warm).
DIRECT_LANE = Lane(index=-1, socks_host="", socks_port=0, session_group=-1)


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


@dataclass(frozen=True)
class FetchResult:
    """What one fetch saw.

    ``first`` is the first document response that is not a redirect (the
    page the redirects led to, before a challenge's reload: the page the user
    met); ``redirects`` are the URLs on the way; ``final`` is the page the user
    ends up on (for a browser, the final DOM).  ``outcome`` is set only by browser fetchers,
    with ``clear_seconds`` for a cleared challenge.
    """

    first: Response
    final: Response
    redirects: tuple[str, ...] = ()
    load_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    outcome: ChallengeOutcome | None = None
    clear_seconds: float | None = None

    def __post_init__(self):
        if self.outcome is not None:
            object.__setattr__(self, "outcome", ChallengeOutcome(self.outcome))


@dataclass(frozen=True)
class Verdict:
    """The detector's answer for one page.

    ``provider`` names the gate (challenge, block, error) or the CAPTCHA vendor
    (widget) and is "" for ok; ``markers`` are the signals that fired, so an
    operator can see why.
    """

    kind: VerdictKind
    provider: str = ""
    markers: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "kind", VerdictKind(self.kind))  # ValueError for a kind that does not exist


class Fetcher(Protocol):
    """The one interface every fetcher kind implements."""

    name: str

    def fetch(self, url: str, lane: Lane, timeout: float) -> FetchResult:
        """Load ``url`` through ``lane``; raise FetchError when there is no answer."""

    def screenshot(self, lane: Lane) -> bytes | None:
        """A PNG of the last page fetched on ``lane`` (browsers), or None."""

    def leave(self, lane: Lane) -> None:
        """The lane's probes are done and its circuit goes: stop the last page from opening streams."""

    def close(self) -> None:
        """Release browsers and connections."""
