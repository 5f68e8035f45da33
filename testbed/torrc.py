"""torrc files for the test-bed tors: three authorities, middles, exits, one client, and an onion service.

Every listener names a loopback address (a bare ``ORPort 9001`` binds
0.0.0.0), only the client has a SocksPort, and every relay resolves through
our loopback DNS server with hijack detection off (by default relays read
/etc/resolv.conf and exits probe well-known names, which leaves the machine).
The onion service is a tor of its own, not a relay: ``HiddenServiceDir`` and
``HiddenServicePort`` (in ``extra``), no SocksPort.  Its descriptors go to
relays with the HSDir flag, which relays earn only after hours of uptime, so
the authorities vote it for every relay (``TestingDirAuthVoteHSDir``, as the
Tor Project's chutney does); only directory caches can serve them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Faster votes for a private network (boot is 2-4x slower without them, measured here).
_AUTHORITY_SCHEDULE = (
    ("TestingV3AuthInitialVotingInterval", "5"),
    ("TestingV3AuthInitialVoteDelay", "2"),
    ("TestingV3AuthInitialDistDelay", "2"),
    ("V3AuthVotingInterval", "10"),
    ("V3AuthVoteDelay", "2"),
    ("V3AuthDistDelay", "2"),
    ("V3AuthNIntervalsValid", "2"),
    ("TestingMinExitFlagThreshold", "0"),
)


# On loopback a hop answers in microseconds, so a learned build timeout comes out at ~50 ms and a
# busy machine then fails circuits with REASON=TIMEOUT. Real clients learn from real round trips;
# here one fixed, generous timeout is truer.  Both tors that build circuits of their own need it: the
# client, and the onion service, which builds one to each client's rendezvous point and gives up
# after two timed-out tries (the client then waits for a RENDEZVOUS2 cell that never comes).
_FIXED_BUILD_TIMEOUT = (
    ("LearnCircuitBuildTimeout", "0"),
    ("CircuitBuildTimeout", "30"),
)


@dataclass
class TorNode:
    """One tor process of the test bed, as its torrc describes it."""

    nickname: str
    role: str  # authority | middle | exit | client
    data_dir: Path
    address: str = LOOPBACK
    or_port: int | None = None  # the advertised ORPort
    listen_port: int | None = None  # where tor itself listens, when a delaying relay holds or_port
    dir_port: int | None = None
    socks_port: int | None = None
    control_port: int | None = None
    fingerprint: str | None = None
    v3ident: str | None = None
    guard: bool = False  # authorities vote it Guard (middles, and one exit)
    bandwidth_kb: int | None = None  # measured bandwidth the authorities vote for it
    extra: list[tuple[str, str]] = field(default_factory=list)

    @property
    def torrc_path(self) -> Path:
        return self.data_dir / "torrc"


def dir_authority_line(auth: TorNode) -> str:
    return (
        f"{auth.nickname} orport={auth.or_port} no-v2 v3ident={auth.v3ident} "
        f"{auth.address}:{auth.dir_port} {auth.fingerprint}"
    )


def torrc(node: TorNode, authorities: list[TorNode], *, resolv_conf: Path, relays: list[TorNode]) -> str:
    """The torrc text for ``node``; ``relays`` are the non-authority relays (for the votes)."""
    lines: list[tuple[str, str]] = [
        ("TestingTorNetwork", "1"),
        ("DataDirectory", str(node.data_dir)),
        ("Nickname", node.nickname),
        ("Log", f"notice file {node.data_dir / 'notice.log'}"),
        ("ShutdownWaitLength", "0"),
        ("PathsNeededToBuildCircuits", "0.67"),
        ("AssumeReachable", "1"),
        # Loopback addresses have no country; skip loading tor's GeoIP files.
        ("GeoIPFile", ""),
        ("GeoIPv6File", ""),
    ]
    lines += [("DirAuthority", dir_authority_line(auth)) for auth in authorities]
    if node.role == "client":
        lines += [
            ("SocksPort", f"{LOOPBACK}:{node.socks_port}"),
            ("ControlPort", f"{LOOPBACK}:{node.control_port}"),
            ("CookieAuthentication", "1"),
            # Full server descriptors from boot: their exit policies show that exits accept
            # 127.0.0.0/8, which microdescriptor policy summaries leave out, and the exporter's
            # switch to them (UseMicrodescriptors 0) is then a no-op instead of a refetch.
            ("UseMicrodescriptors", "0"),
            ("FetchUselessDescriptors", "1"),
            # Fetch each new consensus as soon as it is published, as caches do, not at a random
            # later time: boot often waits on the second consensus (the first lacks most relays).
            ("FetchDirInfoEarly", "1"),
            ("FetchDirInfoExtraEarly", "1"),
            *_FIXED_BUILD_TIMEOUT,
            # Why tor gave up on an onion stream is logged only at info level (the rend domain alone
            # is a few lines per onion connection); tests read it to tell tor's reasons apart.
            ("Log", f"[rend]info file {node.data_dir / 'rend.log'}"),
        ]
    elif node.role == "onion":
        lines += [("SocksPort", "0"), *_FIXED_BUILD_TIMEOUT]
    else:
        lines += _relay_lines(node, resolv_conf)
    if node.role == "authority":
        lines += _authority_lines(node, relays)
    if node.role == "exit":
        lines += [
            ("ExitRelay", "1"),
            ("ExitPolicyRejectPrivate", "0"),
            ("ExitPolicy", "accept 127.0.0.0/8:*"),
            ("ExitPolicy", "reject *:*"),
        ]
    elif node.role not in ("client", "onion"):
        lines += [("ExitRelay", "0"), ("ExitPolicy", "reject *:*")]
    lines += node.extra
    return "".join(f"{key} {value}\n" for key, value in lines)


def _relay_lines(node: TorNode, resolv_conf: Path) -> list[tuple[str, str]]:
    if node.listen_port:  # a delaying relay listens on the advertised port (testbed.latency)
        or_ports = [("ORPort", f"{node.address}:{node.or_port} NoListen"),
                    ("ORPort", f"{node.address}:{node.listen_port} NoAdvertise")]
    else:
        or_ports = [("ORPort", f"{node.address}:{node.or_port}")]
    lines = [
        ("SocksPort", "0"),
        ("Address", node.address),
        *or_ports,
        ("ServerDNSResolvConfFile", str(resolv_conf)),
        ("ServerDNSDetectHijacking", "0"),
    ]
    if node.dir_port:
        lines.append(("DirPort", f"{node.address}:{node.dir_port}"))
    if not _directory_cache(node):
        # Saves ~50 MB per relay; guards must stay caches or clients will not pick them.
        lines.append(("DirCache", "0"))
    return lines


def _directory_cache(node: TorNode) -> bool:
    return bool(node.dir_port or node.guard)


def _authority_lines(node: TorNode, relays: list[TorNode]) -> list[tuple[str, str]]:
    exits = [r.fingerprint for r in relays if r.role == "exit"]
    guards = [r.fingerprint for r in relays if r.guard]
    return [
        ("AuthoritativeDirectory", "1"),
        ("V3AuthoritativeDirectory", "1"),
        *_AUTHORITY_SCHEDULE,
        ("TestingDirAuthVoteExit", ",".join(exits)),
        ("TestingDirAuthVoteExitIsStrict", "1"),
        ("TestingDirAuthVoteGuard", ",".join(guards)),
        ("TestingDirAuthVoteGuardIsStrict", "1"),
        ("TestingDirAuthVoteHSDir", ",".join(r.fingerprint for r in relays if _directory_cache(r))),
        ("TestingDirAuthVoteHSDirIsStrict", "1"),
        ("V3BandwidthsFile", str(node.data_dir / "bandwidths")),
    ]


def bandwidth_file(relays: list[TorNode], timestamp: int) -> str:
    """A bandwidth file (dir-spec "bandwidth-file-spec" v1.0.0): timestamp, then one line per relay.

    With no bandwidth scanner in a private network, every relay would be
    "Unmeasured" and capped at 20 KB/s; votes from three authorities that read
    this file put a measured ``w Bandwidth=N`` in the consensus instead.
    """
    lines = [str(timestamp)]
    lines += [f"node_id=${r.fingerprint} bw={r.bandwidth_kb}" for r in relays if r.bandwidth_kb]
    return "\n".join(lines) + "\n"
