"""What the exporter keeps across restarts, in one SQLite file in the data directory.

SQLite allows one writer at a time; a second connection that writes while the
first holds the lock gets "database is locked" once its busy timeout runs out.
So exactly one connection writes, from one thread fed by a queue: callers only
enqueue and never wait on the lock.  In WAL mode readers see the last committed
state without blocking the writer or each other, so every read opens its own
short-lived connection.

Probes are kept for the probe pages and ``/api/v1/probes`` (the long tail of the
target × exit drill-down) for ``retention`` seconds and at most ``recent_limit``
of them; the columns the API filters on are indexed beside each JSON record.
Relays' first-seen times (from Onionoo, or the first consensus the exporter saw
them in) are kept for good: the earliest known time wins.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from exporter.probe import ProbeResult
from exporter.redact import BY_SHAPE, Redactor
from exporter.state import Measurement

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
READ_TIMEOUT_SECONDS = 10.0  # readers wait this long only while a WAL checkpoint or recovery runs
BATCH = 500  # queued writes committed in one transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurement (
    target TEXT NOT NULL, fetcher TEXT NOT NULL, fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL, provider TEXT NOT NULL, time REAL NOT NULL, probe_id TEXT NOT NULL,
    since REAL, run INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (target, fetcher, fingerprint)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempt (
    target TEXT NOT NULL, fingerprint TEXT NOT NULL, time REAL NOT NULL,
    PRIMARY KEY (target, fingerprint)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe (
    seq INTEGER PRIMARY KEY, probe_id TEXT NOT NULL UNIQUE, record TEXT NOT NULL,
    started REAL, target TEXT, fetcher TEXT, route TEXT, fingerprint TEXT, verdict TEXT);
CREATE TABLE IF NOT EXISTS baseline (
    target TEXT NOT NULL, fetcher TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (target, fetcher)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS relay (
    fingerprint TEXT PRIMARY KEY, first_seen REAL NOT NULL, source TEXT NOT NULL) WITHOUT ROWID;
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS probe_target ON probe (target, started);
CREATE INDEX IF NOT EXISTS probe_exit ON probe (fingerprint, started);
CREATE INDEX IF NOT EXISTS probe_started ON probe (started);
"""
# Schema 1 → 2: a measurement's run, and the probe columns /api/v1/probes filters on (filled from the records).
_UPGRADE_FROM_1 = """
ALTER TABLE measurement ADD COLUMN since REAL;
ALTER TABLE measurement ADD COLUMN run INTEGER NOT NULL DEFAULT 1;
ALTER TABLE probe ADD COLUMN started REAL;
ALTER TABLE probe ADD COLUMN target TEXT;
ALTER TABLE probe ADD COLUMN fetcher TEXT;
ALTER TABLE probe ADD COLUMN route TEXT;
ALTER TABLE probe ADD COLUMN fingerprint TEXT;
ALTER TABLE probe ADD COLUMN verdict TEXT;
UPDATE probe SET started = json_extract(record, '$.started'), target = json_extract(record, '$.target'),
    fetcher = json_extract(record, '$.fetcher'), route = 'tor',
    fingerprint = json_extract(record, '$.exit.fingerprint'), verdict = json_extract(record, '$.verdict');
"""

Write = Callable[[sqlite3.Connection], None]


def _owner_only(path: Path) -> None:
    """Create the database file (if new) and its WAL files (if left over) readable by us alone.

    SQLite gives the ``-wal`` and ``-shm`` files it creates the database file's mode.
    """
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            os.chmod(name, 0o600)


class StoreError(Exception):
    """The state database cannot be opened or used (message names the file)."""


