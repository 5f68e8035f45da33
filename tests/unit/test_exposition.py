"""/metrics bytes: rendered at the scrape while cheap, by a thread of their own when not; gzip on request."""

from __future__ import annotations

import gzip
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter import exposition
from exporter.exposition import Exposition, gzip_accepted

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture
def registries():
    main, live = CollectorRegistry(), CollectorRegistry()
    probes = Counter("fake_probes", "Probes.", registry=main)
    Gauge("fake_process_resident_memory_bytes", "Memory.", registry=live).set(42)
    return main, live, probes


def test_main_and_live_parts_make_one_valid_openmetrics_document(registries):
    main, live, _ = registries
    body = Exposition(main, live).body(OPENMETRICS)
    text = body.data.decode()
    assert body.content_type.startswith("application/openmetrics-text") and not body.gzipped
    assert text.count("# EOF") == 1 and text.endswith("# EOF\n")
    names = {family.name for family in text_string_to_metric_families(text)}
    assert names == {"fake_probes", "fake_process_resident_memory_bytes"}


def test_gzip_is_two_members_that_decompress_to_the_plain_body(registries):
    main, live, _ = registries
    shown = Exposition(main, live)
    plain, packed = shown.body(OPENMETRICS), shown.body(OPENMETRICS, "gzip, deflate")
    assert packed.gzipped and gzip.decompress(packed.data) == plain.data


@pytest.mark.parametrize("header, accepted", [
    ("gzip", True), ("deflate, gzip;q=0.5", True), ("*", True), ("GZIP", True),
    ("", False), ("identity", False), ("gzip;q=0", False), ("gzip;q=0.0, deflate", False), ("gzip;q=x", False)])
def test_gzip_accepted(header, accepted):
    assert gzip_accepted(header) is accepted


def test_a_cheap_registry_is_rendered_at_every_scrape(registries):
    main, live, probes = registries
    shown = Exposition(main, live)
    assert b"fake_probes_total 0.0" in shown.body().data
    probes.inc()  # nobody calls changed(): a cheap render does not need to be told
    assert b"fake_probes_total 1.0" in shown.body().data


def test_an_expensive_registry_is_served_from_cache_and_rendered_by_the_thread(registries, monkeypatch):
    main, live, probes = registries
    monkeypatch.setattr(exposition, "SYNC_RENDER_SECONDS", 0.0)  # every render counts as expensive
    shown = Exposition(main, live, max_age=3600, cpu_share=1.0)
    try:
        assert b"fake_probes_total 0.0" in shown.body().data  # the first scrape renders
        probes.inc()
        assert b"fake_probes_total 0.0" in shown.body().data, "unchanged: served from the cache"
        shown.changed()
        assert b"fake_probes_total 0.0" in shown.body().data, "stale bytes go out while the thread renders"
        deadline = time.monotonic() + 5
        while b"fake_probes_total 1.0" not in shown.body().data:
            assert time.monotonic() < deadline, "the renderer never caught up"
            time.sleep(0.01)
    finally:
        shown.stop()


def test_the_renderer_takes_at_most_its_share_of_a_cpu(registries, monkeypatch):
    main, live, probes = registries
    monkeypatch.setattr(exposition, "SYNC_RENDER_SECONDS", 0.0)
    collect = main.collect

    def slow_collect():
        time.sleep(0.05)
        return collect()

    monkeypatch.setattr(main, "collect", slow_collect)
    shown = Exposition(main, live, max_age=3600, cpu_share=0.1)
    try:
        started = time.monotonic()
        shown.body()  # a 50 ms render: at a tenth of a CPU, the next may start 0.5 s after this one
        probes.inc()
        shown.changed()
        while b"fake_probes_total 1.0" not in shown.body().data:
            assert time.monotonic() - started < 5, "the renderer never ran"
            time.sleep(0.01)
        assert time.monotonic() - started >= 0.5
    finally:
        shown.stop()
