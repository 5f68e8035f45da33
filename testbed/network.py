"""The private Tor network: 3 directory authorities, middles, exits and one client, on loopback.

Boot order: keys (fingerprints are needed in every torrc), the authorities'
bandwidth files, then every tor at once.  The network is ready when the
client has bootstrapped to 100 %, its consensus lists every exit with the
Exit flag, it has built a [middle, exit] circuit through every middle and
every exit (so callers do not meet "No descriptor for ..." right after boot),
and every exit's own consensus lists every relay.  An exit refuses a stream on
a circuit whose previous hop is not a relay of its consensus ("Attempt by … to
open a stream from unknown relay", END reason MISC: tor will not be the second
hop of a client's one-hop circuit), and an exit that booted with the first,
thin consensus keeps it until the next one: circuits through it build, but
carry no stream.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stem import ControllerError
from stem.control import Controller

from exporter.shard import Shard

from . import keys, processes
from .latency import Delays
from .ports import free_ports
from .torrc import LOOPBACK, TorNode, bandwidth_file, torrc

log = logging.getLogger(__name__)

AUTHORITIES = 3
ENOUGH_DIRINFO = 75  # bootstrap percentage at which the client can build circuits
# glibc gives each thread its own malloc arena; tor's compression threads then
# double every relay's RSS within a minute. One arena keeps 9 tors near 500 MB.
TOR_ENV = {"MALLOC_ARENA_MAX": "1"}


def exit_address(index: int) -> str:
    """Exit ``index`` (1-based) advertises 127.0.0.2<index> so the consensus shows distinct addresses."""
    return f"127.0.0.{20 + index}"


@dataclass(frozen=True)
class BootReport:
    seconds: float
    keys_seconds: float


class NetworkError(RuntimeError):
    """The network did not come up (a tor exited, or readiness timed out)."""


class TorNetwork:
    """Plan, start and stop the test-bed tors in ``workdir``.

    Exit ``i`` gets ``bandwidth_kb = 1000 * i`` in the authorities' bandwidth
    files, so exit weights differ; exit 1 is also voted Guard (so the
    consensus' Wed, not Wee, weighs it).
    """

    def __init__(self, workdir: Path, *, resolv_conf: Path, exits: int = 4, middles: int = 2,
                 tor: str = "tor", key_cache: Path | None = keys.DEFAULT_CACHE, delays: Delays | None = None) -> None:
        if exits < 1 or middles < 1:
            raise ValueError("the network needs at least one exit and one middle")
        self.workdir = workdir
        self.resolv_conf = resolv_conf
        self.tor = tor
        self.key_cache = key_cache  # authority key sets reused between boots; None: make new ones
        self.delays = delays  # a delaying relay in front of every ORPort, when given
        self.nodes: list[TorNode] = self._plan(exits, middles)
        self._procs: dict[str, object] = {}

    def _plan(self, exits: int, middles: int) -> list[TorNode]:
        ports = iter(free_ports(AUTHORITIES * 2 + middles + exits + 2))
        nodes = []
        for i in range(1, AUTHORITIES + 1):
            nodes.append(TorNode(f"auth{i}", "authority", self.workdir / f"auth{i}",
                                 or_port=next(ports), dir_port=next(ports)))
        for i in range(1, middles + 1):
            nodes.append(TorNode(f"middle{i}", "middle", self.workdir / f"middle{i}",
                                 or_port=next(ports), guard=True, bandwidth_kb=5000))
        for i in range(1, exits + 1):
            nodes.append(TorNode(f"exit{i}", "exit", self.workdir / f"exit{i}", address=exit_address(i),
                                 or_port=next(ports), guard=(i == 1), bandwidth_kb=1000 * i))
        nodes.append(TorNode("client", "client", self.workdir / "client",
                             socks_port=next(ports), control_port=next(ports)))
        if self.delays is not None:
            relays = [n for n in nodes if n.role != "client"]
            for node, port in zip(relays, free_ports(len(relays))):
                node.listen_port = port
        return nodes

    def _by_role(self, role: str) -> list[TorNode]:
        return [n for n in self.nodes if n.role == role]

    @property
    def authorities(self) -> list[TorNode]:
        return self._by_role("authority")

    @property
    def middles(self) -> list[TorNode]:
        return self._by_role("middle")

    @property
    def exits(self) -> list[TorNode]:
        return self._by_role("exit")

    @property
    def client(self) -> TorNode:
        return self._by_role("client")[0]

    @property
    def relays(self) -> list[TorNode]:
        """Every node with an identity key (all but the client)."""
        return [n for n in self.nodes if n.role != "client"]

    @property
    def cookie_file(self) -> Path:
        return self.client.data_dir / "control_auth_cookie"

    # -- start and stop --------------------------------------------------------

    def start(self, timeout: float = 120.0) -> BootReport:
        """Write keys and torrcs, start every tor, wait until ready (see module docstring)."""
        started = time.monotonic()
        self._make_keys()
        keys_seconds = time.monotonic() - started
        relays = self.middles + self.exits
        now = int(time.time())
        for auth in self.authorities:
            (auth.data_dir / "bandwidths").write_text(bandwidth_file(relays, now))
        for node in self.nodes:
            node.torrc_path.write_text(torrc(node, self.authorities, resolv_conf=self.resolv_conf, relays=relays))
        try:
            if self.delays is not None:
                for node in self.relays:
                    self.delays.add((node.address, node.or_port), (node.address, node.listen_port))
            for node in self.nodes:
                self._spawn(node)
            self._wait_ready(started + timeout)
        except BaseException:
            self.stop()
            raise
        return BootReport(seconds=time.monotonic() - started, keys_seconds=keys_seconds)

    def _make_keys(self) -> None:
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for node in self.relays:
            node.fingerprint = keys.write_relay_identity(node.data_dir)
        self._split_exits_over_two_shards()
        idents = keys.install_authority_keys([a.data_dir for a in self.authorities], self.key_cache)
        for auth, ident in zip(self.authorities, idents):
            auth.v3ident = ident

    def _split_exits_over_two_shards(self) -> None:
        """Give the last exit new keys until two replicas (``--shard 0/2`` and ``1/2``) each own
        an exit, so sharding can be shown on the test bed: with random keys, all four exits
        fall to one replica one boot in eight."""
        first_half = Shard(0, 2)
        while len(self.exits) > 1 and len({first_half.owns(e.fingerprint) for e in self.exits}) < 2:
            self.exits[-1].fingerprint = keys.write_relay_identity(self.exits[-1].data_dir)

    def stop(self) -> None:
        """Stop every tor (SIGTERM to its process group, SIGKILL after 5 s)."""
        processes.stop(list(self._procs.values()))
        self._procs.clear()

    def kill(self, nickname: str) -> None:
        """SIGKILL one tor (its process group) and reap it, as a crash would end it."""
        proc = self._procs[nickname]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart(self, nickname: str) -> None:
        """Start tor ``nickname`` again from its torrc and data directory: same ports, same keys,
        and known to ``pids()``, so the edge still recognises it."""
        self._spawn(next(n for n in self.nodes if n.nickname == nickname))

    def _spawn(self, node: TorNode) -> None:
        self._procs[node.nickname] = processes.spawn(
            [self.tor, "-f", str(node.torrc_path)], env=TOR_ENV, log=node.data_dir / "stdout.log"
        )

    # -- readiness -------------------------------------------------------------

    def _wait_ready(self, deadline: float) -> None:
        controller = self._connect(deadline)
        try:
            untried = self._probe_paths()
            while True:
                self._check_alive()
                progress = bootstrap_progress(controller.get_info("status/bootstrap-phase"))
                if progress >= ENOUGH_DIRINFO and untried and self._build_circuit(controller, untried[0]):
                    untried.pop(0)
                if progress == 100 and not untried and self._exits_flagged(controller) and self._exits_know_relays():
                    return
                if time.monotonic() > deadline:
                    pending = ", ".join(f"{m.nickname}>{e.nickname}" for m, e in untried)
                    raise NetworkError(f"not ready in time: {self._progress(controller)}; unbuilt: {pending}")
                time.sleep(0.1)
        finally:
            controller.close()

    def _probe_paths(self) -> list[tuple[TorNode, TorNode]]:
        """[middle, exit] pairs that between them use every middle and every exit once."""
        count = max(len(self.middles), len(self.exits))
        return [(self.middles[i % len(self.middles)], self.exits[i % len(self.exits)]) for i in range(count)]

    def _exits_flagged(self, controller: Controller) -> bool:
        flagged = {s.fingerprint for s in controller.get_network_statuses() if "Exit" in s.flags}
        return {n.fingerprint for n in self.exits} <= flagged

    def _exits_know_relays(self) -> bool:
        """Every exit's own consensus (its cached microdescriptor consensus) lists every relay."""
        relays = {node.nickname for node in self.nodes if node.role != "client"}
        return all(relays <= consensus_nicknames(node.data_dir) for node in self.exits)

    @staticmethod
    def _build_circuit(controller: Controller, path: tuple[TorNode, TorNode]) -> bool:
        """Build and close a [middle, exit] circuit; True if it was built.

        This proves both relays usable by the client, and the client's first
        built circuit completes its bootstrap: left alone, it sometimes sits at
        95 % for a minute (with so few relays its own 3-hop paths fail and it
        backs off).  Early attempts fail with "No descriptor for ..." until the
        microdescriptors arrive; the caller tries again.
        """
        try:
            circuit_id = controller.new_circuit([n.fingerprint for n in path], await_build=True, timeout=10)
        except ControllerError as exc:  # also Timeout, CircuitExtensionFailed, InvalidRequest
            log.debug("circuit %s failed: %s", " > ".join(n.nickname for n in path), exc)
            return False
        try:
            controller.close_circuit(circuit_id)
        except ControllerError:
            pass  # tor closed it already
        return True

    def _connect(self, deadline: float) -> Controller:
        while True:
            self._check_alive()
            try:
                controller = Controller.from_port(LOOPBACK, self.client.control_port)
                controller.authenticate()
                return controller
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _progress(self, controller: Controller) -> str:
        try:
            phase = controller.get_info("status/bootstrap-phase")
            statuses = {s.fingerprint: sorted(s.flags) for s in controller.get_network_statuses()}
        except ControllerError as exc:
            return str(exc)
        named = {n.nickname: statuses.get(n.fingerprint) for n in self.exits}
        return f"{phase}; exits in consensus: {named}"

    def _check_alive(self) -> None:
        for nickname, proc in self._procs.items():
            if proc.poll() is not None:
                node = next(n for n in self.nodes if n.nickname == nickname)
                raise NetworkError(f"tor {nickname} exited ({proc.returncode}):\n{_tail(node.data_dir / 'notice.log')}")

    # -- what others need ------------------------------------------------------

    def pids(self) -> dict[int, str]:
        """{pid: nickname} of the running tors, exits first (they own the edge's peers)."""
        nodes = self.exits + [n for n in self.nodes if n.role != "exit"]
        procs = [(n.nickname, self._procs.get(n.nickname)) for n in nodes]
        return {proc.pid: nickname for nickname, proc in procs if proc and proc.poll() is None}

    def pid(self, nickname: str) -> int:
        return self._procs[nickname].pid

    def controller(self) -> Controller:
        """An authenticated controller on the client's ControlPort (the caller closes it)."""
        controller = Controller.from_port(LOOPBACK, self.client.control_port)
        controller.authenticate()
        return controller

    def consensus(self) -> str:
        """The current full (ns) consensus, from the first authority's DirPort."""
        auth = self.authorities[0]
        url = f"http://{auth.address}:{auth.dir_port}/tor/status-vote/current/consensus"
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(url, timeout=10) as response:
            return response.read().decode()

    def rss_bytes(self) -> int:
        """Total resident memory of the running tors."""
        return sum(processes.rss_bytes(pid) for pid in self.pids())


def consensus_nicknames(data_dir: Path) -> set[str]:
    """Nicknames of the relays in the consensus a tor holds (dir-spec: one "r" line per router
    status entry, nickname first); empty until it has one."""
    for name in ("cached-microdesc-consensus", "cached-consensus"):
        try:
            text = (data_dir / name).read_text(errors="replace")
        except FileNotFoundError:
            continue
        return {line.split()[1] for line in text.splitlines() if line.startswith("r ") and len(line.split()) > 1}
    return set()


def bootstrap_progress(phase: str) -> int:
    """The PROGRESS=N of a ``status/bootstrap-phase`` answer (0 if absent)."""
    match = re.search(r"\bPROGRESS=(\d+)", phase)
    return int(match.group(1)) if match else 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
