"""What /metrics costs at scale: series, bytes, and a scrape against prometheus_client's own render.

    python bench/metrics_render.py [--exits 1500] [--targets 50] [--countries 40] [--scrapes 20]
                                   [--probes-per-second 1] [--runs 10] [--profile]

The exporter side is the real thing: ProbeMetrics fed one answered probe per
exit and target (one fetcher; each target behind one gate vendor) through
``observe``, a State holding the same probes, the StateCollector computing the
weighted ratio at render time, and the Exposition and WebServer that serve
/metrics. It prints, for that state:

- series with and without prometheus_client's ``_created`` series, and the
  zero series made before any probe (``prepare``) at 3 fetchers per target;
- bytes per scrape, plain and gzipped, in both formats;
- the scrape-time ratio: the mean wall time of a real GET /metrics (as
  Prometheus asks: OpenMetrics, gzip) against the mean wall time of
  prometheus_client's own render of the same registry, taking turns in one
  run, while a thread keeps recording new probes (the state changes between
  scrapes, as in production). Goal: <= 0.10;
- the render CPU against a registry of plain Gauges with the same samples
  (collector overhead; goal <= 2).
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import hashlib
import os
import pstats
import random
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    enable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)

from exporter.exposition import Exposition
from exporter.metrics import ProbeMetrics, Snapshot, StateCollector
from exporter.probe import ProbeResult
from exporter.state import State
from exporter.tor.relay import ExitRelay
from exporter.values import FetchResult, Response, Verdict
from exporter.web import WebServer

COUNTRIES = ("DE", "US", "NL", "FR", "SE", "CH", "GB", "CA", "FI", "AT", "RO", "PL", "LU", "NO", "CZ", "ES",
             "IT", "BG", "DK", "UA", "LT", "LV", "EE", "IS", "IE", "BE", "PT", "HU", "SK", "SI", "HR", "RS",
             "MD", "JP", "SG", "AU", "BR", "AR", "HK", "??")
GATES = ("cloudflare", "akamai", "datadome", "perimeterx", "imperva", "aws-waf")
WIDGETS = ("recaptcha", "hcaptcha", "turnstile")
FETCHERS = ("chromium", "http", "tor-browser-standard")
# what Prometheus 2.x sends with exemplar storage on
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def make_exits(count: int, countries: int, rng: random.Random) -> list[ExitRelay]:
    """Exits with real-looking fingerprints and nicknames, long-tailed weights summing to 1."""
    raw = [rng.paretovariate(1.2) for _ in range(count)]
    total = sum(raw)
    return [ExitRelay(fingerprint=hashlib.sha1(f"exit{i}".encode()).hexdigest().upper(),
                      nickname=f"torexit{i:04d}", address=f"192.0.2.{i % 250 + 1}",
                      flags=frozenset({"Exit", "Fast", "Running", "Valid"}), bandwidth=int(w * 1000),
                      probability=w / total, country=COUNTRIES[i % countries])
            for i, w in enumerate(raw)]


def probe_result(target: str, gate: str, widget: str, exit: ExitRelay, rng: random.Random, now: float,
                 serial: int) -> ProbeResult:
    """One answered probe of ``target`` (behind ``gate``, embedding ``widget``) through ``exit``:
    mostly ok, some challenged or blocked, a few widgets and error pages."""
    draw = rng.random()
    if draw < 0.55:
        verdict, outcome = Verdict("ok"), None
    elif draw < 0.75:
        verdict, outcome = Verdict("challenge", gate), rng.choice(("cleared", "interactive"))
    elif draw < 0.85:
        verdict, outcome = Verdict("block", gate), "blocked"
    elif draw < 0.95:
        verdict, outcome = Verdict("widget", widget), None
    else:
        verdict, outcome = Verdict("error", gate), None
    page = Response(f"https://{target}.example/", 200)
    fetch = FetchResult(page, page, load_seconds=rng.uniform(0.5, 30), outcome=outcome,
                        clear_seconds=rng.uniform(1, 10) if outcome == "cleared" else None)
    return ProbeResult(probe_id=f"20261122T031500Z-{serial:06x}", target=target, fetcher="chromium", exit=exit,
                       started=now - rng.uniform(0, 80000), duration=fetch.load_seconds,
                       verdict=verdict, fetch=fetch)


class Scale:
    """The exporter's registry at scale, and what records one more probe into it."""

    def __init__(self, exits: list[ExitRelay], targets: list[str], rng: random.Random):
        self.registry = CollectorRegistry()
        process = CollectorRegistry()
        ProcessCollector(registry=process)
        self.exposition = Exposition(self.registry, live=process)  # as app.Exporter makes it
        self.metrics, self.state = ProbeMetrics(self.registry, changed=self.exposition.changed), State()
        self.exits, self.targets, self.rng = exits, targets, rng
        pairs = tuple((target, "chromium") for target in targets)
        self.metrics.prepare(pairs, exits)
        now = time.time()
        self.serial = 0
        for target in targets:
            for exit in exits:
                self.record(target, exit, now)
        snapshot = Snapshot(tor_up=True, exits=tuple(exits), valid_after=now - 1800, tor_version="0.4.9.3",
                            pairs=pairs, schedules=tuple((target, 600.0, 10) for target in targets))
        self.registry.register(StateCollector(lambda: snapshot, self.state))

    def record(self, target: str, exit: ExitRelay, now: float) -> None:
        t = self.targets.index(target)
        result = probe_result(target, GATES[t % len(GATES)], WIDGETS[t % len(WIDGETS)], exit, self.rng, now,
                              self.serial)
        self.serial += 1
        self.state.record(result)
        self.metrics.observe(result)

    def record_any(self) -> None:
        self.record(self.rng.choice(self.targets), self.rng.choice(self.exits), time.time())


