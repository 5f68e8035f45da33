"""How long /metrics takes to render at scale, against plain series (a benchmark, not a test).

    python bench/metrics_render.py [--exits 1500] [--targets 50] [--countries 40] [--runs 30]
                                   [--format text|openmetrics] [--profile]

The exporter side is the real thing: ProbeMetrics fed one answered probe per
exit and target (one fetcher; each target behind one gate vendor) through
``observe``, a State holding the same
probes, and the StateCollector computing the weighted ratio at render time.
The plain side is a registry of Gauges with exactly the samples the exporter
renders (same names, label names and label values), so both outputs have the
same number of lines and nearly the same bytes; the difference is the work
behind them. Both are rendered alternately with prometheus_client's encoder
and timed in this process's CPU time, so other work on the machine does not
inflate either side. Goal: exporter ≤ 2 × plain.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import random
import statistics
import sys
import time

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)

from exporter.metrics import ProbeMetrics, Snapshot, StateCollector
from exporter.probe import ProbeResult
from exporter.state import State
from exporter.tor.relay import ExitRelay
from exporter.values import FetchResult, Response, Verdict

COUNTRIES = ("DE", "US", "NL", "FR", "SE", "CH", "GB", "CA", "FI", "AT", "RO", "PL", "LU", "NO", "CZ", "ES",
             "IT", "BG", "DK", "UA", "LT", "LV", "EE", "IS", "IE", "BE", "PT", "HU", "SK", "SI", "HR", "RS",
             "MD", "JP", "SG", "AU", "BR", "AR", "HK", "??")
GATES = ("cloudflare", "akamai", "datadome", "perimeterx", "imperva", "aws-waf")
WIDGETS = ("recaptcha", "hcaptcha", "turnstile")
ENCODERS = {"text": generate_latest, "openmetrics": generate_openmetrics}


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


def exporter_registry(exits: list[ExitRelay], targets: list[str], rng: random.Random) -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics, state = ProbeMetrics(registry), State()
    pairs = tuple((target, "chromium") for target in targets)
    metrics.prepare(pairs, exits)
    now = time.time()
    for t, target in enumerate(targets):
        for e, exit in enumerate(exits):
            result = probe_result(target, GATES[t % len(GATES)], WIDGETS[t % len(WIDGETS)], exit, rng, now,
                                  t * len(exits) + e)
            state.record(result)
            metrics.observe(result)
    snapshot = Snapshot(exits=tuple(exits), valid_after=now - 1800, tor_version="0.4.9.3", pairs=pairs)
    registry.register(StateCollector(lambda: snapshot, state))
    return registry


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


def time_renders(registries: dict[str, CollectorRegistry], encode, runs: int) -> dict[str, list[float]]:
    """CPU seconds of each render, the registries taking turns so drifts hit both alike."""
    times: dict[str, list[float]] = {name: [] for name in registries}
    for _ in range(runs):
        for name, registry in registries.items():
            start = time.process_time()
            encode(registry)
            times[name].append(time.process_time() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exits", type=int, default=1500)
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--countries", type=int, default=40, choices=range(1, len(COUNTRIES) + 1),
                        metavar=f"1..{len(COUNTRIES)}")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--format", choices=sorted(ENCODERS), default="text")
    parser.add_argument("--profile", action="store_true", help="profile exporter renders (cProfile) afterwards")
    args = parser.parse_args()

    rng = random.Random(9)
    exits = make_exits(args.exits, args.countries, rng)
    targets = [f"site-{i:02d}" for i in range(args.targets)]
    build = time.process_time()
    exporter = exporter_registry(exits, targets, rng)
    build = time.process_time() - build
    plain = plain_registry(exporter)
    encode = ENCODERS[args.format]
    times = time_renders({"exporter": exporter, "plain": plain}, encode, args.runs)
    ours, theirs = statistics.median(times["exporter"]), statistics.median(times["plain"])

    print("command:", " ".join([sys.executable, *sys.argv]))
    print(f"{args.exits} exits x {args.targets} targets (1 fetcher, {args.countries} countries); "
          f"{args.exits * args.targets} probes recorded in {build:.1f} s CPU")
    print(f"series: exporter {series_count(exporter)}, plain {series_count(plain)}; "
          f"bytes: exporter {len(encode(exporter))}, plain {len(encode(plain))} ({args.format})")
    print(f"median CPU per render over {args.runs} runs: exporter {ours * 1000:.1f} ms, "
          f"plain {theirs * 1000:.1f} ms, ratio {ours / theirs:.2f} (goal <= 2.00)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [encode(exporter) for _ in range(5)])
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
