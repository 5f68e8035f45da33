"""`captcha-exporter probe`: one probe now, shown in full, like blackbox_exporter's ``debug=true``.

It prints the probe's log, the verdict with the markers that fired, the
metrics the probe would add, and the configuration it ran with. It uses the
same tor, planner, circuit, fetcher and detector code as the running exporter.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from exporter.config import FETCHER_KINDS, ConfigError, load_config
from exporter.config_schema import render
from exporter.detect import Detector, load_signatures
from exporter.fetch.factory import make_fetcher
from exporter.fetch.sandbox import SandboxError
from exporter.logs import LogfmtFormatter
from exporter.metrics import ProbeMetrics
from exporter.plan import next_exits, select_exits
from exporter.planner import target_port
from exporter.probe import ProbeResult, error_result, run_probe
from exporter.redact import Redactor
from exporter.tor.circuit import CircuitPinner
from exporter.tor.consensus import allows_port, read_exits
from exporter.tor.control import TorUnavailable, open_tor
from exporter.tor.geo import GeoLookup
from exporter.values import CircuitError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config.file", "--config", dest="config", required=True, metavar="FILE",
                        help="the YAML configuration file")
    parser.add_argument("--target", required=True, help="the target's name")
    parser.add_argument("--exit", metavar="FINGERPRINT", help="probe through this exit (default: the heaviest allowed)")
    parser.add_argument("--fetcher", help="fetcher kind or variant name (default: the target's first)")


class _Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(LogfmtFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 1
    target = next((t for t in config.targets if t.name == args.target), None)
    if target is None:
        print(f"error: no target named {args.target!r} (targets: {', '.join(t.name for t in config.targets)})")
        return 1
    kind = args.fetcher or target.fetchers[0]
    known = (*FETCHER_KINDS, *config.fetchers.variants)
    if kind not in known:
        print(f"error: no fetcher named {kind!r} (fetchers: {', '.join(known)})")
        return 1
    captured = _Captured()
    root = logging.getLogger()
    root.addHandler(captured)
    root.setLevel(logging.DEBUG)
    for noisy in ("stem", "urllib3", "selenium"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        result = _probe_once(config, target, kind, args.exit)
    except (TorUnavailable, LookupError, ValueError, SandboxError) as exc:
        print(f"error: {exc}")
        return 1
    finally:
        root.removeHandler(captured)
    print(report(result, captured.lines, config, target, kind))
    return 0 if result.answered else 1


def _probe_once(config, target, kind: str, fingerprint: str | None) -> ProbeResult:
    detector = Detector(load_signatures(list(config.detect_signatures)))
    fetcher, timeout = make_fetcher(kind, config.fetchers, detector.classify)
    tor = open_tor(config.tor, lanes=1)
    geo = GeoLookup(config.geoip.country_db, tor.controller, config.geoip.asn_db)
    pinner = CircuitPinner(tor.controller, tor.lanes, config.tor.deny_hosts, timeout=config.tor.circuit_timeout,
                           hops=config.tor.hops)
    try:
        consensus = read_exits(tor.controller, geo, geo.details)
        exit = _choose_exit(tor.controller, consensus.exits, config, target, fingerprint)
        log.info("probing", extra={"target": target.name, "exit": exit.fingerprint, "nickname": exit.nickname,
                                   "country": exit.country, "fetcher": kind, "url": target.url})
        pinner.start()
        try:
            pinner.pin(tor.lanes[0], exit, consensus.relays)
        except CircuitError as exc:
            return error_result(target, fetcher.name, exit, "circuit", str(exc))
        return run_probe(target, exit, fetcher, tor.lanes[0], detector.classify, timeout)
    finally:
        for step in (fetcher.close, pinner.stop, geo.close, tor.close):
            try:
                step()
            except Exception as exc:
                log.debug("cleanup step failed", extra={"step": step.__qualname__, "err": str(exc)})


def _choose_exit(controller, exits, config, target, fingerprint: str | None):
    if fingerprint:
        wanted = fingerprint.upper().lstrip("$")
        for exit in exits:
            if exit.fingerprint == wanted:
                return exit
        raise LookupError(f"exit {wanted} is not an exit in the current consensus")
    port = target_port(target.url)
    allowed = [e for e in select_exits(exits, config.exits) if allows_port(controller, e.fingerprint, port)]
    if not allowed:
        raise LookupError(f"no selected exit allows port {port}")
    return next_exits(allowed, 1, {})[0]


def report(result: ProbeResult, log_lines: list[str], config, target, kind: str) -> str:
    """What ``exporter probe`` prints about one probe, with the config's secrets redacted."""
    registry = CollectorRegistry()
    metrics = ProbeMetrics(registry)
    metrics.prepare([(result.target, result.fetcher)], [result.exit])  # metrics count configured targets only
    metrics.observe(result)
    added = [line for line in generate_latest(registry).decode().splitlines()
             if line and not line.startswith("#") and not line.endswith(" 0.0") and "_created" not in line]
    if result.verdict is not None:
        fetch = result.fetch
        verdict = [f"verdict: {result.verdict.kind}", f"provider: {result.verdict.provider or '-'}",
                   f"markers: {', '.join(result.verdict.markers) or '-'}",
                   f"first response: {fetch.first.status} {fetch.first.url}",
                   f"final page: {fetch.final.status} {fetch.final.url}",
                   f"redirects: {', '.join(fetch.redirects) or '-'}",
                   f"outcome: {fetch.outcome or '-'}", f"load seconds: {fetch.load_seconds:.3f}"]
    else:
        verdict = [f"no answer: {result.error_reason}", f"error: {result.error_message}"]
    exit = dataclasses.asdict(result.exit)
    module = {"target": render(target),
              "fetcher": {kind: render(config.fetchers.resolve(kind)[1])},
              "exit": {**exit, "flags": sorted(exit["flags"])}}
    return Redactor.of(config).text("\n".join([
        f"Probe {result.probe_id}", "",
        "Logs for the probe:", *log_lines, "",
        "Verdict:", *verdict, "",
        "Metrics that would have been added:", *added, "",
        "Module configuration:", yaml.safe_dump(module, sort_keys=False).rstrip(),
    ]))
