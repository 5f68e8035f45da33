"""Probe results become Prometheus metrics here, and only here.

Events (probes, challenges, errors, load times, browser restarts) are counters
and histograms updated as each probe ends, carrying the probe id as an
exemplar in OpenMetrics output. State (tor, exit weights, the weighted ratio,
coverage, last probe times, intervals) is rendered at scrape time by a
collector from one snapshot, so a scrape never sees half an update. The
exporter schedules its own probes (a browser probe through Tor takes seconds
to minutes), so values describe the latest probes, not the moment of the
scrape.

Routes: every verdict metric carries ``route`` (``tor``; ``direct``, the
control without Tor; ``onion``, the target's onion service; ``exporter.values.Route``).
A direct or onion probe has no exit, so its ``country`` is empty (Prometheus
drops empty labels) and it adds nothing to the per-exit series, the
exit-weighted ratios or the target × exit runs: the route splits only the
per-target series, which it at most triples.

Target × exit: the runs of challenges and blocks (``captcha_exit_gate_*``), one
pair of gauges per (target, fetcher, exit) whose last probe within the window
met a gate, at most ``MAX_GATE_RUNS`` per target and fetcher (the runs that
began first); ``/api/v1/probes`` has every probe.

Series budget: before any probe, the only zero series are the probe errors of
every reason per target, fetcher and route (so error panels and the error-rate
alert read 0 from the start) and the restarts of every reason per browser
fetcher; every other counter and histogram series is born with its first event.
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
from exporter.change.expect import UNEXPECTED
from exporter.change.onion import KINDS as ONION_KINDS
from exporter.detect.proof_of_work import PROVIDERS as POW_PROVIDERS
from exporter.probe import ProbeResult
from exporter.state import Measurement, State, weighted_ratio
from exporter.tor.relay import ExitRelay
from exporter.values import (
    BrowserRestart,
    ErrorReason,
    Route,
    StreamClosed,
    VerdictKind,
)

if "PROMETHEUS_DISABLE_CREATED_SERIES" not in os.environ:
    disable_created_metrics()

LOAD_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60)
CLEAR_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60)
POW_BUCKETS = (0.1, 0.25, *CLEAR_BUCKETS)
GATES = (VerdictKind.CHALLENGE, VerdictKind.BLOCK)  # the verdicts whose runs the target × exit gauges show
MAX_GATE_RUNS = 500  # per target and fetcher: a third of today's ~1,500 exits (README: series budget)


@dataclass(frozen=True)
class FetcherInfo:
    """A fetcher as ``captcha_fetcher_info`` shows it: what runs behind the ``fetcher`` label."""

    fetcher: str  # the label value: a kind, tor-browser-<level>, or a variant's name
    kind: str  # http, chromium, firefox, tor-browser
    browser: str  # as the running browser names itself (WebDriver browserName), or the HTTP library
    version: str  # WebDriver browserVersion, or the library's version
    settings: str  # the settings that make it this variant, "key=value, ..." ("" for a kind's defaults)
    sandbox: str = ""  # how a browser's pages are confined: chromium's namespaces, setuid or off; else ""


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
    first_seen: dict[str, float] = field(default_factory=dict)  # exit fingerprint → first seen (unix time)
    onionoo_success_time: float | None = None  # the last Onionoo details document read
    fetchers: tuple[FetcherInfo, ...] = ()  # the fetchers whose browser (or library) is known


class ProbeMetrics:
    """The counters and histograms fed by probe results; ``changed`` hears of every update."""

    def __init__(self, registry: CollectorRegistry, changed: Callable[[], None] = lambda: None):
        self._changed = changed
        per_route = ["target", "fetcher", "route"]
        per_country = [*per_route, "country"]
        self.probes = Counter("captcha_probes", "Probes that got an answer.", per_country, registry=registry)
        self.challenges = Counter("captcha_challenges", "Probes that met an interstitial challenge, by gate vendor.",
                                  per_country + ["provider"], registry=registry)
        self.blocks = Counter("captcha_blocks", "Probes that met a block page, by gate vendor.",
                              per_country + ["provider"], registry=registry)
        self.site_errors = Counter("captcha_site_errors", "Probes answered by an error page of the site or its CDN.",
                                   per_country + ["provider"], registry=registry)
        self.widgets = Counter("captcha_widgets", "Normal pages that embed a CAPTCHA widget, by CAPTCHA vendor.",
                               [*per_route, "provider"], registry=registry)
        self.errors = Counter("captcha_probe_errors", "Probes that got no answer, by reason.",
                              [*per_route, "reason"], registry=registry)
        self.load = Histogram("captcha_page_load_seconds", "Time to load the page (through Tor or direct).",
                              per_route, buckets=LOAD_BUCKETS, registry=registry)
        self.outcomes = Counter("captcha_challenge_outcomes", "How challenges ended in a browser.",
                                [*per_route, "provider", "outcome"], registry=registry)
        self.clear = Histogram("captcha_challenge_clear_seconds", "Time a challenge took to clear by itself.",
                               [*per_route, "provider"], buckets=CLEAR_BUCKETS, registry=registry)
        self.pow_solve = Histogram("captcha_pow_solve_seconds", "Time a proof-of-work gate (Anubis, mCaptcha) took "
                                   "to clear in the browser.", ["target", "provider"], buckets=POW_BUCKETS,
                                   registry=registry)
        self.pow_difficulty = Gauge("captcha_pow_difficulty", "Difficulty the last proof-of-work gate page asked "
                                    "for, in the provider's unit (Anubis: leading hex zeros; mCaptcha: difficulty "
                                    "factor, hashes on average).", ["target", "provider"], registry=registry)
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
                               "Normal pages that differ from the page fetched without Tor, or from the "
                               "target's expect (kind unexpected), by kind of change.",
                               [*per_country, "kind"], registry=registry)
        self.similarity = Gauge("captcha_page_similarity_ratio",
                                "Similarity of the last normal page to the page fetched without Tor (1 = same).",
                                ["target", "fetcher"], registry=registry)
        self.onion = Gauge("captcha_target_onion_available",
                           "Whether the target's last normal page announced an onion service (Alt-Svc or "
                           "Onion-Location).", ["target", "kind"], registry=registry)
        self._per_target = (self.probes, self.challenges, self.blocks, self.site_errors, self.widgets,
                            self.errors, self.load, self.outcomes, self.clear, self.changed, self.similarity,
                            self.onion, self.pow_solve, self.pow_difficulty)
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
        route = (result.target, result.fetcher, result.route)
        exit = result.exit
        country = exit.country if exit else ""  # the direct route has no exit
        if result.verdict is None:
            self.errors.labels(*route, result.error_reason).inc(exemplar=exemplar)
            return
        kind, provider = result.verdict.kind, result.verdict.provider
        self.probes.labels(*route, country).inc(exemplar=exemplar)
        self.load.labels(*route).observe(result.fetch.load_seconds, exemplar=exemplar)
        if exit:
            self.exit_probes.labels(exit.fingerprint).inc()
        if kind == "challenge":
            self.challenges.labels(*route, country, provider).inc(exemplar=exemplar)
            if exit:
                self.exit_challenges.labels(exit.fingerprint).inc()
        elif kind == "block":
            self.blocks.labels(*route, country, provider).inc(exemplar=exemplar)
            if exit:
                self.exit_blocks.labels(exit.fingerprint).inc()
        elif kind == "error":
            self.site_errors.labels(*route, country, provider).inc(exemplar=exemplar)
        elif kind == "widget":
            self.widgets.labels(*route, provider).inc(exemplar=exemplar)
        if kind in ("ok", "widget"):
            for onion_kind in ONION_KINDS:
                self.onion.labels(result.target, onion_kind).set(1 if onion_kind in result.onion else 0)
        if result.change is not None:
            self.similarity.labels(result.target, result.fetcher).set(result.change.similarity)
            if result.change.kind:
                self.changed.labels(*route, country, result.change.kind).inc(exemplar=exemplar)
        if result.unexpected is not None:
            self.changed.labels(*route, country, UNEXPECTED).inc(exemplar=exemplar)
        outcome = result.fetch.outcome
        if outcome and kind in ("challenge", "block"):
            self.outcomes.labels(*route, provider, outcome).inc(exemplar=exemplar)
            if outcome == "cleared" and result.fetch.clear_seconds is not None:
                self.clear.labels(*route, provider).observe(result.fetch.clear_seconds, exemplar=exemplar)
                if provider in POW_PROVIDERS:
                    self.pow_solve.labels(result.target, provider).observe(result.fetch.clear_seconds,
                                                                           exemplar=exemplar)
        if result.pow_difficulty is not None:
            self.pow_difficulty.labels(result.target, provider).set(result.pow_difficulty)

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

    def prepare(self, pairs: Iterable[tuple[str, str]], exits: Iterable[ExitRelay],
                direct: Iterable[tuple[str, str]] = ()) -> None:
        """Start the error series at 0 (the module's series budget) for the (target, fetcher) ``pairs``
        through Tor and the ``direct`` ones, and drop the series of targets and exits that are gone."""
        pairs = list(pairs)
        for route, routed in ((Route.TOR, pairs), (Route.DIRECT, direct)):
            for target, fetcher in routed:
                for reason in ErrorReason:
                    if route is Route.DIRECT and reason is ErrorReason.CIRCUIT:
                        continue  # no circuit without tor
                    self.errors.labels(target, fetcher, route, reason)
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
                                 labels=["fingerprint", "nickname", "country", "continent", "asn", "as_name"])
        first_seen = GaugeMetricFamily("captcha_exit_first_seen_timestamp_seconds",
                                       "When the exit relay was first seen in a consensus (Onionoo's first_seen, "
                                       "else the earliest consensus the exporter saw it in).", labels=["fingerprint"])
        for relay in snap.exits:
            weight.add_metric([relay.fingerprint], relay.probability)
            info.add_metric([relay.fingerprint, relay.nickname, relay.country, relay.continent, relay.asn,
                             relay.as_name], 1)
            if relay.fingerprint in snap.first_seen:
                first_seen.add_metric([relay.fingerprint], snap.first_seen[relay.fingerprint])
        yield weight
        yield info
        yield first_seen
        onionoo = GaugeMetricFamily("captcha_onionoo_last_success_timestamp_seconds",
                                    "When the exporter last read Onionoo's details document (through Tor).")
        if snap.onionoo_success_time is not None:
            onionoo.add_metric([], snap.onionoo_success_time)
        yield onionoo
        fetchers = GaugeMetricFamily("captcha_fetcher_info", "What runs behind each fetcher label: the browser "
                                     "(or HTTP library) and its version as it reports them, and the variant's "
                                     "settings, and how a browser's pages are confined (chromium: namespaces, "
                                     "setuid or off); always 1.",
                                     labels=["fetcher", "kind", "browser", "version", "settings", "sandbox"])
        for fetcher in snap.fetchers:
            fetchers.add_metric([fetcher.fetcher, fetcher.kind, fetcher.browser, fetcher.version, fetcher.settings,
                                 fetcher.sandbox], 1)
        yield fetchers

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
        gate_labels = ["target", "fetcher", "fingerprint", "verdict"]
        gate_since = GaugeMetricFamily(
            "captcha_exit_gate_since_timestamp_seconds",
            "Since when every probe of the target through this exit met the gate (challenge or block): the "
            "start of the run its last probe within the window belongs to.", labels=gate_labels)
        gate_probes = GaugeMetricFamily("captcha_exit_gate_probes",
                                        "Probes of the target through this exit in that run, all of which met the "
                                        "gate.", labels=gate_labels)
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
            for fingerprint, run in gate_runs(measurements, since):
                labels = [target, fetcher, fingerprint, run.kind]
                gate_since.add_metric(labels, run.since)
                gate_probes.add_metric(labels, run.run)
        yield ratio
        yield coverage
        yield last
        yield gate_since
        yield gate_probes


def gate_runs(measurements: dict[str, Measurement], since: float,
              limit: int = MAX_GATE_RUNS) -> list[tuple[str, Measurement]]:
    """The exits whose last probe since ``since`` met a gate, with that run: the ``limit`` runs that
    began first (they change least from scrape to scrape), by fingerprint within the same start."""
    runs = [(fingerprint, m) for fingerprint, m in measurements.items() if m.kind in GATES and m.time >= since]
    if len(runs) > limit:
        runs = sorted(runs, key=lambda item: (item[1].since, item[0]))[:limit]
    return runs
