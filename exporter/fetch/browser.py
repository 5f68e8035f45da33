"""The browser session every browser fetcher runs, written once; the engines supply what differs.

A probe in a warm browser: wipe what the previous probe left (pop-ups, then
the engine's connections, cookies, cache and site data), navigate, read the
document responses of the navigation from the engine's own record of its
network traffic (the first response, redirect hops, the landing document),
read the page, watch a challenge until it settles, and leave the final page
shown for a screenshot.  Chromium records documents in chromedriver's
performance log (``exporter.fetch.perflog``); Firefox and Tor Browser report
them as WebDriver BiDi events (``exporter.fetch.bidilog``).  Everything else
about a session (the driver's process session, liveness, memory, killing) and
about a fetcher (its warm pool, the files every browser starts from) is the
same for both, and so is the way both trust an extra CA: an NSS database
(``cert9.db``, made with ``certutil`` from Debian's ``libnss3-tools``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from selenium.common.exceptions import TimeoutException, WebDriverException

from exporter.fetch import browser_pool
from exporter.fetch.browser_pool import BrowserPool
from exporter.fetch.outcome import settle
from exporter.fetch.perflog import DocumentResponse
from exporter.fetch.timing import NAVIGATION_TIMING_JS, browser_result
from exporter.values import FetchError, FetchResult, Lane, Response, Verdict

_FETCHER_NUMBERS = itertools.count(1)  # tells apart the browser homes of fetchers in one process


class BrowserSession:
    """One driver and its browser, proxied through one lane: what the pool keeps warm.

    An engine sets ``driver`` and ``tab`` (the window handle probes run in) and
    supplies the steps below that raise NotImplementedError.
    """

    documents_from = "the browser's network record"  # named when a navigation left no document in it

    def __init__(self, lane: Lane, home: Path):
        """``home`` is the browser's private directory, named on its processes' command lines."""
        self.lane = lane
        self.home = home
        self.probes = 0
        self.driver = None
        self.tab = ""

    # -- what the engine supplies --------------------------------------------

    @property
    def _process(self):
        """The driver's process (the leader of the session the browser runs in), or None."""
        raise NotImplementedError

    def _browser_runs(self, driver_pid: int) -> bool:
        """Whether the browser itself (not just its driver) runs."""
        raise NotImplementedError

    def _clear(self) -> None:
        """Drop connections, cookies, cache and site data (the tab is the only window left)."""
        raise NotImplementedError

    def _start_recording(self) -> None:
        """Forget earlier network records: what comes next belongs to this probe."""
        raise NotImplementedError

    def _navigation_error(self, url: str, error: WebDriverException) -> FetchError | None:
        """The FetchError for a navigation the driver reported as failed, or None for another failure."""
        return None

    def _documents(self, url: str) -> list[DocumentResponse]:
        """The top-level document responses of the navigation to ``url``, in order; a FetchError
        when the document got no response."""
        raise NotImplementedError

    def _read_page(self) -> Response:
        """The page shown now, with the status and headers of the latest document."""
        raise NotImplementedError

    def _read_landing(self, landing: DocumentResponse) -> Response:
        """The landing document's response with its body: the page shown now."""
        return _response(landing, self.driver.page_source)

    # -- the session ---------------------------------------------------------

    def _start_or_clean_up(self, start: Callable[[], None], name: str) -> None:
        """Run ``start`` (everything that makes the browser run, after its home was made); if any of
        it fails, kill what it started, remove the home, and raise a ``browser`` FetchError.

        The browser or its driver can die between the session's creation and its first command
        (killed, or the pool closing and removing the shared files a start copies).
        """
        try:
            start()
        except Exception as exc:
            self.kill()
            if isinstance(exc, FetchError):
                raise
            raise FetchError("browser", f"{name} did not start: {getattr(exc, 'msg', None) or exc}") from exc

    def probe(self, url: str, timeout: float, classify: Callable[[Response], Verdict],
              challenge_wait: float) -> FetchResult:
        """Load ``url`` in a wiped browser and follow any challenge to its outcome."""
        self.probes += 1
        self.wipe()
        driver = self.driver
        driver.set_page_load_timeout(timeout)
        self._start_recording()
        started = time.monotonic()
        try:
            driver.get(url)
        except TimeoutException as exc:
            raise FetchError("timeout", f"page did not load within {timeout:g} s") from exc
        except WebDriverException as exc:
            error = self._navigation_error(url, exc)
            if error is None:
                raise
            raise error from exc
        documents = self._documents(url)
        if not documents:
            raise FetchError("browser", f"no document response for {url} in {self.documents_from}")
        landing_doc = next((doc for doc in documents if not doc.is_redirect), documents[-1])
        landing_timing = self._timing()
        landing = self._read_landing(landing_doc)
        outcome = settle(landing, self._read_page, classify, challenge_wait, lambda: time.monotonic() - started)
        redirects = tuple(doc.url for doc in documents if doc.is_redirect)
        return browser_result(landing, redirects, landing_timing, outcome, self._timing)

    def leave(self) -> None:
        """Load about:blank: the last page's loads, timers and the browser's own requests for it
        (its favicon) end with it, instead of opening streams once its lane has no circuit."""
        self.driver.get("about:blank")

    def wipe(self) -> None:
        """Leave no window, connection, cookie, cache entry or site data from the previous probe."""
        driver = self.driver
        for handle in driver.window_handles:
            if handle != self.tab:  # pop-ups the last page opened
                driver.switch_to.window(handle)
                driver.close()
        driver.switch_to.window(self.tab)
        self._clear()

    def _timing(self) -> dict:
        """The Navigation Timing entry of the document shown now (``exporter.fetch.timing``)."""
        return self.driver.execute_script(NAVIGATION_TIMING_JS) or {}

    @property
    def identity(self) -> tuple[str, str]:
        """(browser, version) as the running browser reports them (WebDriver capabilities)."""
        capabilities = self.driver.capabilities
        return capabilities.get("browserName", ""), capabilities.get("browserVersion", "")

    def screenshot(self) -> bytes | None:
        try:
            return self.driver.get_screenshot_as_png()
        except WebDriverException:
            return None

    def alive(self) -> bool:
        """The driver runs and so does the browser."""
        process = self._process
        if process is None or process.poll() is not None:
            return False
        return self._browser_runs(process.pid)

    def _live_processes(self) -> list[int]:
        process = self._process
        return browser_pool.live_processes(process.pid if process is not None else -1, str(self.home))

    def resident_bytes(self) -> int:
        return browser_pool.resident_bytes(self._live_processes())

    def kill(self) -> None:
        process = self._process
        browser_pool.kill_tree(process.pid if process is not None else -1, str(self.home))
        if process is not None:
            process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def trusted_nss_db(ca_file: Path, directory: Path) -> Path:
    """Create an NSS database in ``directory`` that trusts ``ca_file`` for TLS servers."""
    if shutil.which("certutil") is None:
        raise FetchError("internal", "trusting ca_file needs certutil (Debian package libnss3-tools)")
    directory.mkdir(parents=True, exist_ok=True)
    db = f"sql:{directory}"
    for command in (
        ["certutil", "-N", "-d", db, "--empty-password"],
        ["certutil", "-A", "-d", db, "-n", "captcha-exporter-ca", "-t", "C,,", "-i", str(ca_file)],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise FetchError("internal", f"{' '.join(command[:2])} failed: {done.stderr.strip()}")
    return directory


def error_reason(error_text: str, fragments: tuple[tuple[str, str], ...]) -> str:
    """The FetchError reason of the first ``(fragment, reason)`` whose fragment ``error_text`` holds;
    ``connection`` when none does."""
    for fragment, reason in fragments:
        if fragment in error_text:
            return reason
    return "connection"


def _response(document: DocumentResponse, body: str) -> Response:
    return Response(document.url, document.status, document.headers, body)


class BrowserFetcher:
    """``fetch(url, lane, timeout)`` with a warm browser per lane (the direct lane included: a browser
    without a proxy, whose host names ``resolve`` may pin to addresses).

    An engine says how a browser starts (``_launch``) and, if its browsers
    start from shared files (a certificate database, a profile), how those are
    made (``_make_shared``); they are made once, on the first launch, and
    removed on ``close``.  ``label`` is the fetcher's ``fetcher`` label (a
    variant's name); ``identity`` is what the last browser started reported.
    """

    name = "browser"

    def __init__(self, cfg, classify: Callable[[Response], Verdict], resolve: dict[str, str] | None = None,
                 label: str | None = None):
        self._cfg = cfg
        self._classify = classify
        self._resolve = dict(resolve or {})
        self.name = label or self.name
        self.identity: tuple[str, str] | None = None
        self._shared: Path | None = None
        self._shared_lock = threading.Lock()
        # of every browser's home directory, and no other fetcher's (two may share a name: a reload)
        self.home_prefix = f"captcha-{os.getpid()}-{next(_FETCHER_NUMBERS)}-{self.name}-"
        self._pool = BrowserPool(self._start, cfg.recycle_after, cfg.memory_limit_bytes, self.name,
                                 marker=os.path.join(tempfile.gettempdir(), self.home_prefix))

    @property
    def pool(self) -> BrowserPool:
        return self._pool

    def fetch(self, url: str, lane: Lane, timeout: float) -> FetchResult:
        return self._pool.probe(lane, url, timeout, self._classify, self._cfg.challenge_wait)

    def screenshot(self, lane: Lane) -> bytes | None:
        """PNG of the lane's page now: call it right after ``fetch`` on the same lane."""
        return self._pool.screenshot(lane)

    def leave(self, lane: Lane) -> None:
        self._pool.leave(lane)

    def close(self) -> None:
        self._pool.close()
        if self._shared is not None:
            shutil.rmtree(self._shared, ignore_errors=True)

    def _start(self, lane: Lane) -> BrowserSession:
        session = self._launch(lane)
        self.identity = session.identity
        return session

    def _launch(self, lane: Lane) -> BrowserSession:
        raise NotImplementedError

    def _shared_files(self) -> Path | None:
        """The directory of files every browser of this fetcher starts from (made once), or None."""
        with self._shared_lock:
            if self._shared is None and self._needs_shared():
                directory = Path(tempfile.mkdtemp(prefix=f"captcha-{self.name}-shared-"))
                try:
                    self._make_shared(directory)
                except BaseException:
                    shutil.rmtree(directory, ignore_errors=True)
                    raise
                self._shared = directory
        return self._shared

    def _needs_shared(self) -> bool:
        return self._cfg.ca_file is not None

    def _make_shared(self, directory: Path) -> None:
        """Put the shared files in ``directory``."""
        raise NotImplementedError
