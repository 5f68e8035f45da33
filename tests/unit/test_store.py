import json
import sqlite3
import threading
import time

import pytest
from support.spine_values import fetched, page, relay

from exporter.probe import ProbeResult
from exporter.state import Measurement, State
from exporter.store import Store, StoreError
from exporter.values import Route, Verdict

T = time.time() - 3600  # an hour ago: every probe of these tests is within the store's retention


def answered(probe_id, target="news", fetcher="http", n=1, kind="challenge", provider="cloudflare", when=T + 10,
             route=Route.TOR):
    return ProbeResult(probe_id, target, fetcher, relay(n) if route == Route.TOR else None, when, 0.1,
                       verdict=Verdict(kind, provider, ("m",)),
                       fetch=fetched(page(403), outcome="cleared", clear_seconds=2.0), route=route)


def failed(probe_id, target="news", n=1, when=T + 20):
    return ProbeResult(probe_id, target, "http", relay(n), when, 0.1, error_reason="timeout", error_message="slow")


def keep(store, state, result, evidence=None):
    """Record as the exporter does: the state gives the measurement (with its run), the store keeps it."""
    store.record(result, evidence=evidence, measurement=state.record(result))


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "state.db", recent_limit=3)
    yield store
    store.close()


def test_a_restart_keeps_measurements_attempts_probes_and_baselines(tmp_path):
    path = tmp_path / "data" / "state.db"
    store, state = Store(path), State()
    keep(store, state, answered("p1", when=T + 10), evidence="evidence/p1")
    keep(store, state, failed("p2", when=T + 20))
    keep(store, state, answered("p3", fetcher="chromium", n=2, kind="ok", provider="", when=T + 30))
    keep(store, state, answered("p4", fetcher="chromium", n=2, kind="ok", provider="", when=T + 40))
    keep(store, state, answered("p5", when=T + 50, route=Route.DIRECT))
    store.save_baseline("news", "http", {"shingles": [1, 2, 3]})
    store.close()

    reopened = Store(path)
    try:
        fp1, fp2 = relay(1).fingerprint, relay(2).fingerprint
        assert reopened.load_last() == {
            ("news", "http"): {fp1: Measurement("challenge", "cloudflare", T + 10, "p1")},
            ("news", "chromium"): {fp2: Measurement("ok", "", T + 40, "p4", since=T + 30, run=2)},
        }, "the direct probe is no exit's measurement; runs are kept"
        assert reopened.load_attempts() == {"news": {fp1: T + 20, fp2: T + 40}}
        assert [r["probe_id"] for r in reopened.recent(10)] == ["p1", "p2", "p3", "p4", "p5"]
        assert reopened.probe("p5")["route"] == "direct" and reopened.probe("p5")["exit"] is None
        assert reopened.load_baseline("news", "http") == {"shingles": [1, 2, 3]}
        assert reopened.load_baseline("news", "chromium") is None
    finally:
        reopened.close()


def test_a_probe_record_holds_what_the_pages_show(store):
    store.record(answered("p1"), evidence="evidence/p1")
    store.record(failed("p2"))
    store.flush()
    one = store.probe("p1")
    assert (one["target"], one["fetcher"], one["route"], one["verdict"], one["provider"], one["outcome"]) == (
        "news", "http", "tor", "challenge", "cloudflare", "cleared")
    assert one["exit"] == {"fingerprint": relay(1).fingerprint, "nickname": "exit1", "address": "127.0.0.21",
                           "country": "DE", "continent": "??", "asn": "", "as_name": ""}
    assert (one["load_seconds"], one["clear_seconds"], one["evidence"]) == (0.4, 2.0, "evidence/p1")
    assert one["first"] == {"url": "http://news.test/", "status": 403}
    two = store.probe("p2")
    assert (two["verdict"], two["error_reason"], two["error_message"], two["evidence"]) == (
        None, "timeout", "slow", None)
    assert store.probe("nope") is None


def test_recent_probes_are_bounded_and_oldest_first(store):
    for index in range(5):
        store.record(failed(f"p{index}", when=T + index))
    store.flush()
    assert [r["probe_id"] for r in store.recent(10)] == ["p2", "p3", "p4"]
    assert [r["probe_id"] for r in store.recent(2)] == ["p3", "p4"]
    assert store.probe("p0") is None


def test_probes_older_than_the_retention_go(tmp_path):
    store = Store(tmp_path / "state.db", retention=600)
    try:
        store.record(failed("old", when=time.time() - 601))
        store.record(failed("new", when=time.time() - 10))
        store.flush()
        assert [r["probe_id"] for r in store.recent(10)] == ["new"]
    finally:
        store.close()


def test_probes_are_found_by_target_exit_route_verdict_and_time_newest_first(store):
    store.recent_limit = 100
    results = [answered("a", when=T + 1), answered("b", n=2, when=T + 2), answered("c", target="shop", when=T + 3),
               answered("d", kind="ok", provider="", when=T + 4), failed("e", when=T + 5),
               answered("f", when=T + 6, route=Route.DIRECT)]
    for result in results:
        store.record(result)
    store.flush()

    def ids(limit=10, since=None, until=None, **equal):
        return [r["probe_id"] for r in store.probes(limit, since, until, **equal)]

    assert ids() == ["f", "e", "d", "c", "b", "a"]
    assert ids(limit=2) == ["f", "e"]
    assert ids(target="news", verdict="challenge") == ["f", "b", "a"]
    assert ids(target="news", verdict="challenge", route="tor") == ["b", "a"]
    assert ids(fingerprint=relay(1).fingerprint, target="news") == ["e", "d", "a"]
    assert ids(verdict="none") == ["e"]
    assert ids(since=T + 2, until=T + 4) == ["d", "c", "b"]
    with pytest.raises(ValueError):
        store.probes(10, None, None, record="x")


