"""The exporter's HTTP endpoint: /metrics, a landing page, probe pages, /api/v1/probes (exporter.api), evidence,
the latest daily report, health, readiness, reload.

Every request must name a host we answer to, and an action (POST) must come
from no browser or our own origin (exporter.webguard); every route sits behind
the optional web config (TLS, basic auth, extra headers; see exporter.webconfig).
Connections are capped (exporter.webconns).  Our own pages carry a CSP that
allows no script at all.  Evidence is what a remote site sent us, so it is served inert:
only known file names of well-formed probe ids, resolved inside the evidence
directory, HTML as text/plain, all under ``Content-Security-Policy: sandbox``.
"""

from __future__ import annotations

import argparse
import errno
import html
import json
import logging
import os
import re
import shutil
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from exporter import __version__, api
from exporter.basic_auth import BasicAuth, Busy
from exporter.evidence import (
    CHANGE_DIFF,
    HAR_FILE,
    HTML_FILE,
    PROBE_ID,
    SCREENSHOT_FILE,
)
from exporter.exposition import Exposition
from exporter.probe import ProbeResult
from exporter.store import probe_record
from exporter.webconfig import WebConfig, WebConfigFile
from exporter.webconns import Connections, default_limit
from exporter.webguard import HostCheck, cross_site_refusal, default_allowed_hosts

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
JSON = "application/json"
TLS_HANDSHAKE_SECONDS = 10.0
ACCEPT_BACKOFF_SECONDS = 0.1  # out of file descriptors: wait before accepting again instead of spinning
PROBES_PER_PAGE = 50  # recent probes on one landing page
LANDING_CONFIG_CHARS = 64 * 1024  # a longer /config is linked from the landing page, not shown on it
PAGE_HEADERS = (
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
EVIDENCE_CSP = "sandbox; default-src 'none'"
# file name → (content type, served as a download)
EVIDENCE_FILES = {
    HTML_FILE: (TEXT, False),
    SCREENSHOT_FILE: ("image/png", False),
    HAR_FILE: ("application/json", True),
    CHANGE_DIFF: (TEXT, False),
}
TOO_MANY_CONNECTIONS = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        b"Content-Length: 22\r\nRetry-After: 1\r\nConnection: close\r\n\r\nToo many connections.\n")
_PROBE_PATH = re.compile(r"/probe/([^/]+)")
_EVIDENCE_PATH = re.compile(r"/evidence/([^/]+)/([^/]+)")


class View(Protocol):
    """What the web endpoint needs from the running exporter."""

    exposition: Exposition

    def ready(self) -> tuple[bool, str]: ...

    def status(self) -> dict[str, str]: ...

    def recent(self) -> list[ProbeResult | dict[str, Any]]:
        """Recent probes, oldest first: results, or records as exporter.store.probe_record makes them."""

    def probe(self, probe_id: str) -> dict[str, Any] | None:
        """One probe's record (exporter.store.probe_record), or None."""

    def probes(self, limit: int, since: float | None, until: float | None, **equal: str | None) -> list[dict]:
        """Probe records for /api/v1/probes, newest first (exporter.store.Store.probes)."""

    def config_text(self) -> str: ...

    def evidence_dir(self) -> Path | None:
        """The directory holding ``<probe_id>/<file>`` evidence, or None when none is kept."""

    def latest_report(self) -> tuple[date, Path] | None:
        """The newest daily report (exporter.report): its day and file, or None."""

    def reload(self) -> tuple[bool, str]:
        """Re-read the configuration: (True, summary) or (False, why it was rejected)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web.listen-address", dest="web_listen_address", metavar="[HOST]:PORT", default=None,
                        type=listen_address, help="address of /metrics and the pages, instead of the config's "
                                                  "web.listen (:PORT: every IPv4 address)")
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="FILE", default=None,
                        help="exporter-toolkit web config: TLS, basic auth, headers, rate limit "
                             "(re-read when it changes)")


def listen_address(text: str) -> tuple[str, int]:
    """``--web.listen-address`` as exporter-toolkit takes it: ``host:port``, ``[v6]:port``, or ``:port``."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^\s:\[\]/]*)):(\d{1,5})", text)
    if not match or not 1 <= int(match.group(3)) <= 65535:
        raise argparse.ArgumentTypeError(f"expected [HOST]:PORT with a port from 1 to 65535, got {text!r}")
    return match.group(1) or match.group(2) or "0.0.0.0", int(match.group(3))


