"""`captcha-exporter run`: wire config → tor → plan → fetch → verdict → metrics, and keep it running.

The web endpoint comes up first and stays up: an unreachable or dying tor is
reported (logs, /-/ready, the landing page) and retried, never fatal.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from exporter import web
from exporter.baselines import Baselines
from exporter.config import Config, ConfigError, config_yaml, load_config
from exporter.detect import Detector, load_signatures
from exporter.evidence import save_evidence
from exporter.fetch import sandbox
from exporter.fetch.factory import fetcher_label, make_fetcher
from exporter.logs import setup_logging
from exporter.metrics import ProbeMetrics, Snapshot, StateCollector
from exporter.plan import select_exits
from exporter.probe import ProbeResult
from exporter.scheduler import PinError, Prober, Scheduler, auto_lanes, available_memory
from exporter.shard import Shard
from exporter.state import State
from exporter.store import Store, StoreError
from exporter.tor.circuit import CircuitPinner
from exporter.tor.consensus import Consensus, allows_port, read_exits, watch_consensus
from exporter.tor.control import OurTor, TorUnavailable, open_tor
from exporter.tor.geo import CountryLookup
from exporter.tor.relay import ExitRelay
from exporter.values import CircuitError, Fetcher, Lane
from exporter.web import WebServer

log = logging.getLogger(__name__)

RECONNECT_MAX_SECONDS = 60.0
RECENT_PROBES = 200  # shown on the landing page
WATCHDOG_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the YAML configuration file")
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
                        choices=["debug", "info", "warning", "error"], help="log level (default: info)")
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
        exporter = Exporter(config, shard, web_config=args.web_config_file)
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


def open_store(data_dir: Path) -> Store:
    """The SQLite state in ``data_dir`` (created if needed); StoreError names what is wrong."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {data_dir}: {exc.strerror}") from exc
    return Store(data_dir / "state.db")


def build_fetchers(config: Config, classify) -> tuple[dict[str, Fetcher], dict[str, float]]:
    """The fetchers the targets ask for, with each one's timeout; kinds that cannot be built are
    left out (their probes then count as `browser` errors) and logged."""
    fetchers, timeouts = {}, {}
    for kind in sorted({name for target in config.targets for name in target.fetchers} | {"http"}):
        try:
            fetchers[kind], timeouts[kind] = make_fetcher(kind, config.fetchers, classify)
        except Exception as exc:
            log.error("fetcher unavailable", extra={"fetcher": kind, "err": str(exc)})
    return fetchers, timeouts


