"""Chromium probes per minute: the warm pool against a new browser per probe (a benchmark, not a test).

    unshare --net sh -c 'ip link set lo up && python bench/browser_throughput.py [--probes 20]'

Boots the private Tor network with every site answering its real page (or
uses a running one: ``--state FILE`` from ``captcha-exporter testbed up``, run
inside that test bed's network namespace), then loads the same URLs through
one lane, pinned to the next exit before each probe, twice: with one warm
Chromium that is wiped between probes, and with a Chromium started, used and
quit for every probe.  Both runs pin circuits the same way, so the difference
is the browser's start and quit.  Wall-clock times: other work on the machine
slows both runs, so compare the ratio, and read the load average printed with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

from exporter.config import BrowserFetcherConfig
from exporter.detect import classify
from exporter.fetch.chromium import ChromiumFetcher
from exporter.fetch.response import FetchError
from exporter.testbed.bed import TestBed
from exporter.testbed.policy import load_policy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from test_chromium_testbed import PinnedLane


class RunningBed:
    """The parts of TestBed this benchmark needs, read from a state file."""

    def __init__(self, state_file: Path):
        self._state = json.loads(state_file.read_text())

    def state(self) -> dict:
        return self._state

    @property
    def ca_file(self) -> Path:
        return Path(self._state["edge"]["ca_file"])

    def hostnames(self) -> list[str]:
        return [url.split("//", 1)[1].split(":")[0].rstrip("/") for url in self._state["edge"]["sites"].values()]


def probe_plan(state: dict, probes: int) -> list[tuple[str, str]]:
    """(exit nickname, URL) pairs: every exit in turn, every site in turn."""
    exits = [exit["nickname"] for exit in state["exits"]]
    sites = sorted(state["edge"]["sites"].values())
    return [(exits[n % len(exits)], sites[n % len(sites)]) for n in range(probes)]


def run(plan, lane: PinnedLane, new_fetcher, warm: bool) -> tuple[float, int]:
    """Seconds for the whole plan, and how many probes failed."""
    failures = 0
    fetcher = new_fetcher() if warm else None
    started = time.monotonic()
    try:
        for nickname, url in plan:
            pinned = lane.pin(nickname)
            current = fetcher or new_fetcher()
            try:
                current.fetch(url, pinned, timeout=30)
            except FetchError as exc:
                failures += 1
                print(f"  {nickname} {url}: {exc.reason}: {exc}", file=sys.stderr)
            finally:
                if not warm:
                    current.close()
        return time.monotonic() - started, failures
    finally:
        if fetcher is not None:
            fetcher.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20, help="probes per run (default 20)")
    parser.add_argument("--state", type=Path, help="use a running test bed's state file instead of booting one")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.state:
            bed = RunningBed(args.state)
            state, ca_file, hostnames = bed.state(), bed.ca_file, bed.hostnames()
        else:
            booted = stack.enter_context(TestBed(exits=4, policy=load_policy({})))
            state, ca_file, hostnames = booted.state(), booted.edge.ca_file, booted.edge.hostnames()
        lane = PinnedLane(state, hostnames)
        stack.callback(lane.close)
        cfg = BrowserFetcherConfig(ca_file=ca_file, challenge_wait=6.0, recycle_after=10**6)
        plan = probe_plan(state, args.probes)
        results = {}
        for name, warm in (("warm pool", True), ("new browser per probe", False)):
            seconds, failures = run(plan, lane, lambda: ChromiumFetcher(cfg, classify), warm)
            results[name] = args.probes * 60 / seconds
            print(f"{name:>22}: {args.probes} probes in {seconds:6.1f} s = {results[name]:6.1f} probes/min"
                  f" ({failures} failed)")
    print(f"{'ratio':>22}: {results['warm pool'] / results['new browser per probe']:.2f}× "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"{'command':>22}: {shlex.join([sys.executable, *sys.argv])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