class WebServer:
    """The endpoint on ``host:port``; ``web_config`` is an exporter-toolkit web-config file.

    ``allowed_hosts``: the names a request's ``Host`` may give (addresses always
    pass; default: see exporter.webguard.default_allowed_hosts).
    ``max_connections``: connections open at once (default: exporter.webconns.default_limit).
    Raises ConfigError for an invalid web config and OSError when it cannot listen.
    """

    def __init__(self, view: View, host: str, port: int, web_config: str | Path | None = None,
                 allowed_hosts: Iterable[str] | None = None, max_connections: int | None = None):
        handler = type("Handler", (_Handler,), {"view": view})
        web = WebConfigFile(web_config) if web_config else None
        hosts = HostCheck(default_allowed_hosts(host) if allowed_hosts is None else allowed_hosts)
        connections = Connections(max_connections or default_limit())
        self.httpd = _Server((host, port), handler, web, hosts, connections)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="web", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.httpd.server_address[:2]

    @property
    def tls(self) -> bool:
        """Whether connections are served over TLS now."""
        config = self.httpd.config()
        return config is not None and config.ssl_context is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; also when ``start`` never ran: ``shutdown()`` waits for
        ``serve_forever`` to acknowledge, which without a serving thread never comes."""
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Each request is a connection of its own (HTTP/1.0): the default accept queue of 5 overflows
    # with a few dozen clients, and a dropped connection attempt is only retried a second later.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type, web: WebConfigFile | None, hosts: HostCheck,
                 connections: Connections):
        self.web = web
        self.hosts = hosts
        self.connections = connections
        self.auth = BasicAuth()
        self._accept_failed_at = -60.0
        super().__init__(address, handler)

    def config(self) -> WebConfig | None:
        """The web config in force (None without a file)."""
        return self.web.current() if self.web else None

    def get_request(self):
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                if time.monotonic() - self._accept_failed_at >= 60.0:  # one line a minute, not ten a second
                    self._accept_failed_at = time.monotonic()
                    log.error("cannot accept web connections", extra={"err": os.strerror(exc.errno)})
                time.sleep(ACCEPT_BACKOFF_SECONDS)  # the listening socket stays readable: do not spin
            raise

    def process_request(self, request: socket.socket, client_address) -> None:
        if self.connections.admit(request):
            super().process_request(request, client_address)
            return
        config = self.config()
        try:
            if config is None or config.ssl_context is None:  # in a TLS handshake, plain text is noise
                request.setblocking(False)
                request.send(TOO_MANY_CONNECTIONS)
        except OSError:
            pass
        finally:
            super().shutdown_request(request)

    def shutdown_request(self, request: socket.socket) -> None:
        self.connections.release(request)  # while its descriptor number is still its own
        super().shutdown_request(request)

    def handle_error(self, request: socket.socket, client_address) -> None:
        """A client that goes away mid-request is routine: one debug line, not a traceback on stderr."""
        error = sys.exc_info()[1]
        client = client_address[0] if client_address else ""
        if isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):
            log.debug("web client went away", extra={"client": client, "err": f"{type(error).__name__}: {error}"})
        else:
            log.error("web connection failed", exc_info=error, extra={"client": client})

    def finish_request(self, request: socket.socket, client_address) -> None:
        """Runs in the connection's own thread, so a slow TLS handshake holds up no one else."""
        context = (self.config() or WebConfig()).ssl_context
        if context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(TLS_HANDSHAKE_SECONDS)
        try:
            secure = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake failed", extra={"client": client_address[0], "err": str(exc)})
            return
        try:
            super().finish_request(secure, client_address)
        finally:
            self.shutdown_request(secure)


