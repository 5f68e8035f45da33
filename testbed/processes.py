"""Child processes of the test bed: each in its own process group, all stopped on exit.

Every process is started in a new session (so it leads its own process group)
and registered here; ``stop_all`` runs at interpreter exit.  On Linux,
``PR_SET_PDEATHSIG`` makes the kernel send SIGKILL to the child when the thread
that forked it dies, so even a SIGKILLed test run leaves no tor behind.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import threading
import time
from contextlib import nullcontext
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Looked up here, not in the forked child, which should do as little as possible.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_live: dict[int, subprocess.Popen] = {}
_lock = threading.Lock()


def _die_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(argv: list[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start ``argv`` in a process group of its own; output goes to ``log`` (or is dropped)."""
    with open(log, "ab") if log else nullcontext(subprocess.DEVNULL) as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (one prctl call, looked up before the fork)
        )
    with _lock:
        _live[proc.pid] = proc
    return proc


def stop(procs: list[subprocess.Popen], timeout: float = 5.0) -> None:
    """SIGTERM every process group, SIGKILL those still there after ``timeout`` s, reap the children."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        with _lock:
            _live.pop(proc.pid, None)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def stop_all() -> None:
    """Stop every process spawned here that is still registered."""
    with _lock:
        procs = list(_live.values())
    stop(procs)


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (``kill(pid, 0)`` succeeds on zombies)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def exit_on_termination_signals() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit so ``with``/``finally`` blocks stop the bed."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc/PID/status (VmRSS), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


atexit.register(stop_all)
