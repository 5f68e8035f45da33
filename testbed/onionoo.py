"""The test bed's Onionoo: a details document about its exits, at ``onionoo.test``, as Tor Metrics serves one.

``GET /details?search=flag:exit&fields=fingerprint,first_seen`` answers the
shape of Onionoo's details documents (see ``exporter.tor.onionoo``): one entry
per exit with ``fingerprint``, ``nickname``, ``first_seen`` (UTC,
``YYYY-MM-DD hh:mm:ss``), ``as``, ``as_name``, ``country`` (lower case) and
``exit_addresses``; ``fields=`` keeps only the named fields, as Onionoo does.
The exits are made to look their ages (``AGES``, one per exit in turn), so
every relay-age bucket has an exit.  Each request is logged with the exit it
came through (the edge's ``identify``): the exporter must fetch it through Tor.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOST_NAME = "onionoo.test"
DAY = 86400.0
AGES = (2 * DAY, 20 * DAY, 100 * DAY, 3 * 365 * DAY)  # under a week, a month, six months, and older


@dataclass(frozen=True)
class Relay:
    fingerprint: str
    nickname: str
    address: str
    country: str
    asn: int
    as_name: str
    first_seen: float  # unix time


def relays_with_ages(exits: list[dict], now: float) -> list[Relay]:
    """``exits`` (fingerprint, nickname, address, country, asn, as_name) with a first-seen time from AGES."""
    return [Relay(e["fingerprint"], e["nickname"], e["address"], e["country"], e["asn"], e["as_name"],
                  now - AGES[index % len(AGES)]) for index, e in enumerate(exits)]


def details(relays: list[Relay], fields: set[str] | None = None) -> dict:
    """The details document about ``relays`` (only ``fields`` of each entry when given)."""
    entries = []
    for relay in relays:
        entry = {"nickname": relay.nickname, "fingerprint": relay.fingerprint,
                 "first_seen": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(relay.first_seen)),
                 "as": f"AS{relay.asn}", "as_name": relay.as_name, "country": relay.country.lower(),
                 "exit_addresses": [relay.address], "flags": ["Exit", "Fast", "Running", "Valid"]}
        entries.append({k: v for k, v in entry.items() if fields is None or k in fields})
    published = time.strftime("%Y-%m-%d %H:00:00", time.gmtime())
    return {"version": "8.0", "relays_published": published, "relays": entries, "bridges": []}


class OnionooServer:
    """Serves the details document on ``host`` (a free port); ``requests`` lists what was asked, and through
    which exit."""

    def __init__(self, relays: list[Relay], identify: Callable[[tuple[str, int]], str | None], host: str):
        self.relays = relays
        self.requests: list[dict] = []
        self._identify = identify
        self._httpd = ThreadingHTTPServer((host, 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,), name="onionoo", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self) -> str:
        return f"http://{HOST_NAME}:{self.port}/details"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(server: OnionooServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = urlsplit(self.path)
            server.requests.append({"time": time.time(), "path": self.path, "exit": server._identify(self.client_address)})
            if parts.path != "/details":
                self._answer(404, {"error": "only /details is served here"})
                return
            query = parse_qs(parts.query)
            fields = set(query["fields"][0].split(",")) if "fields" in query else None
            self._answer(200, details(server.relays, fields))

        def _answer(self, status: int, document: dict) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler
