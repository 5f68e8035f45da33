"""What the exporter keeps across restarts, in one SQLite file in the data directory.

SQLite allows one writer at a time; a second connection that writes while the
first holds the lock gets "database is locked" once its busy timeout runs out.
So exactly one connection writes, from one thread fed by a queue: callers only
enqueue and never wait on the lock.  In WAL mode readers see the last committed
state without blocking the writer or each other, so every read opens its own
short-lived connection.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from exporter.probe import ProbeResult
from exporter.redact import BY_SHAPE, Redactor
from exporter.state import Measurement

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
READ_TIMEOUT_SECONDS = 10.0  # readers wait this long only while a WAL checkpoint or recovery runs
BATCH = 500  # queued writes committed in one transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurement (
    target TEXT NOT NULL, fetcher TEXT NOT NULL, fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL, provider TEXT NOT NULL, time REAL NOT NULL, probe_id TEXT NOT NULL,
    PRIMARY KEY (target, fetcher, fingerprint)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempt (
    target TEXT NOT NULL, fingerprint TEXT NOT NULL, time REAL NOT NULL,
    PRIMARY KEY (target, fingerprint)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe (
    seq INTEGER PRIMARY KEY, probe_id TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS baseline (
    target TEXT NOT NULL, fetcher TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (target, fetcher)) WITHOUT ROWID;
"""

Write = Callable[[sqlite3.Connection], None]


class StoreError(Exception):
    """The state database cannot be opened or used (message names the file)."""


def probe_record(result: ProbeResult, evidence: str | None = None) -> dict[str, Any]:
    """What the landing page and a probe's page show about one probe, as plain JSON data."""
    fetch = result.fetch
    return {
        "probe_id": result.probe_id,
        "target": result.target,
        "fetcher": result.fetcher,
        "started": result.started,
        "duration": result.duration,
        "exit": {"fingerprint": result.exit.fingerprint, "nickname": result.exit.nickname,
                 "address": result.exit.address, "country": result.exit.country},
        "verdict": result.verdict.kind if result.verdict else None,
        "provider": result.verdict.provider if result.verdict else "",
        "markers": list(result.verdict.markers) if result.verdict else [],
        "outcome": fetch.outcome if fetch else None,
        "load_seconds": fetch.load_seconds if fetch else None,
        "clear_seconds": fetch.clear_seconds if fetch else None,
        "phases": dict(fetch.phases) if fetch else {},
        "first": {"url": fetch.first.url, "status": fetch.first.status} if fetch else None,
        "final": {"url": fetch.final.url, "status": fetch.final.status} if fetch else None,
        "redirects": list(fetch.redirects) if fetch else [],
        "error_reason": result.error_reason,
        "error_message": result.error_message,
        "evidence": evidence,
    }


