"""Fixtures of the end-to-end tests (the test bed itself is the session fixture in tests/conftest.py)."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
from support.exporter_process import RunningExporter
from support.pinned_lane import PinnedLane


@pytest.fixture(scope="module")
def lane(bed):
    """One lane of our tor on the module's test bed (its ``bed`` fixture), pinned per probe (3 hops)."""
    pinned = PinnedLane(bed.state(), hops=3)
    yield pinned
    pinned.close()


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
        try:
            code = exporter.stop()
        except subprocess.TimeoutExpired as exc:  # stop() has killed it: show what it was doing
            raise AssertionError(f"exporter did not stop on SIGTERM:\n{exporter.log.read_text()[-6000:]}") from exc
        assert code == 0, exporter.log.read_text()[-3000:]