class _Handler(BaseHTTPRequestHandler):
    view: View
    server: _Server
    server_version = f"captcha-exporter/{__version__}"
    timeout = 30.0  # a client that stalls mid-request loses its connection
    _extra: tuple[tuple[str, str], ...] = ()  # the web config's headers for this request
    _head = False  # a HEAD request: headers only

    def handle_one_request(self) -> None:
        self.server.connections.waiting(self.connection)
        super().handle_one_request()

    def do_GET(self) -> None:
        self._serve(self._get)

    def do_HEAD(self) -> None:
        """Health checks such as ``wget --spider`` send HEAD."""
        self._head = True
        self._serve(self._get)

    def do_POST(self) -> None:
        self._serve(self._post)

    def _serve(self, route) -> None:
        self.server.connections.busy(self.connection)
        path = self.path.split("?", 1)[0]
        refusal = self.server.hosts.refusal(self.headers.get("Host"))
        if refusal is not None:
            self._send(421, (refusal + "\n").encode(), TEXT)
            return
        config = self.server.config()
        if config is not None:
            self._extra = config.headers
            if not self.server.web.allow():
                self._send(429, b"Too many requests.\n", TEXT)
                return
            if config.auth_required and path not in config.auth_excluded_paths:
                try:
                    authorized = self.server.auth.authorized(config.users, self.headers.get("Authorization"))
                except Busy:
                    self._send(429, b"Too many logins at once; try again.\n", TEXT, [("Retry-After", "1")])
                    return
                if not authorized:
                    self._send(401, b"Unauthorized.\n", TEXT,
                               [("WWW-Authenticate", 'Basic realm="captcha-exporter", charset="UTF-8"')])
                    return
        try:
            route(path)
        except (ConnectionError, TimeoutError):
            raise  # the client went away: _Server.handle_error logs it
        except Exception:  # a bug in one page must not take the endpoint down
            log.exception("web request failed", extra={"path": self.path})
            self._send(500, b"Internal error; see the exporter's log.\n", TEXT)

    def _get(self, path: str) -> None:
        if path == "/metrics":
            body = self.view.exposition.body(self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", ""))
            headers = [("Vary", "Accept-Encoding")] + ([("Content-Encoding", "gzip")] if body.gzipped else [])
            self._send(200, body.data, body.content_type, headers)
        elif path == "/":
            self._page(200, landing_page(self.view, self._page_number()))
        elif path == "/config":
            self._send(200, self.view.config_text().encode(), TEXT)
        elif path == "/api/v1/probes":
            status, document = api.answer(self.view, self.path.partition("?")[2])
            self._send(status, json.dumps(document, separators=(",", ":")).encode(), JSON)
        elif path == "/reports/latest":
            self._latest_report()
        elif path == "/-/healthy":
            self._send(200, b"Healthy.\n", TEXT)
        elif path == "/-/ready":
            ok, why = self.view.ready()
            self._send(200 if ok else 503, (why + "\n").encode(), TEXT)
        elif path == "/-/reload":
            self._send(405, b"Use POST to reload.\n", TEXT, [("Allow", "POST")])
        elif match := _PROBE_PATH.fullmatch(path):
            self._probe_page(match.group(1))
        elif match := _EVIDENCE_PATH.fullmatch(path):
            self._evidence(match.group(1), match.group(2))
        else:
            self._send(404, b"Not found.\n", TEXT)

    def _post(self, path: str) -> None:
        if path != "/-/reload":
            self._send(405, b"Only /-/reload takes POST.\n", TEXT, [("Allow", "GET")])
            return
        refusal = cross_site_refusal(self.headers)
        if refusal is not None:
            self._send(403, (refusal + "\n").encode(), TEXT)
            return
        ok, message = self.view.reload()
        self._send(200 if ok else 500, (message + "\n").encode(), TEXT)

    def _page_number(self) -> int:
        """``?page=N`` (1 for the newest probes; anything else reads as 1)."""
        value = parse_qs(self.path.partition("?")[2]).get("page", ["1"])[0]
        return max(1, int(value)) if value.isdigit() and len(value) < 6 else 1

    def _probe_page(self, probe_id: str) -> None:
        record = self.view.probe(probe_id) if PROBE_ID.fullmatch(probe_id) else None
        if record is None:
            self._send(404, b"No such probe.\n", TEXT)
            return
        self._page(200, probe_page(record, evidence_files(self.view, probe_id)))

    def _evidence(self, probe_id: str, name: str) -> None:
        path = evidence_path(self.view.evidence_dir(), probe_id, name)
        if path is None:
            self._send(404, b"No such evidence.\n", TEXT)
            return
        content_type, download = EVIDENCE_FILES[name]
        headers = [("Content-Security-Policy", EVIDENCE_CSP), ("Referrer-Policy", "no-referrer"),
                   ("X-Frame-Options", "DENY")]
        if download:
            headers.append(("Content-Disposition", f'attachment; filename="{probe_id}-{name}"'))
        with open(path, "rb") as file:
            self._start(200, content_type, os.fstat(file.fileno()).st_size, headers)
            if not self._head:
                shutil.copyfileobj(file, self.wfile)

    def _latest_report(self) -> None:
        latest = self.view.latest_report()
        if latest is None:
            self._send(404, b"No daily report yet.\n", TEXT)
            return
        path = latest[1]
        try:
            body = path.read_bytes()
        except OSError:  # removed meanwhile by the daily job
            self._send(404, b"No daily report yet.\n", TEXT)
            return
        content_type = JSON if path.suffix == ".json" else "text/csv; charset=utf-8"
        self._send(200, body, content_type, [("Content-Disposition", f'attachment; filename="{path.name}"')])

    def _page(self, status: int, text: str) -> None:
        self._send(status, text.encode(), HTML, list(PAGE_HEADERS))

    def _send(self, status: int, body: bytes, content_type: str, headers=()) -> None:
        self._start(status, content_type, len(body), headers)
        if not self._head:
            self.wfile.write(body)

    def _start(self, status: int, content_type: str, length: int, headers) -> None:
        """Status line and headers; the web config's headers fill in what the response does not set."""
        self.send_response(status)
        headers = [("Content-Type", content_type), ("Content-Length", str(length)),
                   ("X-Content-Type-Options", "nosniff"), *headers]
        given = {name.lower() for name, _ in headers}
        headers += [(name, value) for name, value in self._extra if name.lower() not in given]
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, format: str, *args) -> None:
        log.debug("http request", extra={"client": self.client_address[0], "request": format % args})


