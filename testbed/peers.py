"""Which test-bed tor opened a connection to the edge.

Tor ignores ``OutboundBindAddress`` for loopback destinations, so every exit
reaches the edge from 127.0.0.1 and the peer address says nothing.  The peer
socket does: the kernel lists it in /proc/net/tcp (local address and port in
hex, with its inode), and the process that owns it has a ``socket:[inode]``
link under /proc/PID/fd.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping, Set
from pathlib import Path

_PROC = Path("/proc")


def socket_inode(peer: tuple[str, int], proc: Path = _PROC, remote_ports: Set[int] = frozenset()) -> int | None:
    """Inode of the local TCP socket bound to ``peer`` (address, port), or None if there is none.

    Linux lets two sockets share a local address and port when their remote ends
    differ (two tors can each hold 127.0.0.1:40000, one to the edge, one to a
    relay), so with ``remote_ports`` only a socket connected to one of them counts.
    """
    address, port = peer[0], peer[1]
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    table, wanted = (
        ("tcp", _hex_v4(ip)) if ip.version == 4 else ("tcp6", _hex_v6(ip))
    )
    wanted = f"{wanted}:{port:04X}"
    try:
        lines = (proc / "net" / table).read_text().splitlines()[1:]
    except FileNotFoundError:
        return None
    for line in lines:
        fields = line.split()
        # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        if fields[1] != wanted or fields[9] == "0":
            continue
        if remote_ports and int(fields[2].rsplit(":", 1)[1], 16) not in remote_ports:
            continue
        return int(fields[9])
    return None


def _hex_v4(ip: ipaddress.IPv4Address) -> str:
    # The kernel prints the address as one host-order (little-endian) 32-bit word.
    return ip.packed[::-1].hex().upper()


def _hex_v6(ip: ipaddress.IPv6Address) -> str:
    # Four 32-bit words, each in host (little-endian) order.
    packed = ip.packed
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, 16, 4))


def owner_pid(inode: int, pids, proc: Path = _PROC) -> int | None:
    """The PID among ``pids`` that holds a descriptor for socket ``inode``, or None."""
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = proc / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except (FileNotFoundError, PermissionError):
            continue
        for name in names:
            try:
                if os.readlink(fd_dir / name) == target:
                    return pid
            except OSError:
                continue
    return None


def peer_identifier(nicknames_by_pid: Callable[[], Mapping[int, str]], proc: Path = _PROC,
                    edge_ports: Callable[[], Set[int]] = frozenset):
    """Make ``identify(peer) -> nickname | "direct" | None`` for the edge.

    ``nicknames_by_pid`` returns the live test-bed tors ({pid: nickname}); it is
    called on each lookup so that a restarted tor is still recognised.
    ``edge_ports`` returns the edge's listening ports: the peer socket must be
    connected to one of them.
    Returns the nickname of the tor owning the peer socket, ``"direct"`` if no
    test-bed tor owns it, None if the socket is not (or no longer) listed.
    """

    def identify(peer: tuple[str, int]) -> str | None:
        inode = socket_inode(peer, proc, edge_ports())
        if inode is None:
            return None
        nicknames = nicknames_by_pid()
        pid = owner_pid(inode, nicknames, proc)
        return "direct" if pid is None else nicknames[pid]

    return identify
