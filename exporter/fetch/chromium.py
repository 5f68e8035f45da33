"""Warm, exit-pinned Chromium: what a person with a real browser meets behind a Tor exit.

One headless Chromium per lane, driven by chromedriver through selenium, sends
everything to the lane's SocksPort (``--proxy-bypass-list=<-loopback>``: by
default Chromium would reach loopback hosts directly, around tor).  Between
probes the caller re-pins the lane to another exit, so each probe first drops
the browser's keep-alive connections (they would still run over the previous
exit's circuit) and wipes cookies, cache and storage (a clearance cookie earned
through one exit must not help the next).

Chromium on Linux trusts the certificates in ``$HOME/.pki/nssdb``; each browser
gets a private ``HOME`` whose NSS database trusts ``ca_file`` (made with
``certutil`` from Debian's ``libnss3-tools``).  The browser runs in its sandbox,
as an unprivileged user when we are root (``exporter.fetch.sandbox``), and that
user owns the ``HOME``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

from exporter.config import ChromiumConfig
from exporter.fetch import browser_pool, sandbox
from exporter.fetch.browser import (
    BrowserFetcher,
    BrowserSession,
    error_reason,
    trusted_nss_db,
)
from exporter.fetch.perflog import DocumentResponse, NetworkLog
from exporter.fetch.timing import NAVIGATION_TIMING_JS
from exporter.values import FetchError, Lane, Response, Verdict

# Chromium's own traffic, switched off at the source: every stream of a lane goes through the
# probed exit, so whatever the browser fetches for itself would be mixed into the probe (and is
# counted as stray between probes).  README "What leaves the exporter" lists these.
BACKGROUND_SWITCHES = (
    "--disable-background-networking",  # extension and component updates, safe browsing lists, translate, UMA, GCM
    "--disable-component-update",  # chrome://components downloads
    # Debian's build still asks update.googleapis.com at start (measured through a logging SOCKS
    # proxy): its update server becomes a closed loopback port, which tor refuses to leave for
    "--component-updater=url-source=http://127.0.0.1:9/",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-component-extensions-with-background-pages",
    "--disable-client-side-phishing-detection",  # safe browsing's model downloads and pings
    "--safebrowsing-disable-auto-update",
    "--disable-domain-reliability",  # Google's network error reports
    "--disable-breakpad",  # crash reports
    "--metrics-recording-only",  # UMA recorded, never uploaded
    "--disable-field-trial-config",  # no field trials (variations) to fetch or apply
    "--no-pings",  # <a ping> hyperlink auditing
    "--no-first-run",
    "--no-default-browser-check",
)
# Feature flags off for the same reason (one --disable-features: Chromium keeps the last one given).
DISABLED_FEATURES = (
    "BackForwardCache",  # not traffic: a page left behind is unloaded, not kept (frozen) for Back
    "Translate",
    "OptimizationHints",
    "OptimizationHintsFetching",
    "OptimizationGuideModelDownloading",
    "MediaRouter",  # Cast discovery
    "DialMediaRouteProvider",
    "AutofillServerCommunication",
    "CertificateTransparencyComponentUpdater",
    "DnsOverHttps",  # names are resolved by the exit, never by a DoH server
    "InterestFeedContentSuggestions",
    "NetworkTimeServiceQuerying",
)
CHROMIUM_ARGUMENTS = (
    *BACKGROUND_SWITCHES,
    "--disable-features=" + ",".join(DISABLED_FEATURES),
    "--disable-quic",  # QUIC is UDP, which SOCKS5 through tor cannot carry
    "--disable-dev-shm-usage",
    "--enable-net-benchmarking",  # chrome.benchmarking (CLOSE_CONNECTIONS_JS)
    "--window-size=1280,900",
)

# How long a page's own document response may lag behind the page in the performance log.
DOCUMENT_LOG_WAIT_SECONDS = 2.0
NAVIGATION_WAIT_SECONDS = 2.0  # how long a read is made again while the tab commits new documents

# The page shown, as ChromeDriver's page source reads it (doctype included), and whether the
# parser is done with it (readyState "loading": only what has arrived so far is in the DOM).
SHOWN_JS = "return [document.URL, document.readyState, new XMLSerializer().serializeToString(document)];"
# chrome.benchmarking exists with --enable-net-benchmarking: drop every pooled
# connection (they run over the previous exit's circuit) and cached DNS answers.
CLOSE_CONNECTIONS_JS = (
    "if (!(window.chrome && chrome.benchmarking)) return false;"
    "chrome.benchmarking.closeConnections(); chrome.benchmarking.clearHostResolverCache(); return true;"
)

# net::ERR_… of a failed top-level document → FetchError reason.
NET_ERROR_REASONS = (
    ("ERR_TIMED_OUT", "timeout"),
    ("ERR_CONNECTION_TIMED_OUT", "timeout"),
    ("ERR_SOCKS_CONNECTION_FAILED", "circuit"),  # tor refused the stream (exit or circuit failed)
    ("ERR_SOCKS_CONNECTION_HOST_UNREACHABLE", "circuit"),
    ("ERR_CERT_", "tls"),
    ("ERR_SSL_", "tls"),
    ("ERR_BAD_SSL_", "tls"),
)


_NET_ERROR = re.compile(r"net::ERR_[A-Z0-9_]+")


def net_error_reason(error_text: str) -> str:
    """The FetchError reason for a Chromium ``net::ERR_…`` text."""
    return error_reason(error_text, NET_ERROR_REASONS)


# The longest path Chromium makes in TMPDIR: its singleton socket, which a socket address must hold
# (108 bytes with the final NUL); a longer one is a fatal error at start.
SINGLETON_SOCKET = "/org.chromium.Chromium.XXXXXX/SingletonSocket"
SOCKET_PATH_MAX = 107


def browser_env(home: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of chromedriver (and so of Chromium): ``base`` with ``HOME`` set to the
    browser's home and, where the singleton socket's path still fits, ``TMPDIR`` too.

    Chromium makes directories in TMPDIR (``org.chromium.Chromium.*``: its singleton socket's, and
    scoped ones) and removes them only on a clean exit; every browser here ends with SIGKILL, so
    they belong in the home that goes with it.
    """
    env = dict(base, HOME=str(home))
    if len(str(home)) + len(SINGLETON_SOCKET) <= SOCKET_PATH_MAX:
        env["TMPDIR"] = str(home)
    return env


