"""torrc files of the test bed: loopback listeners only, safe exits, authorities that vote as planned."""

from __future__ import annotations

import ipaddress

import pytest

from testbed.network import TorNetwork
from testbed.torrc import TorNode, bandwidth_file, torrc

LISTENERS = ("ORPort", "DirPort", "SocksPort", "ControlPort")


@pytest.fixture
def network(tmp_path) -> TorNetwork:
    net = TorNetwork(tmp_path, resolv_conf=tmp_path / "resolv.conf", exits=3)
    for i, node in enumerate(net.relays):  # stand-ins for the keys start() would make
        node.fingerprint = f"{i:040X}"
        node.v3ident = f"{i + 100:040X}" if node.role == "authority" else None
    return net


def options(network: TorNetwork, node) -> list[tuple[str, str]]:
    text = torrc(node, network.authorities, resolv_conf=network.resolv_conf,
                 relays=network.middles + network.exits)
    return [tuple(line.split(" ", 1)) for line in text.splitlines()]


def values(opts, key):
    return [value for k, value in opts if k == key]


def test_every_listener_names_a_loopback_address_and_only_the_client_has_a_socks_port(network):
    for node in network.nodes:
        opts = options(network, node)
        for key in LISTENERS:
            for value in values(opts, key):
                if value == "0":
                    continue
                host, port = value.rsplit(":", 1)
                assert ipaddress.ip_address(host).is_loopback, (node.nickname, key, value)
                assert int(port) > 0
        socks = values(opts, "SocksPort")
        assert socks == (["0"] if node.role != "client" else [f"127.0.0.1:{node.socks_port}"])


def test_exits_advertise_their_own_address_and_reach_only_loopback(network):
    addresses = []
    for node in network.exits:
        opts = options(network, node)
        addresses += values(opts, "Address")
        assert values(opts, "ORPort") == [f"{node.address}:{node.or_port}"]
        assert values(opts, "ExitPolicy") == ["accept 127.0.0.0/8:*", "reject *:*"]
        assert values(opts, "ExitPolicyRejectPrivate") == ["0"]
        assert values(opts, "ExitRelay") == ["1"]
    assert addresses == ["127.0.0.21", "127.0.0.22", "127.0.0.23"]


def test_relays_resolve_only_through_our_resolver(network):
    for node in network.relays:
        opts = options(network, node)
        assert values(opts, "ServerDNSResolvConfFile") == [str(network.resolv_conf)]
        assert values(opts, "ServerDNSDetectHijacking") == ["0"]
        if node.role != "exit":
            assert values(opts, "ExitRelay") == ["0"] and values(opts, "ExitPolicy") == ["reject *:*"]


def test_everyone_knows_the_three_authorities(network):
    auth = network.authorities[0]
    for node in network.nodes:
        lines = values(options(network, node), "DirAuthority")
        assert len(lines) == 3
        assert lines[0] == (f"auth1 orport={auth.or_port} no-v2 v3ident={auth.v3ident} "
                            f"127.0.0.1:{auth.dir_port} {auth.fingerprint}")


def test_authorities_vote_exit_for_the_exits_and_guard_for_middles_and_exit1(network):
    opts = options(network, network.authorities[0])
    assert values(opts, "TestingDirAuthVoteExit") == [",".join(n.fingerprint for n in network.exits)]
    guards = [n.fingerprint for n in network.middles] + [network.exits[0].fingerprint]
    assert values(opts, "TestingDirAuthVoteGuard") == [",".join(guards)]
    assert values(opts, "TestingDirAuthVoteExitIsStrict") == ["1"]


def test_authorities_vote_hsdir_for_the_directory_caches_only(network):
    """Onion services publish to HSDirs; a relay that is no directory cache could not store them."""
    opts = options(network, network.authorities[0])
    caches = [n.fingerprint for n in network.middles] + [network.exits[0].fingerprint]
    assert values(opts, "TestingDirAuthVoteHSDir") == [",".join(caches)]
    assert values(opts, "TestingDirAuthVoteHSDirIsStrict") == ["1"]


def test_the_onion_service_is_no_relay_and_leads_to_the_edge(network, tmp_path):
    node = TorNode("onion", "onion", tmp_path / "onion",
                   extra=[("HiddenServiceDir", str(tmp_path / "onion" / "hs")),
                          ("HiddenServicePort", "80 127.0.0.1:8080")])
    opts = options(network, node)
    assert values(opts, "SocksPort") == ["0"]
    for key in ("ORPort", "DirPort", "ExitRelay", "ExitPolicy", "ControlPort"):
        assert values(opts, key) == [], key
    assert values(opts, "HiddenServicePort") == ["80 127.0.0.1:8080"]
    assert len(values(opts, "DirAuthority")) == 3


def test_non_guard_relays_are_not_directory_caches(network):
    for node in network.middles + network.exits:
        dircache = values(options(network, node), "DirCache")
        assert dircache == ([] if node.guard else ["0"])


def test_ports_are_distinct(network):
    ports = [p for n in network.nodes for p in (n.or_port, n.dir_port, n.socks_port, n.control_port) if p]
    assert len(ports) == len(set(ports)) == 3 * 2 + 2 + 3 + 2


def test_bandwidth_file_gives_each_exit_a_different_measured_bandwidth(network):
    text = bandwidth_file(network.middles + network.exits, 1_700_000_000)
    lines = text.splitlines()
    assert lines[0] == "1700000000"
    exits = {n.fingerprint: n.bandwidth_kb for n in network.exits}
    measured = dict(line.removeprefix("node_id=$").split(" bw=") for line in lines[1:])
    assert {fp: int(measured[fp]) for fp in exits} == exits
    assert len(set(exits.values())) == len(exits)


def test_with_delays_every_relay_advertises_the_relays_port_and_listens_on_its_own(tmp_path):
    from testbed.latency import Delays

    delays = Delays(0.1)
    try:
        net = TorNetwork(tmp_path, resolv_conf=tmp_path / "resolv.conf", exits=2, delays=delays)
    finally:
        delays.stop()
    for i, node in enumerate(net.relays):
        node.fingerprint = f"{i:040X}"
        node.v3ident = f"{i + 100:040X}" if node.role == "authority" else None
    for node in net.relays:
        assert values(options(net, node), "ORPort") == [f"{node.address}:{node.or_port} NoListen",
                                                        f"{node.address}:{node.listen_port} NoAdvertise"]
        assert node.listen_port != node.or_port
    assert net.client.listen_port is None
    authority = net.authorities[0]
    assert f"orport={authority.or_port} " in values(options(net, net.client), "DirAuthority")[0]


def test_the_client_and_the_onion_service_keep_a_fixed_circuit_build_timeout(network, tmp_path):
    """A timeout learned from loopback round trips would be milliseconds long; relays build no
    circuits of their own worth timing."""
    onion = TorNode("onion", "onion", tmp_path / "onion")
    for node in (network.client, onion):
        opts = options(network, node)
        assert values(opts, "LearnCircuitBuildTimeout") == ["0"], node.nickname
        assert int(values(opts, "CircuitBuildTimeout")[0]) >= 10, node.nickname


def test_the_client_logs_why_tor_gave_up_on_an_onion_stream(network):
    logs = values(options(network, network.client), "Log")
    assert f"[rend]info file {network.client.data_dir / 'rend.log'}" in logs
    assert f"notice file {network.client.data_dir / 'notice.log'}" in logs
