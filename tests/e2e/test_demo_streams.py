"""The demo's exporter with Chromium, 100+ browser probes: nothing leaves but what the pages name.

The exporter runs as a process, configured exactly as ``captcha-exporter
demo`` configures it, against a test bed with the demo's policy (challenges,
blocks, vendor frames, widgets, redirects across hosts, failures).  Every
stream of a probe goes through its exit whatever the host, so a browser's own
background traffic would reach the exits: the exits' DNS server and the edge
would see its names, and between probes it would be counted as stray.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter

import pytest
from support.exporter_process import total

from testbed.bed import TestBed
from testbed.behaviours import ANSWERS, Visit
from testbed.demo import demo_config
from testbed.onionoo import HOST_NAME as ONIONOO_HOST
from testbed.passes import Passes
from testbed.policy import BEHAVIOURS, Behaviour
from testbed.ports import free_ports
from testbed.replay import linked_hosts

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium-driver"),
]

BROWSER_PROBES = 100
DEADLINE_SECONDS = 15 * 60
# Names a browser still asks for by itself, known and not yet switched off: Debian's Chromium loads
# its default search engine's new-tab page (start.duckduckgo.com) when chromedriver starts it.
KNOWN_LEAKS = {"start.duckduckgo.com"}


def hosts_the_pages_name() -> set[str]:
    """Every host named (src, href, action) by a page the edge answers with, under any behaviour."""
    visit = Visit("news", "exit1", "https", "GET", "/", authority="news.test", port=443)
    named = set()
    for name, params in BEHAVIOURS.items():
        reply = ANSWERS[name](visit, Behaviour(name, params), Passes())
        named |= linked_hosts(reply.body.decode())
    return named


@pytest.fixture(scope="module")
def bed():
    with TestBed(exits=4) as test_bed:
        yield test_bed


def test_a_hundred_browser_probes_reach_only_hosts_their_pages_name(bed, run_exporter, tmp_path):
    config = demo_config(bed.state(), f"127.0.0.1:{free_ports(1)[0]}", "20s", chromium=True,
                         data_dir=tmp_path / "data")
    exporter = run_exporter(config)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        samples = exporter.samples()
        attempts = (total(samples, "captcha_probes_total", fetcher="chromium")
                    + total(samples, "captcha_probe_errors_total", fetcher="chromium"))
        if attempts >= BROWSER_PROBES or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert attempts >= BROWSER_PROBES, f"only {attempts} browser probes in {DEADLINE_SECONDS} s"
    known = set(bed.edge.hostnames())
    served = bed.edge.requests()
    hosts = Counter(entry["host"] for entry in served)
    names = Counter(name for name, _ in bed.dns.resolver.queries)
    stray = total(samples, "captcha_streams_closed_total", reason="stray")
    print(f"\n{attempts:.0f} Chromium probes ({total(samples, 'captcha_probes_total', fetcher='chromium'):.0f} "
          f"answered), {total(samples, 'captcha_probes_total', fetcher='http'):.0f} http; edge requests by host "
          f"{dict(hosts)}; names the exits looked up {dict(names)}; stray streams {stray:.0f}")
    assert set(hosts) <= known and all(entry["site"] is not None for entry in served)
    assert {"challenges.cloudflare.test", "js.hcaptcha.test", "www.portal.test"} <= set(hosts)  # pages named them
    named = hosts_the_pages_name()
    # The edge's pages name the rest; the exporter reads relay facts from the bed's Onionoo, as from Tor Metrics.
    unexplained = set(names) - known - named - {ONIONOO_HOST}
    assert unexplained <= KNOWN_LEAKS, unexplained
    stray_lines = [line for line in exporter.log.read_text().splitlines() if "stray stream closed" in line]
    stray_hosts = {line.split(" target=")[1].rsplit(":", 1)[0] for line in stray_lines}
    assert stray_hosts <= known, stray_lines  # never a browser's background traffic
    # a page still loading after its probes (its favicon) is left, and its circuit stays until the lane is quiet
    assert stray == 0, f"stray streams to the pages' own hosts {sorted(stray_hosts)}"
