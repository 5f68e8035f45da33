"""A reload that fails, whatever the reason, is rejected in one line and changes nothing.

The exporter runs as a real process (tor unreachable: it keeps serving), as an
unprivileged user when the tests run as root, since root may read any directory.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from support.hostile_configs import CASES, UNPRIVILEGED, shared_directory

from exporter import app, exposition
from exporter.config import load_config

REJECTED = "reload rejected; the old configuration stays in force"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def good_config(directory: Path, web_port: int) -> str:
    return yaml.safe_dump({
        "tor": {"mode": "connect", "control": f"127.0.0.1:{free_port()}"},  # nobody listens: tor is unavailable
        "targets": [{"name": "shop", "url": "https://shop.example/"}],
        "web": {"listen": f"127.0.0.1:{web_port}"},
        "data_dir": str(directory / "data"),
    })


class Exporter:
    def __init__(self, directory: Path):
        self.port = free_port()
        self.config = directory / "config.yaml"
        self.config.write_text(good_config(directory, self.port))
        (directory / "data").mkdir(mode=0o777)
        (directory / "data").chmod(0o777)
        self.log = directory / "exporter.log"
        self.process = subprocess.Popen(
            [*UNPRIVILEGED, sys.executable, "-m", "exporter", "run", "--config", str(self.config),
             "--log.format", "json"], stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        try:
            self.wait(lambda: self.get("/-/healthy").status_code == 200, "the exporter to listen")
        except BaseException:
            self.stop()
            raise

    def get(self, path: str) -> requests.Response:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)
        except requests.ConnectionError:
            return requests.Response()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text(errors="replace").splitlines()]

    def rejections(self) -> list[str]:
        return [line["err"] for line in self.lines() if line["msg"] == REJECTED]

    def reload_gauge(self) -> float:
        text = self.get("/metrics").text
        return float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("captcha_config_last_reload_successful ")))

    def wait(self, condition, what: str, seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.process.poll() is None, f"the exporter exited; its log:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture
def exporter():
    with shared_directory("reload-") as directory:
        running = Exporter(directory)
        yield running
        running.stop()


def test_every_hostile_file_is_rejected_in_one_line_by_post_and_by_sighup(exporter):
    good = exporter.config.read_text()
    shown = exporter.get("/config").text
    for case in CASES:
        case.write(exporter.config.parent)
        expected = f"{exporter.config}:{case.line}: {case.path}: "

        answer = requests.post(f"http://127.0.0.1:{exporter.port}/-/reload", headers={"X-Requested-By": "test"},
                               timeout=30)
        assert answer.status_code == 500, case.id
        assert answer.text.startswith(expected) and case.message in answer.text, (case.id, answer.text)
        assert answer.text.count("\n") == 1, (case.id, answer.text)
        assert exporter.rejections()[-1] == answer.text.rstrip("\n"), case.id

        before = len(exporter.rejections())
        exporter.process.send_signal(signal.SIGHUP)
        exporter.wait(lambda before=before: len(exporter.rejections()) > before, f"SIGHUP to be rejected ({case.id})")
        assert exporter.rejections()[-1] == answer.text.rstrip("\n"), case.id

        exporter.wait(lambda: exporter.reload_gauge() == 0, f"the gauge ({case.id})", 5)
        assert exporter.get("/config").text == shown, case.id  # the old config stays in force

    exporter.config.write_text(good)
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait(lambda: any(line["msg"] == "configuration reloaded" for line in exporter.lines()), "a good reload")
    exporter.wait(lambda: exporter.reload_gauge() == 1, "the gauge of a good reload", 5)  # /metrics may be cached
    assert not any("Traceback" in json.dumps(line) for line in exporter.lines())


def test_a_failure_of_any_kind_is_a_rejected_reload(tmp_path, monkeypatch, caplog):
    """Not only a ConfigError: a config the detector cannot load (a bug) leaves the old config in force."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text(good_config(tmp_path, free_port()))
    exporter = app.Exporter(load_config(config_file))
    exporter.web.start()
    try:
        before = exporter.config
        monkeypatch.setattr(app, "load_signatures", lambda custom: (_ for _ in ()).throw(RuntimeError("boom\nline 2")))
        ok, message = exporter.reload()
        assert (ok, message) == (False, f"{config_file}: RuntimeError: boom line 2")
        assert exporter.config is before
        assert [record.err for record in caplog.records if record.msg == REJECTED] == [message]
        registry = CollectorRegistry()
        registry.register(app.StateCollector(exporter.view.snapshot, exporter.state))
        assert b"captcha_config_last_reload_successful 0.0" in generate_latest(registry)
    finally:
        exporter.stop()


def test_the_reload_gauge_is_on_metrics_soon_when_metrics_are_rendered_in_the_background(tmp_path, monkeypatch):
    """Once rendering /metrics is slow, a scrape gets cached bytes that are re-rendered when the metrics
    change, or every 30 s: a reload is such a change, or its gauge would lag for up to 30 s."""
    monkeypatch.setattr(exposition, "SYNC_RENDER_SECONDS", 0.0)  # every render counts as slow
    config_file, good = tmp_path / "config.yaml", good_config(tmp_path, free_port())
    config_file.write_text(good)
    exporter = app.Exporter(load_config(config_file))

    def gauge() -> bytes:
        text = exporter.exposition.body().data
        return next(line for line in text.splitlines() if line.startswith(b"captcha_config_last_reload_successful "))

    try:
        assert gauge().endswith(b" 1.0")
        for ok, value in ((False, b" 0.0"), (True, b" 1.0")):
            config_file.write_text(good if ok else "targets: [\n")
            assert exporter.reload()[0] is ok
            deadline = time.monotonic() + 5
            while not gauge().endswith(value):
                assert time.monotonic() < deadline, f"captcha_config_last_reload_successful still not {value.decode().strip()}"
                time.sleep(0.05)
    finally:
        exporter.stop()


def test_auto_lanes_are_reckoned_once_so_a_reload_keeps_tor(tmp_path, monkeypatch):
    """Reckoned again once our browsers hold memory, "auto" would give fewer lanes, and a reload
    that changed nothing would reopen tor for them."""
    config_file = tmp_path / "config.yaml"
    browsers = good_config(tmp_path, free_port()).replace("url: https://shop.example/",
                                                          "url: https://shop.example/\n  fetchers: [chromium]")
    config_file.write_text(browsers)
    exporter = app.Exporter(load_config(config_file))
    exporter.web.start()
    try:
        memory = iter([8 << 30, 1 << 30, 1 << 30])  # MemAvailable before and after 4 browsers started
        monkeypatch.setattr(app, "available_memory", lambda: next(memory))
        monkeypatch.setattr(app.os, "cpu_count", lambda: 4)
        assert exporter.lanes() == 4
        assert exporter.reload()[0]
        assert exporter.lanes() == 4
        config_file.write_text(browsers.replace("[chromium]", "[http]"))
        assert exporter.reload()[0]
        assert exporter.lanes() == app.MAX_LANES  # plain HTTP: every lane, and a LaneLimit ...
        assert exporter._lane_limit_first() == 16  # ... that starts at four per CPU
    finally:
        exporter.stop()
