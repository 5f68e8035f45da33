"""The whole test bed: DNS → Tor network → edge (→ an onion service), with its state as one JSON document.

The DNS server starts first because exits read its address from their
resolv.conf at start; the edge starts last because it identifies exits by the
PIDs of running tors.  With ``onion_site``, a tor of its own then runs a v3
onion service leading to that site on the edge, and the bed is ready once a
client reaches it (its descriptor is published: 10-40 s more on this machine).
``TestBed`` is a context manager and stops everything
it started, in reverse order, whatever happens in between.

With ``latency`` (seconds, one way), delaying relays (``latency.Delays``) sit
in front of every ORPort and of the edge's ports, so each hop of a circuit
and the exit's connection to the edge pay it in each direction.  With
``replay`` (a directory of HAR captures), the edge also serves the recorded
pages at their own hosts (``replay``), on ports 80 and 443.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Self

import requests

from .behaviours import onion_address, onion_seed
from .dns import DnsServer
from .edge import Edge
from .geoipdb import assign_countries, assign_networks, write_asn_db, write_country_db
from .latency import Delays
from .network import BootReport, TorNetwork
from .onionoo import HOST_NAME as ONIONOO_HOST
from .onionoo import OnionooServer, relays_with_ages
from .peers import peer_identifier
from .policy import ONION, Policy, default_policy
from .ports import free_ports
from .replay import load_captures
from .sites import Web

STANDARD_PORTS = (80, 443)  # where recorded pages expect their hosts

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_EXITS = 4
ONION_READY_SECONDS = 180.0


class TestBed:
    """A private Tor network with ``exits`` exits, a DNS server and the edge web server.

    ``workdir`` defaults to a fresh temporary directory, removed on stop.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, exits: int = DEFAULT_EXITS, workdir: Path | None = None, policy: Policy | Path | None = None,
                 latency: float = 0.0, replay: Path | None = None, onion_site: str | None = None) -> None:
        """``policy`` a Policy, or a YAML file naming any site of this bed (replayed ones included).
        ``onion_site`` also gets a v3 onion service.  ReplayError or PolicyError for a bad
        ``replay`` directory or policy file."""
        self._own_workdir = workdir is None
        self.onion_site = onion_site
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
        self.networks = assign_networks([n.address for n in self.network.exits])
        self.geoip_db = self.workdir / "testbed-country.mmdb"
        self.asn_db = self.workdir / "testbed-asn.mmdb"
        self.identify = peer_identifier(self.network.pids, edge_ports=lambda: {
            self.edge.http_port, self.edge.https_port, self.onionoo.port if self.onionoo else 0})
        self.onionoo: OnionooServer | None = None
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
            write_asn_db(self.asn_db, self.networks)
            self.boot = self.network.start()
            (self.workdir / "edge").mkdir(exist_ok=True)
            self.edge.start()
            if self.delays is not None:
                self._delay_the_edge()
            self._start_onionoo()
            if self.onion_site:
                self._start_onion_service(self.onion_site)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_onionoo(self) -> None:
        """Onionoo's details document about the exits, at onionoo.test (through the exits, as any site)."""
        exits = [{"fingerprint": node.fingerprint, "nickname": node.nickname, "address": node.address,
                  "country": self.countries[node.address], "asn": self.networks[node.address][0],
                  "as_name": self.networks[node.address][1]} for node in self.network.exits]
        self.onionoo = OnionooServer(relays_with_ages(exits, time.time()), self.identify, HOST)
        self.onionoo.start()
        self.dns.add(ONIONOO_HOST, HOST)

    def _delay_the_edge(self) -> None:
        """Relays on new ports in front of the edge's; its URLs then name the relays' ports."""
        public = self._public_ports or free_ports(2, HOST)
        for port, inner in zip(public, (self.edge.http_port, self.edge.https_port)):
            self.delays.add((HOST, port), (HOST, inner))
        self.edge.expose(*public)

    def _identify_behind_relays(self, peer: tuple[str, int]) -> str | None:
        return self.identify(self.delays.origin(peer) or peer)

    def _start_onion_service(self, site: str) -> None:
        self.network.start_onion_service(onion_seed(site), self.edge.http_port, nickname=ONION)
        self.edge.serve_onion(site, onion_address(site))
        client = self.network.client
        proxy = f"socks5h://{HOST}:{client.socks_port}"
        deadline = time.monotonic() + ONION_READY_SECONDS
        while True:  # the client attaches its own streams until an exporter takes over
            self.network.check_alive()
            try:
                answer = requests.get(f"http://{onion_address(site)}/", proxies={"http": proxy}, timeout=30)
                if answer.status_code:
                    return
            except requests.RequestException as exc:
                log.debug("onion service not reachable yet: %s", exc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the onion service of {site} was not reachable within {ONION_READY_SECONDS:.0f} s")
            time.sleep(1)

    def stop(self) -> None:
        """Stop the edge, Onionoo, every tor, the relays and the DNS server; remove the temporary directory."""
        if self.onionoo is not None:
            self.onionoo.stop()
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
            "asn_db": str(self.asn_db),
            "onionoo": {"url": self.onionoo.url() if self.onionoo else None},
            "edge": {
                "http_port": edge.http_port,
                "https_port": edge.https_port,
                "admin_url": edge.admin_url,
                "ca_file": str(edge.ca_file),
                "sites": edge.site_urls("http"),
                "hostnames": edge.hostnames(),
            },
            "onion": {"site": self.onion_site, "address": onion_address(self.onion_site),
                      "url": f"http://{onion_address(self.onion_site)}/"} if self.onion_site else None,
            "policy": edge.policy.to_dict(),
            "latency_seconds": self.latency,
            "boot_seconds": round(self.boot.seconds, 2) if self.boot else None,
        }

    def write_state(self, path: Path) -> Path:
        path.write_text(json.dumps(self.state(), indent=2) + "\n")
        return path