def zero_series(exits: list[ExitRelay], targets: list[str]) -> int:
    """Series made before any probe: prepare() for every target with three fetchers."""
    registry = CollectorRegistry()
    ProbeMetrics(registry).prepare([(t, f) for t in targets for f in FETCHERS], exits)
    return series_count(registry)


def plain_registry(model: CollectorRegistry) -> CollectorRegistry:
    """Gauges holding the same samples as ``model``: one Gauge per sample name."""
    registry = CollectorRegistry()
    by_name: dict[str, list] = {}
    for family in model.collect():
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append(sample)
    for name, samples in by_name.items():
        labels = sorted(samples[0].labels)
        gauge = Gauge(name, f"Plain copy of {name}.", labels, registry=registry)
        for sample in samples:
            (gauge.labels(*(sample.labels[k] for k in labels)) if labels else gauge).set(sample.value)
    return registry


def series_count(registry: CollectorRegistry) -> int:
    return sum(len(family.samples) for family in registry.collect())


class View:
    """What the WebServer needs, for /metrics alone."""

    def __init__(self, exposition: Exposition):
        self.exposition = exposition


def time_renders(registries: dict[str, CollectorRegistry], encode, runs: int) -> dict[str, list[float]]:
    """CPU seconds of each render, the registries taking turns so drifts hit both alike."""
    times: dict[str, list[float]] = {name: [] for name in registries}
    for _ in range(runs):
        for name, registry in registries.items():
            start = time.process_time()
            encode(registry)
            times[name].append(time.process_time() - start)
    return times


