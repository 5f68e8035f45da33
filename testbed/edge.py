"""The test bed's exit-aware web server: HTTP and HTTPS on loopback, plus an admin port.

Per request the edge takes the site from the Host header (or HTTP/2's
``:authority``) through ``sites.Web`` (sites, their other hosts, vendor
hosts), the exit from ``identify(peer)`` (which tor exit owns the peer socket;
``"direct"`` when not through tor), and answers with the behaviour the policy
names for that pair.  Every exit connects from 127.0.0.1, so the peer address
alone cannot tell exits apart (tor ignores OutboundBindAddress for loopback).

Plain HTTP speaks HTTP/1.1.  The HTTPS port offers ``h2`` and ``http/1.1`` by
ALPN, as real edges do: browsers get HTTP/2 (``http2``), plain clients that
offer no ALPN get HTTP/1.1.  Both transports hand every request to
``Edge.handle``, which logs it with its protocol.
"""

from __future__ import annotations

import collections
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from testbed import behaviours
from testbed.http2 import Http2Connection
from testbed.passes import Passes
from testbed.policy import Policy, PolicyError
from testbed.sites import Web
from testbed.tls import issue_certificates, server_context

log = logging.getLogger(__name__)

Identify = Callable[[tuple[str, int]], "str | None"]

MAX_REQUEST_BODY = 1 << 20
REQUEST_LOG_SIZE = 10_000
SHUTDOWN_POLL = 0.1  # seconds; how long stop() may wait for each server loop


class Edge:
    """Serves the test bed's sites; what each exit sees comes from the policy.

    ``ports`` (HTTP, HTTPS) are free ones unless given: replayed pages name
    their hosts without a port, so they need 80 and 443.
    """

    def __init__(self, policy: Policy, identify: Identify, workdir: Path, host: str = "127.0.0.1",
                 web: Web | None = None, ports: tuple[int, int] = (0, 0)):
        self._policy = policy
        self._identify = identify
        self._workdir = Path(workdir)
        self._host = host
        self.web = web or Web()
        self._ports = ports
        self._passes = Passes()
        self._log: collections.deque[dict] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.http_port = self.https_port = 0
        self.ca_file: Path | None = None
        self.admin_url = ""

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Bind free ports for HTTP, HTTPS and admin, and serve each on a thread."""
        certs = issue_certificates(self._workdir, self.hostnames())
        self.ca_file = certs.ca_file
        self._stopping.clear()
        context = server_context(certs)
        context.set_alpn_protocols(["h2", "http/1.1"])
        http = _SiteServer((self._host, self._ports[0]), self, "http")
        https = _SiteServer((self._host, self._ports[1]), self, "https", context)
        admin = _AdminServer((self._host, 0), self)
        self._servers = [http, https, admin]
        self.http_port = http.server_address[1]
        self.https_port = https.server_address[1]
        self.admin_url = f"http://{self._host}:{admin.server_address[1]}"
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, args=(SHUTDOWN_POLL,), name=f"edge-{server.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        log.info("edge serving http:%d https:%d admin %s", self.http_port, self.https_port, self.admin_url)

    def expose(self, http_port: int, https_port: int) -> None:
        """Visitors reach the edge at these ports (relays in front of it): its URLs name them."""
        self.http_port, self.https_port = http_port, https_port

    def stop(self) -> None:
        """Stop serving, release held (hanging, slow) connections and close every socket."""
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.close_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> Edge:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what others read --------------------------------------------------

    def site_urls(self, scheme: str = "http") -> dict[str, str]:
        """Where a visit to each site starts (a port only where it is not the scheme's own)."""
        port = {"http": self.http_port, "https": self.https_port}[scheme]
        suffix = "" if port == {"http": 80, "https": 443}[scheme] else f":{port}"
        urls = {}
        for site in self.web.sites:
            host, path = self.web.start(site)
            urls[site] = f"{scheme}://{host}{suffix}{path}"
        return urls

    def hostnames(self) -> list[str]:
        """The names the test bed's DNS must answer (with this edge's address): sites and vendors."""
        return list(self.web.names)

    def requests(self) -> list[dict]:
        """What the edge served, oldest first: site, exit, behaviour, path, status, time, ..."""
        with self._lock:
            return list(self._log)

    @property
    def policy(self) -> Policy:
        return self._policy

    def set_policy(self, policy: Policy) -> None:
        self._policy = policy

    # -- used by the transports ---------------------------------------------

    def handle(self, scheme: str, protocol: str, exit_name: str | None, method: str, path: str, host: str,
               cookie_headers: list[str], body: bytes) -> behaviours.Reply:
        """Answer one request and log it: ``host`` is the Host header (or ``:authority``)."""
        name, port = _split_host(host)
        site = self.web.site_of(name)
        entry = {"time": time.time(), "site": site, "host": name, "exit": exit_name, "scheme": scheme,
                 "protocol": protocol, "method": method, "path": path}
        if site is None:
            entry.update(behaviour=None, status=421)
            self._record(entry)
            return behaviours.Reply(421, [("Content-Type", "text/plain")], b"unknown site\n")
        behaviour = self.policy.behaviour(site, exit_name)
        visit = behaviours.Visit(site=site, exit=exit_name, scheme=scheme, method=method, path=path,
                                 cookies=_cookies(cookie_headers), body=body, authority=name, port=port)
        reply = self.web.answer(visit, behaviour, self._passes)
        entry.update(behaviour=behaviour.name, status=reply.status)
        self._record(entry)
        return reply

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._log.append(entry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    name = "server"

    def __init__(self, address, handler, edge: Edge):
        self.edge = edge
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _SiteServer(_Server):
    def __init__(self, address, edge: Edge, scheme: str, tls=None):
        self.scheme = self.name = scheme
        self.tls = tls
        super().__init__(address, _SiteHandler, edge)

    def get_request(self):
        connection, address = super().get_request()
        if self.tls:
            # The handshake runs on the connection's own thread (finish_request).
            connection = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address

    def finish_request(self, request, client_address):
        """After the TLS handshake, ALPN decides: HTTP/2, or HTTP/1.1 (the handler)."""
        if self.tls:
            try:
                request.do_handshake()
            except OSError as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
            if request.selected_alpn_protocol() == "h2":
                self._serve_http2(request, client_address)
                return
        super().finish_request(request, client_address)

    def _serve_http2(self, request, client_address) -> None:
        exit_of = _ExitOf(self.edge, client_address)

        def handle(headers: list[tuple[str, str]], body: bytes) -> behaviours.Reply:
            pseudo = {name: value for name, value in headers if name.startswith(":")}
            return self.edge.handle(self.scheme, "HTTP/2", exit_of(), pseudo.get(":method", "GET"),
                                    pseudo.get(":path", "/"), pseudo.get(":authority", ""),
                                    [value for name, value in headers if name == "cookie"], body)

        Http2Connection(request, handle, self.edge._stopping.is_set, MAX_REQUEST_BODY).serve()


class _ExitOf:
    """The exit a connection came through, looked up once (a TCP connection never changes exit),
    at its first request: by then a delaying relay in front of the edge has said whose it is."""

    def __init__(self, edge: Edge, peer):
        self._edge, self._peer = edge, peer
        self._known, self._exit = False, None

    def __call__(self) -> str | None:
        if not self._known:
            try:
                self._exit = self._edge._identify(self._peer)
            except Exception:  # identify reads /proc; a vanished process is not our failure
                log.exception("identify(%s) failed", self._peer)
                self._exit = None
            self._known = True
        return self._exit


class _AdminServer(_Server):
    name = "admin"

    def __init__(self, address, edge: Edge):
        super().__init__(address, _AdminHandler, edge)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)

    def handle(self):
        try:
            super().handle()
        except OSError as exc:  # TLS handshake failures, resets, broken pipes
            log.debug("connection from %s ended: %s", self.client_address, exc)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass

    def _read_body(self) -> bytes:
        """The request body; ValueError if its length is not a number or is over MAX_REQUEST_BODY."""
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_REQUEST_BODY:
            raise ValueError(f"request body of {length} bytes refused")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers, body: bytes = b"") -> None:
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _SiteHandler(_Handler):
    server: _SiteServer

    def setup(self):
        super().setup()
        self._exit_of = _ExitOf(self.server.edge, self.client_address)

    def do_GET(self):
        self._serve()

    do_HEAD = do_POST = do_GET

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(400, [("Content-Type", "text/plain")], f"{exc}\n".encode())
            return
        reply = self.server.edge.handle(self.server.scheme, self.request_version, self._exit_of(), self.command,
                                        self.path, self.headers.get("Host", ""),
                                        self.headers.get_all("Cookie", []), body)
        self._deliver(reply)

    def _deliver(self, reply: behaviours.Reply) -> None:
        stopping = self.server.edge._stopping
        if reply.action == "hang":
            stopping.wait()  # accepted and read, never answered
            self.close_connection = True
            return
        if reply.action == "reset":
            # SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if reply.delay and stopping.wait(reply.delay):
            self.close_connection = True
            return
        if reply.chunks is None:
            self._send(reply.status, reply.headers, reply.body)
            return
        self.send_response_only(reply.status)
        self.send_header("Date", self.date_time_string())
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(reply.length))
        self.end_headers()
        if self.command != "HEAD":
            for chunk in reply.chunks:
                self.wfile.write(chunk)


