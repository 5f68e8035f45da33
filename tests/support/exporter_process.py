"""Run the real exporter as a process against the test bed, and read its /metrics (e2e helpers)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families


def exporter_config(state: dict, port: int, data_dir: Path, control_port: int | None = None) -> dict:
    client, edge = state["client"], state["edge"]
    return {
        "tor": {"mode": "connect", "control": f"127.0.0.1:{control_port or client['control_port']}",
                "cookie_file": client["cookie_file"]},
        "targets": [{"name": "news", "url": edge["sites"]["news"]},
                    {"name": "shop", "url": edge["sites"]["shop"]}],
        "schedule": {"interval": "10s", "exits_per_run": len(state["exits"]), "concurrency": 2},
        "fetchers": {"http": {"ca_file": edge["ca_file"], "timeout": "15s"}},
        "geoip": {"country_db": state["geoip_db"]},
        "baseline": {"resolve": {urlsplit(url).hostname: "127.0.0.1" for url in edge["sites"].values()}},
        "web": {"listen": f"127.0.0.1:{port}"},
        "data_dir": str(data_dir),
    }


class RunningExporter:
    def __init__(self, config: dict, workdir: Path, extra_args: tuple[str, ...] = ()):
        self.port = int(config["web"]["listen"].rsplit(":", 1)[1])
        path = workdir / f"exporter-{self.port}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log = workdir / f"exporter-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--config", str(path), *extra_args],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), start_new_session=True)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def samples(self) -> dict[tuple[str, frozenset], float]:
        text = self.get("/metrics").text
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGUSR1)  # the exporter dumps its threads' stacks to the log
                time.sleep(1)
                self.process.kill()


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples, name, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, l), v in samples.items() if n == name and want <= set(l))