def time_scrapes(scale: Scale, scrapes: int, probes_per_second: float) -> tuple[list[float], list[float], int]:
    """Wall seconds of GET /metrics (as Prometheus asks) and of prometheus_client rendering the same
    registry, taking turns, while a thread records probes; returns both and the gzipped bytes served."""
    server = WebServer(View(scale.exposition), "127.0.0.1", 0)
    server.start()
    stop = threading.Event()

    def keep_probing():
        while not stop.wait(1 / probes_per_second):
            scale.record_any()

    prober = threading.Thread(target=keep_probing, daemon=True)
    prober.start()
    host, port = server.address
    request = urllib.request.Request(f"http://{host}:{port}/metrics",
                                     headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    responses, renders, served = [], [], 0
    try:
        for round_ in range(scrapes + 1):
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=120) as answer:
                body = answer.read()
            took = time.perf_counter() - start
            assert answer.headers["Content-Encoding"] == "gzip"
            if round_:  # the first scrape renders the format for the first time
                responses.append(took)
                served = len(body)
            start = time.perf_counter()
            generate_openmetrics(scale.registry)
            renders.append(time.perf_counter() - start)
            time.sleep(1.0)
    finally:
        stop.set()
        prober.join()
        server.stop()
        scale.exposition.stop()
    gzip.decompress(body)  # a valid gzip stream (two members)
    return responses, renders, served


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exits", type=int, default=1500)
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--countries", type=int, default=40, choices=range(1, len(COUNTRIES) + 1),
                        metavar=f"1..{len(COUNTRIES)}")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--probes-per-second", type=float, default=1.0,
                        help="probes recorded while scraping (50 targets x 10 exits every 10 min: 0.83)")
    parser.add_argument("--runs", type=int, default=10, help="renders for the collector-overhead comparison")
    parser.add_argument("--profile", action="store_true", help="profile exporter renders (cProfile) afterwards")
    args = parser.parse_args()

    rng = random.Random(9)
    exits = make_exits(args.exits, args.countries, rng)
    targets = [f"site-{i:02d}" for i in range(args.targets)]
    build = time.process_time()
    scale = Scale(exits, targets, rng)
    build = time.process_time() - build
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"{args.exits} exits x {args.targets} targets (1 fetcher, {args.countries} countries); "
          f"{args.exits * args.targets} probes recorded in {build:.1f} s CPU")

    enable_created_metrics()
    with_created = series_count(scale.registry)
    disable_created_metrics()
    without = series_count(scale.registry)
    print(f"series: {without} without _created (the default), {with_created} with them; zero series before "
          f"the first probe at 3 fetchers per target: {zero_series(exits, targets)}")

    for name, encode in (("OpenMetrics", generate_openmetrics), ("text", generate_latest)):
        plain = encode(scale.registry)
        print(f"bytes per scrape, {name}: {len(plain)} plain, {len(gzip.compress(plain, 6))} gzipped")

    responses, renders, served = time_scrapes(scale, args.scrapes, args.probes_per_second)
    ours, theirs = statistics.mean(responses), statistics.mean(renders)
    print(f"scrape (GET /metrics, OpenMetrics, gzip: {served} bytes) vs prometheus_client render, "
          f"wall time, {len(responses)} each, taking turns, {args.probes_per_second:g} probes/s recorded meanwhile:")
    print(f"  mean {ours * 1000:.1f} ms vs {theirs * 1000:.1f} ms, ratio {ours / theirs:.3f} (goal <= 0.10); "
          f"median {statistics.median(responses) * 1000:.1f} vs {statistics.median(renders) * 1000:.1f} ms")
    print(f"  bytes served are at most ~{scale.exposition.render_seconds / 0.1:.1f} s behind the probes "
          "(renders spaced to a tenth of a CPU)")

    plain_registry_ = plain_registry(scale.registry)
    times = time_renders({"exporter": scale.registry, "plain": plain_registry_}, generate_latest, args.runs)
    cpu_ours, cpu_plain = statistics.median(times["exporter"]), statistics.median(times["plain"])
    print(f"render CPU (text), median of {args.runs}: exporter {cpu_ours * 1000:.1f} ms, plain gauges "
          f"{cpu_plain * 1000:.1f} ms, ratio {cpu_ours / cpu_plain:.2f} (goal <= 2.00)")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [generate_latest(scale.registry) for _ in range(5)])
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
