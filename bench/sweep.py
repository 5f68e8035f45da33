"""One sweep of every exit × target by the real exporter at realistic latency: time against its floor, CPU per probe.

    unshare --net sh -c 'ip link set lo up && python bench/sweep.py --exits 8 16 --targets 5 20 [--fetcher http]'

For each E in ``--exits`` it boots a test bed with E exits and ``--latency``
on every hop (each way); for each T in ``--targets`` it then runs
``captcha-exporter run`` as a process of its own, with T targets (the test
bed's sites over HTTPS, cycled, each under a name of its own; certificates checked
against certifi's roots plus the test bed's CA, as a deployment's are), ``exits_per_run: E``, an
hour's interval (so each target runs once) and the planner's defaults
(``concurrency: auto`` unless ``--concurrency`` is given), and waits until its
log holds one probe line per exit × target × fetcher.  It prints:

- the wall time from ``/-/ready`` to the last probe, and the latency floor
  for the lanes used, (E × circuit + probes × probe) / lanes: the circuit
  time measured alone before the exporter starts (median of three pins), the
  probe time the fastest page load of the sweep, and the lanes used the most
  page loads seen at once in the log (each from its end time back by its
  load time); the lanes allowed (the limit, or the lanes opened) are printed
  beside them;
- CPU seconds per probe (utime + stime from /proc/PID/stat, children that
  were reaped included) of the exporter's own process, of its browsers
  (chromedriver, Chromium: the rest of its process tree), of the tor client
  the exporter drives (the test bed's client tor) and of the rest of the test
  bed (relays, edge, delaying relays: the stand-in for the Internet);
- peak RSS: VmHWM of the exporter and of the tor client, the highest sum of
  the browsers' RSS seen by one-second samples;
- the load average at the end.

CPU seconds do not depend much on what else runs on the machine; wall times
do, so read them with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import certifi
import yaml
from bench_bed import BedProcess, PinnedLanes, command_line, load_average

from testbed.processes import exit_on_termination_signals

TICKS = os.sysconf("SC_CLK_TCK")
PROBE_LINE = re.compile(r'msg="?probe (done|failed)')
LOG_TIME = re.compile(r"^time=(\S+)Z ")
LOAD_SECONDS = re.compile(r"load_seconds=([0-9.]+)")
LANE_LIMIT = re.compile(r'msg="?(?:probing|lanes)"?.* (?:lane_)?limit=(\d+)')  # lanes that may work at once
LANES = re.compile(r'msg="?probing"?.* lanes=(\d+)')  # lanes opened (all work at once without a limit)


# -- processes ------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 is index 0), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()


def own_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds of the process itself, CPU seconds of its reaped children)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS, (int(fields[13]) + int(fields[14])) / TICKS


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and everything below it, reaped or alive."""
    own, reaped = own_cpu(pid)
    return own + reaped + sum(sum(own_cpu(child)) for child in descendants(pid))


