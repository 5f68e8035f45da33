"""The whole test bed: DNS → Tor network → edge, with its state as one JSON document.

The DNS server starts first because exits read its address from their
resolv.conf at start; the edge starts last because it identifies exits by the
PIDs of running tors.  ``TestBed`` is a context manager and stops everything
it started, in reverse order, whatever happens in between.

With ``latency`` (seconds, one way), delaying relays (``latency.Delays``) sit
in front of every ORPort and of the edge's ports, so each hop of a circuit
and the exit's connection to the edge pay it in each direction.  With
``replay`` (a directory of HAR captures), the edge also serves the recorded
pages at their own hosts (``replay``), on ports 80 and 443.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Self

from .dns import DnsServer
from .edge import Edge
from .geoipdb import assign_countries, write_country_db
from .latency import Delays
from .network import BootReport, TorNetwork
from .peers import peer_identifier
from .policy import Policy, default_policy
from .ports import free_ports
from .replay import load_captures
from .sites import Web

STANDARD_PORTS = (80, 443)  # where recorded pages expect their hosts

HOST = "127.0.0.1"
DEFAULT_EXITS = 4


class TestBed:
    """A private Tor network with ``exits`` exits, a DNS server and the edge web server.

    ``workdir`` defaults to a fresh temporary directory, removed on stop.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, exits: int = DEFAULT_EXITS, workdir: Path | None = None, policy: Policy | Path | None = None,
                 latency: float = 0.0, replay: Path | None = None) -> None:
        """``policy`` a Policy, or a YAML file naming any site of this bed (replayed ones included).
        ReplayError or PolicyError for a bad ``replay`` directory or policy file."""
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="captcha-testbed-"))
        self.latency = latency
        self.web = Web(load_captures(replay) if replay else ())
        self._public_ports = STANDARD_PORTS if replay else None
        if policy is not None and not isinstance(policy, Policy):
            policy = self.web.load_policy(Path(policy))
        self.delays = Delays(latency) if latency > 0 else None
        self.dns = DnsServer(HOST)
        self.network = TorNetwork(
            self.workdir / "tor", resolv_conf=self.workdir / "resolv.conf", exits=exits, delays=self.delays
        )
        self.countries = assign_countries([n.address for n in self.network.exits])
        self.geoip_db = self.workdir / "testbed-country.mmdb"
        self.identify = peer_identifier(self.network.pids,
                                        edge_ports=lambda: {self.edge.http_port, self.edge.https_port})
        self.edge = Edge(
            policy or default_policy([n.nickname for n in self.network.exits]),
            self._identify_behind_relays if self.delays else self.identify,
            self.workdir / "edge",
            host=HOST,
            web=self.web,
            ports=(0, 0) if self.delays else (self._public_ports or (0, 0)),
        )
        self.boot: BootReport | None = None

    def start(self) -> Self:
        try:
            self.dns.start()
            self.dns.write_resolv_conf(self.network.resolv_conf)
            for name in self.edge.hostnames():
                self.dns.add(name, HOST)
            write_country_db(self.geoip_db, self.countries)
            self.boot = self.network.start()
            (self.workdir / "edge").mkdir(exist_ok=True)
            self.edge.start()
            if self.delays is not None:
                self._delay_the_edge()
        except BaseException:
            self.stop()
            raise
        return self

    def _delay_the_edge(self) -> None:
        """Relays on new ports in front of the edge's; its URLs then name the relays' ports."""
        public = self._public_ports or free_ports(2, HOST)
        for port, inner in zip(public, (self.edge.http_port, self.edge.https_port)):
            self.delays.add((HOST, port), (HOST, inner))
        self.edge.expose(*public)

    def _identify_behind_relays(self, peer: tuple[str, int]) -> str | None:
        return self.identify(self.delays.origin(peer) or peer)

    def stop(self) -> None:
        """Stop the edge, every tor, the relays and the DNS server; remove the temporary directory."""
        try:
            self.edge.stop()
        finally:
            try:
                self.network.stop()
            finally:
                if self.delays is not None:
                    self.delays.stop()
                self.dns.stop()
                if self._own_workdir:
                    shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def state(self) -> dict:
        """The state document (docs/architecture.md, "Test bed state file")."""
        net, edge = self.network, self.edge
        client = net.client
        return {
            "client": {
                "control_host": HOST,
                "control_port": client.control_port,
                "socks_host": HOST,
                "socks_port": client.socks_port,
                "cookie_file": str(net.cookie_file),
                "data_directory": str(client.data_dir),
            },
            "exits": [
                {
                    "fingerprint": node.fingerprint,
                    "nickname": node.nickname,
                    "address": node.address,
                    "country": self.countries[node.address],
                    "pid": net.pid(node.nickname),
                }
                for node in net.exits
            ],
            "relays": [
                {"fingerprint": node.fingerprint, "nickname": node.nickname, "role": node.role}
                for node in net.authorities + net.middles
            ],
            "dns": {"host": self.dns.host, "port": self.dns.port},
            "geoip_db": str(self.geoip_db),
            "edge": {
                "http_port": edge.http_port,
                "https_port": edge.https_port,
                "admin_url": edge.admin_url,
                "ca_file": str(edge.ca_file),
                "sites": edge.site_urls("http"),
                "hostnames": edge.hostnames(),
            },
            "policy": edge.policy.to_dict(),
            "latency_seconds": self.latency,
            "boot_seconds": round(self.boot.seconds, 2) if self.boot else None,
        }

    def write_state(self, path: Path) -> Path:
        path.write_text(json.dumps(self.state(), indent=2) + "\n")
        return path
