"""What the benchmarks share: a test bed in a process of its own, our tor's lanes pinned to its exits.

The test bed (tor network, DNS, edge) runs as ``captcha-exporter testbed up``
in its own session, so its CPU and memory are not charged to the benchmark
process, which plays the exporter.  Run every benchmark inside a network
namespace with only loopback::

    unshare --net sh -c 'ip link set lo up && python bench/NAME.py'
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from exporter.config import TorConfig
from exporter.scheduler import PinError
from exporter.tor.circuit import CircuitError, CircuitPinner
from exporter.tor.consensus import read_exits
from exporter.tor.control import open_tor
from exporter.tor.relay import ExitRelay
from exporter.values import Lane

NORMAL_PAGES = "{}\n"  # an edge policy without rules: every site answers its real page
BOOT_TIMEOUT = 180.0


class BedProcess:
    """``captcha-exporter testbed up`` in a session of its own; ``state`` once it is up."""

    def __init__(self, exits: int = 4, policy: str | None = NORMAL_PAGES, latency: str = "0", hops: int = 2):
        """``latency`` on every hop, each way (e.g. "150ms"); ``hops`` of the circuits PinnedLanes build."""
        self.hops = hops
        self._directory = Path(tempfile.mkdtemp(prefix="captcha-bench-"))
        self._state_file = self._directory / "state.json"
        command = [sys.executable, "-m", "exporter", "testbed", "up", "--exits", str(exits),
                   "--state", str(self._state_file), "--latency", latency]
        if policy is not None:
            (self._directory / "policy.yaml").write_text(policy)
            command += ["--policy", str(self._directory / "policy.yaml")]
        with open(self._directory / "testbed.log", "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.state = self._wait_for_state()

    def _wait_for_state(self) -> dict:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not self._state_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_tail = (self._directory / "testbed.log").read_text(errors="replace")[-2000:]
                self.stop()  # removes the directory, log included: show its end first
                raise RuntimeError(f"test bed did not come up:\n{log_tail}")
            time.sleep(0.5)
        return json.loads(self._state_file.read_text())

    @property
    def ca_file(self) -> Path:
        return Path(self.state["edge"]["ca_file"])

    @property
    def site_urls(self) -> list[str]:
        return sorted(self.state["edge"]["sites"].values())

    def stop(self) -> None:
        """SIGTERM (the test bed stops its tors and edge), then SIGKILL its session if it lingers."""
        try:
            self._stop_process()
        finally:
            shutil.rmtree(self._directory, ignore_errors=True)

    def _stop_process(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class PinnedLanes:
    """``count`` lanes on the test bed's client tor, each pinned on demand to one test-bed exit."""

    def __init__(self, bed: BedProcess, count: int):
        client = bed.state["client"]
        self.tor = open_tor(TorConfig(mode="connect", control_port=client["control_port"],
                                      cookie_file=Path(client["cookie_file"])), lanes=count)
        self.lanes: list[Lane] = self.tor.lanes
        consensus = read_exits(self.tor.controller, lambda address: "??")
        ours = {exit["fingerprint"] for exit in bed.state["exits"]}
        middles = {relay["fingerprint"] for relay in bed.state["relays"] if relay["role"] == "middle"}
        self.exits: list[ExitRelay] = sorted((e for e in consensus.exits if e.fingerprint in ours),
                                             key=lambda e: e.nickname)
        self._first_hops = [relay for relay in consensus.relays if relay.fingerprint in middles]
        self.pinner = CircuitPinner(self.tor.controller, self.lanes, hops=bed.hops)
        self.pinner.start()

    def pin(self, lane: Lane, exit: ExitRelay) -> None:
        """Build a new circuit to ``exit`` for ``lane`` (the Prober's ``pin``)."""
        try:
            self.pinner.pin(lane, exit, self._first_hops)
        except CircuitError as exc:
            raise PinError("circuit", str(exc)) from exc

    def close(self) -> None:
        self.pinner.stop()
        self.tor.close()


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def command_line() -> str:
    return "unshare --net sh -c " + shlex.quote("ip link set lo up && " + shlex.join(["python", *sys.argv]))
