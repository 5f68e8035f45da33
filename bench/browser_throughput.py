"""Chromium probes per minute: the exporter's Prober against the 2020 method (a benchmark, not a test).

    unshare --net sh -c 'ip link set lo up && python bench/browser_throughput.py [--rounds 2] [--lanes 1 2 3]'

Boots a test bed whose sites answer their real pages (``--default-policy``:
the spread of challenges and blocks instead; ``--server-delay S``: every
response S seconds late, as from a distant server over the real Tor network,
where probes wait on the network rather than the CPU) and runs the same
probes, every site through every exit ``--rounds`` times, in two ways:

- the 2020 method (CAPTCHA Monitor): one probe at a time, each on a new
  circuit, in a Chromium started for it and quit after;
- ours: the exporter's ``Prober`` with N lanes and a warm Chromium per lane
  (recycled as configured, every 100 probes by default), one circuit per exit
  serving every target due on it; once for each N in ``--lanes``.

Both judge each page with ``run_probe`` and the real detector.  Prints
probes per minute, the ratio to the 2020 method, and where the 2020 method's
time goes (circuit, browser start, page, browser quit).  Wall-clock times on a
shared machine: compare ratios within one run, and read the load printed with them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict

from bench_bed import BedProcess, PinnedLanes, command_line, load_average
from selenium.webdriver.remote.webdriver import WebDriver

from exporter.config import BrowserFetcherConfig, Target
from exporter.detect import classify
from exporter.fetch.chromium import ChromiumFetcher
from exporter.probe import ProbeResult, run_probe
from exporter.scheduler import Prober
from exporter.tor.relay import ExitRelay
from testbed.pages import SITES
from testbed.processes import exit_on_termination_signals

TIMEOUT = 60.0


def targets_of(bed: BedProcess) -> list[Target]:
    return [Target(name=site, url=url, interval=600.0, fetchers=("chromium",), exits_per_run=len(bed.state["exits"]))
            for site, url in sorted(bed.state["edge"]["sites"].items())]


def tally(results: list[ProbeResult]) -> str:
    kinds = Counter(r.verdict.kind if r.verdict else f"error:{r.error_reason}" for r in results)
    return ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))


def run_2020_method(lanes: PinnedLanes, cfg: BrowserFetcherConfig, plan: list[tuple[Target, ExitRelay]],
                    phases: dict[str, list[float]]) -> list[ProbeResult]:
    """One probe at a time: new circuit, new browser, probe, quit."""
    lane, results = lanes.lanes[0], []
    for target, exit in plan:
        clock = time.perf_counter()
        lanes.pin(lane, exit)
        phases["circuit"].append(time.perf_counter() - clock)
        fetcher = ChromiumFetcher(cfg, classify)
        clock = time.perf_counter()
        fetcher.pool.acquire(lane)  # the start, timed apart from the page
        phases["browser start"].append(time.perf_counter() - clock)
        try:
            clock = time.perf_counter()
            results.append(run_probe(target, exit, fetcher, lane, classify, TIMEOUT))
            phases["page (wipe, load, judge)"].append(time.perf_counter() - clock)
        finally:
            clock = time.perf_counter()
            fetcher.close()
            phases["browser quit"].append(time.perf_counter() - clock)
    return results


def run_prober(lanes: PinnedLanes, count: int, cfg: BrowserFetcherConfig, targets: list[Target], rounds: int,
               phases: dict[str, list[float]]) -> list[ProbeResult]:
    """Every target on every exit, ``rounds`` times, through the Prober on ``count`` lanes."""
    results: list[ProbeResult] = []
    done = threading.Condition()

    def record(result: ProbeResult) -> None:
        with done:
            results.append(result)
            done.notify()

    def timed_pin(lane, exit) -> None:
        clock = time.perf_counter()
        lanes.pin(lane, exit)
        phases["circuit"].append(time.perf_counter() - clock)

    fetcher = ChromiumFetcher(cfg, classify)
    prober = Prober(lanes.lanes[:count], timed_pin, {"chromium": fetcher}, {"chromium": TIMEOUT}, classify, record)
    try:
        for _ in range(rounds):
            expected = len(results) + sum(
                prober.submit(target, exit)  # as the scheduler does: each target run queues it on its exits
                for target in targets for exit in lanes.exits)
            with done:
                done.wait_for(lambda expected=expected: len(results) >= expected)
    finally:
        prober.shutdown()
        fetcher.close()
    phases["page (wipe, load, judge)"] = [r.duration for r in results]
    phases["browsers started"] = [float(count + fetcher.pool.recycled)]
    return results


class DriverCommandTimes:
    """Wall time of every WebDriver command, by command name (wraps ``WebDriver.execute`` while entered)."""

    def __init__(self):
        self.times: dict[str, list[float]] = defaultdict(list)

    def __enter__(self):
        self._execute = original = WebDriver.execute
        times = self.times

        def timed(driver, command, params=None):
            clock = time.perf_counter()
            try:
                return original(driver, command, params)
            finally:
                name = (params or {}).get("cmd") or command  # CDP commands by their CDP name
                times[name].append(time.perf_counter() - clock)

        WebDriver.execute = timed
        return self

    def __exit__(self, *exc):
        WebDriver.execute = self._execute

    def report(self, probes: int) -> str:
        rows = sorted(self.times.items(), key=lambda item: -sum(item[1]))
        return "\n".join(f"{'':>19}{name:<28} {sum(values) / probes * 1000:7.1f} ms per probe "
                         f"({len(values) / probes:.1f} calls, median {statistics.median(values) * 1000:.1f} ms)"
                         for name, values in rows)


def describe(phases: dict[str, list[float]]) -> str:
    return "; ".join(f"{name} {statistics.median(values):.2f} s median × {len(values)}"
                     if name != "browsers started" else f"{name} {values[0]:.0f}"
                     for name, values in phases.items() if values)


def edge_policy(server_delay: float | None) -> str:
    """Real pages everywhere, each response ``server_delay`` seconds late if given."""
    if not server_delay:
        return "{}\n"
    return "sites:\n" + "".join(f"  {site}: {{default: {{behaviour: slow, seconds: {server_delay}}}}}\n" for site in SITES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times every site is probed through every exit")
    parser.add_argument("--lanes", type=int, nargs="+", default=[1, 2, 3], help="lane counts to measure ours with")
    parser.add_argument("--exits", type=int, default=4, help="test-bed exits (default 4)")
    parser.add_argument("--driver-profile", action="store_true",
                        help="also print the time spent in each WebDriver command, per probe")
    parser.add_argument("--default-policy", action="store_true",
                        help="the test bed's spread of challenges and blocks instead of real pages everywhere")
    parser.add_argument("--server-delay", type=float, metavar="SECONDS",
                        help="every site answers its real page this late (the edge's 'slow' behaviour)")
    parser.add_argument("--latency", default="0", metavar="DURATION",
                        help="test bed delay on every hop, each way (e.g. 150ms; default 0)")
    parser.add_argument("--hops", type=int, choices=(2, 3), default=2, help="circuit length (default 2)")
    args = parser.parse_args()
    exit_on_termination_signals()  # a SIGTERM (e.g. from timeout) still stops the test bed and browsers
    policy = None if args.default_policy else edge_policy(args.server_delay)
    bed = BedProcess(exits=args.exits, policy=policy, latency=args.latency, hops=args.hops)
    rows: list[tuple[str, float, int, str, str]] = []
    try:
        lanes = PinnedLanes(bed, max(args.lanes))
        try:
            cfg = BrowserFetcherConfig(ca_file=bed.ca_file)
            targets = targets_of(bed)
            plan = [(target, exit) for _ in range(args.rounds) for exit in lanes.exits for target in targets]
            for name, run in [
                ("2020 method", lambda phases: run_2020_method(lanes, cfg, plan, phases)),
                *((f"Prober, {n} lane{'s' * (n > 1)}", lambda phases, n=n: run_prober(lanes, n, cfg, targets,
                                                                                       args.rounds, phases))
                  for n in args.lanes),
            ]:
                phases: dict[str, list[float]] = defaultdict(list)
                with DriverCommandTimes() as commands:
                    clock = time.perf_counter()
                    results = run(phases)
                    seconds = time.perf_counter() - clock
                where = describe(phases) + ("\n" + commands.report(len(results)) if args.driver_profile else "")
                rows.append((name, seconds, len(results), tally(results), where))
                print(f"{name}: {len(results)} probes in {seconds:.1f} s ({load_average()})", flush=True)
        finally:
            lanes.close()
    finally:
        bed.stop()

    print(f"\ncommand: {command_line()}")
    print(f"{args.rounds} rounds × {len(targets)} sites × {args.exits} exits = {len(plan)} probes per method, "
          f"{'default policy' if args.default_policy else 'real pages everywhere'}"
          f"{f', every response {args.server_delay:g} s late' if args.server_delay else ''}; {load_average()}")
    baseline = rows[0][2] * 60 / rows[0][1]
    for name, seconds, probes, verdicts, where in rows:
        rate = probes * 60 / seconds
        print(f"{name:>17}: {seconds:6.1f} s, {rate:6.1f} probes/min, {rate / baseline:5.2f}× (goal >= 15); "
              f"{verdicts}\n{'':>19}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
