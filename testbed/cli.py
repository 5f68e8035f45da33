"""``captcha-exporter testbed up``: run the test bed in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from . import processes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="testbed_command", required=True, metavar="ACTION")
    up = sub.add_parser("up", help="boot the private Tor network and the edge; stop on Ctrl-C/SIGTERM")
    up.add_argument("--exits", type=_positive, default=4, help="number of exit relays (default 4)")
    up.add_argument("--state", type=Path, help="write the state JSON (ports, exits, sites) to this file")
    up.add_argument("--policy", type=Path, help="edge policy YAML (default: a spread over the exits)")
    up.add_argument("--replay", type=Path, metavar="DIR",
                    help="also serve the HAR captures in DIR at the hosts they were recorded on (ports 80 and 443)")
    add_latency_argument(up)


def add_latency_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latency", type=_duration, default=0.0, metavar="DURATION",
                        help="delay on every hop, each way: between relays and to the edge (e.g. 150ms; default 0)")


def _duration(text: str) -> float:
    from exporter.config_yaml import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    from .bed import TestBed
    from .policy import PolicyError
    from .replay import ReplayError

    processes.exit_on_termination_signals()
    try:
        bed = TestBed(exits=args.exits, policy=args.policy, latency=args.latency, replay=args.replay).start()
    except (PolicyError, ReplayError, OSError) as exc:  # OSError: e.g. ports 80/443 taken or not ours to bind
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.state:
            bed.write_state(args.state)
        print(summary(bed.state(), bed.network.rss_bytes(), args.state), flush=True)
        threading.Event().wait()  # until Ctrl-C, or SystemExit from SIGTERM/SIGHUP
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if args.state:
            args.state.unlink(missing_ok=True)
        bed.stop()
    print("test bed stopped", flush=True)
    return 0


def summary(state: dict, rss_bytes: int, state_file: Path | None) -> str:
    """A few lines for a person: boot time, exits and countries, site URLs, memory."""
    client = state["client"]
    latency = f"; {state['latency_seconds'] * 1000:g} ms on every hop, each way" if state["latency_seconds"] else ""
    lines = [
        f"test bed up in {state['boot_seconds']:.1f} s; tor network RSS {rss_bytes / 2**20:.0f} MiB{latency}",
        (
            f"client: SocksPort {client['socks_host']}:{client['socks_port']}, "
            f"ControlPort {client['control_host']}:{client['control_port']} (cookie {client['cookie_file']})"
        ),
        "exits:",
    ]
    lines += [
        f"  {e['nickname']:<8} {e['address']:<12} {e['country']}  {e['fingerprint']}" for e in state["exits"]
    ]
    lines.append(f"sites (edge admin {state['edge']['admin_url']}):")
    lines += [f"  {url}" for url in state["edge"]["sites"].values()]
    lines.append(f"GeoIP db: {state['geoip_db']}")
    if state_file:
        lines.append(f"state: {state_file}")
    lines.append("Ctrl-C to stop")
    return "\n".join(lines)