def status_bytes(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def pid_of_tor(data_directory: str) -> int:
    """The tor process whose command line names ``data_directory`` (the test bed's client)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"tor") and any(data_directory.encode() in arg for arg in argv):
                return int(entry)
    raise RuntimeError(f"no tor process with {data_directory}")


@dataclass
class Costs:
    """CPU seconds per component at one moment."""

    exporter: float
    browsers: float
    tor_client: float
    test_bed: float

    @classmethod
    def read(cls, exporter: int, tor_client: int, bed: int) -> Costs:
        own, reaped = own_cpu(exporter)  # what the exporter reaped were its browsers and drivers
        browsers = reaped + sum(sum(own_cpu(child)) for child in descendants(exporter))
        tor = sum(own_cpu(tor_client))
        return cls(own, browsers, tor, tree_cpu(bed) - tor)

    def __sub__(self, other: Costs) -> Costs:
        return Costs(self.exporter - other.exporter, self.browsers - other.browsers,
                     self.tor_client - other.tor_client, self.test_bed - other.test_bed)


# -- one sweep -----------------------------------------------------------------

@dataclass
class Sweep:
    exits: int
    targets: int
    fetcher: str
    source: str = "this tree"
    lanes: int = 0  # allowed to work at once
    lanes_used: int = 0  # the most page loads at once
    probes: int = 0
    failed: int = 0
    wall: float = 0.0
    floor: float = 0.0
    circuit: float = 0.0
    fastest_probe: float = 0.0
    cost: Costs | None = None
    peak_rss: dict[str, int] = field(default_factory=dict)
    load: str = ""


def https_urls(bed: BedProcess) -> list[str]:
    """The sites' start pages over HTTPS, as real targets are."""
    https_port = bed.state["edge"]["https_port"]
    return [urlunsplit(("https", f"{parts.hostname}:{https_port}", parts.path, parts.query, ""))
            for parts in map(urlsplit, bed.site_urls)]


def trust_bundle(bed: BedProcess, directory: Path) -> Path:
    """What a deployment trusts (certifi's roots, as requests does by default) plus the test bed's CA:
    a probe pays for checking a certificate against the roots a real deployment loads."""
    bundle = directory / "roots.pem"
    bundle.write_text(Path(certifi.where()).read_text() + bed.ca_file.read_text())
    return bundle


def exporter_config(bed: BedProcess, targets: int, fetcher: str, concurrency: int | None, port: int,
                    workdir: Path) -> dict:
    state, sites = bed.state, https_urls(bed)
    client = state["client"]
    schedule = {"interval": "1h", "exits_per_run": len(state["exits"])}
    if concurrency:
        schedule["concurrency"] = concurrency
    roots = str(trust_bundle(bed, workdir))
    fetchers = {"http": {"ca_file": roots, "timeout": "60s"}}
    if fetcher != "http":
        fetchers[fetcher] = {"ca_file": str(bed.ca_file), "timeout": "60s"}
    return {
        "tor": {"mode": "connect", "control": f"127.0.0.1:{client['control_port']}",
                "cookie_file": client["cookie_file"], "hops": bed.hops},
        "targets": [{"name": f"t{index:02d}", "url": f"{sites[index % len(sites)]}?t={index}",
                     "fetchers": [fetcher]} for index in range(targets)],
        "schedule": schedule,
        "fetchers": fetchers,
        "geoip": {"country_db": state["geoip_db"]},
        "baseline": {"resolve": {urlsplit(url).hostname: "127.0.0.1" for url in sites}},
        "web": {"listen": f"127.0.0.1:{port}"},
        "data_dir": str(workdir / "data"),
    }


def circuit_seconds(bed: BedProcess) -> float:
    """Median time to pin a circuit to an exit, alone on the machine's tor client."""
    lanes = PinnedLanes(bed, 1)
    try:
        times = []
        for exit in (lanes.exits * 3)[:3]:
            clock = time.perf_counter()
            lanes.pin(lanes.lanes[0], exit)
            times.append(time.perf_counter() - clock)
        return statistics.median(times)
    finally:
        lanes.close()


def most_at_once(probe_lines: list[str]) -> int:
    """The most page loads in flight at once: each ends at its line's time and lasted its load_seconds."""
    edges = []
    for line in probe_lines:
        end, load = LOG_TIME.search(line), LOAD_SECONDS.search(line)
        if end and load:
            ended = datetime.strptime(end.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            edges += [(ended - float(load.group(1)), 1), (ended, -1)]
    running = most = 0
    for _, step in sorted(edges):
        running += step
        most = max(most, running)
    return most


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def exporter_command(config: Path, source: Path | None, profile: Path | None) -> tuple[list[str], dict]:
    """``captcha-exporter run`` from ``source`` (a checkout's directory; None: this one), under cProfile if asked.
    It runs in ``source`` too: ``python -m`` puts the working directory before PYTHONPATH."""
    environment = dict(os.environ, PYTHONPATH=str(source)) if source else dict(os.environ)
    if profile:
        return [sys.executable, str(Path(__file__).with_name("profiled_exporter.py")), str(profile),
                "run", "--config", str(config)], environment
    return [sys.executable, "-m", "exporter", "run", "--config", str(config)], environment


def run_sweep(bed: BedProcess, tor_client: int, sweep: Sweep, concurrency: int | None, deadline: float,
              circuit: float, source: Path | None = None, profile: Path | None = None) -> Sweep:
    workdir = Path(tempfile.mkdtemp(prefix="captcha-sweep-"))
    port = free_port()
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(exporter_config(bed, sweep.targets, sweep.fetcher, concurrency, port, workdir)))
    log = workdir / "exporter.log"
    expected = sweep.exits * sweep.targets
    command, environment = exporter_command(config, source, profile)
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=environment, cwd=source, stdout=subprocess.DEVNULL, stderr=sink,
                                   start_new_session=True)
    try:
        limit = time.monotonic() + 120
        while not ready(port):
            if process.poll() is not None or time.monotonic() > limit:
                raise RuntimeError(f"exporter did not get ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        start, before = time.monotonic(), Costs.read(process.pid, tor_client, bed.process.pid)
        browsers_rss = 0
        while True:
            lines = log.read_text(errors="replace").splitlines()
            probes = [line for line in lines if PROBE_LINE.search(line)]
            if len(probes) >= expected:
                break
            if process.poll() is not None or time.monotonic() - start > deadline:
                raise RuntimeError(f"{len(probes)} of {expected} probes after {time.monotonic() - start:.0f} s:\n"
                                   + "\n".join(lines[-20:]))
            browsers_rss = max(browsers_rss, sum(status_bytes(pid, "VmRSS") for pid in descendants(process.pid)))
            time.sleep(1.0)
        sweep.wall = time.monotonic() - start
        sweep.cost = Costs.read(process.pid, tor_client, bed.process.pid) - before
        sweep.load = load_average()
        sweep.peak_rss = {"exporter": status_bytes(process.pid, "VmHWM"), "browsers": browsers_rss,
                          "tor client": status_bytes(tor_client, "VmHWM")}
        sweep.probes = len(probes)
        sweep.failed = sum("probe failed" in line for line in probes)
        sweep.lanes = max((int(m.group(1)) for line in lines if (m := LANE_LIMIT.search(line))), default=0) or \
            int(next(m.group(1) for line in lines if (m := LANES.search(line))))
        sweep.circuit = circuit
        sweep.fastest_probe = min((float(m.group(1)) for line in probes if (m := LOAD_SECONDS.search(line))), default=0.0)
        sweep.lanes_used = most_at_once(probes)
        sweep.floor = (sweep.exits * circuit + sweep.probes * sweep.fastest_probe) / max(1, sweep.lanes_used)
        return sweep
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# -- report ----------------------------------------------------------------------

def row(sweep: Sweep) -> str:
    cost, probes = sweep.cost, sweep.probes
    ms = {name: getattr(cost, name) / probes * 1000 for name in ("exporter", "browsers", "tor_client", "test_bed")}
    rss = " ".join(f"{name} {size / 2**20:.0f}" for name, size in sweep.peak_rss.items())
    return (f"{sweep.source:<10} {sweep.fetcher:<8} {sweep.exits:>3}×{sweep.targets:<3} {probes:>5} ({sweep.failed} failed) "
            f"{sweep.lanes_used:>2} of {sweep.lanes:>2} lanes  wall {sweep.wall:6.1f} s  floor {sweep.floor:6.1f} s "
            f"(circuit {sweep.circuit:.2f} s, probe {sweep.fastest_probe:.2f} s)  ratio {sweep.wall / sweep.floor:4.2f}\n"
            f"{'':>16}CPU ms/probe: exporter {ms['exporter']:.1f}, browsers {ms['browsers']:.1f}, "
            f"tor client {ms['tor_client']:.1f}, test bed {ms['test_bed']:.1f}; peak RSS MiB: {rss}\n"
            f"{'':>16}{sweep.load}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exits", type=int, nargs="+", default=[8], help="test-bed exits, one bed each (default 8)")
    parser.add_argument("--targets", type=int, nargs="+", default=[5], help="targets, one exporter run each")
    parser.add_argument("--fetcher", default="http", choices=("http", "chromium"), help="every target's fetcher")
    parser.add_argument("--latency", default="50ms", metavar="DURATION",
                        help="delay on every hop, each way (default 50ms: a 3-hop circuit's round trip is 400 ms)")
    parser.add_argument("--hops", type=int, choices=(2, 3), default=3, help="circuit length (default 3, as a user's)")
    parser.add_argument("--concurrency", type=int, help="schedule.concurrency (default: auto, the planner's choice)")
    parser.add_argument("--source", action="append", default=[], metavar="NAME=DIR",
                        help="also run the exporter of another checkout (its directory holding exporter/), "
                             "side by side on the same test bed; repeatable")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run the exporter under cProfile (every thread) and write DIR/E×T-SOURCE.pstats; "
                             "its CPU figures are then inflated by the profiler")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds one sweep may take (default 900)")
    args = parser.parse_args()
    exit_on_termination_signals()
    sources = [("this tree", None)] + [(text.split("=", 1)[0], Path(text.split("=", 1)[1])) for text in args.source]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    sweeps: list[Sweep] = []
    for exits in args.exits:
        bed = BedProcess(exits=exits, latency=args.latency, hops=args.hops)
        try:
            tor_client = pid_of_tor(bed.state["client"]["data_directory"])
            circuit = circuit_seconds(bed)
            for targets in args.targets:
                for name, source in sources:
                    profile = args.profile / f"{exits}x{targets}-{name}.pstats" if args.profile else None
                    sweep = run_sweep(bed, tor_client, Sweep(exits, targets, args.fetcher, name), args.concurrency,
                                      args.deadline, circuit, source, profile)
                    sweeps.append(sweep)
                    print(row(sweep), flush=True)
        finally:
            bed.stop()
    print(f"\ncommand: {command_line()}\nlatency {args.latency} on every hop each way, {args.hops}-hop circuits; "
          f"{load_average()}")
    for sweep in sweeps:
        print(row(sweep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
