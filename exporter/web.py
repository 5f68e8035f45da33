"""The exporter's HTTP endpoint: /metrics, a landing page, the config in effect, health and readiness."""

from __future__ import annotations

import html
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.probe import ProbeResult

log = logging.getLogger(__name__)


class View(Protocol):
    """What the web endpoint needs from the running exporter."""

    registry: CollectorRegistry

    def ready(self) -> tuple[bool, str]: ...

    def status(self) -> dict[str, str]: ...

    def recent(self) -> list[ProbeResult]: ...

    def config_text(self) -> str: ...


class WebServer:
    def __init__(self, view: View, host: str, port: int):
        handler = type("Handler", (_Handler,), {"view": view})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="web", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.httpd.server_address[:2]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    view: View
    server_version = f"captcha-exporter/{__version__}"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.view.registry), content_type)
        elif path == "/":
            self._send(200, landing_page(self.view).encode(), "text/html; charset=utf-8")
        elif path == "/config":
            self._send(200, self.view.config_text().encode(), "text/plain; charset=utf-8")
        elif path == "/-/healthy":
            self._send(200, b"Healthy.\n", "text/plain; charset=utf-8")
        elif path == "/-/ready":
            ok, why = self.view.ready()
            self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._send(404, b"Not found.\n", "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.debug("http request", extra={"client": self.client_address[0], "request": format % args})


def landing_page(view: View) -> str:
    esc = html.escape
    ready, why = view.ready()
    status_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in view.status().items())
    probe_rows = "".join(_probe_row(r) for r in reversed(view.recent()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>captcha-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:90%}}
.challenge,.block{{background:#fdd}}.error{{background:#ffd}}.widget{{background:#eef}}</style></head>
<body><h1>captcha-exporter {esc(__version__)}</h1>
<p>How often Tor users meet CAPTCHAs, challenges and block pages.
<a href="/metrics">Metrics</a> · <a href="/config">Configuration</a> ·
<a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
<h2>Status: {"ready" if ready else "not ready"}</h2><p>{esc(why)}</p>
<table>{status_rows}</table>
<h2>Recent probes</h2>
<table><tr><th>time (UTC)</th><th>target</th><th>exit</th><th>fingerprint</th><th>country</th>
<th>fetcher</th><th>verdict</th><th>provider</th><th>outcome</th><th>load s</th><th>probe id</th></tr>
{probe_rows}</table></body></html>
"""


def _probe_row(result: ProbeResult) -> str:
    esc = html.escape
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(result.started))
    if result.verdict is not None:
        verdict, provider = result.verdict.kind, result.verdict.provider
        outcome, load = result.fetch.outcome or "", f"{result.fetch.load_seconds:.2f}"
    else:
        verdict, provider, outcome, load = f"no answer: {result.error_reason}", "", "", ""
    css = result.verdict.kind if result.verdict else "error"
    cells = (when, result.target, result.exit.nickname, result.exit.fingerprint, result.exit.country,
             result.fetcher, verdict, provider, outcome, load, result.probe_id)
    return f'<tr class="{esc(css)}">' + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>\n"
