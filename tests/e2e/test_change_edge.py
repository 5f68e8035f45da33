"""Page-change detection against the real edge server, fetched directly (no tor needed).

The edge decides per exit what to serve; here ``identify`` names the exit
the test is playing, so each behaviour is fetched as if through an exit
whose policy serves it, and the baseline from fetches as ``direct``.  Run
inside a loopback-only network namespace (tests/run does).
"""

from __future__ import annotations

import pytest

from exporter.change import Baseline, compare, onion_facts
from exporter.change.direct import fetch_direct
from exporter.config import HttpFetcherConfig
from testbed.edge import Edge
from testbed.pages import SITES, hostname
from testbed.policy import DIRECT, default_policy, load_policy

pytestmark = pytest.mark.e2e

FETCHES = 3
# Behaviour → (change kind, onion facts) every fetch of it must give.
EXPECTED = {
    "ok": (None, set()),
    "nonce": (None, set()),
    "injected": ("injected", set()),
    "rewritten": ("rewritten", set()),
    "different": ("different", set()),
    "alt-svc": (None, {"alt_svc"}),
    "onion-location": (None, {"onion_location"}),
}


class PlayedExit:
    """``identify`` for the edge: every connection comes through the exit the test plays now."""

    def __init__(self):
        self.name = DIRECT

    def __call__(self, peer):
        return self.name


@pytest.fixture(scope="module")
def exit_played():
    return PlayedExit()


@pytest.fixture(scope="module")
def edge(tmp_path_factory, exit_played):
    policy = load_policy({"sites": {site: {"exits": {b: b for b in EXPECTED}} for site in SITES}})
    with Edge(policy, exit_played, tmp_path_factory.mktemp("edge")) as running:
        yield running


@pytest.fixture(scope="module")
def fetch(edge, exit_played):
    config = HttpFetcherConfig(timeout=10, ca_file=edge.ca_file)
    resolve = {name: "127.0.0.1" for name in edge.hostnames()}

    def get(url: str, exit_name: str):
        exit_played.name = exit_name
        return fetch_direct(url, config, resolve)

    return get


@pytest.fixture(scope="module")
def baselines(edge, fetch):
    urls = edge.site_urls("https")
    return {site: Baseline.learn([fetch(urls[site], DIRECT) for _ in range(FETCHES)]) for site in SITES}


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("behaviour", list(EXPECTED))
def test_each_behaviour_gives_its_kind_every_time(edge, fetch, baselines, site, behaviour):
    kind, facts = EXPECTED[behaviour]
    for _ in range(FETCHES):
        page = fetch(edge.site_urls("https")[site], behaviour)
        assert page.status == 200
        change = compare(baselines[site], page)
        assert change.kind == kind, change.diff
        assert onion_facts(page) == facts
        if kind is None:
            assert change.similarity == 1.0 and change.diff == ""
        else:
            assert change.diff.startswith("--- baseline")
    served = edge.requests()[-1]
    assert (served["site"], served["exit"], served["behaviour"]) == (site, behaviour, behaviour)


def test_injected_page_names_the_added_script(edge, fetch, baselines):
    change = compare(baselines["news"], fetch(edge.site_urls("https")["news"], "injected"))
    assert len(change.injected) == 1 and change.injected[0].startswith("inline:")
    assert change.title_changed is False


def test_baseline_survives_json(edge, fetch, baselines):
    restored = Baseline.from_json(baselines["shop"].to_json())
    assert compare(restored, fetch(edge.site_urls("http")["shop"], "rewritten")).kind == "rewritten"


def test_default_policy_only_modifying_exits_count_as_changed(edge, fetch, baselines):
    """The demo's spread: page behaviours land on some (site, exit) pairs; each gives its kind."""
    exits = ["exit1", "exit2", "exit3", "exit4"]
    policy = default_policy(exits)
    original = edge.policy
    edge.set_policy(policy)
    try:
        checked = 0
        for site in SITES:
            for exit_name in exits:
                behaviour = policy.behaviour(site, exit_name).name
                if behaviour not in EXPECTED:  # gates and failures are the detector's business
                    continue
                page = fetch(edge.site_urls("http")[site], exit_name)
                assert compare(baselines[site], page).kind == EXPECTED[behaviour][0], (site, exit_name, behaviour)
                checked += 1
    finally:
        edge.set_policy(original)
    assert checked >= 10


def test_resolve_keeps_the_name_for_host_and_tls(edge, fetch):
    page = fetch(edge.site_urls("https")["forum"], DIRECT)
    assert page.url == f"https://{hostname('forum')}:{edge.https_port}/"
    served = edge.requests()[-1]
    assert (served["site"], served["scheme"], served["exit"]) == ("forum", "https", DIRECT)