def evidence_path(directory: Path | None, probe_id: str, name: str) -> Path | None:
    """The evidence file ``name`` of ``probe_id``, or None unless it is a known file inside ``directory``.

    Names are checked as sent (no percent-decoding), and the resolved path, with
    symlinks followed, must still lie in the probe's directory.
    """
    if directory is None or not PROBE_ID.fullmatch(probe_id) or name not in EVIDENCE_FILES:
        return None
    root = Path(directory).resolve()
    try:
        path = (root / probe_id / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if path.parent != root / probe_id or not path.is_file():
        return None
    return path


def evidence_files(view: View, probe_id: str) -> list[str]:
    """The evidence files present for a probe, in EVIDENCE_FILES order."""
    return [name for name in EVIDENCE_FILES if evidence_path(view.evidence_dir(), probe_id, name)]


_STYLE = """<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:90%;vertical-align:top}
.challenge,.block{background:#fdd}.error{background:#ffd}.widget{background:#eef}
pre{background:#f6f6f6;padding:1em;overflow:auto}</style>"""


def _document(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f"{_STYLE}</head>\n<body>{body}</body></html>\n")


def _when(started: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started))


def _evidence_links(probe_id: str, files: list[str]) -> str:
    return " ".join(f'<a href="/evidence/{html.escape(probe_id)}/{name}">{name}</a>' for name in files)


