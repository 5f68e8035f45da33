"""The edge's self-clearing gates in a real headless Chromium (no tor: the browser talks to the edge directly).

Proves the gate JavaScript works in a browser: the managed challenge clears
after its delay, Anubis' proof of work is found and accepted, and the
interactive challenge waits for a click that never comes.  Run inside a
loopback-only network namespace (tests/run does).
"""

from __future__ import annotations

import hashlib
import shutil
import time

import pytest

from testbed.behaviours import (
    ANUBIS_SHA256,
    CF_FLOW,
    CF_FRAME,
    CF_ORCHESTRATE,
    CF_REDEEM,
)
from testbed.edge import Edge
from testbed.policy import load_policy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium-driver"),
]

CHALLENGE_DELAY = 1.5
POLICY = {
    "sites": {
        "news": {"default": {"behaviour": "challenge", "delay": CHALLENGE_DELAY}},
        "forum": {"default": {"behaviour": "anubis", "difficulty": 4}},
        "login": {"default": "interactive"},
    }
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    with Edge(load_policy(POLICY), lambda peer: "exit1", tmp_path_factory.mktemp("edge")) as running:
        yield running


@pytest.fixture
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--host-resolver-rules=MAP *.test 127.0.0.1",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    browser.set_page_load_timeout(20)
    yield browser
    browser.quit()


def wait_for_title(driver, title: str, timeout: float) -> float:
    """Seconds until the document title is ``title``; fails after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if driver.title == title:
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"title still {driver.title!r} after {timeout} s")


def served(edge: Edge, site: str) -> list[tuple[str, str, int]]:
    return [(r["method"], r["path"].split("?")[0], r["status"]) for r in edge.requests() if r["site"] == site]


def test_managed_challenge_clears_by_itself(edge, driver):
    driver.get(edge.site_urls()["news"])
    seconds = wait_for_title(driver, "The Daily Relay – Independent news", timeout=CHALLENGE_DELAY + 10)
    assert "City council approves" in driver.page_source
    log, vendor = served(edge, "news"), served(edge, "challenges")
    assert log[0] == ("GET", "/", 403)
    # the solver script, its frame and the frame's flow come from the vendor host, as on the real web
    assert ("GET", CF_ORCHESTRATE, 200) in vendor
    for wanted, prefix in (("GET", CF_FRAME), ("POST", CF_FLOW)):
        assert any(method == wanted and path.startswith(prefix) and status == 200 for method, path, status in vendor)
    redeemed = next(n for n, (method, path, status) in enumerate(log)
                    if method == "POST" and path.startswith(CF_REDEEM) and status == 200)
    assert ("GET", "/", 200) in log[redeemed:]  # the reload, carrying cf_clearance
    assert seconds >= CHALLENGE_DELAY - 0.5
    assert any(c["name"] == "cf_clearance" for c in driver.get_cookies())


def test_anubis_proof_of_work_clears_by_itself(edge, driver):
    driver.get(edge.site_urls()["forum"])
    wait_for_title(driver, "Tinkerers' Board – Index", timeout=30)
    log = served(edge, "forum")
    assert log[0] == ("GET", "/", 200)  # the challenge page: Anubis answers 200
    assert ("GET", "/.within.website/x/cmd/anubis/api/pass-challenge", 302) in log
    assert any(c["name"] == "techaro.lol-anubis-auth" for c in driver.get_cookies())


def test_anubis_script_hashes_like_hashlib(edge, driver):
    driver.get(edge.site_urls()["forum"])
    wait_for_title(driver, "Tinkerers' Board – Index", timeout=30)
    texts = ["", "abc", "x" * 55, "y" * 56, "z" * 64, "w" * 200, "caf\u00e9 \u2713 nonce 12345"]
    hashes = driver.execute_async_script(
        "const [texts, done] = arguments;"
        f"import('{ANUBIS_SHA256}')"
        ".then((m) => done(texts.map(m.sha256hex)), (e) => done(String(e)));",
        texts,
    )
    assert hashes == [hashlib.sha256(t.encode()).hexdigest() for t in texts]


def test_interactive_challenge_waits_for_a_human(edge, driver):
    driver.get(edge.site_urls()["login"])
    time.sleep(4)
    assert driver.title == "Just a moment..."
    driver.switch_to.frame(driver.find_element("css selector", "iframe"))  # the vendor's challenge frame
    checkbox = driver.find_element("id", "cf-chl-widget-check")
    assert checkbox.is_displayed() and not checkbox.is_selected()
    assert all(status != 200 for method, path, status in served(edge, "login") if path == "/")
