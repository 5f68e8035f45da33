"""Evidence of a probe on disk: a HAR, the final HTML and a screenshot, with retention.

Layout: ``<data_dir>/evidence/<probe_id>/{probe.har,page.html,screenshot.png,change.diff}``.
Probe ids start with their UTC time (``20261122T031500Z-a1b2c3``), so sorting
them sorts probes oldest first, which is the order retention deletes them in.

The HAR (1.2) lists the first document response (status, headers and its own
body, or the final HTML when the fetcher kept none) as the first entry, so a
reader that takes "the first entry whose response is HTML" as the main document
re-classifies what the probe saw first; when the final page differs, it follows
as a second entry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exporter import __version__
from exporter.config import Evidence
from exporter.redact import BY_SHAPE, Redactor
from exporter.values import FetchResult, Response

PROBE_ID = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{4,32}$")
HAR_FILE, HTML_FILE, SCREENSHOT_FILE = "probe.har", "page.html", "screenshot.png"
CHANGE_DIFF = "change.diff"  # how the page differs from the one fetched without Tor

_retention_lock = threading.Lock()


def save_evidence(
    data_dir: Path,
    probe_id: str,
    result: FetchResult,
    screenshot_png: bytes | None,
    limits: Evidence,
    diff: str | None = None,
    redactor: Redactor = BY_SHAPE,
) -> Path:
    """Write the probe's evidence and apply retention; returns the probe's directory.

    ``redactor`` takes the config's secrets out of what is written (URLs and
    headers in full, page text only where it repeats a configured secret).
    Retention deletes whole probe directories, oldest first, until the store
    holds at most ``limits.max_files`` files and ``limits.max_bytes`` bytes; the
    probe just written is always kept.
    """
    match = PROBE_ID.match(probe_id)
    if match is None:
        raise ValueError(f"not a probe id: {probe_id!r}")
    started = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    store = Path(data_dir) / "evidence"
    directory = store / probe_id
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(store, 0o700)  # what sites sent us, maybe behind a login: ours alone
    _write_private(directory / HAR_FILE, json.dumps(har(result, started, redactor), indent=1).encode("utf-8"))
    _write_private(directory / HTML_FILE, redactor.page(result.final.body).encode("utf-8"))
    if screenshot_png:
        _write_private(directory / SCREENSHOT_FILE, screenshot_png)
    if diff:
        _write_private(directory / CHANGE_DIFF, redactor.page(diff).encode("utf-8"))
    with _retention_lock:
        enforce_retention(store, limits, keep=probe_id)
    return directory


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` readable by its owner alone (mode 0600, whatever the umask)."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        file.write(data)


def enforce_retention(store: Path, limits: Evidence, keep: str) -> list[str]:
    """Delete probe directories oldest first until ``store`` is within ``limits``;
    never ``keep``.  Returns the deleted probe ids."""
    probes = []
    for directory in sorted(p for p in store.iterdir() if p.is_dir() and PROBE_ID.match(p.name)):
        sizes = [f.stat().st_size for f in directory.iterdir() if f.is_file()]
        probes.append((directory, len(sizes), sum(sizes)))
    files = sum(count for _, count, _ in probes)
    size = sum(total for _, _, total in probes)
    deleted = []
    for directory, count, total in probes:
        if files <= limits.max_files and size <= limits.max_bytes:
            break
        if directory.name == keep:
            continue
        shutil.rmtree(directory, ignore_errors=True)
        files, size = files - count, size - total
        deleted.append(directory.name)
    return deleted


def har(result: FetchResult, started: datetime, redactor: Redactor = BY_SHAPE) -> dict:
    """A HAR 1.2 log of the probe's main document (see the module docstring), without secrets."""
    first = result.first
    entries = [_entry(first, first.body or result.final.body, started, result, redactor)]
    final = result.final
    if (final.url, final.status, final.body) != (first.url, first.status, first.body or final.body):
        finished = started + timedelta(seconds=result.clear_seconds or result.load_seconds)
        entries.append(_entry(final, final.body, finished, result, redactor))
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "captcha-exporter", "version": __version__},
            "pages": [{
                "startedDateTime": started.isoformat(),
                "id": "page_1",
                "title": redactor.text(final.url),
                "pageTimings": {
                    "onContentLoad": _ms(result.phases.get("dom_content_loaded")),
                    "onLoad": _ms(result.load_seconds),
                },
            }],
            "entries": entries,
        }
    }


def _entry(response: Response, body: str, started: datetime, result: FetchResult, redactor: Redactor) -> dict:
    mime = response.header("content-type") or "text/html"
    body = redactor.page(body)
    return {
        "pageref": "page_1",
        "startedDateTime": started.isoformat(),
        "time": _ms(result.load_seconds),
        "request": {
            "method": "GET", "url": redactor.text(response.url), "httpVersion": "HTTP/1.1",
            "cookies": [], "headers": [], "queryString": [], "headersSize": -1, "bodySize": 0,
        },
        "response": {
            "status": response.status,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "cookies": [{**cookie, "value": redactor.page(cookie["value"])} for cookie in _cookies(response)],
            "headers": [{"name": name, "value": redactor.text(value)} for name, value in response.headers],
            "content": {"size": len(body.encode("utf-8")), "mimeType": mime, "text": body},
            "redirectURL": redactor.text(response.header("location") or ""),
            "headersSize": -1,
            "bodySize": -1,
        },
        "cache": {},
        "timings": {"send": 0, "wait": _ms(result.phases.get("ttfb", 0.0)), "receive": 0},
    }


def _cookies(response: Response) -> list[dict]:
    """HAR cookies from the response's ``Set-Cookie`` headers (name and value only)."""
    pairs = (header.split(";", 1)[0].split("=", 1) for header in response.header_values("set-cookie"))
    return [{"name": pair[0].strip(), "value": pair[1].strip()} for pair in pairs if len(pair) == 2]


def _ms(seconds: float | None) -> float:
    return -1 if seconds is None else round(seconds * 1000.0, 3)
