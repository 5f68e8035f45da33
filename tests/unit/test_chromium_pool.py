"""Warm browser pool: when browsers are reused and when they are replaced; process-tree kill."""

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import urllib3
from selenium.common.exceptions import InvalidSessionIdException, TimeoutException, WebDriverException

from exporter.config import ChromiumConfig
from exporter.fetch import browser_pool, chromium, sandbox
from exporter.fetch.browser_pool import (
    BrowserPool,
    kill_tree,
    live_processes,
    resident_bytes,
)
from exporter.fetch.chromium import browser_env
from exporter.values import FetchError, FetchResult, Lane

LANE = Lane(0, "127.0.0.1", 9050, 1)


class FakeBrowser:
    def __init__(self, lane: Lane):
        self.lane = lane
        self.probes = 0
        self.memory = 100
        self.running = True
        self.killed = False
        self.behaviour: object = FetchResult(first=None, final=None)

    def alive(self) -> bool:
        return self.running

    def resident_bytes(self) -> int:
        return self.memory

    def kill(self) -> None:
        self.killed = True
        self.running = False

    def probe(self, url, timeout, classify, challenge_wait):
        """Plays a probe: ``self.behaviour`` is a FetchResult to return, an exception to
        raise, "crash" (dies, then fails as a dead driver does) or "hang" (blocks until
        killed, then fails the same way)."""
        self.probes += 1
        if self.behaviour == "crash":
            self.running = False
            raise WebDriverException("chromedriver gone")
        if self.behaviour == "hang":
            while self.running:
                time.sleep(0.01)
            raise WebDriverException("connection refused")
        if isinstance(self.behaviour, BaseException):
            raise self.behaviour
        return self.behaviour

    def screenshot(self):
        return b"png of " + str(id(self)).encode()

    def leave(self):
        self.left = getattr(self, "left", 0) + 1
        if self.behaviour == "leave fails":
            raise WebDriverException("no such window")


def pool(recycle_after=3, memory_limit=1000, name="browser"):
    launched = []

    def launch(lane):
        launched.append(FakeBrowser(lane))
        return launched[-1]

    return BrowserPool(launch, recycle_after, memory_limit, name), launched


def use(the_pool, lane=LANE):
    browser = the_pool.acquire(lane)
    browser.probes += 1
    return browser


def test_browser_is_reused_until_recycle_after_probes():
    the_pool, launched = pool(recycle_after=3)
    browsers = [use(the_pool) for _ in range(7)]
    assert len(launched) == 3
    assert browsers[:3] == [launched[0]] * 3 and browsers[3:6] == [launched[1]] * 3
    assert launched[0].killed and launched[1].killed and not launched[2].killed
    assert the_pool.recycled == 2


def test_browser_over_the_memory_limit_is_replaced():
    the_pool, launched = pool(memory_limit=1000)
    use(the_pool).memory = 1001
    assert use(the_pool) is launched[1] and launched[0].killed


def test_dead_browser_is_replaced():
    the_pool, launched = pool()
    use(the_pool).running = False
    assert use(the_pool) is launched[1]


def test_lanes_have_their_own_browser_and_a_moved_lane_gets_a_new_one():
    the_pool, launched = pool()
    other = Lane(1, "127.0.0.1", 9052, 2)
    assert use(the_pool) is not use(the_pool, other)
    moved = Lane(0, "127.0.0.1", 9060, 1)
    assert use(the_pool, moved).lane == moved and launched[0].killed


def test_close_kills_every_browser_and_peek_starts_none():
    the_pool, launched = pool()
    use(the_pool)
    use(the_pool, Lane(1, "127.0.0.1", 9052, 2))
    the_pool.close()
    assert all(browser.killed for browser in launched)
    assert the_pool.peek(LANE) is None and len(launched) == 2


