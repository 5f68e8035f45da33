"""One probe: a target's URL, fetched by one fetcher through a lane pinned to one exit, judged.

The caller pins the lane to the exit first (one circuit serves every target and
fetcher due for that exit); a probe never raises: every attempt ends in a
ProbeResult with either a verdict or an error reason, so attempts are always
accounted for.  A probe on the direct lane (``DIRECT_LANE``) is the control
without Tor: it has no exit, route ``direct``, and is never compared with the
baseline (it is what the baseline is made of).  A probe of an onion URL goes
through a lane's tor with no exit: route ``onion``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.change import Baseline, Change, compare, onion_facts
from exporter.change.expect import unexpected
from exporter.change.onion import is_onion_url, onion_location
from exporter.config import Target
from exporter.detect import proof_of_work
from exporter.tor.relay import ExitRelay
from exporter.values import (
    Fetcher,
    FetchError,
    FetchResult,
    Lane,
    Response,
    Route,
    Verdict,
)

log = logging.getLogger(__name__)

Classify = Callable[[Response], Verdict]


@dataclass(frozen=True)
class ProbeResult:
    probe_id: str
    target: str
    fetcher: str
    exit: ExitRelay | None  # None on the direct route
    started: float  # unix time
    duration: float
    verdict: Verdict | None = None
    fetch: FetchResult | None = None
    error_reason: str | None = None
    error_message: str | None = None
    change: Change | None = None  # vs the direct baseline; only for `ok` pages, when a baseline exists
    onion: frozenset[str] = frozenset()  # onion-service announcements: alt_svc, onion_location
    onion_url: str | None = None  # the URL an Onion-Location named, for targets with `onion: auto`
    evidence: str | None = None  # directory of the saved evidence, for probes that met something
    route: Route = Route.TOR
    unexpected: str | None = None  # how a normal page differs from the target's `expect`, if it does
    pow_difficulty: int | None = None  # what a proof-of-work gate asked for (detect.proof_of_work)

    @property
    def needs_evidence(self) -> bool:
        """Anything but a plain, unchanged, expected normal page is worth keeping evidence of."""
        return self.fetch is not None and (self.verdict.kind != "ok" or bool(self.change and self.change.kind)
                                           or self.unexpected is not None)

    @property
    def answered(self) -> bool:
        return self.verdict is not None


def new_probe_id() -> str:
    """A sortable, unique id: UTC time plus random hex (never a label value)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def judge(fetch: FetchResult, classify: Classify) -> Verdict:
    """The verdict for a fetch: the stronger of the first response's and the final page's."""
    first = classify(fetch.first)
    if fetch.final is fetch.first:
        return first
    final = classify(fetch.final)
    return first if first.kind.severity >= final.kind.severity else final


def run_probe(target: Target, exit: ExitRelay | None, fetcher: Fetcher, lane: Lane,
              classify: Classify, timeout: float, baseline: Baseline | None = None) -> ProbeResult:
    """Fetch ``target.url`` with ``fetcher`` through ``lane`` (already pinned to ``exit``;
    the direct lane has no exit).

    A normal page through Tor is compared with ``baseline`` (the page fetched without Tor);
    gate and error pages are not, since they differ from any real page by definition.  A
    normal page on either route is checked against the target's ``expect``.
    """
    probe_id = new_probe_id()
    started, clock = time.time(), time.monotonic()
    route = Route.DIRECT if lane.direct else Route.ONION if is_onion_url(target.url) else Route.TOR
    common = {"probe_id": probe_id, "target": target.name, "fetcher": fetcher.name, "exit": exit,
              "started": started, "route": route}
    try:
        fetch = fetcher.fetch(target.url, lane, timeout)
        verdict = judge(fetch, classify)
        change = None  # a page too complex to read raises FetchError, here or in unexpected()
        if verdict.kind == "ok" and baseline is not None and route is Route.TOR:
            change = compare(baseline, fetch.final, threshold=target.change.threshold, ignore=target.change.ignore)
        normal = verdict.kind in ("ok", "widget")
        differs = unexpected(target.expect, fetch.final) if normal else None
    except FetchError as exc:
        result = ProbeResult(**common, duration=time.monotonic() - clock,
                             error_reason=exc.reason, error_message=str(exc))
    except Exception as exc:  # a bug or a dead browser must cost one probe, not the exporter
        log.exception("probe failed unexpectedly", extra={"probe_id": probe_id})
        result = ProbeResult(**common, duration=time.monotonic() - clock,
                             error_reason="internal", error_message=f"{type(exc).__name__}: {exc}")
    else:
        result = ProbeResult(**common, duration=time.monotonic() - clock, verdict=verdict, fetch=fetch,
                             change=change, onion=frozenset(onion_facts(fetch.first) | onion_facts(fetch.final)),
                             unexpected=differs,
                             pow_difficulty=pow_difficulty(verdict, fetch),
                             onion_url=onion_location(fetch.first) or onion_location(fetch.final))
    log_probe(result)
    return result


def pow_difficulty(verdict: Verdict, fetch: FetchResult) -> int | None:
    """The difficulty a proof-of-work gate asked for: from the gate page, the first response or the final."""
    if verdict.kind != "challenge" or verdict.provider not in proof_of_work.PROVIDERS:
        return None
    found = proof_of_work.difficulty(verdict.provider, fetch.first)
    return found if found is not None else proof_of_work.difficulty(verdict.provider, fetch.final)


def error_result(target: Target, fetcher_name: str, exit: ExitRelay | None, reason: str, message: str,
                 route: Route = Route.TOR) -> ProbeResult:
    """The result of a probe that could not start (e.g. no circuit to its exit)."""
    result = ProbeResult(probe_id=new_probe_id(), target=target.name, fetcher=fetcher_name, exit=exit,
                         started=time.time(), duration=0.0, error_reason=reason, error_message=message, route=route)
    log_probe(result)
    return result


def log_probe(result: ProbeResult) -> None:
    exit = result.exit
    fields = {
        "probe_id": result.probe_id, "target": result.target, "route": result.route,
        "exit": exit.fingerprint if exit else "-", "nickname": exit.nickname if exit else "-",
        "country": exit.country if exit else "-", "fetcher": result.fetcher,
    }
    if result.verdict is not None:
        if result.change is not None:
            fields.update(changed=result.change.kind or "no", similarity=f"{result.change.similarity:.2f}")
        if result.unexpected is not None:
            fields.update(unexpected=result.unexpected)
        if result.pow_difficulty is not None:
            fields.update(pow_difficulty=result.pow_difficulty)
        fields.update(verdict=result.verdict.kind, provider=result.verdict.provider or "-",
                      markers=",".join(result.verdict.markers) or "-",
                      outcome=result.fetch.outcome or "-", load_seconds=f"{result.fetch.load_seconds:.3f}")
        log.info("probe done", extra=fields)
    else:
        fields.update(verdict="none", reason=result.error_reason, error=result.error_message)
        log.warning("probe failed", extra=fields)
