"""exporter.tor against the private Tor network: lanes, exits and weights, pinned circuits, stream attachment.

Run inside a network namespace with only loopback:
``unshare --net sh -c 'ip link set lo up && python -m pytest tests/e2e/test_tor_testbed.py -x'``.
"""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from stem import StreamStatus
from stem.control import EventType

from exporter.config import TorConfig
from exporter.tor.circuit import CircuitError, CircuitPinner
from exporter.tor.consensus import allows_port, read_exits
from exporter.tor.control import open_tor
from exporter.tor.geo import GeoLookup

pytestmark = pytest.mark.e2e

FETCH_TIMEOUT = 20


def connect_config(state) -> TorConfig:
    client = state["client"]
    return TorConfig(mode="connect", control_host=client["control_host"], control_port=client["control_port"],
                     cookie_file=Path(client["cookie_file"]))


@pytest.fixture(scope="module")
def state(testbed):
    return testbed.state()


@pytest.fixture(scope="module")
def tor(state):
    ours = open_tor(connect_config(state), lanes=2)
    yield ours
    ours.close()


@pytest.fixture(scope="module")
def consensus(tor, state):
    with GeoLookup(Path(state["geoip_db"]), tor.controller) as country_of:
        return read_exits(tor.controller, country_of)


def site_hosts(state) -> dict[str, str]:
    return {site: urlsplit(url).hostname for site, url in state["edge"]["sites"].items()}


@pytest.fixture
def pinner(tor, state):
    """A started pinner (3 hops) that lets streams reach every host but ``forum``'s (denied)."""
    failures, closed = [], []
    ours = CircuitPinner(tor.controller, tor.lanes, [site_hosts(state)["forum"]], on_failure=failures.append,
                         on_closed=closed.append)
    ours.failures, ours.closed = failures, closed
    ours.start()
    yield ours
    ours.stop()


def unique_path() -> str:
    return f"/tor-e2e/{uuid.uuid4().hex}"


def fetch(state, lane, site="news", timeout=FETCH_TIMEOUT, path=None):
    """GET a unique path of ``site`` through ``lane``; returns (response, path)."""
    path = path or unique_path()
    url = state["edge"]["sites"][site].rstrip("/") + path
    proxy = f"socks5h://{lane.socks_host}:{lane.socks_port}"
    response = requests.get(url, proxies={"http": proxy}, timeout=timeout)
    return response, path


def fetch_pinned(pinner, lane, relay, relays, state, attempts=20):
    """Pin ``lane`` to ``relay`` and fetch; on a refused stream wait, re-pin (another first hop), try again.

    For some seconds after the test bed boots, an exit may answer a stream
    with END (remote reason MISC), as tor's exits do for streams arriving
    from a relay they do not know yet.  Every answer that does arrive must
    still come through ``relay``.
    """
    for attempt in range(attempts):
        pinner.pin(lane, relay, relays)
        try:
            return fetch(state, lane)
        except requests.ConnectionError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)


def exit_seen_for(testbed, path) -> list[str | None]:
    return [entry["exit"] for entry in testbed.edge.requests() if entry["path"] == path]


def exit_by_nickname(consensus, nickname):
    return next(relay for relay in consensus.exits if relay.nickname == nickname)


# -- control ---------------------------------------------------------------


def test_connect_mode_adds_a_socks_port_per_lane_and_restores_them_on_close(state, testbed):
    client = state["client"]
    controller = testbed.network.controller()
    controller.set_caching(False)  # our tor's SETCONFs come over another connection
    try:
        options = ("SocksPort", "FetchUselessDescriptors", "UseMicrodescriptors")
        before = {name: controller.get_conf(name, multiple=True) for name in options}
        ours = open_tor(connect_config(state), lanes=3)
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ours.version)
        assert ours.bootstrapped()
        assert len({lane.session_group for lane in ours.lanes}) == 3
        during = controller.get_conf("SocksPort", multiple=True)
        assert during[: len(before["SocksPort"])] == before["SocksPort"]
        for lane in ours.lanes:
            assert f"{lane.socks_host}:{lane.socks_port} SessionGroup={lane.session_group} ExtendedErrors" in during
            socket.create_connection((lane.socks_host, lane.socks_port), timeout=2).close()
        assert controller.get_conf("FetchUselessDescriptors") == "1"
        assert controller.get_conf("UseMicrodescriptors") == "0"
        ours.close()
        assert {name: controller.get_conf(name, multiple=True) for name in options} == before
        socket.create_connection((client["socks_host"], client["socks_port"]), timeout=2).close()
    finally:
        controller.close()