def test_kill_tree_ends_the_session_and_stragglers_that_escaped_it(tmp_path):
    marker = str(tmp_path / "browser-home")
    # a session leader with a child, like chromedriver and chromium
    leader = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
    # a helper that left the session with setsid, like chromium's crashpad handler
    straggler = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while len(live_processes(leader.pid, marker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = live_processes(leader.pid, marker)
        assert leader.pid in pids and straggler.pid in pids and len(pids) == 3
        assert resident_bytes(pids) > 1024 * 1024
        kill_tree(leader.pid, marker)
        assert live_processes(leader.pid, marker) == []  # gone (zombies at most) when kill_tree returns
    finally:
        for process in (leader, straggler):
            if process.poll() is None:
                process.kill()
                process.wait()


def probe_with(the_pool, behaviour):
    """Run one probe on LANE whose browser behaves as ``behaviour``."""
    the_pool.acquire(LANE).behaviour = behaviour
    return the_pool.probe(LANE, "http://news.test/", 1.0, classify=None, challenge_wait=0.0)


def test_probe_returns_the_browsers_result_and_keeps_the_browser():
    the_pool, launched = pool()
    result = probe_with(the_pool, FetchResult(first=None, final=None))
    assert isinstance(result, FetchResult) and the_pool.peek(LANE) is launched[0] and not launched[0].killed


def test_a_hung_page_load_replaces_the_browser():
    the_pool, launched = pool()
    timeout = FetchError("timeout", "page did not load within 1 s")
    timeout.__cause__ = TimeoutException("renderer stuck")
    with pytest.raises(FetchError) as caught:
        probe_with(the_pool, timeout)
    assert caught.value.reason == "timeout" and launched[0].killed and the_pool.peek(LANE) is None


@pytest.mark.parametrize("reason, error", [("connection", "net::ERR_CONNECTION_REFUSED"),
                                           ("timeout", "net::ERR_TIMED_OUT")])
def test_a_site_failure_keeps_the_browser(reason, error):
    the_pool, launched = pool()
    with pytest.raises(FetchError) as caught:
        probe_with(the_pool, FetchError(reason, f"http://news.test/: {error}"))  # the browser's error page
    assert caught.value.reason == reason and the_pool.peek(LANE) is launched[0]


def test_a_driver_error_from_a_live_browser_is_a_browser_error_and_keeps_it():
    the_pool, launched = pool(name="chromium")
    with pytest.raises(FetchError, match="^chromium: no such window$") as caught:
        probe_with(the_pool, WebDriverException("no such window"))
    assert caught.value.reason == "browser" and the_pool.peek(LANE) is launched[0]


def test_a_browser_that_died_during_the_probe_is_named_and_replaced():
    the_pool, launched = pool()
    with pytest.raises(FetchError, match="^browser died during the probe: chromedriver gone$"):
        probe_with(the_pool, "crash")
    assert launched[0].killed and the_pool.peek(LANE) is None


def test_the_watchdog_kills_a_hung_browser(monkeypatch):
    monkeypatch.setattr(browser_pool, "HANG_GRACE_SECONDS", 0.2)
    the_pool, launched = pool()
    started = time.monotonic()
    with pytest.raises(FetchError, match="died during the probe"):
        probe_with(the_pool, "hang")  # 1 s page timeout + 0.2 s grace, then killed
    assert 1.0 <= time.monotonic() - started < 5.0
    assert launched[0].killed and the_pool.peek(LANE) is None


def test_screenshot_is_of_the_lanes_live_browser_only():
    the_pool, launched = pool()
    assert the_pool.screenshot(LANE) is None  # no browser yet: none is started for a screenshot
    browser = the_pool.acquire(LANE)
    assert the_pool.screenshot(LANE) == browser.screenshot()
    browser.running = False
    assert the_pool.screenshot(LANE) is None and len(launched) == 1


def heard(the_pool) -> list[str]:
    """The restart reasons the pool reports from now on."""
    reasons = []
    the_pool.on_restart = reasons.append
    return reasons


def test_each_replacement_is_reported_with_its_reason():
    the_pool, launched = pool(recycle_after=2, memory_limit=1000)
    reasons = heard(the_pool)
    use(the_pool)
    use(the_pool)
    use(the_pool).memory = 1001  # the third use got a fresh browser (recycle_after)
    use(the_pool).running = False  # replaced for memory, then it dies
    use(the_pool)  # replaced because it died
    use(the_pool, Lane(0, "127.0.0.1", 9060, 1))  # replaced because its lane moved
    assert reasons == ["recycle_after", "memory_limit", "crashed", "lane_changed"]
    assert len(launched) == 5


def test_crashes_and_hangs_during_a_probe_are_reported(monkeypatch):
    monkeypatch.setattr(browser_pool, "HANG_GRACE_SECONDS", 0.1)
    the_pool, _ = pool()
    reasons = heard(the_pool)
    timeout = FetchError("timeout", "page did not load within 1 s")
    timeout.__cause__ = TimeoutException("renderer stuck")
    for behaviour in ("crash", "hang", timeout, FetchError("connection", "net::ERR_CONNECTION_REFUSED")):
        with pytest.raises(FetchError):
            probe_with(the_pool, behaviour)
    assert reasons == ["crashed", "hung", "hung"]  # a site's own failure keeps the browser


def test_a_browser_that_cannot_start_is_reported_and_the_error_passes_on():
    def launch(lane):
        raise FetchError("browser", "chromedriver not found")

    the_pool = BrowserPool(launch, 3, 1000)
    reasons = heard(the_pool)
    with pytest.raises(FetchError, match="chromedriver not found"):
        the_pool.acquire(LANE)
    assert reasons == ["launch_failed"]


def test_leave_takes_a_running_browser_off_its_page_and_replaces_one_that_cannot():
    the_pool, launched = pool()
    the_pool.leave(LANE)  # no browser yet: none is started for it
    assert launched == []
    use(the_pool)
    the_pool.leave(LANE)
    assert launched[0].left == 1 and not launched[0].killed
    launched[0].behaviour = "leave fails"
    the_pool.leave(LANE)
    assert launched[0].killed and use(the_pool) is launched[1]


def in_a_thread(call) -> tuple[threading.Thread, list[FetchError]]:
    """Start ``call`` in a thread of its own; the list gets the FetchError it ends with, if any."""
    failure: list[FetchError] = []

    def run():
        try:
            call()
        except FetchError as exc:
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    return worker, failure


def test_close_ends_a_running_probe_as_a_shutdown_and_starts_no_browser_after():
    the_pool, launched = pool()
    restarts = []
    the_pool.on_restart = restarts.append
    use(the_pool).behaviour = "hang"  # a page that holds its probe for minutes
    worker, failure = in_a_thread(lambda: the_pool.probe(LANE, "https://news.test/", 120, None, 90))
    time.sleep(0.1)
    the_pool.close()
    worker.join(timeout=2)
    assert not worker.is_alive() and "shutting down" in str(failure[0])
    assert restarts == [], "a shutdown is no crash"
    with pytest.raises(FetchError, match="shutting down"):
        the_pool.acquire(Lane(1, "127.0.0.1", 9052, 2))
    assert len(launched) == 1, "no browser starts after close (its shared files are gone)"
    assert all(browser.killed for browser in launched)


def test_close_kills_a_browser_still_starting(tmp_path):
    """A launch waits up to a minute for a browser that does not come up; close() must not wait with it."""
    marker = str(tmp_path / "captcha-chromium-1-")
    started = threading.Event()

    def launch(lane):
        starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
        started.set()
        if starting.wait(60) != 0:
            raise WebDriverException("session not created: Chrome failed to start: crashed")
        raise AssertionError("the browser was not killed")

    the_pool = BrowserPool(launch, recycle_after=100, memory_limit_bytes=0, name="chromium", marker=marker)
    restarts = []
    the_pool.on_restart = restarts.append
    worker, failure = in_a_thread(lambda: the_pool.acquire(LANE))
    started.wait(10)
    the_pool.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and "shutting down" in str(failure[0])
    assert restarts == [], "a shutdown is no failed launch"


def test_chromium_makes_its_temporary_directories_in_its_home_while_the_socket_path_fits():
    """A SIGKILLed Chromium leaves $TMPDIR/org.chromium.Chromium.* behind: TMPDIR is the home that
    kill() removes, unless the singleton socket's path would then outgrow a socket address."""
    base = {"PATH": "/usr/bin", "TMPDIR": "/var/tmp"}
    home = Path("/tmp/captcha-4242-1-chromium-de-a1b2c3d4")
    assert browser_env(home, base) == {"PATH": "/usr/bin", "HOME": str(home), "TMPDIR": str(home)}
    socket = Path(home, "org.chromium.Chromium.a1B2c3", "SingletonSocket")
    assert len(str(socket)) < 108
    long_home = Path("/var/lib/captcha-exporter/tmp", "captcha-4242-1-" + "chromium-with-a-long-variant-name-" * 2)
    assert browser_env(long_home, base) == {"PATH": "/usr/bin", "HOME": str(long_home), "TMPDIR": "/var/tmp"}
    edge = Path("/" + "h" * (107 - len("/org.chromium.Chromium.a1B2c3/SingletonSocket") - 1))
    assert browser_env(edge, base)["TMPDIR"] == str(edge)
    assert browser_env(Path(str(edge) + "h"), base)["TMPDIR"] == "/var/tmp"


@pytest.mark.parametrize("failure", [
    InvalidSessionIdException("invalid session id: session deleted as the browser has closed the connection"),
    urllib3.exceptions.ProtocolError("Connection aborted."),
    "shared files gone",
], ids=["browser died", "driver died", "shared files gone"])
def test_a_chromium_that_fails_as_it_starts_is_a_browser_error_and_leaves_nothing(tmp_path, monkeypatch, failure):
    """The browser or its driver can die between the session's creation and its first command, and
    the pool closing removes the certificate database a start copies: each is a ``browser`` error,
    with the driver killed and the home removed (the exporter's restarts left homes in /tmp)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    drivers = []

    class DiesAsItStarts:
        def __init__(self, options, service):
            service.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                               start_new_session=True)
            drivers.append(service.process)

        @property
        def current_window_handle(self):
            raise failure

    monkeypatch.setattr(chromium.webdriver, "Chrome", DiesAsItStarts)
    nss_db = tmp_path / "shared-gone" / "nssdb" if failure == "shared files gone" else None
    with pytest.raises(FetchError) as caught:
        chromium.ChromiumBrowser(ChromiumConfig(), LANE, nss_db, sandbox.Launch(sandbox.OFF), home_prefix="home-")
    assert caught.value.reason == "browser" and str(caught.value).startswith("chromium did not start: ")
    assert [driver.poll() for driver in drivers] == ([] if nss_db else [-9])
    assert list(tmp_path.iterdir()) == []
