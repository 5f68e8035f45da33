"""Probe results become Prometheus metrics here, and only here.

Events (probes, challenges, errors, load times, browser restarts) are counters
and histograms updated as each probe ends, carrying the probe id as an
exemplar in OpenMetrics output. State (tor, exit weights, the weighted ratio,
coverage, last probe times, intervals) is rendered at scrape time by a
collector from one snapshot, so a scrape never sees half an update. The
exporter schedules its own probes (a browser probe through Tor takes seconds
to minutes), so values describe the latest probes, not the moment of the
scrape.

Series budget: before any probe, the only zero series are the probe errors of
every reason per target and fetcher (so error panels and the error-rate alert
read 0 from the start) and the restarts of every reason per browser fetcher;
every other counter and histogram series is born with its first event.
prometheus_client's ``_created`` series are off unless the environment sets
``PROMETHEUS_DISABLE_CREATED_SERIES`` itself: Prometheus would store each as a
series of its own, doubling the count, and nothing reads them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily

from exporter import __version__
from exporter.build import revision
from exporter.change.onion import KINDS as ONION_KINDS
from exporter.probe import ProbeResult
from exporter.state import State, weighted_ratio
from exporter.tor.relay import ExitRelay
from exporter.values import BrowserRestart, ErrorReason, StreamClosed

if "PROMETHEUS_DISABLE_CREATED_SERIES" not in os.environ:
    disable_created_metrics()

LOAD_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60)
CLEAR_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60)


@dataclass(frozen=True)
class Snapshot:
    """What the exporter knows right now, beyond the per-probe counters."""

    tor_up: bool = False  # connected to tor, with exits in the consensus, and probing (/-/ready)
    exits: tuple[ExitRelay, ...] = ()
    valid_after: float | None = None
    tor_version: str = ""
    pairs: tuple[tuple[str, str], ...] = ()  # configured (target, fetcher)
    # configured (target, seconds between its runs, exits per run)
    schedules: tuple[tuple[str, float, int], ...] = ()
    window: float = 86400.0
    in_flight: int = 0
    queued: int = 0
    reload_successful: bool = True
    reload_success_time: float = field(default_factory=time.time)
    # per target: its interval and the fingerprints of the exits it may use (from its last run)
    plan: tuple[tuple[str, float, tuple[str, ...]], ...] = ()
    backing_off: frozenset[str] = frozenset()  # exits skipped for now after repeated circuit failures


class ProbeMetrics:
    """The counters and histograms fed by probe results; ``changed`` hears of every update."""

    def __init__(self, registry: CollectorRegistry, changed: Callable[[], None] = lambda: None):
        self._changed = changed
        per_country = ["target", "fetcher", "country"]
        self.probes = Counter("captcha_probes", "Probes that got an answer.", per_country, registry=registry)
        self.challenges = Counter("captcha_challenges", "Probes that met an interstitial challenge, by gate vendor.",
                                  per_country + ["provider"], registry=registry)
        self.blocks = Counter("captcha_blocks", "Probes that met a block page, by gate vendor.",
                              per_country + ["provider"], registry=registry)
        self.site_errors = Counter("captcha_site_errors", "Probes answered by an error page of the site or its CDN.",
                                   per_country + ["provider"], registry=registry)
        self.widgets = Counter("captcha_widgets", "Normal pages that embed a CAPTCHA widget, by CAPTCHA vendor.",
                               ["target", "fetcher", "provider"], registry=registry)
        self.errors = Counter("captcha_probe_errors", "Probes that got no answer, by reason.",
                              ["target", "fetcher", "reason"], registry=registry)
        self.load = Histogram("captcha_page_load_seconds", "Time to load the page through Tor.",
                              ["target", "fetcher"], buckets=LOAD_BUCKETS, registry=registry)
        self.outcomes = Counter("captcha_challenge_outcomes", "How challenges ended in a browser.",
                                ["target", "fetcher", "provider", "outcome"], registry=registry)
        self.clear = Histogram("captcha_challenge_clear_seconds", "Time a challenge took to clear by itself.",
                               ["target", "fetcher", "provider"], buckets=CLEAR_BUCKETS, registry=registry)
        self.exit_probes = Counter("captcha_exit_probes", "Answered probes through this exit.",
                                   ["fingerprint"], registry=registry)
        self.exit_challenges = Counter("captcha_exit_challenges", "Challenges met through this exit.",
                                       ["fingerprint"], registry=registry)
        self.exit_blocks = Counter("captcha_exit_blocks", "Block pages met through this exit.",
                                   ["fingerprint"], registry=registry)
        self.circuit_failures = Counter("captcha_circuit_failures", "Failed circuit builds, by reason.",
                                        ["reason"], registry=registry)
        self.browser_restarts = Counter("captcha_browser_restarts", "Browsers replaced, by why the previous one "
                                        "went (crashed and launch_failed are crashes).",
                                        ["fetcher", "reason"], registry=registry)
        self.streams_closed = Counter(
            "captcha_streams_closed",
            "Streams of a lane closed instead of sent through its exit: stray (no probe ran on the lane), "
            "denied (tor.deny_hosts).", ["reason"], registry=registry)
        for reason in StreamClosed:
            self.streams_closed.labels(reason)
        self.circuit_hops = Gauge("captcha_circuit_hops",
                                  "Hops of the circuits probes use (tor.hops): what the load times measured.",
                                  registry=registry)
        self.changed = Counter("captcha_page_changed",
                               "Normal pages that differ from the page fetched without Tor, by kind of change.",
                               per_country + ["kind"], registry=registry)
        self.similarity = Gauge("captcha_page_similarity_ratio",
                                "Similarity of the last normal page to the page fetched without Tor (1 = same).",
                                ["target", "fetcher"], registry=registry)
        self.onion = Gauge("captcha_target_onion_available",
                           "Whether the target's last normal page announced an onion service (Alt-Svc or "
                           "Onion-Location).", ["target", "kind"], registry=registry)
        self._per_target = (self.probes, self.challenges, self.blocks, self.site_errors, self.widgets,
                            self.errors, self.load, self.outcomes, self.clear, self.changed, self.similarity,
                            self.onion)
        self._per_exit = (self.exit_probes, self.exit_challenges, self.exit_blocks)
        self._exits: set[str] = set()
        self._targets: set[str] = set()

    def observe(self, result: ProbeResult) -> None:
        """Count one probe's result.  A probe still running when a reload removed its target is
        not counted: the target's series are gone and must stay gone."""
        if result.target not in self._targets:
            return
        self._count(result)
        self._changed()

    def _count(self, result: ProbeResult) -> None:
        exemplar = {"probe_id": result.probe_id}
        target, fetcher, country = result.target, result.fetcher, result.exit.country
        if result.verdict is None:
            self.errors.labels(target, fetcher, result.error_reason).inc(exemplar=exemplar)
            return
        kind, provider = result.verdict.kind, result.verdict.provider
        self.probes.labels(target, fetcher, country).inc(exemplar=exemplar)
        self.exit_probes.labels(result.exit.fingerprint).inc()
        self.load.labels(target, fetcher).observe(result.fetch.load_seconds, exemplar=exemplar)
        if kind == "challenge":
            self.challenges.labels(target, fetcher, country, provider).inc(exemplar=exemplar)
            self.exit_challenges.labels(result.exit.fingerprint).inc()
        elif kind == "block":
            self.blocks.labels(target, fetcher, country, provider).inc(exemplar=exemplar)
            self.exit_blocks.labels(result.exit.fingerprint).inc()
        elif kind == "error":
            self.site_errors.labels(target, fetcher, country, provider).inc(exemplar=exemplar)
        elif kind == "widget":
            self.widgets.labels(target, fetcher, provider).inc(exemplar=exemplar)
        if kind in ("ok", "widget"):
            for onion_kind in ONION_KINDS:
                self.onion.labels(target, onion_kind).set(1 if onion_kind in result.onion else 0)
        if result.change is not None:
            self.similarity.labels(target, fetcher).set(result.change.similarity)
            if result.change.kind:
                self.changed.labels(target, fetcher, country, result.change.kind).inc(exemplar=exemplar)
        outcome = result.fetch.outcome
        if outcome and kind in ("challenge", "block"):
            self.outcomes.labels(target, fetcher, provider, outcome).inc(exemplar=exemplar)
            if outcome == "cleared" and result.fetch.clear_seconds is not None:
                self.clear.labels(target, fetcher, provider).observe(result.fetch.clear_seconds, exemplar=exemplar)

    def circuit_failed(self, reason: str) -> None:
        self.circuit_failures.labels(reason).inc()
        self._changed()

    def browsers(self, fetcher: str) -> Callable[[BrowserRestart], None]:
        """Start the restart series of a browser fetcher at 0; returns what counts its restarts."""
        for reason in BrowserRestart:
            self.browser_restarts.labels(fetcher, reason)

        def restarted(reason: BrowserRestart) -> None:
            self.browser_restarts.labels(fetcher, reason).inc()
            self._changed()

        return restarted

    def stream_closed(self, reason: StreamClosed) -> None:
        self.streams_closed.labels(reason).inc()
        self._changed()

    def prepare(self, pairs: Iterable[tuple[str, str]], exits: Iterable[ExitRelay]) -> None:
        """Start the error series at 0 (the module's series budget) and drop the series of targets
        and exits that are gone."""
        pairs = list(pairs)
        for target, fetcher in pairs:
            for reason in ErrorReason:
                self.errors.labels(target, fetcher, reason)
        # the new set first, so a probe ending meanwhile cannot bring back a series removed here
        gone, self._targets = self._targets - {t for t, _ in pairs}, {t for t, _ in pairs}
        for target in gone:
            for metric in self._per_target:
                metric.remove_by_labels({"target": target})
        fingerprints = {e.fingerprint for e in exits}
        for gone in self._exits - fingerprints:
            for metric in self._per_exit:
                metric.remove(gone)
        self._exits = fingerprints
        self._changed()


