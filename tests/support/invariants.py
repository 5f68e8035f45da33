"""What must hold for a running exporter whatever goes wrong around it (e2e helpers of the chaos suite).

- the process stays up and ``/metrics`` passes ``promtool check metrics``;
- every attempt is accounted: each attempt logs exactly one ``msg="probe done"``
  or ``msg="probe failed"`` line, and their number per target equals
  ``captcha_probes_total + captcha_probe_errors_total`` of that target;
- a target removed by a reload leaves no series behind;
- once the exporter has stopped, none of its descendants (chromedriver, the
  browsers, their helpers, which may have left its process tree) lives on.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests
import yaml

from support.exporter_process import RunningExporter, total, value

_PROBE_LINE = re.compile(r'\bmsg="probe (?:done|failed)"')
NEVER = "0 0 1 1 *"  # a cron that does not fire during a test


def attempts_logged(log: Path, target: str) -> int:
    """Attempts of ``target`` according to the exporter's log: one probe line each."""
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if _PROBE_LINE.search(line) and f" target={target} " in line)


def accounted(samples, target: str) -> float:
    return total(samples, "captcha_probes_total", target=target) + \
        total(samples, "captcha_probe_errors_total", target=target)


def check_metrics(exporter: RunningExporter) -> None:
    """/metrics answers 200 and promtool finds nothing wrong with it."""
    response = exporter.get("/metrics")
    assert response.status_code == 200
    assert shutil.which("promtool"), "promtool is needed to validate /metrics"
    check = subprocess.run(["promtool", "check", "metrics"], input=response.content, capture_output=True,
                           check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def config_path(exporter: RunningExporter) -> Path:
    """The YAML file the exporter was started with (written next to its log)."""
    return exporter.log.with_suffix(".yaml")


def rewrite_config(exporter: RunningExporter, config: dict) -> None:
    config_path(exporter).write_text(yaml.safe_dump(config))


def reload(exporter: RunningExporter, how: str) -> tuple[int | None, str]:
    """Ask for a reload with ``POST /-/reload`` (status, body) or SIGHUP (None, "")."""
    if how == "post":
        response = requests.post(f"http://127.0.0.1:{exporter.port}/-/reload", headers={"X-Requested-By": "test"},
                                 timeout=30)
        return response.status_code, response.text
    exporter.process.send_signal(signal.SIGHUP)
    return None, ""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(interval)
    return result


def idle(exporter: RunningExporter) -> bool:
    samples = exporter.samples()
    return value(samples, "captcha_probes_in_flight") == 0 and value(samples, "captcha_probes_queued") == 0


def quiesce(exporter: RunningExporter, config: dict, keep: list[str]) -> float:
    """Reload with only the ``keep`` targets and a schedule that never fires, then wait until no
    probe is queued or running (running ones finish and are counted). Returns the reload time."""
    config = {**config, "targets": [t for t in config["targets"] if t["name"] in keep],
              "schedule": {**config["schedule"], "cron": NEVER}}
    config["schedule"].pop("interval", None)
    rewrite_config(exporter, config)
    reloaded_at = time.time()
    status, body = reload(exporter, "post")
    assert status == 200, body
    # the keeper thread tears the old scheduler down after the reload answered; then it is ready again
    wait_for(lambda: exporter.get("/-/ready").status_code == 200 and idle(exporter), 90, "the exporter to go idle")
    time.sleep(1)
    wait_for(lambda: idle(exporter), 30, "the exporter to stay idle")
    return reloaded_at


def assert_invariants(exporter: RunningExporter, config: dict, kept: str, removed: str) -> dict:
    """Quiesce (removing ``removed``), then check every invariant of the module docstring for ``kept``.

    Returns the figures: attempts logged and attempts accounted in /metrics.
    """
    assert exporter.process.poll() is None, "the exporter died:\n" + exporter.log.read_text()[-4000:]
    quiesce(exporter, config, keep=[kept])
    samples = exporter.samples()
    attempts = attempts_logged(exporter.log, kept)
    assert attempts > 0, "no attempt at all:\n" + exporter.log.read_text()[-4000:]
    assert accounted(samples, kept) == attempts, (accounted(samples, kept), attempts)
    stale = sorted({name for (name, labels), _ in samples.items() if ("target", removed) in labels})
    assert not stale, f"series of the removed target {removed} remain: {stale}"
    check_metrics(exporter)
    assert exporter.process.poll() is None
    return {"attempts": attempts, "accounted": int(accounted(samples, kept))}


# -- processes -----------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after "(comm)": state ppid pgrp session ... (starttime is index 19)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _all_stats() -> dict[int, list[str]]:
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            stats[int(entry.name)] = stat
    return stats


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def descendants(root: int) -> dict[int, str]:
    """{pid: start time} of every live process below ``root``, and of the sessions they lead
    (chromedriver leads a session; helpers that call setsid stay in it or name its profile)."""
    stats = _all_stats()
    found, frontier = {}, {root}
    while frontier:
        children = {pid for pid, s in stats.items() if int(s[1]) in frontier and pid not in found and pid != root}
        children |= {pid for pid, s in stats.items() if int(s[3]) in frontier and pid not in found and pid != root}
        found.update({pid: stats[pid][19] for pid in children if stats[pid][0] != "Z"})
        frontier = children
    profiles = {m for pid in found for m in re.findall(r"--user-data-dir=(\S+)", cmdline(pid))}
    for pid, stat in stats.items():
        if pid not in found and stat[0] != "Z" and any(p in cmdline(pid) for p in profiles):
            found[pid] = stat[19]
    return found


def still_alive(processes: dict[int, str]) -> list[str]:
    """Those of ``processes`` ({pid: start time}) that still run (not zombies, not a reused pid)."""
    alive = []
    for pid, started in processes.items():
        stat = _stat(pid)
        if stat and stat[19] == started and stat[0] != "Z":
            alive.append(f"{pid} {comm(pid)}")
    return alive


def stop_without_leaks(exporter: RunningExporter) -> dict[int, str]:
    """Stop the exporter (exit code 0) and check that none of its descendants outlives it, and
    none of its browsers' homes (named after its PID) stays in the temporary directory."""
    tree = descendants(exporter.process.pid)
    code = exporter.stop()
    assert code == 0, exporter.log.read_text()[-4000:]
    time.sleep(1)
    leaked = still_alive(tree)
    assert not leaked, f"processes outlived the exporter: {leaked}"
    homes = sorted(Path(tempfile.gettempdir()).glob(f"captcha-{exporter.process.pid}-*"))
    assert not homes, f"browser homes outlived the exporter: {homes}"
    return tree
