"""Lanes added to tor's SocksPorts, and the one-line errors when tor cannot be reached."""

import socket

import pytest
import stem

from exporter.config import TorConfig
from exporter.tor.control import (
    FIRST_SESSION_GROUP,
    TorUnavailable,
    add_lanes,
    open_tor,
    wait_for_descriptors,
)


class ConfController:
    def __init__(self, socks_ports, refusals=0):
        self.conf = {"SocksPort": socks_ports}
        self.refusals = refusals
        self.attempts = []

    def get_conf(self, name, default=None, multiple=False):
        return self.conf.get(name) or default

    def set_options(self, params):
        self.attempts.append(params["SocksPort"])
        if self.refusals:
            self.refusals -= 1
            raise stem.InvalidRequest("553", "Unable to set option: Failed to bind one of the listener ports.")
        self.conf.update(params)


def test_lanes_keep_existing_ports_and_get_their_own_session_groups():
    controller = ConfController(["127.0.0.1:9050", "127.0.0.1:9060 SessionGroup=1003 IsolateDestAddr"])
    lanes = add_lanes(controller, 3)
    assert [lane.index for lane in lanes] == [0, 1, 2]
    assert [lane.session_group for lane in lanes] == [1004, 1005, 1006]
    assert len({lane.socks_port for lane in lanes}) == 3
    assert controller.conf["SocksPort"] == [
        "127.0.0.1:9050", "127.0.0.1:9060 SessionGroup=1003 IsolateDestAddr",
        *(f"127.0.0.1:{lane.socks_port} SessionGroup={lane.session_group} ExtendedErrors" for lane in lanes),
    ]


def test_a_disabled_socks_port_is_dropped_and_a_refused_setconf_is_retried():
    controller = ConfController(["0"], refusals=1)
    lanes = add_lanes(controller, 1)
    assert lanes[0].session_group == FIRST_SESSION_GROUP
    assert len(controller.attempts) == 2
    assert controller.conf["SocksPort"] == [f"127.0.0.1:{lanes[0].socks_port} SessionGroup={FIRST_SESSION_GROUP} ExtendedErrors"]
    with pytest.raises(stem.InvalidRequest):
        add_lanes(ConfController([], refusals=3), 1)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_control_port_is_one_clear_line():
    port = closed_port()
    with pytest.raises(TorUnavailable) as raised:
        open_tor(TorConfig(mode="connect", control_port=port), lanes=1)
    assert str(raised.value) == f"cannot reach tor's ControlPort at 127.0.0.1:{port}: connection refused"


def test_a_control_port_that_is_not_tor_fails_authentication_without_the_password(tmp_path):
    """A ControlPort that answers 515 to everything: a one-line error that never shows the password."""
    import threading

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer():
            connection, _ = server.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"515 Authentication failed: Password did not match HashedControlPassword value.\r\n")
                connection.recv(1024)

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(TorUnavailable) as raised:
            open_tor(TorConfig(mode="connect", control_port=port, password="s3cret-pw"), lanes=1)
    message = str(raised.value)
    assert message.startswith(f"cannot authenticate to tor's ControlPort at 127.0.0.1:{port}: ")
    assert "s3cret-pw" not in message and "\n" not in message


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        open_tor(TorConfig(mode="embedded"), lanes=1)


class DescriptorController:
    """Has server descriptors for every relay only from the ``ready_after``-th poll on."""

    def __init__(self, ready_after):
        self.polls = 0
        self.ready_after = ready_after

    def get_network_statuses(self):
        self.polls += 1
        return [type("Entry", (), {"fingerprint": fp})() for fp in ("A" * 40, "B" * 40)]

    def get_info(self, key, default=None):
        if key == "desc/id/" + "B" * 40 and self.polls < self.ready_after:
            return default
        return "router ..."


def test_wait_for_descriptors_returns_once_every_relay_has_one():
    controller = DescriptorController(ready_after=3)
    assert wait_for_descriptors(controller, timeout=5)
    assert controller.polls == 3
    assert not wait_for_descriptors(DescriptorController(ready_after=10**6), timeout=0.3)