def landing_page(view: View, page: int = 1) -> str:
    """Status, the configuration (up to LANDING_CONFIG_CHARS) and one page of recent probes, newest first."""
    esc = html.escape
    ready, why = view.ready()
    status_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in view.status().items())
    recent = view.recent()
    pages = max(1, -(-len(recent) // PROBES_PER_PAGE))
    page = min(page, pages)
    newest = len(recent) - (page - 1) * PROBES_PER_PAGE
    shown = recent[max(0, newest - PROBES_PER_PAGE):newest]
    records = [item if isinstance(item, dict) else probe_record(item) for item in shown]
    probe_rows = "".join(_probe_row(view, record) for record in reversed(records))
    return _document("captcha-exporter", f"""<h1>captcha-exporter {esc(__version__)}</h1>
<p>How often Tor users meet CAPTCHAs, challenges and block pages.
<a href="/metrics">Metrics</a> · <a href="/config">Configuration</a> ·
<a href="/api/v1/probes">Probes (JSON)</a> ·{_report_link(view)} <a href="/-/healthy">Health</a> ·
<a href="/-/ready">Readiness</a></p>
<h2>Status: {"ready" if ready else "not ready"}</h2><p>{esc(why)}</p>
<table>{status_rows}</table>
{_config_block(view.config_text())}
<h2>Recent probes</h2>
{_pager(page, pages)}
<table><tr><th>time (UTC)</th><th>target</th><th>exit</th><th>fingerprint</th><th>country</th>
<th>fetcher</th><th>verdict</th><th>provider</th><th>outcome</th><th>load s</th><th>probe</th><th>evidence</th></tr>
{probe_rows}</table>""")


def _report_link(view: View) -> str:
    """A link to the latest daily report, naming its day; nothing before the first."""
    latest = view.latest_report()
    return "" if latest is None else f' <a href="/reports/latest">Daily report ({latest[0].isoformat()})</a> ·'


def _pager(page: int, pages: int) -> str:
    """"page 2 of 4", with links to newer and older probes."""
    newer = f'<a href="/?page={page - 1}">newer</a> · ' if page > 1 else ""
    older = f' · <a href="/?page={page + 1}">older</a>' if page < pages else ""
    return f"<p>{newer}page {page} of {pages}{older}</p>"


def _config_block(text: str) -> str:
    if len(text) > LANDING_CONFIG_CHARS:
        return f'<p>Configuration in effect: {len(text):,} characters, on <a href="/config">/config</a>.</p>'
    return ('<details style="margin-top:1em"><summary>Configuration in effect</summary>'
            f"<pre>{html.escape(text)}</pre></details>")


def _probe_row(view: View, record: dict[str, Any]) -> str:
    esc = html.escape
    verdict = record["verdict"] or f"no answer: {record['error_reason']}"
    load = record["load_seconds"]
    # the direct route has no exit, nor has the onion route: the row names the route instead
    exit = record["exit"] or {"nickname": record.get("route") or "direct", "fingerprint": "", "country": ""}
    cells = (_when(record["started"]), record["target"], exit["nickname"], exit["fingerprint"], exit["country"],
             record["fetcher"], verdict, record["provider"], record["outcome"] or "",
             "" if load is None else f"{load:.2f}")
    probe_id = record["probe_id"]
    link = f'<a href="/probe/{esc(probe_id)}">{esc(probe_id)}</a>' if PROBE_ID.fullmatch(probe_id) else esc(probe_id)
    files = evidence_files(view, probe_id) if PROBE_ID.fullmatch(probe_id) else []
    return (f'<tr class="{esc(record["verdict"] or "error")}">' + "".join(f"<td>{esc(str(c))}</td>" for c in cells)
            + f"<td>{link}</td><td>{_evidence_links(probe_id, files)}</td></tr>\n")


def probe_page(record: dict[str, Any], files: list[str]) -> str:
    """Everything recorded about one probe, every value escaped."""
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(key)}</th><td>{esc(_shown(value))}</td></tr>" for key, value in _flat(record))
    evidence = _evidence_links(record["probe_id"], files) or "none kept"
    return _document(f"probe {record['probe_id']}", f"""<h1>Probe {esc(record["probe_id"])}</h1>
<p><a href="/">Back to the landing page</a> · started {esc(_when(record["started"]))} UTC</p>
<table>{rows}</table>
<h2>Evidence</h2><p>{evidence}</p>""")


def _flat(record: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"exit": {"country": "DE"}}`` → ``[("exit.country", "DE")]``."""
    items = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        items += _flat(value, name + ".") if isinstance(value, dict) and value else [(name, value)]
    return items


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)
