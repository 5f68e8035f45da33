"""What became of a challenge in a real browser: cleared, interactive or blocked.

A non-interactive challenge (Cloudflare's managed/JS challenge, DataDome's
interstitial, Anubis' proof of work) runs in the page and then reloads or
rewrites it into the real page; an interactive one waits for a person.  So the
browser fetcher watches the page until the detector no longer calls it a
challenge (``cleared``), until it turns into a block page (``blocked``), or
until the wait runs out (``interactive``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.values import ChallengeOutcome, Response, Verdict


@dataclass(frozen=True)
class Outcome:
    """``outcome`` is None when the first page was neither a challenge nor a block."""

    final: Response
    outcome: ChallengeOutcome | None = None
    clear_seconds: float | None = None


def settle(
    landing: Response,
    read_page: Callable[[], Response],
    classify: Callable[[Response], Verdict],
    wait: float,
    elapsed: Callable[[], float],
    poll_interval: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Watch the page that ``landing`` started until its outcome is known.

    ``read_page`` returns the page as it is now; ``elapsed`` is seconds since
    navigation start; ``wait`` is how long, from navigation start, a challenge
    may take to clear before it counts as interactive.
    """
    first_kind = classify(landing).kind
    if first_kind == "block":
        return Outcome(read_page(), ChallengeOutcome.BLOCKED)
    if first_kind != "challenge":
        page = read_page()
        return Outcome(page, ChallengeOutcome.BLOCKED if classify(page).kind == "block" else None)
    while True:
        page = read_page()
        kind = classify(page).kind
        if kind == "block":
            return Outcome(page, ChallengeOutcome.BLOCKED)
        if kind != "challenge":
            return Outcome(page, ChallengeOutcome.CLEARED, elapsed())
        if elapsed() >= wait:
            return Outcome(page, ChallengeOutcome.INTERACTIVE)
        sleep(poll_interval)