def route_arguments(lane: Lane, resolve: dict[str, str]) -> list[str]:
    """Everything through the lane's SocksPort (loopback included: by default Chromium would reach
    loopback hosts directly, around tor); on the direct lane no proxy, with ``resolve``'s names
    mapped to their addresses (``--host-resolver-rules``)."""
    if not lane.direct:
        return [f"--proxy-server=socks5://{lane.socks_host}:{lane.socks_port}", "--proxy-bypass-list=<-loopback>"]
    rules = ", ".join(f"MAP {host} {address}" for host, address in sorted(resolve.items()))
    return ["--no-proxy-server", *([f"--host-resolver-rules={rules}"] if rules else [])]


class ChromiumBrowser(BrowserSession):
    """One chromedriver and its Chromium, in a session of their own, proxied through one lane."""

    documents_from = "the performance log"

    def __init__(self, cfg: ChromiumConfig, lane: Lane, nss_db: Path | None, launch: sandbox.Launch,
                 resolve: dict[str, str] | None = None, home_prefix: str = "captcha-chromium-"):
        super().__init__(lane, Path(tempfile.mkdtemp(prefix=home_prefix)))
        self._netlog: NetworkLog | None = None
        self._service: Service | None = None
        self._start_or_clean_up(lambda: self._launch_driver(cfg, nss_db, launch, resolve or {}), "chromium")

    def _launch_driver(self, cfg: ChromiumConfig, nss_db: Path | None, launch: sandbox.Launch,
                       resolve: dict[str, str]) -> None:
        """Fill the home, start chromedriver and its Chromium, and take the first tab."""
        if nss_db is not None:
            shutil.copytree(nss_db, self.home / ".pki" / "nssdb")
        launch.give(self.home)
        options = webdriver.ChromeOptions()
        options.binary_location = cfg.binary or shutil.which("chromium") or "chromium"
        if cfg.headless:
            options.add_argument("--headless=new")
        for argument in (*launch.arguments, *CHROMIUM_ARGUMENTS, *route_arguments(self.lane, resolve), *cfg.arguments):
            options.add_argument(argument)
        if cfg.prefs:
            options.add_experimental_option("prefs", dict(cfg.prefs))
        options.add_argument(f"--user-data-dir={self.home / 'profile'}")
        options.add_argument("about:blank")  # not the distribution's start page, which phones home
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        self._service = Service(
            cfg.driver or shutil.which("chromedriver") or "chromedriver",
            env=browser_env(self.home, os.environ),
            log_output=subprocess.DEVNULL,
            popen_kw={"start_new_session": True, **launch.popen_options()},
        )
        self.driver = webdriver.Chrome(options=options, service=self._service)
        self.tab = self.driver.current_window_handle

    @property
    def _process(self):
        return getattr(self._service, "process", None)  # set once the driver started

    @property
    def session_id(self) -> int:
        return self._service.process.pid

    def _browser_runs(self, driver_pid: int) -> bool:
        return self.main_pid() is not None

    def main_pid(self) -> int | None:
        """The browser's main process: the one without ``--type=`` (helpers have one)."""
        for pid in self._live_processes():
            command = browser_pool.cmdline(pid)
            if "--user-data-dir=" in command and "--type=" not in command:
                return pid
        return None

    def _start_recording(self) -> None:
        self._netlog = NetworkLog(self.tab)
        self._unanswered: set[str] = set()  # shown documents whose response never reached the log
        self.driver.get_log("performance")  # drop the wipe's own events

    def _navigation_error(self, url: str, error: WebDriverException) -> FetchError | None:
        """chromedriver reports a navigation the network stack failed as "unknown error: net::ERR_…"
        (e.g. ERR_SOCKS_CONNECTION_FAILED when the exit refused the stream): counted by what the
        error means, like the same error in the performance log, not as a broken browser."""
        match = _NET_ERROR.search(error.msg or "")
        if match is None:
            return None
        return FetchError(net_error_reason(match.group()), f"{url}: {match.group()}")

    def _documents(self, url: str) -> list[DocumentResponse]:
        self._netlog.add(self.driver.get_log("performance"))
        documents = self._netlog.documents()
        failure = self._netlog.failure()
        if failure is not None and not documents:
            raise FetchError(net_error_reason(failure.error), f"{failure.url}: {failure.error}")
        return documents

    def _read_page(self) -> Response:
        """The page shown now, paired with its own document response, found by its loader id.

        The latest response in the log is not always the shown page's: a page that
        navigates by itself (a solved gate posting its form) is shown before its
        response reaches the performance log, and would be read with the gate's
        status.  So the log is read until it holds the shown document's response,
        for up to DOCUMENT_LOG_WAIT_SECONDS; a document that never gets one (an
        error page) is read with the latest response, as before.
        """
        driver = self.driver
        deadline = time.monotonic() + DOCUMENT_LOG_WAIT_SECONDS
        while True:
            loader, url, source = self._shown()
            self._netlog.add(driver.get_log("performance"))
            answered = [doc for doc in self._netlog.documents() if not doc.is_redirect]
            own = [doc for doc in answered if doc.loader_id == loader]
            if own and self._shown_loader() == loader:  # and the page did not move on meanwhile
                return Response(url, own[-1].status, own[-1].headers, source)
            if loader in self._unanswered or time.monotonic() >= deadline:
                self._unanswered.add(loader)
                return Response(url, answered[-1].status, answered[-1].headers, source)
            time.sleep(0.05)

    def _read_landing(self, landing: DocumentResponse) -> Response:
        """The landing document with its body, or the page shown now if it has moved on.

        A gate that solves itself within a second (a light proof of work) has
        navigated on before the page is read.  Its body is gone by then: DevTools
        drops a document's response bodies when the next main-frame document
        commits.  So the page shown now is read with its own response, never the
        site's page beside the gate's status, which would look like a block.
        """
        loader, _, source = self._shown()
        if landing.loader_id in ("", loader) and self._shown_loader() == loader:
            return Response(landing.url, landing.status, landing.headers, source)
        return self._read_page()

    def _shown(self) -> tuple[str, str, str]:
        """The loader id, URL and source of the document the tab shows.

        Read through DevTools, not WebDriver: ChromeDriver makes every window
        command wait for pending navigations, and gives up with "aborted by
        navigation" or "no such execution context" when the document changes
        meanwhile.  A page that refreshes itself (a 5xx page with ``<meta
        http-equiv="refresh" content="0">``) does that all the time.  One
        ``Runtime.evaluate`` reads the URL and the source together, and the
        frame's loader id, read before and after it, names their document.
        A document is committed as soon as its response headers arrive, and
        parsed as its body comes in: one read between the two would see a
        page cut short (an empty body, no vendor markers), so a document whose
        readyState is still "loading" is read again too.  While the tab keeps
        committing new documents, or one stays unparsed, the read is made
        again for up to NAVIGATION_WAIT_SECONDS; then the last fully parsed
        read is taken, or the last read if none was.
        """
        deadline = time.monotonic() + NAVIGATION_WAIT_SECONDS
        last = parsed = None
        while True:
            try:
                frame = self._shown_frame()
                url, ready_state, source = self._run_script(SHOWN_JS)
                last = frame["loaderId"], url, source
                if ready_state != "loading":
                    parsed = last
                    if self._shown_loader() == frame["loaderId"]:
                        return last
            except WebDriverException:  # the document went with a navigation while it was read
                if time.monotonic() >= deadline and last is None:
                    raise
            if time.monotonic() >= deadline and last is not None:
                return parsed or last
            time.sleep(0.05)

    def _shown_frame(self) -> dict:
        """The tab's main frame (DevTools ``Page.getFrameTree``): its loader id names the document it shows."""
        return self.driver.execute_cdp_cmd("Page.getFrameTree", {})["frameTree"]["frame"]

    def _shown_loader(self) -> str:
        return self._shown_frame()["loaderId"]

    def _timing(self) -> dict:
        """The Navigation Timing entry of the document shown now, read through DevTools (as in ``_shown``)."""
        return self._run_script(NAVIGATION_TIMING_JS) or {}

    def _run_script(self, body: str):
        """What the function ``body`` returns in the document shown now (DevTools ``Runtime.evaluate``):
        one call, so the whole value comes from one document, even while the tab navigates."""
        answer = self.driver.execute_cdp_cmd("Runtime.evaluate",
                                             {"expression": f"(() => {{{body}}})()", "returnByValue": True})
        if "exceptionDetails" in answer:
            raise WebDriverException(f"script failed in the page: {answer['exceptionDetails'].get('text', '')}")
        return answer["result"].get("value")

    def _clear(self) -> None:
        """Drop connections, cookies, cache and the storage of every origin the last probe reached.

        The previous page is frozen first (Page Lifecycle "frozen": its timers
        and callbacks stop), so none of its scripts can earn a cookie after the
        clearing, such as a challenge still counting down when its probe gave
        up.  Freezing costs far less than loading about:blank, which swaps
        renderer processes; about:blank stays the fallback for pages without
        ``chrome.benchmarking`` (error pages).  A page may still be navigating
        (one that refreshes itself): a document that commits into a frozen
        page never answers, and ChromeDriver waits for it until its timeout.
        So navigations are stopped before the freeze, which stops the timers
        that start them, and once more after it.
        """
        driver = self.driver
        driver.execute_cdp_cmd("Page.stopLoading", {})
        try:
            closed = self._run_script(CLOSE_CONNECTIONS_JS)
        except WebDriverException:  # the page went on to another document meanwhile
            closed = False
        if not closed:
            driver.get("about:blank")
            self._run_script(CLOSE_CONNECTIONS_JS)
        driver.execute_cdp_cmd("Page.setWebLifecycleState", {"state": "frozen"})
        driver.execute_cdp_cmd("Page.stopLoading", {})
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        for origin in self._netlog.origins() if self._netlog is not None else ():
            driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
        self._netlog = None


class ChromiumFetcher(BrowserFetcher):
    """``fetch(url, lane, timeout)`` with a warm Chromium per lane."""

    name = "chromium"

    def __init__(self, cfg: ChromiumConfig, classify: Callable[[Response], Verdict],
                 resolve: dict[str, str] | None = None, label: str | None = None):
        """Raises sandbox.SandboxError when Chromium cannot run sandboxed here (and ``cfg.sandbox`` wants it)."""
        self.launch = sandbox.plan(cfg.sandbox, cfg.binary)
        super().__init__(cfg, classify, resolve, label)

    @property
    def sandbox(self) -> str:
        """How its pages are confined: sandbox.NAMESPACES, SETUID or OFF (captcha_fetcher_info)."""
        return self.launch.sandbox

    def _launch(self, lane: Lane) -> ChromiumBrowser:
        shared = self._shared_files()
        return ChromiumBrowser(self._cfg, lane, shared / "nssdb" if shared else None, self.launch, self._resolve,
                               self.home_prefix)

    def _make_shared(self, directory: Path) -> None:
        """The NSS database every browser copies into its ``HOME``."""
        trusted_nss_db(self._cfg.ca_file, directory / "nssdb")
