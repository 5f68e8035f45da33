"""Memory after 100 and after 1,000 Chromium probes, warm pool (a benchmark, not a test).

    unshare --net sh -c 'ip link set lo up && python bench/browser_memory.py [--probes 1000] [--recycle-after 100]'

Boots a test bed whose sites answer their real pages and runs the exporter's
``Prober`` (``--lanes`` lanes, one warm Chromium each, recycled after
``--recycle-after`` probes; 0 turns recycling off) over every site through
every exit, round after round.  Every ``--every`` probes it prints the
resident memory of this process (which plays the exporter) and of every
browser process it started: RSS summed, and PSS (shared pages split between
the processes sharing them, so the sum is what they hold together) and USS
(pages only they map: PSS moves when other users' Chromium processes, which
share the binary's pages, come and go).  The test
bed runs in a session of its own and is not counted; this process is made a
child subreaper, so Chromium helpers that leave its session are still its
descendants.  At the end it closes the fetcher and counts the browser
processes left (goal: none).  Goal: total RSS, PSS and USS after 1,000 probes within 10 %
of the total after 100.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from bench_bed import BedProcess, PinnedLanes, command_line, load_average
from browser_throughput import TIMEOUT, targets_of

from exporter.config import ChromiumConfig
from exporter.detect import classify
from exporter.fetch.browser_pool import resident_bytes
from exporter.fetch.chromium import ChromiumFetcher
from exporter.probe import ProbeResult
from exporter.scheduler import Prober
from testbed.processes import exit_on_termination_signals

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>: orphaned descendants are reparented to us, not to init
MIB = 2**20


def become_subreaper() -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _stat(pid: int) -> tuple[str, int, int]:
    """State, parent PID and session of a process (/proc/PID/stat, fields 3, 4 and 6)."""
    state, ppid, _pgrp, session = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:4]
    return state, int(ppid), int(session)


def browser_processes(bed_session: int) -> list[int]:
    """Live descendants of this process outside the test bed's session."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                state, ppid, session = _stat(int(entry))
            except (OSError, ValueError):
                continue  # ended while we looked
            if state != "Z" and session != bed_session:
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            continue
    return total


def private_bytes(pids: list[int]) -> int:
    """USS: pages only these processes map (Private_Clean + Private_Dirty in smaps_rollup).

    Unlike PSS it does not move when unrelated processes sharing the same
    Chromium binary and libraries (other users' browsers) start or stop.
    """
    total = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += sum(int(row.split()[1]) * 1024 for row in rollup.splitlines() if row.startswith("Private_"))
    return total


def measure(bed_session: int) -> dict[str, float]:
    browsers = browser_processes(bed_session)
    figures: dict[str, float] = {"browser processes": len(browsers)}
    for who, pids in (("exporter", [os.getpid()]), ("browsers", browsers)):
        figures.update({f"{who} RSS": rss_bytes(pids) / MIB, f"{who} PSS": resident_bytes(pids) / MIB,
                        f"{who} USS": private_bytes(pids) / MIB})
    return figures


def line(probes: int, figures: dict[str, float]) -> str:
    def of(who: str) -> str:
        return " ".join(f"{kind} {figures[f'{who} {kind}']:5.0f}" for kind in ("RSS", "PSS", "USS"))

    return (f"after {probes:5d} probes (MiB): exporter {of('exporter')}; "
            f"browsers ({figures['browser processes']:.0f} processes) {of('browsers')}; "
            f"total PSS {figures['exporter PSS'] + figures['browsers PSS']:5.0f} "
            f"USS {figures['exporter USS'] + figures['browsers USS']:5.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="measure every this many probes (default 100)")
    parser.add_argument("--lanes", type=int, default=2)
    parser.add_argument("--recycle-after", type=int, default=ChromiumConfig.recycle_after,
                        help="probes per browser before it is replaced; 0: never (default %(default)s)")
    parser.add_argument("--minutes", type=float, default=float("inf"),
                        help="stop starting rounds after this long and report what was measured")
    args = parser.parse_args()
    exit_on_termination_signals()  # a SIGTERM (e.g. from timeout) still stops the test bed and browsers
    become_subreaper()
    bed = BedProcess()
    totals: dict[int, dict[str, float]] = {}  # probes → total RSS, PSS and USS
    results: Counter[str] = Counter()  # verdict kinds only: keeping results (with page bodies) would grow us
    try:
        lanes = PinnedLanes(bed, args.lanes)
        try:
            cfg = ChromiumConfig(ca_file=bed.ca_file, recycle_after=args.recycle_after or 10**9)
            targets = targets_of(bed)
            fetcher = ChromiumFetcher(cfg, classify)
            done = threading.Condition()

            def record(result: ProbeResult) -> None:
                with done:
                    results[result.verdict.kind if result.verdict else "error"] += 1
                    done.notify()

            prober = Prober(lanes.lanes, lanes.pin, {"chromium": fetcher}, {"chromium": TIMEOUT}, classify, record)
            print(f"command: {command_line()}", flush=True)
            next_mark, stop_at = args.every, time.monotonic() + args.minutes * 60
            try:
                while results.total() < args.probes and time.monotonic() < stop_at:
                    expected = results.total() + sum(
                        prober.submit(target, exit)  # as the scheduler does: each target run queues it on its exits
                        for target in targets for exit in lanes.exits)
                    with done:
                        done.wait_for(lambda expected=expected: results.total() >= expected)
                    if results.total() >= next_mark:
                        figures = measure(bed.process.pid)
                        totals[results.total()] = {kind: figures[f"exporter {kind}"] + figures[f"browsers {kind}"]
                                                   for kind in ("RSS", "PSS", "USS")}
                        print(f"{line(results.total(), figures)}; {load_average()}", flush=True)
                        next_mark += args.every
            finally:
                prober.shutdown()
                fetcher.close()
            time.sleep(1)  # killed browsers are reaped by their parents
            left = browser_processes(bed.process.pid)
        finally:
            lanes.close()
    finally:
        bed.stop()
    first, last = min(totals), max(totals)
    print(f"{results.total()} probes ({results['error']} errors) on {args.lanes} lanes, recycle_after "
          f"{args.recycle_after or 'off'}, {fetcher.pool.recycled} browsers recycled; "
          f"browser processes left after close: {len(left)}")
    ratios = ", ".join(f"total {kind} {totals[last][kind] / totals[first][kind]:.3f}" for kind in totals[first])
    print(f"after {last} probes / after {first}: {ratios} (goal <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