class StateCollector:
    """Renders the gauges from one snapshot and the state, at scrape time."""

    def __init__(self, snapshot: Callable[[], Snapshot], state: State):
        self._snapshot = snapshot
        self._state = state

    def collect(self):
        snap = self._snapshot()
        build = GaugeMetricFamily("captcha_exporter_build_info", "Build facts; always 1.",
                                  labels=["version", "revision", "tor_version"])
        build.add_metric([__version__, revision(), snap.tor_version or "unknown"], 1)
        yield build
        tor_up = GaugeMetricFamily("captcha_tor_up", "1 while the exporter is connected to tor, has exits in "
                                   "the consensus and probes (what /-/ready says); 0 otherwise.")
        tor_up.add_metric([], 1 if snap.tor_up else 0)
        yield tor_up
        interval = GaugeMetricFamily("captcha_target_interval_seconds", "Time between two runs of the target "
                                     "(its interval, or the longest gap of its cron schedule).", labels=["target"])
        per_run = GaugeMetricFamily("captcha_target_exits_per_run", "Exits a run of the target probes.",
                                    labels=["target"])
        for target, seconds, exits_per_run in snap.schedules:
            interval.add_metric([target], seconds)
            per_run.add_metric([target], exits_per_run)
        yield interval
        yield per_run

        weight = GaugeMetricFamily("captcha_exit_weight", "Exit probability from the consensus (Tor Metrics' formula).",
                                   labels=["fingerprint"])
        info = GaugeMetricFamily("captcha_exit_info", "Facts about an exit relay; always 1.",
                                 labels=["fingerprint", "nickname", "country"])
        for relay in snap.exits:
            weight.add_metric([relay.fingerprint], relay.probability)
            info.add_metric([relay.fingerprint, relay.nickname, relay.country], 1)
        yield weight
        yield info

        valid_after = GaugeMetricFamily("captcha_consensus_valid_after_timestamp_seconds",
                                        "valid-after time of the consensus in use.")
        if snap.valid_after is not None:
            valid_after.add_metric([], snap.valid_after)
        yield valid_after

        yield from self._per_target(snap)

        yield from self._plan(snap)

        in_flight = GaugeMetricFamily("captcha_probes_in_flight", "Probes running now.")
        in_flight.add_metric([], snap.in_flight)
        yield in_flight
        queued = GaugeMetricFamily("captcha_probes_queued", "Probes waiting for a free lane.")
        queued.add_metric([], snap.queued)
        yield queued

        reload_ok = GaugeMetricFamily("captcha_config_last_reload_successful",
                                      "Whether the last configuration reload succeeded.")
        reload_ok.add_metric([], 1 if snap.reload_successful else 0)
        yield reload_ok
        reload_time = GaugeMetricFamily("captcha_config_last_reload_success_timestamp_seconds",
                                        "Time of the last successful configuration (re)load.")
        reload_time.add_metric([], snap.reload_success_time)
        yield reload_time

    def _plan(self, snap: Snapshot):
        pending = GaugeMetricFamily("captcha_plan_pending",
                                    "Exits due for the target: not tried within its interval.", labels=["target"])
        oldest = GaugeMetricFamily("captcha_plan_oldest_attempt_timestamp_seconds",
                                   "Time of the least recent attempt among the exits the target uses that were "
                                   "tried before and are not backing off.", labels=["target"])
        now = time.time()
        for target, interval, fingerprints in snap.plan:
            attempted = self._state.last_attempted(target)
            times = [attempted.get(fp) for fp in fingerprints]
            pending.add_metric([target], sum(1 for t in times if t is None or t < now - interval))
            # each run takes the exits tried longest ago, so in step with the plan this time keeps moving
            tried = [t for fp, t in zip(fingerprints, times) if t is not None and fp not in snap.backing_off]
            if tried:
                oldest.add_metric([target], min(tried))
        yield pending
        yield oldest
        backing_off = GaugeMetricFamily("captcha_exits_backing_off",
                                        "Exits skipped for now after repeated circuit failures.")
        backing_off.add_metric([], len(snap.backing_off))
        yield backing_off

    def _per_target(self, snap: Snapshot):
        labels = ["target", "fetcher"]
        ratio = GaugeMetricFamily(
            "captcha_weighted_challenge_ratio",
            "Share of exit weight whose last probe within the window met a challenge, over the weight measured.",
            labels=labels)
        coverage = GaugeMetricFamily("captcha_exit_coverage_ratio",
                                     "Share of total exit weight measured within the window.", labels=labels)
        last = GaugeMetricFamily("captcha_last_probe_timestamp_seconds", "Time of the last answered probe.",
                                 labels=labels)
        weights = {e.fingerprint: e.probability for e in snap.exits}
        since = time.time() - snap.window
        for target, fetcher in snap.pairs:
            measurements = self._state.last_measured(target, fetcher)
            value, covered = weighted_ratio(measurements, weights, since)
            if value is not None:
                ratio.add_metric([target, fetcher], value)
            coverage.add_metric([target, fetcher], covered)
            if measurements:
                last.add_metric([target, fetcher], max(m.time for m in measurements.values()))
        yield ratio
        yield coverage
        yield last
