"""peers: from an edge connection's peer (address, port) to the process that owns that socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from testbed.peers import owner_pid, peer_identifier, socket_inode

# /proc/net/tcp as the kernel prints it: 127.0.0.1:40000 -> 127.0.0.1:8080 (ESTABLISHED, inode 4242),
# a TIME_WAIT entry for port 40001 (inode 0) and a listener on 127.0.0.21:8080.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0
   1: 0100007F:9C41 0100007F:1F90 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0
   2: 1500007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0
"""


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(PROC_NET_TCP)
    (tmp_path / "net" / "tcp6").write_text(PROC_NET_TCP.splitlines()[0] + "\n")
    for pid, inodes in {100: [5, 4242], 200: [6]}.items():
        fd_dir = tmp_path / str(pid) / "fd"
        fd_dir.mkdir(parents=True)
        for fd, inode in enumerate(inodes, start=3):
            os.symlink(f"socket:[{inode}]", fd_dir / str(fd))
        os.symlink("/dev/null", fd_dir / "0")
    return tmp_path


def test_socket_inode_reads_the_little_endian_hex_table(fake_proc):
    assert socket_inode(("127.0.0.1", 40000), fake_proc) == 4242
    assert socket_inode(("127.0.0.21", 8080), fake_proc) == 777


def test_socket_inode_skips_sockets_without_inode_and_unknown_peers(fake_proc):
    assert socket_inode(("127.0.0.1", 40001), fake_proc) is None  # TIME_WAIT
    assert socket_inode(("127.0.0.1", 50000), fake_proc) is None


def test_socket_inode_accepts_ipv4_mapped_ipv6_peers(fake_proc):
    assert socket_inode(("::ffff:127.0.0.1", 40000, 0, 0), fake_proc) == 4242


def test_owner_pid_finds_the_socket_among_the_given_pids(fake_proc):
    assert owner_pid(4242, [200, 100], fake_proc) == 100
    assert owner_pid(4242, [200], fake_proc) is None
    assert owner_pid(4242, [999], fake_proc) is None  # gone


def test_identify_names_the_exit_or_direct_or_none(fake_proc):
    identify = peer_identifier(lambda: {100: "exit3", 200: "exit1"}, fake_proc)
    assert identify(("127.0.0.1", 40000)) == "exit3"
    assert peer_identifier(lambda: {200: "exit1"}, fake_proc)(("127.0.0.1", 40000)) == "direct"
    assert identify(("127.0.0.1", 50000)) is None


def test_identify_on_real_loopback_sockets_of_this_process():
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, peer = server.accept()
    try:
        assert peer_identifier(lambda: {os.getpid(): "me"})(peer) == "me"
        assert peer_identifier(dict)(peer) == "direct"
    finally:
        for sock in (accepted, client, server):
            sock.close()


def test_a_shared_local_port_is_told_apart_by_the_remote_port(tmp_path):
    # two sockets on 127.0.0.1:40000: one to a relay's ORPort 9001 (inode 1), one to the edge on 8080 (inode 2)
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(PROC_NET_TCP.splitlines()[0] + """
   0: 0100007F:9C40 0100007F:2329 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0
""")
    assert socket_inode(("127.0.0.1", 40000), tmp_path) == 1, "without the edge's ports: the first row"
    assert socket_inode(("127.0.0.1", 40000), tmp_path, remote_ports={8080}) == 2
    assert socket_inode(("127.0.0.1", 40000), tmp_path, remote_ports={8443}) is None
