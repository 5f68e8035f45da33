"""The comparisons CAPTCHA Monitor made, with the real exporter on the test bed.

- Two variants of one browser (Chromium as it comes, and Chromium in German)
  probe through Tor and without it, each under its own ``fetcher`` label and
  with a ``captcha_fetcher_info`` series carrying the version the running
  browser reports (compared with ``chromium --version``).  The edge sees the
  direct probes as the exit ``direct``.
- Relay facts: each exit's AS number and name (the bed's GeoLite2-ASN file),
  continent, and first-seen time from the bed's Onionoo, read through an exit;
  a restart without Onionoo still exports them (persisted).
- An ``expect`` mismatch (a "lite" page through one exit) is counted as an
  unexpected page, through Tor only.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from support.exporter_process import exporter_config, total, value
from support.invariants import wait_for

from testbed.policy import load_policy
from testbed.ports import free_ports

pytestmark = pytest.mark.e2e

FORUM_TITLE = "Tinkerers' Board – Index"


@pytest.fixture
def edge_policy(testbed):
    """Set the edge's policy from a ``sites`` mapping; the bed's policy is restored afterwards."""
    previous = testbed.edge.policy
    yield lambda sites: testbed.edge.set_policy(load_policy({"sites": sites}))
    testbed.edge.set_policy(previous)


def chromium_version() -> str:
    """What ``chromium --version`` says, e.g. 156.0.8078.114 (``Chromium 156.0.8078.114 built on Debian …``)."""
    done = subprocess.run([shutil.which("chromium"), "--version"], capture_output=True, text=True, check=True)
    return re.search(r"Chromium (\d+(?:\.\d+)+)", done.stdout).group(1)


@pytest.mark.browser
@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs Debian's chromium and chromium-driver (.ci/install installs them)")
def test_two_chromium_variants_through_tor_and_direct(testbed, edge_policy, run_exporter, tmp_path):
    state = testbed.state()
    # login challenges everyone (the exits and direct fetches); shop challenges the exits only
    edge_policy({"login": {"default": "challenge", "exits": {"direct": "challenge"}}, "shop": {"default": "challenge"}})
    earlier = len(testbed.edge.requests())  # the bed is the session's: other modules' requests came first
    config = exporter_config(state, free_ports(1)[0], tmp_path / "data")
    config["targets"] = [{"name": site, "url": state["edge"]["sites"][site], "fetchers": ["chromium", "chromium-de"],
                          "exits_per_run": 2} for site in ("login", "shop")]
    config["schedule"] = {"interval": "20s", "concurrency": 1}
    browser = {"ca_file": state["edge"]["ca_file"], "challenge_wait": "5s", "timeout": "30s"}
    config["fetchers"].update(chromium=browser, variants={
        "chromium-de": {"kind": "chromium", "arguments": ["--lang=de-DE"], "prefs": {"intl.accept_languages": "de-DE"}}})
    exporter = run_exporter(config)

    combinations = [(target, fetcher, route) for target in ("login", "shop") for fetcher in ("chromium", "chromium-de")
                    for route in ("tor", "direct")]
    wait_for(lambda: all(total(exporter.samples(), "captcha_probes_total", target=t, fetcher=f, route=r) >= 1
                         for t, f, r in combinations), 420, "a probe of each target, variant and route")

    samples = exporter.samples()
    for fetcher in ("chromium", "chromium-de"):
        assert total(samples, "captcha_challenges_total", target="login", fetcher=fetcher, route="direct") >= 1
        assert total(samples, "captcha_challenges_total", target="login", fetcher=fetcher, route="tor") >= 1
        assert total(samples, "captcha_challenges_total", target="shop", fetcher=fetcher, route="tor") >= 1
        assert total(samples, "captcha_challenges_total", target="shop", fetcher=fetcher, route="direct") == 0, \
            "shop serves direct fetches the real page"
    direct = [r for r in testbed.edge.requests()[earlier:] if r["exit"] == "direct" and r["site"] in ("login", "shop")]
    assert {(r["site"], r["behaviour"]) for r in direct if r["path"] == "/"} == {("login", "challenge"),
                                                                                  ("shop", "ok")}

    version = chromium_version()
    infos = {dict(labels)["fetcher"]: dict(labels) for (name, labels), v in samples.items()
             if name == "captcha_fetcher_info" and v == 1}
    for fetcher in ("chromium", "chromium-de"):  # which sandbox runs depends on the kernel, but one does
        assert infos[fetcher].pop("sandbox") in {"namespaces", "setuid"}, infos[fetcher]
    assert infos["chromium"] == {"fetcher": "chromium", "kind": "chromium", "browser": "chrome", "version": version,
                                 "settings": ""}
    assert infos["chromium-de"] == {"fetcher": "chromium-de", "kind": "chromium", "browser": "chrome",
                                    "version": version,
                                    "settings": "arguments=--lang=de-DE, prefs.intl.accept_languages=de-DE"}
    assert value(samples, "captcha_browser_restarts_total", fetcher="chromium-de", reason="crashed") == 0


def test_exit_facts_first_seen_persisting_and_an_unexpected_page(testbed, edge_policy, run_exporter, tmp_path):
    state = testbed.state()
    names = [e["nickname"] for e in state["exits"]]
    country = {e["nickname"]: e["country"] for e in state["exits"]}
    edge_policy({"forum": {"default": "ok", "exits": {names[2]: "different"}}})
    config = exporter_config(state, free_ports(1)[0], tmp_path / "data")
    config["targets"] = [{"name": "forum", "url": state["edge"]["sites"]["forum"],
                          "expect": {"status": 200, "title": FORUM_TITLE}}]
    requests_before = len(testbed.onionoo.requests)
    first = run_exporter(config)

    onionoo = {r.fingerprint: float(int(r.first_seen)) for r in testbed.onionoo.relays}  # whole seconds, as served

    def first_seen(exporter) -> dict[str, float]:
        return {dict(labels)["fingerprint"]: v for (name, labels), v in exporter.samples().items()
                if name == "captcha_exit_first_seen_timestamp_seconds"}

    wait_for(lambda: first_seen(first) == onionoo, 90, "the first-seen times of Onionoo's document")
    asked = testbed.onionoo.requests[requests_before:]
    assert asked and all(r["exit"] in names for r in asked), f"Onionoo is read through an exit: {asked}"
    assert asked[0]["path"] == "/details?search=flag%3Aexit&fields=fingerprint%2Cfirst_seen"

    networks = {node.fingerprint: testbed.networks[node.address] for node in testbed.network.exits}
    info = {dict(labels)["fingerprint"]: dict(labels) for (name, labels), _ in first.samples().items()
            if name == "captcha_exit_info"}
    for fingerprint, (number, as_name) in networks.items():
        assert (info[fingerprint]["asn"], info[fingerprint]["as_name"]) == (f"AS{number}", as_name)
        assert info[fingerprint]["continent"] == ("NA" if info[fingerprint]["country"] in ("US", "CA") else "EU")

    # the "lite" page through the third exit is not what forum's expect says; the direct fetch is
    wait_for(lambda: value(first.samples(), "captcha_page_changed_total", target="forum", fetcher="http",
                           route="tor", country=country[names[2]], kind="unexpected") >= 1,
             90, "an unexpected page counted")
    samples = first.samples()
    assert total(samples, "captcha_page_changed_total", kind="unexpected") == \
        total(samples, "captcha_page_changed_total", kind="unexpected", country=country[names[2]])
    assert total(samples, "captcha_probes_total", target="forum", route="direct") >= 1
    assert first.stop() == 0

    # restarted without Onionoo: the first-seen times come back from the state database
    config["onionoo"] = {"enabled": False}
    asked = len(testbed.onionoo.requests)
    second = run_exporter(config)
    wait_for(lambda: second.get("/-/ready").status_code == 200, 30, "the restarted exporter to be ready")
    assert first_seen(second) == onionoo
    assert len(testbed.onionoo.requests) == asked, "Onionoo was not asked again"
