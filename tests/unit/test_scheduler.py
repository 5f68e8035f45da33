import threading
import time

import pytest
import yaml
from support.spine_values import LANE, fetched, page, relay, target

from exporter.config import Schedule, parse_config
from exporter.scheduler import (
    Backoff,
    PinError,
    Prober,
    Scheduler,
    auto_lanes,
    available_memory,
    run_period,
)
from exporter.values import Verdict


class FakeFetcher:
    name = "http"

    def fetch(self, url, lane, timeout):
        return fetched(page(200))

    def leave(self, lane):
        pass

    def close(self):
        pass


def ok(response):
    return Verdict("ok")


def collector(expected):
    results, done = [], threading.Event()

    def on_result(result):
        results.append(result)
        if len(results) == expected:
            done.set()

    return results, done, on_result


def test_prober_accounts_for_every_attempt():
    results, done = [], threading.Event()

    def on_result(result):
        results.append(result)
        if len(results) == 4:
            done.set()

    def pin(lane, exit):
        if exit.nickname == "exit2":
            raise PinError("circuit", "no circuit")

    lanes = [LANE, LANE.__class__(1, "127.0.0.1", 9052, 1002)]
    prober = Prober(lanes, pin, {"http": FakeFetcher()}, {"http": 5}, ok, on_result)
    two_fetchers = target(fetchers=("http", "chromium"))
    for n in (1, 2):
        assert prober.submit(two_fetchers, relay(n))
    assert done.wait(5)
    prober.shutdown()
    outcomes = sorted((r.exit.nickname, r.fetcher, r.error_reason) for r in results)
    assert outcomes == [("exit1", "chromium", "browser"), ("exit1", "http", None),
                        ("exit2", "chromium", "circuit"), ("exit2", "http", "circuit")]
    assert prober.queued == 0 and prober.in_flight == 0


def test_one_circuit_serves_every_target_due_on_an_exit():
    results, done, on_result = collector(4)
    pins, gate = [], threading.Event()

    def pin(lane, exit):
        gate.wait(5)  # hold the only lane until every target is queued
        pins.append(exit.nickname)

    prober = Prober([LANE], pin, {"http": FakeFetcher()}, {"http": 5}, ok, on_result)
    assert prober.submit(target("news"), relay(9))  # occupies the lane
    for name in ("news", "shop", "forum"):
        prober.submit(target(name), relay(1))
    assert not prober.submit(target("news"), relay(1)), "already queued there"
    assert prober.queued == 3
    gate.set()
    assert done.wait(5)
    prober.shutdown()
    assert pins == ["exit9", "exit1"], "one pin for the three targets on exit1"
    assert sorted(r.target for r in results if r.exit.nickname == "exit1") == ["forum", "news", "shop"]


def test_backoff_doubles_after_repeated_failures_and_resets_on_success():
    backoff = Backoff(first=60, cap=200, after=3)
    for _ in range(2):
        backoff.failed("A", now=0)
    assert not backoff.waiting("A", now=1)
    backoff.failed("A", now=0)
    assert backoff.waiting("A", now=59) and not backoff.waiting("A", now=61)
    backoff.failed("A", now=0)
    assert backoff.waiting("A", now=119) and not backoff.waiting("A", now=121)
    backoff.failed("A", now=0)
    assert backoff.waiting("A", now=199) and not backoff.waiting("A", now=201), "capped"
    assert backoff.skipped(now=100) == {"A"}
    backoff.succeeded("A")
    assert not backoff.waiting("A", now=100) and backoff.skipped(now=100) == frozenset()


def test_a_target_run_skips_exits_backing_off_and_takes_least_recently_tried():
    submitted = []

    class Recorder:
        backoff = Backoff(after=1)

        def is_pending(self, target, exit):
            return False

        def submit(self, target, exit):
            submitted.append(exit.nickname)
            return True

    prober = Recorder()
    prober.backoff.failed(relay(2).fingerprint, now=time.time())
    exits = [relay(1), relay(2), relay(3), relay(4)]
    last = {relay(1).fingerprint: 10.0, relay(3).fingerprint: 5.0}
    scheduler = Scheduler(Schedule(), prober, lambda t: exits, lambda name: last)
    assert scheduler.run_target(target(exits_per_run=2)) == 2
    assert submitted == ["exit4", "exit3"]


