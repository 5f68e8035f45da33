import hashlib
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.shard import Shard, fingerprint_key, jump_hash

fingerprints = st.text(alphabet="0123456789ABCDEF", min_size=40, max_size=40)


def sample_fingerprints(n: int) -> list[str]:
    """n distinct, deterministic fingerprints."""
    return [hashlib.sha1(str(i).encode()).hexdigest().upper() for i in range(n)]


@dataclass(frozen=True)
class FakeExit:
    fingerprint: str


@pytest.mark.parametrize("spec, expected", [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 0/2 ", Shard(0, 2))])
def test_parse(spec, expected):
    assert Shard.parse(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("3/3", "index must be in 0..2"),
    ("0/0", "count must be at least 1"),
    ("a/b", "INDEX/COUNT with whole numbers"),
    ("1", "INDEX/COUNT"),
    ("-1/3", "INDEX/COUNT"),
    ("1/2/3", "INDEX/COUNT"),
])
def test_parse_rejects(spec, message):
    with pytest.raises(ValueError, match=message):
        Shard.parse(spec)


def test_str_round_trips():
    assert Shard.parse(str(Shard(4, 7))) == Shard(4, 7)


@pytest.mark.parametrize("hostname, expected", [
    ("captcha-exporter-2", Shard(2, 3)),
    ("captcha-exporter-0.captcha-exporter.monitoring.svc.cluster.local", Shard(0, 3)),
    ("web-10", Shard(10, 11)),
])
def test_from_hostname(hostname, expected):
    assert Shard.from_hostname(hostname, expected.count) == expected


def test_from_hostname_rejects_names_without_ordinal_and_ordinals_past_count():
    with pytest.raises(ValueError, match="-<ordinal>"):
        Shard.from_hostname("captcha-exporter", 2)
    with pytest.raises(ValueError, match="index must be in 0..1"):
        Shard.from_hostname("captcha-exporter-2", 2)


@settings(max_examples=50)
@given(st.sets(fingerprints, max_size=60), st.integers(min_value=1, max_value=9))
def test_n_shards_partition_every_set_exactly(fps, count):
    owners = {fp: [i for i in range(count) if Shard(i, count).owns(fp)] for fp in fps}
    assert all(len(found) == 1 for found in owners.values()), owners


@given(fingerprints)
def test_owner_ignores_case_and_dollar_prefix(fp):
    shard = Shard(jump_hash(fingerprint_key(fp), 5), 5)
    assert shard.owns(fp) and shard.owns(fp.lower()) and shard.owns("$" + fp)


def test_split_is_roughly_even():
    fps = sample_fingerprints(6000)
    for count in (2, 3, 7):
        sizes = Counter(jump_hash(fingerprint_key(fp), count) for fp in fps)
        expected = len(fps) / count
        assert set(sizes) == set(range(count))
        assert all(abs(size - expected) < 0.1 * expected for size in sizes.values()), sizes


def test_adding_a_replica_moves_only_its_share():
    fps = sample_fingerprints(3000)
    before = {fp: jump_hash(fingerprint_key(fp), 3) for fp in fps}
    after = {fp: jump_hash(fingerprint_key(fp), 4) for fp in fps}
    moved = [fp for fp in fps if before[fp] != after[fp]]
    assert all(after[fp] == 3 for fp in moved)
    assert 0.2 < len(moved) / len(fps) < 0.3


def test_owned_keeps_order_and_filters():
    exits = [FakeExit(fp) for fp in sample_fingerprints(50)]
    shards = [Shard(i, 3) for i in range(3)]
    parts = [shard.owned(exits) for shard in shards]
    assert sorted(e.fingerprint for part in parts for e in part) == sorted(e.fingerprint for e in exits)
    for part in parts:
        assert part == [e for e in exits if e in part]
    assert Shard().owned(exits) == exits


def test_same_owners_in_another_process_with_another_hash_seed():
    fps = sample_fingerprints(200)
    here = [jump_hash(fingerprint_key(fp), 5) for fp in fps]
    code = ("import sys; from exporter.shard import jump_hash, fingerprint_key; "
            "print(','.join(str(jump_hash(fingerprint_key(fp), 5)) for fp in sys.argv[1:]))")
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code, *fps], env=env, capture_output=True, text=True,
                             check=True).stdout
        assert [int(i) for i in out.strip().split(",")] == here
