"""Child processes: own process group, stopped with their children, SIGKILL when SIGTERM is ignored."""

from __future__ import annotations

import os
import time
from pathlib import Path

from testbed import processes


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def test_a_process_leads_its_own_group_and_stop_takes_its_children_along():
    proc = processes.spawn(["sh", "-c", "sleep 60 & sleep 60; wait"])
    processes.wait_until(lambda: len(children_of(proc.pid)) == 2, 5, 0.02, "the shell's children")
    kids = children_of(proc.pid)
    assert os.getpgid(proc.pid) == proc.pid
    assert all(os.getpgid(kid) == proc.pid for kid in kids)
    processes.stop([proc])
    assert proc.returncode is not None
    processes.wait_until(lambda: not any(processes.alive(k) for k in kids), 5, 0.05, "the children to go")


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout():
    proc = processes.spawn(["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"])
    time.sleep(0.2)  # let the trap be installed
    started = time.monotonic()
    processes.stop([proc], timeout=0.5)
    assert 0.4 < time.monotonic() - started < 5
    assert proc.returncode == -9
    assert not processes.alive(proc.pid)


def test_stop_all_stops_what_is_still_registered():
    procs = [processes.spawn(["sleep", "60"]) for _ in range(2)]
    processes.stop_all()
    assert all(p.returncode is not None for p in procs)


def test_alive_is_false_for_a_zombie(tmp_path):
    proc = processes.spawn(["true"])
    processes.wait_until(lambda: Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                         5, 0.02, "the child to exit")
    assert not processes.alive(proc.pid)
    processes.stop([proc])


def test_rss_bytes_of_this_process_is_positive_and_of_a_missing_pid_zero():
    assert processes.rss_bytes(os.getpid()) > 1 << 20
    assert processes.rss_bytes(2**22 + 1) == 0


def test_spawn_writes_output_to_the_log_and_passes_extra_environment(tmp_path):
    log = tmp_path / "out.log"
    proc = processes.spawn(["sh", "-c", 'echo "arena=$MALLOC_ARENA_MAX"'], env={"MALLOC_ARENA_MAX": "1"}, log=log)
    proc.wait(5)
    processes.stop([proc])
    assert log.read_text() == "arena=1\n"