def test_auto_lanes_follow_cpus_and_memory():
    gib = 2**30
    assert auto_lanes(cpus=2, available_bytes=20 * gib, browsers=True) == 2
    assert auto_lanes(cpus=8, available_bytes=2 * gib, browsers=True) == 3, "memory bounds browser lanes"
    assert auto_lanes(cpus=2, available_bytes=0, browsers=True) == 1, "never fewer than one"
    assert auto_lanes(cpus=2, available_bytes=0, browsers=False) == 8
    assert auto_lanes(cpus=64, available_bytes=512 * gib, browsers=True) == 16


def test_available_memory_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   12345678 kB\n")
    assert available_memory(str(meminfo)) == 12345678 * 1024
    assert available_memory(str(tmp_path / "missing")) == 0


@pytest.mark.parametrize("schedule, target_interval, expected", [
    ({}, None, 600.0),  # the default interval
    ({}, "1h", 3600.0),
    ({"cron": "*/15 * * * *"}, None, 900.0),
    ({"cron": "0 9 * * 1,3"}, None, 5 * 86400.0),  # Wednesday to Monday is the longest gap
    ({"cron": "0 9 * * 1,3"}, "2h", 7200.0),  # a target's own interval exempts it from the cron
])
def test_run_period_is_the_interval_or_the_longest_cron_gap(schedule, target_interval, expected):
    entry = {"name": "news", "url": "http://news.test/", **({"interval": target_interval} if target_interval else {})}
    config = parse_config(yaml.safe_dump({"targets": [entry], "schedule": schedule}))
    assert run_period(config.targets[0]) == expected


def test_the_lane_is_unpinned_once_its_probes_are_done_and_only_then():
    """A lane is pinned only while probes run on it: the pinner closes streams it opens at other times."""
    events = []
    results, done, on_result = collector(2)

    class Recording(FakeFetcher):
        def fetch(self, url, lane, timeout):
            events.append(("fetch", url))
            return super().fetch(url, lane, timeout)

    def record(result):
        events.append(("result", result.target))
        on_result(result)

    prober = Prober([LANE], lambda lane, exit: events.append(("pin", exit.nickname)), {"http": Recording()},
                    {"http": 5}, ok, record, release=lambda lane: events.append(("release", lane.index)))
    prober.submit(target("news"), relay(1))
    prober.submit(target("shop"), relay(1))
    assert done.wait(5)
    prober.shutdown()
    pinned = False
    for kind, _ in events:  # pin, its probes, release; once or twice (the second submit may find it done)
        assert kind != "pin" or not pinned
        assert kind not in ("fetch", "result") or pinned
        pinned = kind == "pin" or (pinned and kind != "release")
    assert not pinned and events[-1] == ("release", LANE.index)


def test_each_fetcher_leaves_its_page_before_the_lane_is_unpinned_even_after_a_failure():
    """A page still loading when its lane's circuit goes would open streams counted as stray."""
    events = []
    results, done, on_result = collector(3)

    class Leaving(FakeFetcher):
        def __init__(self, name, fails=False):
            self.name, self.fails = name, fails

        def fetch(self, url, lane, timeout):
            if self.fails:
                raise RuntimeError("the browser fell over")
            return super().fetch(url, lane, timeout)

        def leave(self, lane):
            events.append(("leave", self.name))

    prober = Prober([LANE], lambda lane, exit: events.append(("pin", exit.nickname)),
                    {"http": Leaving("http"), "chromium": Leaving("chromium", fails=True)},
                    {"http": 5, "chromium": 5}, ok, on_result, release=lambda lane: events.append(("release", "")))
    prober.submit(target("news", fetchers=("http", "chromium")), relay(1))
    prober.submit(target("shop", fetchers=("http",)), relay(1))
    assert done.wait(5)
    prober.shutdown()
    assert ("leave", "chromium") in events  # its probe failed, yet its page is left
    assert events.count(("release", "")) == events.count(("pin", "exit1"))
    for index, event in enumerate(events):
        if event[0] == "release":
            assert events[index - 1][0] == "leave"
