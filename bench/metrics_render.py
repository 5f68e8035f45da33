"""What /metrics costs at scale: series, bytes, and a scrape against prometheus_client's own render.

    python bench/metrics_render.py [--exits 1500] [--targets 50] [--fetchers 2] [--countries 40]
                                   [--scrapes 20] [--probes-per-second 1] [--runs 10] [--profile]

The exporter side is the real thing: ProbeMetrics fed one answered probe per
exit, target and fetcher through Tor and one direct probe per target and
fetcher (each target behind one gate vendor) through ``observe``, a State
holding the same probes, the StateCollector computing the weighted ratio and
the target × exit gate runs at render time (exits with continent, AS and
first-seen, a ``captcha_fetcher_info`` per fetcher), and the Exposition and
WebServer that serve /metrics. It prints, for that state:

- series with and without prometheus_client's ``_created`` series, against
  the budget of 150,000 at 1,500 exits x 50 targets x 2 fetchers, the part of
  them that the ``route`` label and the target × exit gate runs add, and the
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
from exporter.metrics import FetcherInfo, ProbeMetrics, Snapshot, StateCollector
from exporter.probe import ProbeResult
from exporter.state import State
from exporter.tor.relay import ExitRelay
from exporter.values import FetchResult, Response, Route, Verdict
from exporter.web import WebServer

COUNTRIES = ("DE", "US", "NL", "FR", "SE", "CH", "GB", "CA", "FI", "AT", "RO", "PL", "LU", "NO", "CZ", "ES",
             "IT", "BG", "DK", "UA", "LT", "LV", "EE", "IS", "IE", "BE", "PT", "HU", "SK", "SI", "HR", "RS",
             "MD", "JP", "SG", "AU", "BR", "AR", "HK", "??")
GATES = ("cloudflare", "akamai", "datadome", "perimeterx", "imperva", "aws-waf")
WIDGETS = ("recaptcha", "hcaptcha", "turnstile")
FETCHERS = ("chromium", "tor-browser-safest", "http")
CONTINENTS = {"US": "NA", "CA": "NA", "JP": "AS", "SG": "AS", "HK": "AS", "AU": "OC", "BR": "SA", "AR": "SA"}
SERIES_BUDGET = 150_000  # at 1,500 exits x 50 targets x 2 fetchers (issue #14)
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
                      probability=w / total, country=COUNTRIES[i % countries],
                      continent=CONTINENTS.get(COUNTRIES[i % countries], "EU"), asn=f"AS{64496 + i % 300}",
                      as_name=f"Hosting Network {i % 300}")
            for i, w in enumerate(raw)]


def probe_result(target: str, fetcher: str, gate: str, widget: str, exit: ExitRelay | None, rng: random.Random,
                 now: float, serial: int) -> ProbeResult:
    """One answered probe of ``target`` (behind ``gate``, embedding ``widget``) with ``fetcher`` through
    ``exit`` (None: direct): mostly ok, some challenged or blocked, a few widgets and error pages."""
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
    return ProbeResult(probe_id=f"20261122T031500Z-{serial:06x}", target=target, fetcher=fetcher, exit=exit,
                       started=now - rng.uniform(0, 80000), duration=fetch.load_seconds,
                       verdict=verdict, fetch=fetch, route=Route.TOR if exit else Route.DIRECT)


class Scale:
    """The exporter's registry at scale, and what records one more probe into it."""

    def __init__(self, exits: list[ExitRelay], targets: list[str], fetchers: tuple[str, ...], rng: random.Random):
        self.registry = CollectorRegistry()
        process = CollectorRegistry()
        ProcessCollector(registry=process)
        self.exposition = Exposition(self.registry, live=process)  # as app.Exporter makes it
        self.metrics, self.state = ProbeMetrics(self.registry, changed=self.exposition.changed), State()
        self.exits, self.targets, self.fetchers, self.rng = exits, targets, fetchers, rng
        pairs = tuple((target, fetcher) for target in targets for fetcher in fetchers)
        self.metrics.prepare(pairs, exits, direct=pairs)
        now = time.time()
        self.serial = 0
        for target, fetcher in pairs:
            for exit in [*exits, None]:
                self.record(target, fetcher, exit, now)
        snapshot = Snapshot(tor_up=True, exits=tuple(exits), valid_after=now - 1800, tor_version="0.4.9.3",
                            pairs=pairs, schedules=tuple((target, 600.0, 10) for target in targets),
                            first_seen={e.fingerprint: now - rng.uniform(0, 5e7) for e in exits},
                            onionoo_success_time=now - 600,
                            fetchers=tuple(FetcherInfo(f, f.split("-safest")[0], "firefox" if "tor" in f else "chrome",
                                                       "140.3.0esr", "security_level=safest" if "safest" in f else "")
                                           for f in fetchers))
        self.registry.register(StateCollector(lambda: snapshot, self.state))

    def record(self, target: str, fetcher: str, exit: ExitRelay | None, now: float) -> None:
        t = self.targets.index(target)
        result = probe_result(target, fetcher, GATES[t % len(GATES)], WIDGETS[t % len(WIDGETS)], exit, self.rng,
                              now, self.serial)
        self.serial += 1
        self.state.record(result)  # as app.Exporter.record: the state keeps Tor probes only
        self.metrics.observe(result)

    def record_any(self) -> None:
        self.record(self.rng.choice(self.targets), self.rng.choice(self.fetchers), self.rng.choice(self.exits),
                    time.time())


def zero_series(exits: list[ExitRelay], targets: list[str]) -> int:
    """Series made before any probe: prepare() for every target with three fetchers, both routes."""
    registry = CollectorRegistry()
    pairs = [(t, f) for t in targets for f in FETCHERS]
    ProbeMetrics(registry).prepare(pairs, exits, direct=pairs)
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


def series_count(registry: CollectorRegistry, which=lambda sample: True) -> int:
    return sum(1 for family in registry.collect() for sample in family.samples if which(sample))


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
    parser.add_argument("--fetchers", type=int, default=2, choices=range(1, len(FETCHERS) + 1),
                        metavar=f"1..{len(FETCHERS)}", help=f"of {', '.join(FETCHERS)}")
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
    fetchers = FETCHERS[:args.fetchers]
    scale = Scale(exits, targets, fetchers, rng)
    build = time.process_time() - build
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"{args.exits} exits x {args.targets} targets x {len(fetchers)} fetchers ({', '.join(fetchers)}; "
          f"{args.countries} countries); {(args.exits + 1) * args.targets * len(fetchers)} probes recorded "
          f"(one direct per target and fetcher) in {build:.1f} s CPU")

    enable_created_metrics()
    with_created = series_count(scale.registry)
    disable_created_metrics()
    without = series_count(scale.registry)
    print(f"series: {without} without _created (the default; budget {SERIES_BUDGET}), {with_created} with them; "
          f"zero series before the first probe at 3 fetchers per target: {zero_series(exits, targets)}")
    direct = series_count(scale.registry, lambda sample: sample.labels.get("route") == Route.DIRECT)
    gate_runs = series_count(scale.registry, lambda sample: sample.name.startswith("captcha_exit_gate_"))
    print(f"  of which route=\"direct\": {direct}; target x exit gate runs (captcha_exit_gate_*): {gate_runs}")

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
