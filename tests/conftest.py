"""Shared fixtures and the test layout.  ``testbed``: one private Tor network + edge per test session.

- ``tests/unit``: no root, no network, no server of another project;
- ``tests/integration`` (marker ``integration``): real servers of other projects (Prometheus) on loopback;
- ``tests/e2e`` (marker ``e2e``): the private Tor test bed, which needs root for its network namespace;
  without root they are skipped, saying so.

``bash tests/run`` runs them all inside a network namespace with only loopback
(``unshare --net sh -c 'ip link set lo up && pytest'``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
NOT_ROOT = ("e2e tests need root: the test bed runs in a network namespace of its own (unshare --net); "
            "run them with 'sudo bash tests/run -m e2e'")


def pytest_collection_modifyitems(config, items):
    """Mark each test by the directory it is in (a test cannot forget), and skip e2e tests without root."""
    for item in items:
        layer = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if layer == "e2e":
            item.add_marker(pytest.mark.e2e)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason=NOT_ROOT))
        elif layer == "integration":
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def testbed(request):
    """The running ``TestBed`` (``.state()`` gives the state document); stopped after the session."""
    from testbed.bed import TestBed

    capture = request.config.pluginmanager.getplugin("capturemanager")
    with TestBed() as bed:
        with capture.global_and_fixture_disabled():  # show it even though output is captured
            print(
                f"\ntest bed: booted in {bed.boot.seconds:.1f} s (keys {bed.boot.keys_seconds:.1f} s), "
                f"{len(bed.network.exits)} exits, tor RSS {bed.network.rss_bytes() / 2**20:.0f} MiB"
            )
        yield bed
