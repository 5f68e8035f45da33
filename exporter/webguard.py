"""Which requests the web endpoint takes: the names it answers to, and actions from our own origin only.

DNS rebinding: a page on ``evil.example`` whose name later resolves to
127.0.0.1 is same-origin with us in the victim's browser, and can read what we
serve.  Its requests still carry ``Host: evil.example``, so every request must
name a host we know (``web.allowed_hosts``).  An IP address in ``Host`` cannot
come from a rebound name, so addresses always pass: Prometheus scrapes by
address.

Cross-site requests: a page anywhere can make a browser POST a form or plain
text to us ("simple" requests go out without a CORS preflight).  An action
therefore needs a header no simple request can carry (``X-Requested-By``, any
value, or ``Content-Type: application/json``), and is refused when the browser
says it comes from elsewhere (``Sec-Fetch-Site``, ``Origin``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from email.message import Message
from urllib.parse import urlsplit

ACTION_HEADER = "X-Requested-By"
SAME_SITE_FETCHES = ("same-origin", "none")  # "none": typed in by the user
DEFAULT_PORTS = {"http": 80, "https": 443}


def default_allowed_hosts(listen_host: str) -> tuple[str, ...]:
    """The listen address's host (unless it is a wildcard), ``localhost`` and the machine's name."""
    names = ["localhost", socket.gethostname()]
    if listen_host not in ("", "0.0.0.0", "::"):
        names.insert(0, listen_host)
    return tuple(dict.fromkeys(name.lower() for name in names if name))


def split_host(host_header: str) -> tuple[str, int | None]:
    """``Host`` as (name, port), lowercased: ``[::1]:9981`` → ("::1", 9981), ``Example.org.`` → ("example.org", None)."""
    text = host_header.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:  # no port, or a bare IPv6 address
        host, port = text, ""
    return host.rstrip("."), int(port) if port.isdigit() else None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostCheck:
    """Whether a request's ``Host`` names us."""

    def __init__(self, allowed: Iterable[str]):
        self.allowed = frozenset(name.lower().rstrip(".") for name in allowed)

    def refusal(self, host_header: str | None) -> str | None:
        """Why a request with this ``Host`` is refused, or None (also without one: HTTP/1.0, not a browser)."""
        if host_header is None:
            return None
        host, _ = split_host(host_header)
        if _is_address(host) or host in self.allowed:
            return None
        return f"unknown host {host_header.strip()[:100]!r}; the exporter answers to web.allowed_hosts"


def cross_site_refusal(headers: Message) -> str | None:
    """Why an action (a POST) may not run, or None when it comes from our own origin or no browser."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in SAME_SITE_FETCHES:
        return f"refused a {site.strip()[:40]} request; actions come from this exporter's own pages or a client"
    origin = headers.get("Origin")
    if origin is not None and not _same_origin(origin, headers.get("Host")):
        return f"refused a request from origin {origin.strip()[:100]!r}"
    content_type = (headers.get("Content-Type") or "").partition(";")[0].strip().lower()
    if headers.get(ACTION_HEADER) is None and content_type != "application/json":
        return (f"an action needs the header {ACTION_HEADER} (any value) or Content-Type: application/json, "
                "which a cross-site form cannot send")
    return None


def _same_origin(origin: str, host_header: str | None) -> bool:
    """Whether ``Origin`` names the host and port the request was sent to."""
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return False
    default_port = DEFAULT_PORTS.get(parts.scheme)
    if not parts.hostname or host_header is None or default_port is None:
        return False
    host, port = split_host(host_header)
    return (parts.hostname.rstrip("."), origin_port or default_port) == (host, port or default_port)