class Exporter:
    """The running exporter: web endpoint, tor connection, scheduler, metrics."""

    def __init__(self, config: Config, shard: Shard = Shard(0, 1), web_config: str | None = None):
        self.shard = shard
        self.registry = CollectorRegistry()
        self.metrics = ProbeMetrics(self.registry)
        self.store = open_store(config.data_dir)
        self.state = State()
        self.state.restore(self.store.load_last(), self.store.load_attempts())
        self.baselines = Baselines(self.store)
        self.registry.register(StateCollector(self.snapshot, self.state))
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._restart = threading.Event()
        self._reload_lock = threading.Lock()
        self._reload_ok, self._reload_time = True, time.time()
        self._tor: OurTor | None = None
        self._tor_error = "connecting to tor"
        self._consensus: Consensus | None = None
        self._selected: list[ExitRelay] = []
        self._port_ok: dict[tuple[str, int], bool] = {}  # (fingerprint, port) known to be allowed
        self._plan: dict[str, tuple[float, tuple[str, ...]]] = {}  # target → (interval, exits it may use)
        self._pinner: CircuitPinner | None = None
        self._prober: Prober | None = None
        self._scheduler: Scheduler | None = None
        self._fetchers: dict[str, Fetcher] = {}
        self._geo: CountryLookup | None = None
        self._unwatch = None
        self._use(config)
        try:
            self.web = WebServer(self, config.web.listen_host, config.web.listen_port, web_config=web_config,
                                 allowed_hosts=config.web.allowed_hosts)
        except BaseException:
            self.store.close()
            raise

    def _use(self, config: Config) -> None:
        """Make ``config`` the one in force (the parts that do not need tor)."""
        self.config = config
        self.detector = Detector(load_signatures(list(config.detect_signatures)))
        self.pairs = tuple((t.name, fetcher_label(kind, config.fetchers))
                           for t in config.targets for kind in t.fetchers)
        self.metrics.prepare(self.pairs, self.shard.owned(self._consensus.exits) if self._consensus else [])
        self.state.forget_targets(t.name for t in config.targets)
        self.store.forget_targets(t.name for t in config.targets)
        self.baselines.forget({t.name for t in config.targets})

    def reload(self) -> tuple[bool, str]:
        """Re-read the config file; a bad one is rejected and the old one stays in force.

        A good one takes over at once: probing restarts with it (running probes
        finish first), series of removed targets disappear. Changing
        ``web.listen`` needs a restart of the process.
        """
        with self._reload_lock:
            try:
                config = load_config(self.config.source)
            except ConfigError as exc:
                self._reload_ok = False
                log.error("reload rejected; the old configuration stays in force", extra={"err": str(exc)})
                return False, str(exc)
            if config.web != self.config.web:
                log.warning("web.listen or web.allowed_hosts changed; that takes effect after a restart")
            self._use(config)
            self._reload_ok, self._reload_time = True, time.time()
            self._restart.set()
            log.info("configuration reloaded", extra={"targets": len(config.targets)})
            return True, f"reloaded {config.source}: {len(config.targets)} targets"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self.web.start()
        threading.Thread(target=self._keep_tor, name="tor-keeper", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self._restart.set()
        self.baselines.stop()
        self._teardown()
        self.web.stop()
        self.store.close()

    def _keep_tor(self) -> None:
        """Connect to tor, start probing, and start over whenever tor goes away."""
        delay = 1.0
        while not self._stopping.is_set():
            try:
                tor = open_tor(self.config.tor, lanes=self.lanes())
            except TorUnavailable as exc:
                self._tor_error = str(exc)
                log.error("tor unavailable", extra={"err": str(exc), "retry_seconds": delay})
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            delay = 1.0
            try:
                self._start_probing(tor)
            except Exception as exc:  # e.g. no consensus yet: report, drop this tor, retry
                self._tor_error = f"tor at {self.config.tor.control_host}:{self.config.tor.control_port}: {exc}"
                log.exception("could not start probing")
                self._teardown()
                self._stopping.wait(delay)
                continue
            while True:
                self._restart.wait(WATCHDOG_SECONDS)
                if self._stopping.is_set():
                    return
                if self._restart.is_set():  # a reload: start over with the config now in force
                    self._restart.clear()
                    self._teardown()
                    break
                if not tor.controller.is_alive():
                    self._tor_error = "lost the connection to tor; reconnecting"
                    log.error("lost tor", extra={"control": f"{self.config.tor.control_host}:"
                                                           f"{self.config.tor.control_port}"})
                    self._teardown()
                    break

    def lanes(self) -> int:
        """schedule.concurrency, or the lanes this machine can run ("auto")."""
        if self.config.schedule.concurrency:
            return self.config.schedule.concurrency
        browsers = any(kind != "http" for target in self.config.targets for kind in target.fetchers)
        return auto_lanes(os.cpu_count() or 1, available_memory(), browsers)

    def _start_probing(self, tor: OurTor) -> None:
        self._tor = tor
        self._geo = CountryLookup(self.config.geoip.country_db, tor.controller)
        self.refresh_consensus()
        hosts = {urlsplit(t.url).hostname for t in self.config.targets}
        self._pinner = CircuitPinner(tor.controller, tor.lanes, hosts, on_failure=self.metrics.circuit_failed,
                                     timeout=self.config.tor.circuit_timeout)
        self._pinner.start()
        self._unwatch = watch_consensus(tor.controller, self.refresh_consensus)
        self._fetchers, timeouts = build_fetchers(self.config, self.detector.classify)
        labels = {kind: fetcher_label(kind, self.config.fetchers) for kind in self._fetchers}
        self.metrics.fetchers_in_use({labels[kind]: getattr(f, "sandbox", "") for kind, f in self._fetchers.items()})
        self._prober = Prober(tor.lanes, self._pin, self._fetchers, timeouts, self.detector.classify, self.record,
                              baseline=self.baselines.get, keep_evidence=self.keep_evidence, labels=labels)
        self._scheduler = Scheduler(self.config.schedule, self._prober, self.candidates, self.state.last_attempted,
                                    learn_baseline=lambda target: self.baselines.learn(target, self.config))
        self._scheduler.start(self.config.targets)
        self._tor_error = ""
        log.info("probing", extra={"tor_version": tor.version, "lanes": len(tor.lanes),
                                   "exits": len(self._selected), "targets": len(self.config.targets)})

    def _teardown(self) -> None:
        """Stop probing and drop the tor connection (running probes finish or fail, and are counted)."""
        with self._lock:
            scheduler, prober, pinner, tor = self._scheduler, self._prober, self._pinner, self._tor
            fetchers, unwatch, geo = self._fetchers, self._unwatch, self._geo
            self._scheduler = self._prober = self._pinner = self._tor = self._unwatch = self._geo = None
            self._fetchers = {}
        if scheduler:
            scheduler.shutdown()
        if prober:
            prober.shutdown(wait=True)
        for step in (*(f.close for f in fetchers.values()), unwatch, pinner and pinner.stop, geo and geo.close,
                     tor and tor.close):
            if step:
                try:
                    step()
                except Exception as exc:  # tor or a browser may already be gone
                    log.debug("teardown step failed: %s", exc)

    # -- the data path -----------------------------------------------------

    def refresh_consensus(self) -> None:
        """Re-read exits and weights; called at start and on every NEWCONSENSUS."""
        tor = self._tor
        if tor is None:
            return
        consensus = read_exits(tor.controller, self._geo)
        # selection first, then the shard: every replica then agrees on top-N and on the sample
        selected = self.shard.owned(select_exits(consensus.exits, self.config.exits,
                                                 random.Random(consensus.valid_after.timestamp())))
        with self._lock:
            self._consensus, self._selected, self._port_ok = consensus, selected, {}
        self.metrics.prepare(self.pairs, self.shard.owned(consensus.exits))
        log.info("consensus", extra={"valid_after": consensus.valid_after.isoformat(),
                                     "exits": len(consensus.exits), "selected": len(selected)})

    def candidates(self, target) -> list[ExitRelay]:
        """Selected exits whose exit policy allows the target's port."""
        port = urlsplit(target.url).port or (443 if target.url.startswith("https") else 80)
        with self._lock:
            selected, tor = list(self._selected), self._tor
        if tor is None:
            return []
        allowed = []
        for exit in selected:
            key = (exit.fingerprint, port)
            # remember only a yes: a no may just mean the descriptor has not arrived yet
            if key in self._port_ok or allows_port(tor.controller, exit.fingerprint, port):
                self._port_ok[key] = True
                allowed.append(exit)
        self._plan[target.name] = (target.interval, tuple(e.fingerprint for e in allowed))
        return allowed

    def _pin(self, lane: Lane, exit: ExitRelay) -> None:
        pinner, consensus = self._pinner, self._consensus
        if pinner is None or consensus is None:
            raise PinError("circuit", "tor is not connected")
        try:
            pinner.pin(lane, exit, consensus.relays)
        except CircuitError as exc:
            raise PinError("circuit", str(exc)) from exc
        except Exception as exc:  # e.g. the controller socket closed under us
            raise PinError("circuit", f"{type(exc).__name__}: {exc}") from exc

    def record(self, result: ProbeResult) -> None:
        self.state.record(result)
        self.store.record(result, evidence=result.evidence)
        self.metrics.observe(result)

    def keep_evidence(self, result: ProbeResult, screenshot: bytes | None) -> str | None:
        """Save what the probe saw (HAR, final HTML, screenshot, change diff); a failure to write
        costs only the evidence, never the probe's result."""
        try:
            directory = save_evidence(self.config.data_dir, result.probe_id, result.fetch, screenshot,
                                      self.config.evidence, diff=result.change.diff if result.change else None)
        except OSError as exc:
            log.warning("evidence not saved", extra={"probe_id": result.probe_id, "err": str(exc)})
            return None
        return str(directory)

    # -- what the web endpoint shows ----------------------------------------

    def snapshot(self) -> Snapshot:
        consensus, prober, tor = self._consensus, self._prober, self._tor
        return Snapshot(
            # each replica exports its own exits; weights stay normalised over the whole consensus,
            # so per-replica coverage adds up across replicas
            exits=tuple(self.shard.owned(consensus.exits)) if consensus else (),
            valid_after=consensus.valid_after.timestamp() if consensus else None,
            tor_version=tor.version if tor else "",
            pairs=self.pairs,
            window=self.config.schedule.window,
            in_flight=prober.in_flight if prober else 0,
            queued=prober.queued if prober else 0,
            reload_successful=self._reload_ok,
            reload_success_time=self._reload_time,
            plan=tuple((t.name, *self._plan[t.name]) for t in self.config.targets if t.name in self._plan),
            backing_off=prober.backoff.count(time.time()) if prober else 0,
        )

    def ready(self) -> tuple[bool, str]:
        if self._tor is None or self._scheduler is None:
            return False, self._tor_error or "not connected to tor"
        if not self._consensus or not self._consensus.exits:
            return False, "no exits in the consensus"
        targets, exits = _count(len(self.config.targets), "target"), _count(len(self._selected), "exit")
        return True, f"probing {targets} through {exits}"

    def status(self) -> dict[str, str]:
        consensus, tor = self._consensus, self._tor
        return {
            "tor": f"{tor.version} at {self.config.tor.control_host}:{self.config.tor.control_port}" if tor
            else self._tor_error,
            "consensus valid after": consensus.valid_after.isoformat() if consensus else "none",
            "exits in consensus": str(len(consensus.exits)) if consensus else "0",
            "exits selected": str(len(self._selected)),
            "lanes": str(len(tor.lanes)) if tor else "0",
            "shard": f"{self.shard} of the exits",
            "targets": ", ".join(t.name for t in self.config.targets),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(_STARTED)),
        }

    def recent(self) -> list[dict]:
        return self.store.recent(RECENT_PROBES)

    def probe(self, probe_id: str) -> dict | None:
        return self.store.probe(probe_id)

    def evidence_dir(self) -> Path:
        return self.config.data_dir / "evidence"

    def config_text(self) -> str:
        return config_yaml(self.config)


_STARTED = time.time()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
