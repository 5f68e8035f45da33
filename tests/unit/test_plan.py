import random
from collections import Counter

from support.spine_values import relay

from exporter.config import ExitSelection
from exporter.plan import next_exits, select_exits, weighted_sample

EXITS = [relay(1, 0.1, "DE"), relay(2, 0.2, "US", ("Exit", "Running", "Guard")), relay(3, 0.3, "NL"),
         relay(4, 0.4, "US")]


def test_no_selection_keeps_every_exit():
    assert select_exits(EXITS, ExitSelection()) == EXITS


def test_filters_combine():
    chosen = select_exits(EXITS, ExitSelection(countries=("US",), flags=("Guard",)))
    assert [e.nickname for e in chosen] == ["exit2"]
    chosen = select_exits(EXITS, ExitSelection(fingerprints=(EXITS[0].fingerprint, EXITS[2].fingerprint)))
    assert [e.nickname for e in chosen] == ["exit1", "exit3"]


def test_top_takes_the_heaviest():
    assert [e.nickname for e in select_exits(EXITS, ExitSelection(top=2))] == ["exit4", "exit3"]


def test_weighted_sample_is_distinct_and_follows_weight():
    rng = random.Random(7)
    firsts = Counter()
    for _ in range(4000):
        sample = weighted_sample(EXITS, 2, rng)
        assert len({e.fingerprint for e in sample}) == 2
        firsts[sample[0].nickname] += 1
    # the first draw is proportional to probability: exit4 (0.4) about 4x exit1 (0.1)
    assert 3.0 < firsts["exit4"] / firsts["exit1"] < 5.0


def test_next_exits_least_recently_tried_first_heavier_breaks_ties():
    last = {EXITS[3].fingerprint: 100.0, EXITS[2].fingerprint: 50.0}
    chosen = next_exits(EXITS, 3, last)
    # never tried first (exit2 heavier than exit1), then the one tried longest ago
    assert [e.nickname for e in chosen] == ["exit2", "exit1", "exit3"]


def test_next_exits_covers_every_exit_over_runs():
    last, seen = {}, []
    for clock in range(4):
        for exit in next_exits(EXITS, 1, last):
            last[exit.fingerprint] = float(clock)
            seen.append(exit.nickname)
    assert sorted(seen) == ["exit1", "exit2", "exit3", "exit4"]