# -- consensus ---------------------------------------------------------------


def independent_exit_probabilities(consensus_text: str) -> dict[str, float]:
    """Tor Metrics' exit probability straight from the consensus text (no stem)."""
    weights = dict(item.split("=") for item in re.search(r"^bandwidth-weights (.*)$", consensus_text, re.MULTILINE)
                   .group(1).split())
    exit_weights = {}
    for block in re.split(r"^(?=r )", consensus_text, flags=re.MULTILINE)[1:]:
        identity = block.split()[2]
        fingerprint = base64.b64decode(identity + "=" * (-len(identity) % 4)).hex().upper()
        flags = set(re.search(r"^s (.*)$", block, re.MULTILINE).group(1).split())
        bandwidth = int(re.search(r"^w Bandwidth=(\d+)", block, re.MULTILINE).group(1))
        if {"Running", "Exit"} <= flags and "BadExit" not in flags:
            weight = int(weights["Wed"] if "Guard" in flags else weights["Wee"]) / 10000
            exit_weights[fingerprint] = bandwidth * weight
    total = sum(exit_weights.values())
    return {fingerprint: weight / total for fingerprint, weight in exit_weights.items()}


def test_read_exits_sees_every_exit_with_tor_metrics_probabilities_and_countries(tor, consensus, state, testbed):
    expected = {exit["fingerprint"]: exit for exit in state["exits"]}
    assert {relay.fingerprint for relay in consensus.exits} == set(expected)
    assert sum(relay.probability for relay in consensus.exits) == pytest.approx(1.0, abs=1e-6)
    for _ in range(20):  # the test bed votes every few seconds: compare the same consensus
        same = read_exits(tor.controller, lambda address: "??")
        text = testbed.network.consensus()
        if f"valid-after {same.valid_after:%Y-%m-%d %H:%M:%S}" in text:
            break
        time.sleep(0.5)
    else:
        pytest.fail("never read the same consensus from tor and from the authority")
    independent = independent_exit_probabilities(text)
    assert {relay.fingerprint: relay.probability for relay in same.exits} == pytest.approx(independent, abs=1e-9)
    for relay in consensus.exits:
        assert relay.country == expected[relay.fingerprint]["country"]
        assert relay.address == expected[relay.fingerprint]["address"]
    assert abs(time.time() - consensus.valid_after.timestamp()) < 3600
    assert len(consensus.relays) > len(consensus.exits)


def test_exit_policies_come_from_full_descriptors(tor, consensus):
    """Microdescriptor summaries of the test-bed exits say "reject 1-65535"; the full policy accepts 127/8."""
    deadline = time.monotonic() + 90  # server descriptors arrive some seconds after FetchUselessDescriptors 1
    while not all(allows_port(tor.controller, relay.fingerprint, 80) for relay in consensus.exits):
        assert time.monotonic() < deadline, "server descriptors never arrived"
        time.sleep(1)
    descriptor = tor.controller.get_server_descriptor(consensus.exits[0].fingerprint)
    assert descriptor.exit_policy.summary() == "reject 1-65535"  # what a microdescriptor would say


# -- pinned circuits and stream attachment -------------------------------------


def test_each_exit_pinned_in_turn_is_the_exit_the_edge_sees(tor, consensus, pinner, state, testbed):
    lane = tor.lanes[0]
    for relay in consensus.exits:
        response, path = fetch_pinned(pinner, lane, relay, consensus.relays, state)
        path_of_circuit = tor.controller.get_circuit(pinner.circuit_of(lane)).path
        assert len(path_of_circuit) == 3 and path_of_circuit[-1][0] == relay.fingerprint
        assert len({hop[0] for hop in path_of_circuit}) == 3
        assert response.status_code < 500
        assert exit_seen_for(testbed, path) == [relay.nickname]
    assert pinner.failures == []


