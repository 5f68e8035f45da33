"""The landing page of a running exporter, as a person sees it: real headless Chromium on `/`.

The exporter probes the test bed's news site, where one exit gets a Cloudflare
challenge (so there is evidence to show).  The page must list recent probes
with target, exit, fingerprint, country and verdict; a probe's link and an
evidence link must lead somewhere; and the captured challenge page, which
carries the edge's script, must be shown as inert text, never run in the
exporter's origin.
"""

from __future__ import annotations

import re
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from support.exporter_process import exporter_config
from support.invariants import wait_for

from testbed.policy import load_policy
from testbed.ports import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SCREENSHOT = "/tmp/captcha-exporter-landing-page.png"
HEADERS = ["time (UTC)", "target", "exit", "fingerprint", "country", "fetcher", "verdict", "provider", "outcome",
           "load s", "probe", "evidence"]


@pytest.fixture
def chromium():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--no-proxy-server", "--window-size=1400,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def one_exit_challenged(testbed):
    names = [e["nickname"] for e in testbed.state()["exits"]]
    previous = testbed.edge.policy
    testbed.edge.set_policy(load_policy({"sites": {"news": {"default": "ok", "exits": {names[1]: "challenge"}}}}))
    yield names[1]
    testbed.edge.set_policy(previous)


def test_landing_page_in_chromium(testbed, one_exit_challenged, run_exporter, tmp_path, chromium):
    state = testbed.state()
    exits = {e["nickname"]: e for e in state["exits"]}
    config = exporter_config(state, free_ports(1)[0], tmp_path / "data")
    config["targets"] = config["targets"][:1]
    exporter = run_exporter(config)
    wait_for(lambda: 'page.html"' in exporter.get("/").text, 90, "a probe with evidence")
    base = f"http://127.0.0.1:{exporter.port}"

    chromium.get(base + "/")
    assert chromium.title == "captcha-exporter"
    assert chromium.find_element(By.TAG_NAME, "h2").text.startswith("Status: ready")
    assert "news" in chromium.find_element(By.TAG_NAME, "details").get_attribute("textContent"), \
        "the configuration in effect is shown"
    probes = chromium.find_elements(By.TAG_NAME, "table")[-1]
    header, *rows = probes.find_elements(By.TAG_NAME, "tr")
    assert [cell.text for cell in header.find_elements(By.TAG_NAME, "th")] == HEADERS
    assert rows, "recent probes are listed"
    for row in rows:
        cells = dict(zip(HEADERS, (cell.text for cell in row.find_elements(By.TAG_NAME, "td"))))
        exit = exits[cells["exit"]]
        assert (cells["target"], cells["fingerprint"], cells["country"]) == ("news", exit["fingerprint"],
                                                                              exit["country"])
        expected = "challenge" if cells["exit"] == one_exit_challenged else "ok"
        assert cells["verdict"] == expected, cells
    chromium.set_window_size(1400, max(900, chromium.execute_script("return document.body.scrollHeight")))
    chromium.save_screenshot(SCREENSHOT)

    # a challenged probe: its page, then its captured HTML
    challenged = next(row for row in rows if "challenge" in row.get_attribute("class"))
    probe_id = challenged.find_elements(By.TAG_NAME, "td")[HEADERS.index("probe")].text
    challenged.find_element(By.LINK_TEXT, probe_id).click()
    assert chromium.title == f"probe {probe_id}"
    assert one_exit_challenged in chromium.find_element(By.TAG_NAME, "table").text
    chromium.find_element(By.LINK_TEXT, "page.html").click()
    assert chromium.current_url == f"{base}/evidence/{probe_id}/page.html"
    shown = chromium.find_element(By.TAG_NAME, "body").text
    assert re.search(r"<script\b", shown), "the captured page is shown as its source text"
    assert chromium.find_elements(By.TAG_NAME, "script") == [], "no element of the captured page exists"
    assert chromium.title == "", "the captured page's <title> did not take effect"
    assert chromium.execute_script("return document.contentType") == "text/plain"
    assert chromium.get_cookies() == [], "the challenge script set no cookie in the exporter's origin"
