import threading
import time

from support.spine_values import LANE, fetched, page, relay, target

from exporter.lane_limit import LEARN_EVERY, LaneLimit
from exporter.scheduler import Prober
from exporter.values import Lane, Verdict


class Clock:
    """A CPU clock the test moves."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self):
        return self.seconds


def test_latency_bound_probes_raise_the_limit_to_what_keeps_half_the_cpus_busy():
    cpu = Clock()
    limit = LaneLimit(cpus=2, first=8, cap=64, cpu_clock=cpu)
    assert limit.limit == 8, "the first guess holds until enough probes are seen"
    cpu.seconds += LEARN_EVERY * 0.05  # 50 ms of CPU per probe ...
    limit.learn(LEARN_EVERY, LEARN_EVERY * 1.0)  # ... waiting 1 s each
    assert limit.limit == 20, "2 CPUs × 0.5 × 1 s / 0.05 s"
    cpu.seconds += LEARN_EVERY * 0.002  # 2 ms per probe: only the lanes there are
    limit.learn(LEARN_EVERY, LEARN_EVERY * 1.0)
    assert limit.limit == 64


def test_cpu_bound_probes_lower_the_limit_but_never_below_one():
    cpu = Clock()
    limit = LaneLimit(cpus=2, first=8, cap=64, cpu_clock=cpu)
    cpu.seconds += LEARN_EVERY * 0.5  # burning as long as they wait: one lane per CPU's share
    limit.learn(LEARN_EVERY, LEARN_EVERY * 0.5)
    assert limit.limit == 1
    limit.learn(LEARN_EVERY - 1, 1.0)
    assert limit.limit == 1, "no decision before LEARN_EVERY probes"


def test_the_first_guess_never_exceeds_the_lanes_there_are():
    assert LaneLimit(cpus=2, first=8, cap=4).limit == 4


def test_the_prober_runs_no_more_exits_at_once_than_the_limit():
    running, most, lock = 0, 0, threading.Lock()
    results, done = [], threading.Event()

    class SlowFetcher:
        name = "http"

        def fetch(self, url, lane, timeout):
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            return fetched(page(200))

    def on_result(result):
        results.append(result)
        if len(results) == 6:
            done.set()

    lanes = [LANE, *(Lane(n, "127.0.0.1", 9052 + n, 1002 + n) for n in range(1, 6))]
    prober = Prober(lanes, lambda lane, exit: None, {"http": SlowFetcher()}, {"http": 5},
                    lambda response: Verdict("ok"), on_result, limit=LaneLimit(cpus=1, first=2, cap=len(lanes)))
    for n in range(1, 7):
        prober.submit(target(), relay(n))
    assert done.wait(5)
    prober.shutdown()
    assert most == 2, f"{most} exits at once with a limit of 2 (6 lanes)"


def test_the_prober_teaches_the_limit_every_probe_and_circuit_not_every_exit():
    lessons, done = [], threading.Event()

    class Recording(LaneLimit):
        def learn(self, probes, wall_seconds):
            lessons.append(probes)
            super().learn(probes, wall_seconds)

    results = []

    def on_result(result):
        results.append(result)
        if len(results) == 3:
            done.set()

    class Fetcher:
        name = "http"

        def fetch(self, url, lane, timeout):
            return fetched(page(200))

    prober = Prober([LANE], lambda lane, exit: None, {"http": Fetcher()}, {"http": 5}, lambda response: Verdict("ok"),
                    on_result, limit=Recording(cpus=1, first=1, cap=1))
    for name in ("a", "b", "c"):
        prober.submit(target(name), relay(1))
    assert done.wait(5)
    prober.shutdown()
    assert lessons.count(1) == 3, "each probe as it ends"
    assert lessons[0] == 0 and lessons.count(0) in (1, 2), "each circuit (a target queued late gets a lane of its own)"
