"""Recorded pages as test-bed sites: HAR captures served at the hosts they were recorded on.

A capture's main document (URL, status, headers, body; ``exporter.detect.saved``
reads it) becomes a site named after its file.  Its host, and every host its
HTML names in ``src``/``href``/``action`` (vendor scripts, frames, styles), are
put on the edge: the test bed's DNS answers them with the edge's address and
the edge's certificate names them.  So any fetcher, through any exit, gets the
page as it was recorded, and a browser asks every host the page names through
the same exit, as it would on the real web.  Sub-resources were not recorded:
they answer 404.

Recorded pages name their hosts without a port, so a replaying edge listens on
80 and 443.  Two captures of one URL cannot share it: the later one is served
at ``capture<N>.<host>`` (``capture<N>.replay.test`` for an address).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from exporter.detect.saved import SavedResponseError, load_saved
from testbed.behaviours import ANSWERS, Reply, Visit
from testbed.passes import Passes
from testbed.policy import Behaviour

EDGE_ADDRESS = "127.0.0.1"
# What a replayed site can be made to answer: the recording (slowly, too), a gate that never shows
# the real page, or a failure.  Behaviours that modify the real page need a page of ours.
REPLAY_BEHAVIOURS = ("ok", "slow", "block", "datadome", "perimeterx", "hang", "reset", "huge", "error")
# Headers that describe the recorded transfer, not the page: the edge frames the body itself.
_TRANSFER_HEADERS = {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive",
                     "alt-svc", "strict-transport-security", "upgrade", "proxy-connection", "http2-settings"}
_LINKED_HOST = re.compile(r"""\b(?:src|href|action|data-src)\s*=\s*["']?(?:https?:)?//([A-Za-z0-9.-]+)""", re.IGNORECASE)
_HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


class ReplayError(ValueError):
    """A capture directory that cannot be replayed; the message names the file."""


@dataclass(frozen=True)
class Capture:
    site: str  # the file's name without .har
    url: str  # where the edge serves it
    recorded_url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str
    linked_hosts: frozenset[str]  # hosts the page names, beyond its own

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def start(self) -> str:
        """Path and query a visit starts at."""
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def load_captures(directory: Path) -> list[Capture]:
    """Every ``*.har`` in ``directory``, by file name; ReplayError for an unreadable one or none."""
    files = sorted(Path(directory).glob("*.har"))
    if not files:
        raise ReplayError(f"{directory}: no .har files to replay")
    captures, taken = [], set()
    for index, path in enumerate(files, start=1):
        try:
            document = load_saved(path)
        except SavedResponseError as exc:
            raise ReplayError(str(exc)) from None
        parts = urlsplit(document.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReplayError(f"{path}: the main document's URL {document.url!r} is not http(s) with a host")
        host = parts.hostname.lower()
        if (host, parts.path, parts.query) in taken or not _servable(host):
            host = f"capture{index:03d}.{host if _is_name(host) else 'replay.test'}"
        taken.add((host, parts.path, parts.query))
        url = urlunsplit((parts.scheme, host, parts.path or "/", parts.query, ""))
        captures.append(Capture(
            site=path.stem, url=url, recorded_url=document.url, status=document.status,
            headers=tuple((n, v) for n, v in document.headers if n.lower() not in _TRANSFER_HEADERS
                          and not n.startswith(":")),
            body=document.body, linked_hosts=linked_hosts(document.body) - {host}))
    return captures


def linked_hosts(html: str) -> frozenset[str]:
    """Host names the page loads or links to by absolute URL (``src``, ``href``, ``action``)."""
    return frozenset(host for host in (m.lower().rstrip(".") for m in _LINKED_HOST.findall(html)) if _is_name(host))


def answer(capture: Capture, visit: Visit, behaviour: Behaviour, passes: Passes) -> Reply:
    """The recording at its own path (any query), 404 elsewhere; other behaviours as the policy says."""
    if behaviour.name not in ("ok", "slow"):
        return ANSWERS[behaviour.name](visit, behaviour, passes)
    if visit.host == capture.host and visit.route == capture.path:
        reply = Reply(capture.status, list(capture.headers), capture.body.encode())
    else:
        reply = not_recorded()
    if behaviour.name == "slow":
        reply.delay = behaviour["seconds"]
    return reply


def not_recorded() -> Reply:
    return Reply(404, [("Content-Type", "text/plain")], b"not in the capture\n")


def _servable(host: str) -> bool:
    """A name, or the edge's own address (an address elsewhere is not the edge's to serve)."""
    return _is_name(host) or host == EDGE_ADDRESS


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST_NAME.fullmatch(host))
    return False