def probe_record(result: ProbeResult, evidence: str | None = None) -> dict[str, Any]:
    """What the landing page, a probe's page and /api/v1/probes show about one probe, as plain JSON data."""
    fetch, exit = result.fetch, result.exit
    return {
        "probe_id": result.probe_id,
        "target": result.target,
        "fetcher": result.fetcher,
        "route": result.route,
        "started": result.started,
        "duration": result.duration,
        "exit": {"fingerprint": exit.fingerprint, "nickname": exit.nickname, "address": exit.address,
                 "country": exit.country, "continent": exit.continent, "asn": exit.asn, "as_name": exit.as_name}
        if exit else None,
        "verdict": result.verdict.kind if result.verdict else None,
        "provider": result.verdict.provider if result.verdict else "",
        "markers": list(result.verdict.markers) if result.verdict else [],
        "outcome": fetch.outcome if fetch else None,
        "load_seconds": fetch.load_seconds if fetch else None,
        "clear_seconds": fetch.clear_seconds if fetch else None,
        "pow_difficulty": result.pow_difficulty,
        "phases": dict(fetch.phases) if fetch else {},
        "first": {"url": fetch.first.url, "status": fetch.first.status} if fetch else None,
        "final": {"url": fetch.final.url, "status": fetch.final.status} if fetch else None,
        "redirects": list(fetch.redirects) if fetch else [],
        "unexpected": result.unexpected,
        "error_reason": result.error_reason,
        "error_message": result.error_message,
        "evidence": evidence,
    }


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection: it never blocks the writer, which may be another process."""
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=READ_TIMEOUT_SECONDS)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read state database {path}: {exc}") from None


def verdict_counts(path: Path, since: float, until: float) -> list[tuple[str, str, str, str, str, str, int]]:
    """Answered probes started within [since, until), counted by (target, fetcher, route, exit country,
    provider, verdict), from the database at ``path`` (which a running exporter may be writing)."""
    if not path.is_file():
        raise StoreError(f"no state database at {path}")
    connection = open_reader(path)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise StoreError(f"state database {path} has schema {version}, expected {SCHEMA_VERSION} "
                             "(run the exporter once to upgrade it)")
        return connection.execute(
            "SELECT target, fetcher, route, coalesce(json_extract(record, '$.exit.country'), ''), "
            "coalesce(json_extract(record, '$.provider'), ''), verdict, count(*) FROM probe "
            "WHERE started >= ? AND started < ? AND verdict IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6",
            (since, until)).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read state database {path}: {exc}") from None
    finally:
        connection.close()


class Store:
    """Last measurements, last attempts, recent probes and baselines in SQLite (WAL, one writer)."""

    def __init__(self, path: str | Path, recent_limit: int = 200_000, retention: float = 86400.0):
        """Probes are kept for ``retention`` seconds, at most ``recent_limit`` of them."""
        self.path = Path(path)
        self.recent_limit = recent_limit
        self.retention = retention
        # writes, flush markers (set once the writes before them are committed) and None (stop)
        self._queue: queue.Queue[Write | threading.Event | None] = queue.Queue()
        writer = self._open_writer()
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, args=(writer,), name="store-writer", daemon=True)
        self._thread.start()

    # -- opening -------------------------------------------------------------

    def _open_writer(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _owner_only(self.path)
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise StoreError(f"cannot open state database {self.path}: {reason}") from None
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"journal mode is {mode}, not wal")
            connection.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL never corrupts
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
            if version == 1:
                connection.executescript(f"BEGIN; {_UPGRADE_FROM_1} COMMIT;")
            connection.executescript(_SCHEMA + _INDEXES)
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            connection.close()
            raise StoreError(f"cannot use state database {self.path}: {exc}") from None
        return connection

    def _read(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"state database {self.path} is closed")
        return open_reader(self.path)

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
        connection.execute("DELETE FROM probe WHERE started < ?", (time.time() - self.retention,))

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

    def record(self, result: ProbeResult, evidence: str | None = None, measurement: Measurement | None = None,
               redactor: Redactor = BY_SHAPE) -> None:
        """Remember a probe: its record, from which ``redactor`` took the secrets (its URLs and error
        text may hold the config's), and through Tor the attempt and the ``measurement`` it made
        (exporter.state gives it, with its run)."""
        fingerprint = result.exit.fingerprint if result.exit else None
        record = json.dumps(redactor.data(probe_record(result, evidence)), separators=(",", ":"))
        columns = (result.probe_id, record, result.started, result.target, result.fetcher, str(result.route),
                   fingerprint, result.verdict.kind if result.verdict else None)

        def write(connection: sqlite3.Connection) -> None:
            if fingerprint is not None:
                connection.execute("INSERT OR REPLACE INTO attempt VALUES (?, ?, ?)",
                                   (result.target, fingerprint, result.started))
            if measurement is not None:
                connection.execute("INSERT OR REPLACE INTO measurement VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                   (result.target, result.fetcher, fingerprint, measurement.kind,
                                    measurement.provider, measurement.time, measurement.probe_id,
                                    measurement.since, measurement.run))
            connection.execute("INSERT OR REPLACE INTO probe (probe_id, record, started, target, fetcher, route, "
                               "fingerprint, verdict) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", columns)

        self._enqueue(write)

    def saw_relays(self, first_seen: dict[str, float], source: str) -> None:
        """Relays' first-seen times (unix) from ``source``; for each relay the earliest known time wins."""
        rows = sorted(first_seen.items())

        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "INSERT INTO relay VALUES (?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
                "first_seen = excluded.first_seen, source = excluded.source "
                "WHERE excluded.first_seen < relay.first_seen", [(fp, when, source) for fp, when in rows])

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
        for target, fetcher, fingerprint, *facts in self._query(
                "SELECT target, fetcher, fingerprint, kind, provider, time, probe_id, since, run FROM measurement"):
            last.setdefault((target, fetcher), {})[fingerprint] = Measurement(*facts)
        return last

    def load_relays(self) -> dict[str, tuple[float, str]]:
        """Every relay's first-seen time and where it came from, by fingerprint."""
        return {fp: (when, source) for fp, when, source in self._query("SELECT fingerprint, first_seen, source "
                                                                         "FROM relay")}

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

    def probes(self, limit: int, since: float | None = None, until: float | None = None,
               **equal: str | None) -> list[dict[str, Any]]:
        """Up to ``limit`` probe records, newest first, started within [since, until] and matching every
        given column of ``equal`` (target, fetcher, route, fingerprint, verdict; verdict "none": no answer)."""
        clauses, parameters = [], []
        for column, value in equal.items():
            if column not in ("target", "fetcher", "route", "fingerprint", "verdict"):
                raise ValueError(f"no probe column {column!r}")
            if value == "none" and column == "verdict":
                clauses.append("verdict IS NULL")
            elif value is not None:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        for bound, value in ((">=", since), ("<=", until)):
            if value is not None:
                clauses.append(f"started {bound} ?")
                parameters.append(value)
        where = " AND ".join(clauses) or "1"
        rows = self._query(f"SELECT record FROM probe WHERE {where} ORDER BY started DESC, seq DESC LIMIT ?",
                           (*parameters, limit))
        return [json.loads(record) for record, in rows]

    def probe(self, probe_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT record FROM probe WHERE probe_id = ?", (probe_id,))
        return json.loads(rows[0][0]) if rows else None

    def load_baseline(self, target: str, fetcher: str) -> dict | None:
        rows = self._query("SELECT data FROM baseline WHERE target = ? AND fetcher = ?", (target, fetcher))
        return json.loads(rows[0][0]) if rows else None