class _AdminHandler(_Handler):
    """GET /requests, GET /policy, PUT /policy (YAML or JSON, validated)."""

    def do_GET(self):
        edge = self.server.edge
        if self.path == "/requests":
            self._json(200, edge.requests())
        elif self.path == "/policy":
            self._json(200, edge.policy.to_dict())
        else:
            self._json(404, {"error": f"no such endpoint {self.path}"})

    def do_PUT(self):
        if self.path != "/policy":
            self._json(404, {"error": f"no such endpoint {self.path}"})
            return
        try:
            policy = self.server.edge.web.load_policy(self._read_body().decode("utf-8", "replace"))
        except (PolicyError, ValueError) as exc:
            self._json(400, {"error": str(exc)})
            return
        self.server.edge.set_policy(policy)
        self._json(200, policy.to_dict())

    def _json(self, status: int, value) -> None:
        body = json.dumps(value, indent=1).encode() + b"\n"
        self._send(status, [("Content-Type", "application/json")], body)


def _split_host(host: str) -> tuple[str, int | None]:
    """``news.test:8080`` → ("news.test", 8080); ``[::1]`` and names without a port → (name, None)."""
    name, sep, port = host.rpartition(":")
    if not sep or host.endswith("]") or not port.isdigit():
        return host.lower().rstrip("."), None
    return name.lower().rstrip("."), int(port)


def _cookies(header_values: list[str]) -> dict[str, str]:
    """``Cookie: a=1; b=2`` (RFC 6265 §4.2) → {"a": "1", "b": "2"}."""
    cookies: dict[str, str] = {}
    for value in header_values:
        for pair in value.split(";"):
            name, sep, cookie_value = pair.strip().partition("=")
            if sep and name:
                cookies.setdefault(name, cookie_value.strip('"'))
    return cookies