def test_relays_keep_their_earliest_first_seen_time(store):
    store.saw_relays({"A" * 40: 2000.0, "B" * 40: 2000.0}, "consensus")
    store.saw_relays({"A" * 40: 1000.0, "B" * 40: 3000.0}, "onionoo")
    store.flush()
    assert store.load_relays() == {"A" * 40: (1000.0, "onionoo"), "B" * 40: (2000.0, "consensus")}


def test_a_schema_1_database_is_upgraded_in_place(tmp_path):
    path = tmp_path / "state.db"
    record = {"probe_id": "old", "target": "news", "fetcher": "http", "started": T,
              "exit": {"fingerprint": "A" * 40}, "verdict": "block"}
    with sqlite3.connect(path) as connection:
        connection.executescript(f"""
            CREATE TABLE measurement (target TEXT NOT NULL, fetcher TEXT NOT NULL, fingerprint TEXT NOT NULL,
                kind TEXT NOT NULL, provider TEXT NOT NULL, time REAL NOT NULL, probe_id TEXT NOT NULL,
                PRIMARY KEY (target, fetcher, fingerprint)) WITHOUT ROWID;
            CREATE TABLE probe (seq INTEGER PRIMARY KEY, probe_id TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
            INSERT INTO measurement VALUES ('news', 'http', '{"A" * 40}', 'block', 'akamai', {T}, 'old');
            INSERT INTO probe (probe_id, record) VALUES ('old', '{json.dumps(record)}');
            PRAGMA user_version=1;""")
    store = Store(path)
    try:
        assert store.load_last() == {("news", "http"): {"A" * 40: Measurement("block", "akamai", T, "old")}}
        assert [r["probe_id"] for r in store.probes(10, None, None, fingerprint="A" * 40, verdict="block")] == ["old"]
    finally:
        store.close()


def test_a_later_answer_replaces_the_measurement_and_a_failure_does_not(store):
    state = State()
    keep(store, state, answered("p1", kind="challenge", when=T + 10))
    keep(store, state, answered("p2", kind="ok", provider="", when=T + 20))
    keep(store, state, failed("p3", when=T + 30))
    store.flush()
    assert store.load_last()[("news", "http")][relay(1).fingerprint] == Measurement("ok", "", T + 20, "p2")
    assert store.load_attempts()["news"][relay(1).fingerprint] == T + 30


def test_forget_targets_keeps_only_configured_ones(store):
    state = State()
    keep(store, state, answered("p1", target="news"))
    keep(store, state, answered("p2", target="shop"))
    store.save_baseline("shop", "http", {"a": 1})
    store.forget_targets(["news"])
    store.flush()
    assert list(store.load_last()) == [("news", "http")]
    assert list(store.load_attempts()) == ["news"]
    assert store.load_baseline("shop", "http") is None
    store.forget_targets([])
    store.flush()
    assert store.load_last() == {}


def test_concurrent_writers_and_readers_never_see_a_locked_database(tmp_path):
    store = Store(tmp_path / "state.db", recent_limit=200)
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(worker: int) -> None:
        try:
            state = State()
            for index in range(500):
                keep(store, state, answered(f"w{worker}-{index}", target=f"t{index % 7}", n=worker, when=T + index))
        except BaseException as exc:  # noqa: BLE001 (collected and re-raised by the test)
            errors.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                store.load_last()
                store.load_attempts()
                store.recent(50)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writers = [threading.Thread(target=write, args=(worker,)) for worker in range(1, 9)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    store.flush()
    stop.set()
    for thread in readers:
        thread.join()
    try:
        assert errors == []
        last = store.load_last()
        assert sum(len(exits) for exits in last.values()) == 7 * 8
        assert len(store.recent(1000)) == 200
        assert store.recent(1)[0]["probe_id"].endswith("-499")
    finally:
        store.close()


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(StoreError, match=r"state\.db.*not a database"):
        Store(path)


def test_an_unwritable_place_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"cannot open state database .*file/state\.db"):
        Store(tmp_path / "file" / "state.db")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match=r"dir\.db: Is a directory$"):
        Store(tmp_path / "dir.db")


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)


def test_the_database_is_in_wal_mode_and_closed_store_refuses_use(tmp_path):
    path = tmp_path / "state.db"
    store = Store(path)
    store.close()
    store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(StoreError, match="closed"):
        store.record(failed("p1"))
    with pytest.raises(StoreError, match="closed"):
        store.recent(1)


def test_the_database_is_readable_by_its_owner_only(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "new" / "state.db")
        store.record(answered("p1"))
        store.flush()
        (tmp_path / "old.db").write_bytes(b"")
        os.chmod(tmp_path / "old.db", 0o644)  # made by an earlier version
        older = Store(tmp_path / "old.db")
    finally:
        os.umask(old)
    try:
        for path in (tmp_path / "new" / "state.db", tmp_path / "new" / "state.db-wal",
                     tmp_path / "new" / "state.db-shm", tmp_path / "old.db"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        store.close()
        older.close()
