"""One probe: a target's URL, fetched by one fetcher through a lane pinned to one exit, judged.

The caller pins the lane to the exit first (one circuit serves every target and
fetcher due for that exit); a probe never raises: every attempt ends in a
ProbeResult with either a verdict or an error reason, so attempts are always
accounted for.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.change import Baseline, Change, compare, onion_facts
from exporter.config import Target
from exporter.tor.relay import ExitRelay
from exporter.values import Fetcher, FetchError, FetchResult, Lane, Response, Verdict

log = logging.getLogger(__name__)

Classify = Callable[[Response], Verdict]


@dataclass(frozen=True)
class ProbeResult:
    probe_id: str
    target: str
    fetcher: str
    exit: ExitRelay
    started: float  # unix time
    duration: float
    verdict: Verdict | None = None
    fetch: FetchResult | None = None
    error_reason: str | None = None
    error_message: str | None = None
    change: Change | None = None  # vs the direct baseline; only for `ok` pages, when a baseline exists
    onion: frozenset[str] = frozenset()  # onion-service announcements: alt_svc, onion_location
    evidence: str | None = None  # directory of the saved evidence, for probes that met something

    @property
    def needs_evidence(self) -> bool:
        """Anything but a plain, unchanged normal page is worth keeping evidence of."""
        return self.fetch is not None and (self.verdict.kind != "ok" or bool(self.change and self.change.kind))

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


def run_probe(target: Target, exit: ExitRelay, fetcher: Fetcher, lane: Lane,
              classify: Classify, timeout: float, baseline: Baseline | None = None) -> ProbeResult:
    """Fetch ``target.url`` with ``fetcher`` through ``lane`` (already pinned to ``exit``).

    A normal page is compared with ``baseline`` (the page fetched without Tor); gate and
    error pages are not, since they differ from any real page by definition.
    """
    probe_id = new_probe_id()
    started, clock = time.time(), time.monotonic()
    common = dict(probe_id=probe_id, target=target.name, fetcher=fetcher.name, exit=exit, started=started)
    try:
        fetch = fetcher.fetch(target.url, lane, timeout)
        verdict = judge(fetch, classify)
        change = None
        if verdict.kind == "ok" and baseline is not None:  # a page too complex to read raises FetchError
            change = compare(baseline, fetch.final, threshold=target.change.threshold, ignore=target.change.ignore)
    except FetchError as exc:
        result = ProbeResult(**common, duration=time.monotonic() - clock,
                             error_reason=exc.reason, error_message=str(exc))
    except Exception as exc:  # a bug or a dead browser must cost one probe, not the exporter
        log.exception("probe failed unexpectedly", extra={"probe_id": probe_id})
        result = ProbeResult(**common, duration=time.monotonic() - clock,
                             error_reason="internal", error_message=f"{type(exc).__name__}: {exc}")
    else:
        result = ProbeResult(**common, duration=time.monotonic() - clock, verdict=verdict, fetch=fetch,
                             change=change, onion=frozenset(onion_facts(fetch.first) | onion_facts(fetch.final)))
    log_probe(result)
    return result


def error_result(target: Target, fetcher_name: str, exit: ExitRelay, reason: str, message: str) -> ProbeResult:
    """The result of a probe that could not start (e.g. no circuit to its exit)."""
    result = ProbeResult(probe_id=new_probe_id(), target=target.name, fetcher=fetcher_name, exit=exit,
                         started=time.time(), duration=0.0, error_reason=reason, error_message=message)
    log_probe(result)
    return result


def log_probe(result: ProbeResult) -> None:
    fields = {
        "probe_id": result.probe_id, "target": result.target, "exit": result.exit.fingerprint,
        "nickname": result.exit.nickname, "country": result.exit.country, "fetcher": result.fetcher,
    }
    if result.verdict is not None:
        if result.change is not None:
            fields.update(changed=result.change.kind or "no", similarity=f"{result.change.similarity:.2f}")
        fields.update(verdict=result.verdict.kind, provider=result.verdict.provider or "-",
                      markers=",".join(result.verdict.markers) or "-",
                      outcome=result.fetch.outcome or "-", load_seconds=f"{result.fetch.load_seconds:.3f}")
        log.info("probe done", extra=fields)
    else:
        fields.update(verdict="none", reason=result.error_reason, error=result.error_message)
        log.warning("probe failed", extra=fields)
