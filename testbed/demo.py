"""`captcha-exporter demo`: the private test bed, the exporter probing it, and Prometheus when installed.

For a machine without access to the Tor network: everything runs on loopback,
and the edge web server challenges, blocks or modifies pages per exit, so the
landing page and /metrics show what the exporter sees in production.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from exporter.app import Exporter, add_log_arguments
from exporter.config import load_config
from exporter.logs import setup_logging
from testbed.bed import TestBed
from testbed.cli import add_latency_argument
from testbed.ports import free_ports

log = logging.getLogger(__name__)

# the project's recording and alert rules, in a source checkout (the test bed is not installed otherwise)
RULES_DIR = Path(__file__).resolve().parent.parent / "prometheus" / "rules"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exits", type=int, default=4, help="exit relays in the test network (default: 4)")
    parser.add_argument("--listen", default="127.0.0.1:10981", help="exporter address (default: 127.0.0.1:10981)")
    parser.add_argument("--interval", default="30s", help="how often each target is probed (default: 30s)")
    parser.add_argument("--no-chromium", action="store_true", help="probe with plain HTTP only")
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus even if installed")
    parser.add_argument("--rules", type=Path, default=RULES_DIR, metavar="DIR",
                        help="Prometheus rule files (*.yml) to load (default: prometheus/rules of this checkout)")
    add_latency_argument(parser)
    add_log_arguments(parser)


def demo_config(state: dict, listen: str, interval: str, chromium: bool, data_dir: Path) -> dict:
    """An exporter config that probes every edge site through every test-bed exit."""
    client, edge = state["client"], state["edge"]
    fetchers = ["http", "chromium"] if chromium else ["http"]
    targets = [{"name": site, "url": url, "fetchers": fetchers} for site, url in sorted(edge["sites"].items())]
    https_news = edge["sites"]["news"].replace("http://", "https://").replace(
        f":{edge['http_port']}/", f":{edge['https_port']}/")
    targets.append({"name": "news-tls", "url": https_news, "fetchers": ["http"]})
    return {
        "tor": {"mode": "connect", "control": f"{client['control_host']}:{client['control_port']}",
                "cookie_file": client["cookie_file"]},
        "targets": targets,
        "schedule": {"interval": interval, "exits_per_run": len(state["exits"]), "concurrency": 2},
        "fetchers": {"http": {"ca_file": edge["ca_file"], "timeout": "20s"},
                     "chromium": {"ca_file": edge["ca_file"], "challenge_wait": "10s", "timeout": "30s"}},
        "geoip": {"country_db": state["geoip_db"]},
        "baseline": {"resolve": {host: "127.0.0.1" for host in edge["hostnames"]}},
        "web": {"listen": listen},
        "data_dir": str(data_dir),
    }


def prometheus_config(exporter_address: str, rules: Path) -> dict:
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [str(rules.absolute() / "*.yml")],
        "scrape_configs": [{"job_name": "captcha-exporter", "static_configs": [{"targets": [exporter_address]}]}],
    }


def start_prometheus(workdir: Path, exporter_address: str, rules: Path) -> tuple[subprocess.Popen, str]:
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(exporter_address, rules), sort_keys=False))
    address = f"127.0.0.1:{free_ports(1)[0]}"
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'prometheus-data'}",
         f"--web.listen-address={address}", "--web.enable-lifecycle", "--enable-feature=exemplar-storage"],
        stdout=(workdir / "prometheus.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://{address}/"


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    prometheus_wanted = not args.no_prometheus and shutil.which("prometheus")
    if prometheus_wanted and not any(args.rules.glob("*.yml")):
        print(f"error: no rule files (*.yml) in {args.rules}; pass --rules DIR or --no-prometheus", file=sys.stderr)
        return 2
    chromium = not args.no_chromium and bool(shutil.which("chromium") and shutil.which("chromedriver"))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print("Booting the private Tor network and the edge web server…", flush=True)
    with TestBed(exits=args.exits, latency=args.latency) as bed:
        state = bed.state()
        config_path = bed.workdir / "exporter.yaml"
        config_path.write_text(yaml.safe_dump(
            demo_config(state, args.listen, args.interval, chromium, bed.workdir / "data"), sort_keys=False))
        exporter = Exporter(load_config(config_path))
        exporter.start()
        prometheus = None
        try:
            host, port = exporter.web.address
            lines = [f"Test bed up in {state['boot_seconds']:.1f} s: {len(state['exits'])} exits "
                     f"({', '.join(e['nickname'] + ' ' + e['country'] for e in state['exits'])}).",
                     f"Exporter:   http://{host}:{port}/  (metrics: http://{host}:{port}/metrics)",
                     f"Config:     {config_path}",
                     f"Edge admin: {state['edge']['admin_url']}/policy  (PUT a policy to stage a challenge spike)"]
            if prometheus_wanted:
                prometheus, url = start_prometheus(bed.workdir, f"{host}:{port}", args.rules)
                lines.append(f"Prometheus: {url}  (alerts: {url}alerts)")
            lines.append("Fetchers:   " + ("http, chromium" if chromium else "http (chromium not installed)"))
            lines.append("Ctrl-C stops everything.")
            print("\n".join(lines), flush=True)
            stop.wait()
        finally:
            print("Stopping…", flush=True)
            exporter.stop()
            if prometheus is not None:
                prometheus.terminate()
                try:
                    prometheus.wait(10)
                except subprocess.TimeoutExpired:
                    prometheus.kill()
    return 0
