"""``captcha-exporter`` with cProfile on every thread; the merged statistics are written to a file at exit.

    python bench/profiled_exporter.py OUT.pstats run --config FILE

cProfile sees only the thread that enables it, and the exporter's work runs on
lane, scheduler and web threads: so every thread started here runs under a
profiler of its own, and at exit (SIGTERM included) all of them are merged
into one ``pstats`` file.  Each profiler counts its thread's CPU time
(``time.thread_time``), not wall time: a lane mostly waits on the network.
Read it with ``python -m pstats OUT.pstats``.
cProfile slows Python code down, so measure CPU in runs without it.
"""

from __future__ import annotations

import cProfile
import pstats
import signal
import sys
import threading
import time

profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_thread_run = threading.Thread.run


def _profiled_run(thread: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    with _lock:
        profiles.append(profile)
    profile.runcall(_thread_run, thread)


def dump(path: str) -> None:
    with _lock:
        for profile in profiles:
            profile.disable()
        stats = pstats.Stats(*profiles)
    stats.dump_stats(path)


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    threading.Thread.run = _profiled_run
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main_profile = cProfile.Profile(time.thread_time)
    profiles.append(main_profile)
    from exporter.cli import main as exporter_main

    try:
        return main_profile.runcall(exporter_main, argv)
    finally:
        dump(out)


if __name__ == "__main__":
    sys.exit(main())
