"""Test bed boot time, from nothing to "client bootstrapped, every exit flagged" (a benchmark, not a test).

    unshare --net sh -c 'ip link set lo up && python bench/testbed_boot.py [--boots 20] [--exits 4]'

Boots and stops the test bed ``--boots`` times in this process and prints each
boot time, then min, median, 90th percentile and max.  A boot waits on the
authorities' consensus rounds (every 10 s after the first), so the times
cluster at a few values; use 20 boots or more to see the tail.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench_bed import command_line, load_average

from testbed.bed import TestBed
from testbed.processes import exit_on_termination_signals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=20)
    parser.add_argument("--exits", type=int, default=4)
    args = parser.parse_args()
    exit_on_termination_signals()  # a SIGTERM still stops the test bed
    times = []
    for number in range(1, args.boots + 1):
        with TestBed(exits=args.exits) as bed:
            times.append(bed.boot.seconds)
            print(f"boot {number}: {bed.boot.seconds:.1f} s, tor RSS {bed.network.rss_bytes() / 2**20:.0f} MiB "
                  f"({load_average()})", flush=True)
    deciles = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    print(f"\ncommand: {command_line()}")
    print(f"{len(times)} boots, {args.exits} exits: min {min(times):.1f} s, median {statistics.median(times):.1f} s, "
          f"p90 {deciles[8]:.1f} s, max {max(times):.1f} s; {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
