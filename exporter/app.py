"""`captcha-exporter run`: wire config → tor → plan → fetch → verdict → metrics, and keep it running.

The web endpoint comes up first and stays up: an unreachable or dying tor is
reported (logs, /-/ready, the landing page) and retried, never fatal.  The
parts have owners of their own: the supervisor (tor connection, reconnect,
teardown), the exit planner (selection, port filter, plan), the view (what the
web reads); this module wires them and owns the config in force.

Threads: ``reload`` runs on the reload thread (SIGHUP) or a web thread
(POST /-/reload), one at a time (``_reload_lock``); it replaces ``config`` and
``pairs`` whole, and every other thread reads them through one reference.
``record`` and ``keep_evidence`` run on lane threads.  The metrics' known
series are prepared from the reload thread and from stem's event thread (each
new consensus), one at a time (``_series_lock``).
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, ProcessCollector

from exporter import web
from exporter.baselines import Baselines
from exporter.config import Config, ConfigError, load_config
from exporter.config_yaml import printable
from exporter.detect import Detector, load_signatures
from exporter.evidence import save_evidence
from exporter.exposition import Exposition
from exporter.fetch import sandbox
from exporter.fetch.factory import make_fetcher
from exporter.fetch.http import HttpFetcher
from exporter.lane_limit import LaneLimit
from exporter.logs import redact_with, setup_logging
from exporter.metrics import ProbeMetrics, StateCollector
from exporter.planner import ExitPlanner, target_port
from exporter.probe import ProbeResult
from exporter.redact import Redactor
from exporter.relays import RelayFacts
from exporter.report import write_daily
from exporter.scheduler import (
    MAX_LANES,
    PinError,
    Prober,
    Scheduler,
    auto_lanes,
    available_memory,
    run_period,
)
from exporter.shard import Shard
from exporter.state import State
from exporter.store import Store, StoreError
from exporter.supervisor import Session, TorSupervisor
from exporter.tor.circuit import CircuitPinner
from exporter.tor.consensus import watch_consensus
from exporter.tor.geo import GeoLookup
from exporter.tor.relay import ExitRelay
from exporter.values import CircuitError, Fetcher, Lane
from exporter.view import ExporterView
from exporter.web import WebServer

log = logging.getLogger(__name__)

ONIONOO_RETRY_SECONDS = 120.0  # how soon Onionoo is tried again after it could not be read
REPORT_CHECK_SECONDS = 600.0  # how often the daily report is looked for (written once its day is over)
REPORT_DAYS_KEPT = 2  # days of probes kept, at least, while daily reports are on


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config.file", "--config", dest="config", required=True, metavar="FILE",
                        help="the YAML configuration file")
    shard = parser.add_mutually_exclusive_group()
    shard.add_argument("--shard", metavar="INDEX/COUNT",
                       help="measure only this replica's share of the exits, e.g. 0/2 (default: all exits)")
    shard.add_argument("--shard.from-hostname", dest="shard_hostname", metavar="NAME",
                       help="take the shard index from a StatefulSet pod name (captcha-exporter-1 → 1)")
    parser.add_argument("--shard.count", dest="shard_count", type=int, metavar="N",
                        help="number of replicas, with --shard.from-hostname")
    web.add_arguments(parser)
    add_log_arguments(parser)


def shard_from_args(args: argparse.Namespace) -> Shard:
    """The replica's shard; ValueError with a one-line message on bad flags."""
    if args.shard_hostname:
        if not args.shard_count:
            raise ValueError("--shard.from-hostname needs --shard.count")
        return Shard.from_hostname(args.shard_hostname, args.shard_count)
    if args.shard_count:
        raise ValueError("--shard.count is only used with --shard.from-hostname")
    return Shard.parse(args.shard) if args.shard else Shard(0, 1)


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log.level", dest="log_level", default="info",
                        choices=["debug", "info", "warn", "warning", "error"], help="log level (default: info)")
    parser.add_argument("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"],
                        help="log line format (default: logfmt)")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config)
        shard = shard_from_args(args)
        if any("chromium" in target.fetchers for target in config.targets):  # refuse now, not after tor is up
            sandbox.plan(config.fetchers.chromium.sandbox, config.fetchers.chromium.binary)
    except (ConfigError, ValueError, sandbox.SandboxError) as exc:
        log.error("cannot start", extra={"err": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        exporter = Exporter(config, shard, web_config=args.web_config_file, listen=args.web_listen_address)
    except (ConfigError, StoreError) as exc:
        log.error("cannot start", extra={"err": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        log.error("cannot listen", extra={"address": f"{config.web.listen_host}:{config.web.listen_port}",
                                          "err": str(exc)})
        print(f"error: cannot listen on {config.web.listen_host}:{config.web.listen_port}: {exc}", file=sys.stderr)
        return 1
    exporter.start()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=exporter.reload, name="reload").start())
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # every thread's stack to stderr, for a hang
    host, port = exporter.web.address
    log.info("listening", extra={"address": f"http://{host}:{port}/"})
    # A process signal may land on any thread, and CPython runs its handler only when the main
    # thread executes bytecode: a wait without timeout would hold SIGHUP until the next SIGTERM.
    while not stop.wait(1.0):
        pass
    log.info("shutting down")
    exporter.stop()
    return 0


def open_store(config: Config) -> Store:
    """The SQLite state in ``data_dir`` (created if needed); StoreError names what is wrong."""
    data_dir = config.data_dir
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {data_dir}: {exc.strerror}") from exc
    return Store(data_dir / "state.db", config.history.max_probes, kept_seconds(config))


def kept_seconds(config: Config) -> float:
    """How long probes are kept: ``history.retention``, and with daily reports at least two days, so
    that a whole UTC day is still in the store when its report is written after it."""
    if config.reports.daily:
        return max(config.history.retention, REPORT_DAYS_KEPT * 86400.0)
    return config.history.retention


def build_fetchers(config: Config, classify) -> tuple[dict[str, Fetcher], dict[str, float]]:
    """The fetchers the targets ask for (kinds and variants, by name), with each one's timeout; those
    that cannot be built are left out (their probes then count as `browser` errors) and logged."""
    fetchers, timeouts = {}, {}
    for name in sorted({name for target in config.targets for name in target.fetchers} | {"http"}):
        try:
            fetchers[name], timeouts[name] = make_fetcher(name, config.fetchers, classify, config.baseline_resolve)
        except Exception as exc:
            log.error("fetcher unavailable", extra={"fetcher": name, "err": str(exc)})
    return fetchers, timeouts


class Exporter:
    """The running exporter: its owners wired together, and the config in force."""

    def __init__(self, config: Config, shard: Shard = Shard(0, 1), web_config: str | None = None,
                 listen: tuple[str, int] | None = None):
        """``listen`` (--web.listen-address) overrides the config's web.listen, also across reloads."""
        self.started = time.time()
        self.shard = shard
        self._listen = listen
        config = self._with_listen(config)
        self.registry = CollectorRegistry()
        process = CollectorRegistry()
        ProcessCollector(registry=process)  # process_*: CPU, memory, start time (restarts)
        self.exposition = Exposition(self.registry, live=process)
        self.metrics = ProbeMetrics(self.registry, changed=self.exposition.changed)
        self.store = open_store(config)
        self.state = State()
        self.state.restore(self.store.load_last(), self.store.load_attempts())
        self.baselines = Baselines(self.store)
        self.relays = RelayFacts(self.store)
        self._reload_lock = threading.Lock()
        self._series_lock = threading.Lock()
        self._reload_ok, self._reload_time = True, time.time()
        self._auto_lanes: dict[bool, int] = {}  # "auto" lanes with browsers or without, once reckoned
        self.planner = ExitPlanner(shard, lambda: self.config.exits)
        self.supervisor = TorSupervisor(lambda: self.config.tor, self.lanes, self._start_session)
        self.view = ExporterView(self.exposition, lambda: self.config, shard, self.planner, self.supervisor,
                                 self.store, self.reload, lambda: (self._reload_ok, self._reload_time),
                                 lambda: self.pairs, lambda: self.schedules, self.started, self.relays)
        self.registry.register(StateCollector(self.view.snapshot, self.state))
        self._use(config)
        try:
            self.web = WebServer(self.view, config.web.listen_host, config.web.listen_port, web_config=web_config,
                                 allowed_hosts=config.web.allowed_hosts)
        except BaseException:
            self.store.close()
            raise

    def _use(self, config: Config) -> None:
        """Make ``config`` the one in force (the parts that do not need tor); what may fail is built
        before anything changes, so a failure leaves the old config wholly in force."""
        detector = Detector(load_signatures(list(config.detect_signatures)))
        pairs = tuple((t.name, config.fetchers.label(name)) for t in config.targets for name in t.fetchers)
        direct_pairs = tuple((t.name, config.fetchers.label(name))
                             for t in config.targets if t.direct for name in t.fetchers)
        schedules = tuple((t.name, run_period(t), t.exits_per_run) for t in config.targets)
        redactor = Redactor.of(config)
        self.config, self.detector, self.redactor = config, detector, redactor
        self.pairs, self.direct_pairs, self.schedules = pairs, direct_pairs, schedules
        redact_with(redactor)
        self.store.recent_limit, self.store.retention = config.history.max_probes, kept_seconds(config)
        self.metrics.circuit_hops.set(config.tor.hops)
        self._prepare_series()
        self.state.forget_targets(t.name for t in config.targets)
        self.store.forget_targets(t.name for t in config.targets)
        self.baselines.forget({t.name for t in config.targets})

    def _prepare_series(self) -> None:
        """Start the known series at 0 and drop those of gone targets and exits, for the pairs and
        the consensus in force now (taken under the lock, so a late caller never brings back old ones)."""
        with self._series_lock:
            self.metrics.prepare(self.pairs, self.planner.owned_exits(), self.direct_pairs)

    def reload(self) -> tuple[bool, str]:
        """Re-read the config file; a bad one is rejected and the old one stays in force.

        A good one takes over at once: probing restarts with it (running probes
        finish first), series of removed targets disappear. Changing
        ``web.listen`` needs a restart of the process.
        """
        with self._reload_lock:
            old = self.config
            try:
                config = self._with_listen(load_config(old.source))
                self._use(config)
            except Exception as exc:  # a ConfigError, or a bug: either way the old config stays
                self._reload_ok = False
                self.exposition.changed()  # captcha_config_last_reload_successful: the next scrape shows it
                if not isinstance(exc, ConfigError):
                    log.debug("reload failed unexpectedly", exc_info=True)
                why = str(exc) if isinstance(exc, ConfigError) else f"{old.source}: {type(exc).__name__}: {exc}"
                why = self.redactor.text(printable(" ".join(why.split())))
                log.error("reload rejected; the old configuration stays in force", extra={"err": why})
                return False, why
            if config.web != old.web:
                log.warning("web.listen or web.allowed_hosts changed; that takes effect after a restart",
                            extra={"listen": f"{config.web.listen_host}:{config.web.listen_port}"})
            self._reload_ok, self._reload_time = True, time.time()
            self.exposition.changed()
            self.supervisor.restart()
            log.info("configuration reloaded", extra={"targets": len(config.targets)})
            return True, f"reloaded {config.source}: {len(config.targets)} targets"

    def _with_listen(self, config: Config) -> Config:
        if self._listen is None:
            return config
        host, port = self._listen
        return dataclasses.replace(config, web=dataclasses.replace(config.web, listen_host=host, listen_port=port))

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self.web.start()
        self.supervisor.start()

    def stop(self) -> None:
        self.baselines.stop()
        self.supervisor.stop()
        self.web.stop()
        self.exposition.stop()
        self.store.close()

    def lanes(self) -> int:
        """schedule.concurrency, or the lanes this machine can run ("auto"): with plain HTTP only,
        every lane there may be, and a ``LaneLimit`` decides how many work at once."""
        if self.config.schedule.concurrency:
            return self.config.schedule.concurrency
        return MAX_LANES if self._lane_limit_first() else self._auto_lanes_for(browsers=True)

    def _lane_limit_first(self) -> int | None:
        """Where a LaneLimit starts, if the config wants one (auto lanes, plain HTTP only)."""
        browsers = any(kind != "http" for target in self.config.targets for kind in target.fetchers)
        if self.config.schedule.concurrency or browsers:
            return None
        return self._auto_lanes_for(browsers=False)

    def _auto_lanes_for(self, browsers: bool) -> int:
        """The lanes "auto" means, with browsers or without, reckoned once: reckoned again later, the
        memory our own browsers hold would count against them, and a reload would reopen tor for a
        different number of lanes."""
        if browsers not in self._auto_lanes:
            self._auto_lanes[browsers] = auto_lanes(os.cpu_count() or 1, available_memory(), browsers)
        return self._auto_lanes[browsers]

    def _start_session(self, session: Session) -> None:
        """Start probing on a fresh tor connection (the supervisor closes the session on failure)."""
        config, tor = self.config, session.tor
        geo = GeoLookup(config.geoip.country_db, tor.controller, config.geoip.asn_db)
        session.on_close(geo.close)
        session.on_close(self.planner.detach)
        self._refresh_consensus(tor.controller, geo)
        pinner = CircuitPinner(tor.controller, tor.lanes, config.tor.deny_hosts, on_failure=self.metrics.circuit_failed,
                               timeout=config.tor.circuit_timeout, hops=config.tor.hops,
                               on_closed=self.metrics.stream_closed)
        pinner.start()
        session.on_close(pinner.stop)
        session.on_close(watch_consensus(tor.controller, lambda: self._refresh_consensus(tor.controller, geo)))
        fetchers, timeouts = build_fetchers(config, self.detector.classify)
        # Closing runs in reverse: no probe starts, the browsers are killed (ending the probes
        # they run, which a page's timeout would otherwise hold for minutes), then the probes end.
        session.on_close(lambda: session.prober and session.prober.shutdown(wait=True))
        for fetcher in fetchers.values():
            session.on_close(fetcher.close)
        session.fetchers = fetchers
        labels = {name: config.fetchers.label(name) for name in fetchers}
        for name, fetcher in fetchers.items():
            if hasattr(fetcher, "pool"):  # a browser fetcher
                fetcher.pool.on_restart = self.metrics.browsers(labels[name])
        first = self._lane_limit_first()
        limit = LaneLimit(os.cpu_count() or 1, first, len(tor.lanes)) if first else None
        session.prober = Prober(tor.lanes, lambda lane, exit: pin(pinner, self.planner, lane, exit), fetchers,
                                timeouts, self.detector.classify, self.record, baseline=self.baselines.get,
                                keep_evidence=self.keep_evidence, labels=labels, release=pinner.release_when_quiet,
                                limit=limit)
        session.on_close(lambda: session.prober.shutdown(wait=False))
        scheduler = Scheduler(config.schedule, session.prober, self.planner.candidates, self.state.last_attempted,
                              learn_baseline=lambda target: self.baselines.learn(target, self.config))
        if config.onionoo.enabled:  # every interval, retried sooner while it fails
            scheduler.every(min(config.onionoo.interval, ONIONOO_RETRY_SECONDS), lambda: self._read_onionoo(session),
                            "onionoo")
        if config.reports.daily:
            scheduler.every(REPORT_CHECK_SECONDS, self._write_daily_report, "reports")
        scheduler.start(config.targets)
        session.on_close(scheduler.shutdown)
        log.info("probing", extra={"tor_version": tor.version, "lanes": len(tor.lanes),
                                   "lane_limit": limit.limit if limit else len(tor.lanes),
                                   "exits": len(self.planner.selected), "targets": len(config.targets)})

    def _refresh_consensus(self, controller, geo: GeoLookup) -> None:
        """Re-read exits and weights; called at start and on every NEWCONSENSUS."""
        consensus = self.planner.refresh(controller, geo, geo.details)
        self.relays.saw((exit.fingerprint for exit in consensus.exits), consensus.valid_after.timestamp())
        self._prepare_series()
        log.info("consensus", extra={"valid_after": consensus.valid_after.isoformat(),
                                     "exits": len(consensus.exits), "selected": len(self.planner.selected)})

    def _read_onionoo(self, session: Session) -> None:
        """Relays' first-seen times from Onionoo, through a lane pinned to an exit that allows its port."""
        config = self.config
        read = self.relays.onionoo_success_time
        if read is not None and time.time() - read < config.onionoo.interval:
            return
        http = HttpFetcher(config.fetchers.http)
        timeout = config.fetchers.http.timeout

        def fetch(exit: ExitRelay, url: str):
            return session.prober.on_exit(exit, lambda lane: http.fetch(url, lane, timeout)).result().final

        self.relays.read_onionoo(config.onionoo.url, self.planner.allowing(target_port(config.onionoo.url)), fetch)

    def _write_daily_report(self) -> None:
        """Yesterday's report into data_dir/reports, once the UTC day is over; old reports removed."""
        config = self.config
        try:
            written = write_daily(config.data_dir, config.reports.format, config.reports.keep_days,
                                  datetime.now(UTC).date())
        except (StoreError, OSError) as exc:
            log.error("daily report failed", extra={"err": str(exc)})
            return
        if written is not None:
            log.info("daily report", extra={"path": str(written)})

    # -- each probe's result -----------------------------------------------

    def record(self, result: ProbeResult) -> None:
        measurement = self.state.record(result)
        self.store.record(result, evidence=result.evidence, measurement=measurement, redactor=self.redactor)
        self.metrics.observe(result)

    def keep_evidence(self, result: ProbeResult, screenshot: bytes | None) -> str | None:
        """Save what the probe saw (HAR, final HTML, screenshot, change diff); a failure to write
        costs only the evidence, never the probe's result."""
        try:
            directory = save_evidence(self.config.data_dir, result.probe_id, result.fetch, screenshot,
                                      self.config.evidence, diff=result.change.diff if result.change else None,
                                      redactor=self.redactor)
        except OSError as exc:
            log.warning("evidence not saved", extra={"probe_id": result.probe_id, "err": str(exc)})
            return None
        return str(directory)


def pin(pinner: CircuitPinner, planner: ExitPlanner, lane: Lane, exit: ExitRelay) -> None:
    """Pin ``lane`` to ``exit``; every failure becomes a PinError with reason ``circuit``."""
    consensus = planner.consensus
    if consensus is None:
        raise PinError("circuit", "no consensus")
    try:
        pinner.pin(lane, exit, consensus.relays)
    except CircuitError as exc:
        raise PinError("circuit", str(exc)) from exc
    except Exception as exc:  # e.g. the controller socket closed under us
        raise PinError("circuit", f"{type(exc).__name__}: {exc}") from exc
