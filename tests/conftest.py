"""Shared fixtures.  ``testbed``: one private Tor network + edge per test session (e2e tests only).

Run e2e tests inside a network namespace with only loopback:
``unshare --net sh -c 'ip link set lo up && pytest -m e2e'``.
"""

from __future__ import annotations

import pytest


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
