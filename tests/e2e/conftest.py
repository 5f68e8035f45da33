"""Fixtures of the end-to-end tests (the test bed itself is the session fixture in tests/conftest.py)."""

from __future__ import annotations

import time

import pytest
import requests
from exporter_process import RunningExporter


@pytest.fixture
def run_exporter(tmp_path):
    started = []

    def start(config: dict, *extra_args: str) -> RunningExporter:
        exporter = RunningExporter(config, tmp_path, extra_args)
        started.append(exporter)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                exporter.get("/-/healthy")
                return exporter
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError("exporter did not come up:\n" + exporter.log.read_text())

    yield start
    for exporter in started:
        assert exporter.stop() == 0, exporter.log.read_text()[-3000:]
