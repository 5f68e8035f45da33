"""A browser probe's times, from the W3C Navigation Timing entry of its document.

Every time in the entry is in milliseconds from the document's own
``performance.timeOrigin`` (its navigation start).  A challenge that clears by
loading a new document starts a new entry with a later ``timeOrigin``, so the
clear time is the difference of the two origins plus the new document's
DOMContentLoaded.  Tor Browser coarsens these times (resistFingerprinting).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from exporter.fetch.outcome import Outcome
from exporter.values import ChallengeOutcome, FetchResult, Response

NAVIGATION_TIMING_JS = (
    "const e = performance.getEntriesByType('navigation')[0];"
    "return e ? Object.assign(e.toJSON(), {timeOrigin: performance.timeOrigin}) : null;"
)


def seconds(milliseconds) -> float:
    return round(max(float(milliseconds or 0.0), 0.0) / 1000.0, 6)


def phases(timing: dict) -> dict[str, float]:
    """``connect``: TCP+SOCKS(+TLS) setup, 0 on a reused socket; ``ttfb`` and
    ``dom_content_loaded``: from navigation start."""
    if not timing:
        return {}
    return {
        "connect": seconds(timing.get("connectEnd", 0) - timing.get("connectStart", 0)),
        "ttfb": seconds(timing.get("responseStart")),
        "dom_content_loaded": seconds(timing.get("domContentLoadedEventEnd")),
    }


def clear_seconds(landing: dict, final: dict, polled: float) -> float:
    """Navigation start → the cleared document's DOMContentLoaded when the challenge
    loaded a new document; ``polled`` (the watcher's own clock) otherwise."""
    start, origin = landing.get("timeOrigin"), final.get("timeOrigin")
    ready = final.get("domContentLoadedEventEnd")
    if start is None or origin is None or origin == start or not ready:
        return polled
    return seconds(origin + ready - start)


def browser_result(first: Response, redirects: tuple[str, ...], landing: dict, outcome: Outcome,
                   read_timing: Callable[[], dict]) -> FetchResult:
    """The FetchResult of a browser probe whose landing document had the timing
    entry ``landing``; ``read_timing`` reads the entry of the page shown now."""
    if outcome.outcome == ChallengeOutcome.CLEARED:
        outcome = dataclasses.replace(outcome, clear_seconds=clear_seconds(landing, read_timing(),
                                                                           outcome.clear_seconds))
    return FetchResult(
        first=first,
        final=outcome.final,
        redirects=redirects,
        load_seconds=seconds(landing.get("loadEventEnd") or landing.get("duration")),
        phases=phases(landing),
        outcome=outcome.outcome,
        clear_seconds=outcome.clear_seconds,
    )
