import sqlite3
import threading

import pytest
from support.spine_values import fetched, page, relay

from exporter.probe import ProbeResult
from exporter.state import Measurement
from exporter.store import Store, StoreError
from exporter.values import Verdict


def answered(probe_id, target="news", fetcher="http", n=1, kind="challenge", provider="cloudflare", when=10.0):
    return ProbeResult(probe_id, target, fetcher, relay(n), when, 0.1, verdict=Verdict(kind, provider, ("m",)),
                       fetch=fetched(page(403), outcome="cleared", clear_seconds=2.0))


def failed(probe_id, target="news", n=1, when=20.0):
    return ProbeResult(probe_id, target, "http", relay(n), when, 0.1, error_reason="timeout", error_message="slow")


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "state.db", recent_limit=3)
    yield store
    store.close()


def test_a_restart_keeps_measurements_attempts_probes_and_baselines(tmp_path):
    path = tmp_path / "data" / "state.db"
    store = Store(path)
    store.record(answered("p1", when=10.0), evidence="evidence/p1")
    store.record(failed("p2", when=20.0))
    store.record(answered("p3", fetcher="chromium", n=2, kind="ok", provider="", when=30.0))
    store.save_baseline("news", "http", {"shingles": [1, 2, 3]})
    store.close()

    reopened = Store(path)
    try:
        fp1, fp2 = relay(1).fingerprint, relay(2).fingerprint
        assert reopened.load_last() == {
            ("news", "http"): {fp1: Measurement("challenge", "cloudflare", 10.0, "p1")},
            ("news", "chromium"): {fp2: Measurement("ok", "", 30.0, "p3")},
        }
        assert reopened.load_attempts() == {"news": {fp1: 20.0, fp2: 30.0}}
        assert [r["probe_id"] for r in reopened.recent(10)] == ["p1", "p2", "p3"]
        assert reopened.load_baseline("news", "http") == {"shingles": [1, 2, 3]}
        assert reopened.load_baseline("news", "chromium") is None
    finally:
        reopened.close()


def test_a_probe_record_holds_what_the_pages_show(store):
    store.record(answered("p1"), evidence="evidence/p1")
    store.record(failed("p2"))
    store.flush()
    one = store.probe("p1")
    assert (one["target"], one["fetcher"], one["verdict"], one["provider"], one["outcome"]) == (
        "news", "http", "challenge", "cloudflare", "cleared")
    assert one["exit"] == {"fingerprint": relay(1).fingerprint, "nickname": "exit1", "address": "127.0.0.21",
                           "country": "DE"}
    assert (one["load_seconds"], one["clear_seconds"], one["evidence"]) == (0.4, 2.0, "evidence/p1")
    assert one["first"] == {"url": "http://news.test/", "status": 403}
    two = store.probe("p2")
    assert (two["verdict"], two["error_reason"], two["error_message"], two["evidence"]) == (
        None, "timeout", "slow", None)
    assert store.probe("nope") is None


def test_recent_probes_are_bounded_and_oldest_first(store):
    for index in range(5):
        store.record(failed(f"p{index}", when=float(index)))
    store.flush()
    assert [r["probe_id"] for r in store.recent(10)] == ["p2", "p3", "p4"]
    assert [r["probe_id"] for r in store.recent(2)] == ["p3", "p4"]
    assert store.probe("p0") is None


def test_a_later_answer_replaces_the_measurement_and_a_failure_does_not(store):
    store.record(answered("p1", kind="challenge", when=10.0))
    store.record(answered("p2", kind="ok", provider="", when=20.0))
    store.record(failed("p3", when=30.0))
    store.flush()
    assert store.load_last()[("news", "http")][relay(1).fingerprint] == Measurement("ok", "", 20.0, "p2")
    assert store.load_attempts()["news"][relay(1).fingerprint] == 30.0


def test_forget_targets_keeps_only_configured_ones(store):
    store.record(answered("p1", target="news"))
    store.record(answered("p2", target="shop"))
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
            for index in range(500):
                store.record(answered(f"w{worker}-{index}", target=f"t{index % 7}", n=worker, when=float(index)))
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
