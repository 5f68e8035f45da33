"""The Tor Browser fetcher through the private Tor network (runs when TBB_PATH names a Tor Browser).

The same checks as the Firefox test, with Tor Browser at the standard level
(the tests imported from test_firefox run again here, with this module's
``fetcher``), and the security level seen working: at ``safest`` JavaScript is
off, so the self-clearing JavaScript challenge can no longer clear itself.
How to run: README, "Tor Browser test".
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_chromium_testbed import bed  # noqa: F401 (fixture)
from test_firefox import (  # noqa: F401 (collected again with this module's fetcher)
    probe,
    test_interactive_challenge_and_block_page,
    test_ok_page_over_https_loads_with_timing,
    test_one_warm_browser_served_every_probe_and_dies_whole,
    test_plain_http_target_is_not_upgraded,
    test_self_clearing_challenge_is_cleared_and_its_clearance_is_wiped,
)

from exporter.config import TorBrowserConfig
from exporter.detect import classify
from exporter.fetch.tor_browser import TorBrowserFetcher

TBB_PATH = os.environ.get("TBB_PATH")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not TBB_PATH or not Path(TBB_PATH, "Browser", "firefox").is_file(),
                       reason="needs TBB_PATH set to a Tor Browser folder (the one holding Browser/)"),
    pytest.mark.skipif(shutil.which("geckodriver") is None, reason="needs geckodriver >= 0.34 on PATH"),
]


def tor_browser(bed, level: str) -> TorBrowserFetcher:  # noqa: F811
    cfg = TorBrowserConfig(tbb_path=Path(TBB_PATH), security_level=level, ca_file=bed.edge.ca_file,
                               challenge_wait=6.0)
    return TorBrowserFetcher(cfg, classify)


@pytest.fixture(scope="module")
def fetcher(bed):  # noqa: F811
    standard = tor_browser(bed, "standard")
    yield standard
    standard.close()


def test_label_names_the_security_level(fetcher):
    assert fetcher.name == "tor-browser-standard"


def test_safest_level_keeps_a_javascript_challenge_from_clearing(bed, lane):  # noqa: F811
    safest = tor_browser(bed, "safest")
    try:
        assert safest.name == "tor-browser-safest"
        result = probe(bed, lane, safest, "exit2")
        assert result.first.status == 403 and result.outcome == "interactive"
    finally:
        safest.close()