class Store:
    """Last measurements, last attempts, recent probes and baselines in SQLite (WAL, one writer)."""

    def __init__(self, path: str | Path, recent_limit: int = 1000):
        self.path = Path(path)
        self.recent_limit = recent_limit
        # writes, flush markers (set once the writes before them are committed) and None (stop)
        self._queue: queue.Queue[Write | threading.Event | None] = queue.Queue()
        writer = self._open_writer()
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, args=(writer,), name="store-writer", daemon=True)
        self._thread.start()

    # -- opening -------------------------------------------------------------

    def _open_writer(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open state database {self.path}: {exc}") from None
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"journal mode is {mode}, not wal")
            connection.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL never corrupts
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
            connection.executescript(_SCHEMA)
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            connection.close()
            raise StoreError(f"cannot use state database {self.path}: {exc}") from None
        return connection

    def _read(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"state database {self.path} is closed")
        try:
            connection = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                         timeout=READ_TIMEOUT_SECONDS)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read state database {self.path}: {exc}") from None
        return connection

    # -- the writer ----------------------------------------------------------

    def _write_loop(self, connection: sqlite3.Connection) -> None:
        """Apply queued writes, up to BATCH per transaction, until close() enqueues None."""
        running = True
        while running:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            running = None not in batch
            writes = [item for item in batch if callable(item)]
            try:
                with connection:
                    connection.execute("BEGIN IMMEDIATE")
                    for write in writes:
                        write(connection)
                    self._prune(connection)
            except Exception as exc:  # noqa: BLE001 (a full disk must cost this batch, not the writer)
                log.error("state database write failed", extra={"path": str(self.path), "err": str(exc),
                                                                "writes": len(writes)})
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
        try:
            connection.execute("PRAGMA optimize")  # SQLite's advice for long-lived connections, at close
        finally:
            connection.close()

    def _prune(self, connection: sqlite3.Connection) -> None:
        connection.execute("DELETE FROM probe WHERE seq <= (SELECT MAX(seq) FROM probe) - ?", (self.recent_limit,))

    def _enqueue(self, write: Write | threading.Event) -> None:
        if self._closed:
            raise StoreError(f"state database {self.path} is closed")
        self._queue.put(write)

    def flush(self) -> None:
        """Wait until every write enqueued so far is committed."""
        done = threading.Event()
        self._enqueue(done)
        done.wait()

    def close(self) -> None:
        """Commit what is queued and close the database (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    # -- writes --------------------------------------------------------------

    def record(self, result: ProbeResult, evidence: str | None = None, redactor: Redactor = BY_SHAPE) -> None:
        """Remember a probe: the attempt, the measurement if it was answered, and its record, from
        which ``redactor`` took the secrets (its URLs and error text may hold the config's)."""
        fingerprint = result.exit.fingerprint
        record = json.dumps(redactor.data(probe_record(result, evidence)), separators=(",", ":"))

        def write(connection: sqlite3.Connection) -> None:
            connection.execute("INSERT OR REPLACE INTO attempt VALUES (?, ?, ?)",
                               (result.target, fingerprint, result.started))
            if result.verdict is not None:
                connection.execute("INSERT OR REPLACE INTO measurement VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (result.target, result.fetcher, fingerprint, result.verdict.kind,
                                    result.verdict.provider, result.started, result.probe_id))
            connection.execute("INSERT OR REPLACE INTO probe (probe_id, record) VALUES (?, ?)",
                               (result.probe_id, record))

        self._enqueue(write)

    def save_baseline(self, target: str, fetcher: str, data: dict) -> None:
        text = json.dumps(data, separators=(",", ":"))
        self._enqueue(lambda connection: connection.execute(
            "INSERT OR REPLACE INTO baseline VALUES (?, ?, ?)", (target, fetcher, text)))

    def forget_targets(self, keep: Iterable[str]) -> None:
        """Drop measurements, attempts and baselines of targets no longer configured."""
        keep = sorted(set(keep))
        marks = ",".join("?" * len(keep))

        def write(connection: sqlite3.Connection) -> None:
            for table in ("measurement", "attempt", "baseline"):
                connection.execute(f"DELETE FROM {table} WHERE target NOT IN ({marks})", keep)

        self._enqueue(write)

    # -- reads ---------------------------------------------------------------

    def _query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        connection = self._read()
        try:
            return connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read state database {self.path}: {exc}") from None
        finally:
            connection.close()

    def load_last(self) -> dict[tuple[str, str], dict[str, Measurement]]:
        """The last answered probe per (target, fetcher), by exit fingerprint."""
        last: dict[tuple[str, str], dict[str, Measurement]] = {}
        for target, fetcher, fingerprint, kind, provider, when, probe_id in self._query(
                "SELECT target, fetcher, fingerprint, kind, provider, time, probe_id FROM measurement"):
            last.setdefault((target, fetcher), {})[fingerprint] = Measurement(kind, provider, when, probe_id)
        return last

    def load_attempts(self) -> dict[str, dict[str, float]]:
        """When each exit was last tried per target (answered or not), by fingerprint."""
        attempts: dict[str, dict[str, float]] = {}
        for target, fingerprint, when in self._query("SELECT target, fingerprint, time FROM attempt"):
            attempts.setdefault(target, {})[fingerprint] = when
        return attempts

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` probe records, oldest first."""
        rows = self._query("SELECT record FROM probe ORDER BY seq DESC LIMIT ?", (limit,))
        return [json.loads(record) for record, in reversed(rows)]

    def probe(self, probe_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT record FROM probe WHERE probe_id = ?", (probe_id,))
        return json.loads(rows[0][0]) if rows else None

    def load_baseline(self, target: str, fetcher: str) -> dict | None:
        rows = self._query("SELECT data FROM baseline WHERE target = ? AND fetcher = ?", (target, fetcher))
        return json.loads(rows[0][0]) if rows else None