def test_two_lanes_on_two_exits_with_concurrent_requests_each_reach_their_own_exit(tor, consensus, pinner, state,
                                                                                     testbed):
    exits = consensus.exits[:2]
    errors = []
    paths = {0: [], 1: []}

    def probe(lane, relay, count=6):
        try:
            paths[lane.index].append(fetch_pinned(pinner, lane, relay, consensus.relays, state)[1])
            for _ in range(count - 1):
                paths[lane.index].append(fetch(state, lane)[1])
        except requests.RequestException as exc:
            errors.append(exc)

    for assignment in (exits, exits[::-1]):  # and again with the exits swapped between the lanes
        threads = [threading.Thread(target=probe, args=pair) for pair in zip(tor.lanes, assignment)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        for lane, relay in zip(tor.lanes, assignment):
            seen = [exit_seen_for(testbed, path) for path in paths[lane.index]]
            assert seen == [[relay.nickname]] * 6
            paths[lane.index].clear()


def test_a_stream_to_a_denied_host_is_closed_and_counted(tor, consensus, pinner, state, testbed):
    lane = tor.lanes[0]
    fetch_pinned(pinner, lane, consensus.exits[0], consensus.relays, state)  # the lane works
    path = unique_path()
    with pytest.raises(requests.ConnectionError):
        fetch(state, lane, site="forum", path=path)
    assert exit_seen_for(testbed, path) == []  # the edge never saw it (other tests' direct fetches may have)
    assert pinner.closed == ["denied"]
    response, path = fetch(state, lane, site="news")  # and still works
    assert exit_seen_for(testbed, path) == [consensus.exits[0].nickname]


def test_a_lane_without_a_circuit_gets_no_streams_through_and_counts_them_stray(tor, consensus, pinner, state):
    lane = tor.lanes[1]
    pinner.pin(lane, consensus.exits[0], consensus.relays)
    pinner.release(lane)
    assert pinner.circuit_of(lane) is None
    with pytest.raises(requests.ConnectionError):
        fetch(state, lane)
    assert pinner.closed == ["stray"]


def test_streams_of_other_session_groups_are_left_to_their_owner(tor, consensus, pinner, state, testbed):
    """Another controller attaches streams of the client's own SocksPort: the pinner must not close them."""
    fetch_pinned(pinner, tor.lanes[1], consensus.exits[-1], consensus.relays, state)  # a circuit that serves
    circuit = pinner.circuit_of(tor.lanes[1])
    ours = {lane.session_group for lane in tor.lanes}

    def other_owner(event):
        if event.status == StreamStatus.NEW and int(event.keyword_args["SESSION_GROUP"]) not in ours:
            tor.controller.attach_stream(event.id, circuit)

    tor.controller.add_event_listener(other_owner, EventType.STREAM)
    try:
        client = state["client"]
        proxy = f"socks5h://{client['socks_host']}:{client['socks_port']}"
        path = unique_path()
        url = state["edge"]["sites"]["forum"].rstrip("/") + path  # a host the pinner denies its own lanes
        requests.get(url, proxies={"http": proxy}, timeout=FETCH_TIMEOUT)
    finally:
        tor.controller.remove_event_listener(other_owner)
    assert exit_seen_for(testbed, path) == [consensus.exits[-1].nickname]


# -- launch mode -------------------------------------------------------------------


def test_launch_mode_starts_a_tor_that_joins_the_test_network(testbed, state, tmp_path):
    """Our own tor, given the test bed's DirAuthority lines and TestingTorNetwork, pins and fetches."""
    client_torrc = testbed.network.client.torrc_path.read_text().splitlines()
    torrc = {
        "DirAuthority": tuple(line.split(" ", 1)[1] for line in client_torrc if line.startswith("DirAuthority ")),
        "TestingTorNetwork": ("1",),
        "AssumeReachable": ("1",),
        "PathsNeededToBuildCircuits": ("0.67",),
        "ClientUseIPv6": ("0",),
    }
    cfg = TorConfig(mode="launch", data_directory=tmp_path / "tor", torrc=torrc)
    ours = open_tor(cfg, lanes=1)
    try:
        assert ours.process is not None and ours.process.poll() is None
        assert ours.wait_bootstrapped(90), ours.controller.get_info("status/bootstrap-phase")
        with GeoLookup(Path(state["geoip_db"]), ours.controller) as country_of:
            consensus = read_exits(ours.controller, country_of)
        assert {relay.fingerprint for relay in consensus.exits} == {exit["fingerprint"] for exit in state["exits"]}
        pinner = CircuitPinner(ours.controller, ours.lanes)
        pinner.start()
        try:
            relay = consensus.exits[0]
            for attempt in range(20):  # descriptors may still be arriving right after bootstrap
                try:
                    response, path = fetch_pinned(pinner, ours.lanes[0], relay, consensus.relays, state)
                    break
                except CircuitError:
                    if attempt == 19:
                        raise
                    time.sleep(1)
            assert exit_seen_for(testbed, path) == [relay.nickname]
        finally:
            pinner.stop()
    finally:
        process = ours.process
        ours.close()
    assert process.poll() is not None
