"""A loopback DNS server for the test-bed exits: test-bed names or NXDOMAIN.

Exits resolve the host names of streams (``socks5h``) with the servers listed
in their ``ServerDNSResolvConfFile``.  Tor's resolver (libevent evdns) accepts
``nameserver IP:PORT`` there and speaks UDP only, so one UDP socket on a free
loopback port is enough.  Names are answered from a table that may grow after
start (the edge's names are known only once it runs); anything else gets
NXDOMAIN, so no query ever needs to leave the machine.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

TTL = 60


class TableResolver(BaseResolver):
    """Answers A queries for names in ``records``; NXDOMAIN for every other name."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.queries: deque[tuple[str, str]] = deque(maxlen=1000)  # (name, type), newest last
        self._lock = threading.Lock()

    def set(self, name: str, address: str) -> None:
        with self._lock:
            self.records[_canonical(name)] = address

    def resolve(self, request, handler):
        reply = request.reply()
        name = _canonical(str(request.q.qname))
        with self._lock:
            address = self.records.get(name)
            self.queries.append((name, QTYPE[request.q.qtype]))
        if address is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=TTL))
        # A known name asked for another type (AAAA): NOERROR with no answer.
        return reply


def _canonical(name: str) -> str:
    return name.lower().rstrip(".")


class DnsServer:
    """UDP DNS server on ``host`` (a free port unless ``port`` is given)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.resolver = TableResolver()
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
        self._server = DNSServer(self.resolver, address=host, port=port, logger=quiet)
        self.host, self.port = self._server.server.server_address[:2]
        self._running = False

    def start(self) -> None:
        self._server.start_thread()
        self._running = True

    def stop(self) -> None:
        if self._running:  # shutdown() waits for a serve loop that must have started
            self._server.stop()
            self._running = False
        self._server.server.server_close()

    def add(self, name: str, address: str) -> None:
        self.resolver.set(name, address)

    def write_resolv_conf(self, path: Path) -> Path:
        """A resolv.conf naming only this server, for ``ServerDNSResolvConfFile``."""
        path.write_text(f"nameserver {self.host}:{self.port}\n")
        return path
