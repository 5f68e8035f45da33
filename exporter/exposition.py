"""The bytes of /metrics: rendered off the scrape path once rendering gets expensive, gzipped when asked.

prometheus_client renders every series on every call.  With a few targets that
takes milliseconds and a scrape simply renders.  At 1,500 exits × 50 targets it
takes about a second, which every scrape would wait for: then a renderer thread
keeps the bytes up to date instead (after the metrics changed, and at least
every ``max_age`` seconds, because coverage and the plan gauges move with the
clock), spending at most ``cpu_share`` of one CPU, and a scrape gets the newest
bytes at once.  Process metrics (CPU, memory, start time) are rendered at every
scrape: a few lines that change all the time.

Concatenated gzip members are one valid gzip stream (RFC 1952, 2.2), so the
cached part is compressed once and only the process lines at each scrape.
"""

from __future__ import annotations

import gzip
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

SYNC_RENDER_SECONDS = 0.05  # a scrape renders by itself while a render takes less than this
FORGET_FORMAT_SECONDS = 600.0  # a format nobody asked for in this long is no longer kept up to date
OPENMETRICS_EOF = b"# EOF\n"


@dataclass(frozen=True)
class Body:
    """One /metrics answer: its bytes, their Content-Type, and whether they are gzipped."""

    data: bytes
    content_type: str
    gzipped: bool


@dataclass
class _Rendered:
    encode: Callable[[CollectorRegistry], bytes]
    plain: bytes = b""  # without OpenMetrics' closing "# EOF" line: the live part follows
    gzipped: bytes | None = None
    gzip_wanted: bool = False
    version: int = -1
    rendered_at: float = 0.0
    requested_at: float = 0.0


class Exposition:
    """Renders ``registry`` (cached when expensive) followed by ``live`` (always fresh)."""

    def __init__(self, registry: CollectorRegistry, live: CollectorRegistry | None = None,
                 max_age: float = 30.0, cpu_share: float = 0.1):
        self._registry = registry
        self._live = live or CollectorRegistry()
        self._max_age = max_age
        self._cpu_share = cpu_share
        self._formats: dict[str, _Rendered] = {}  # by Content-Type
        self._lock = threading.Lock()  # guards the rendered bytes and their bookkeeping
        self._versions = itertools.count(1)
        self._version = 0
        self.render_seconds = 0.0  # how long the last full render took
        self._last_start = 0.0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def changed(self) -> None:
        """The metrics changed: the next scrape must not get bytes from before."""
        self._version = next(self._versions)
        if self._thread is not None:
            self._wake.set()

    def body(self, accept: str = "", accept_encoding: str = "") -> Body:
        encode, content_type = choose_encoder(accept)
        gzipped = gzip_accepted(accept_encoding)
        with self._lock:  # held for bookkeeping only, never while rendering
            rendered = self._formats.setdefault(content_type, _Rendered(encode))
            rendered.gzip_wanted |= gzipped
            rendered.requested_at = time.monotonic()
            render_now = not rendered.rendered_at or self.render_seconds < SYNC_RENDER_SECONDS
            if not render_now and self._stale(rendered):
                self._ensure_renderer()
                self._wake.set()
            plain, packed = rendered.plain, rendered.gzipped
        if render_now:
            plain, packed = self._render(rendered, gzipped)
        if gzipped and packed is None:
            packed = gzip.compress(plain, compresslevel=6)
            with self._lock:
                if rendered.plain is plain:
                    rendered.gzipped = packed
        live = encode(self._live)
        if gzipped:
            return Body(packed + gzip.compress(live, compresslevel=6), content_type, True)
        return Body(plain + live, content_type, False)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    # -- rendering ------------------------------------------------------------

    def _stale(self, rendered: _Rendered) -> bool:
        return rendered.version != self._version or time.monotonic() - rendered.rendered_at >= self._max_age

    def _render(self, rendered: _Rendered, gzipped: bool) -> tuple[bytes, bytes | None]:
        """Render one format now, without the lock; keep the result unless a newer one is there."""
        version, started = self._version, time.monotonic()
        plain = rendered.encode(self._registry).removesuffix(OPENMETRICS_EOF)
        packed = gzip.compress(plain, compresslevel=6) if gzipped else None
        finished = time.monotonic()
        with self._lock:
            if version >= rendered.version:
                rendered.plain, rendered.gzipped, rendered.version = plain, packed, version
                rendered.rendered_at = finished
            self._last_start, self.render_seconds = started, finished - started
        return plain, packed

    def _ensure_renderer(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._keep_rendering, name="metrics-render", daemon=True)
            self._thread.start()

    def _keep_rendering(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._max_age)
            self._wake.clear()
            # spaced so that rendering takes at most cpu_share of a CPU
            self._stopping.wait(self._last_start + self.render_seconds / self._cpu_share - time.monotonic())
            if self._stopping.is_set():
                return
            for content_type, rendered in list(self._formats.items()):
                with self._lock:
                    if time.monotonic() - rendered.requested_at > FORGET_FORMAT_SECONDS:
                        del self._formats[content_type]
                        continue
                    stale = self._stale(rendered)
                if stale:
                    self._render(rendered, rendered.gzip_wanted)


def gzip_accepted(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header allows gzip (``gzip;q=0`` refuses it)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=")
            try:
                return not params or float(quality) > 0
            except ValueError:
                return False
    return False
