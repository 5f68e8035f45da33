"""`captcha-exporter report`: one UTC day of probes as a file safe to publish.

The Tor Project publishes usage statistics only in aggregate: counted over
24-hour periods, frequencies rounded up to the next multiple of 8, in an order
that says nothing about when each event happened, and without any identifier
(Tor trac #5047, privacy-aware usage statistics for obfsproxy).  This report
does the same with the probes in the state database: one row per day ×
target × route × fetcher × exit country × provider, with the answered probes,
challenges and blocks counted and each count rounded up to a multiple of
``BIN``.  A group without probes has no row; a zero count in a row stays 0.
Rows are ordered by rounded probe count (largest first), then by their key.
Fingerprints, addresses, probe ids and times never reach the rows: the store
hands over counts per group only.

With ``reports.daily`` the running exporter writes each finished day's report
into ``data_dir/reports`` itself (write_daily) and keeps ``reports.keep_days``
of them; the landing page links the latest.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from exporter.store import StoreError, verdict_counts

BIN = 8
FORMATS = ("csv", "json")
REPORT_FILE = re.compile(r"captcha-report-(\d{4}-\d{2}-\d{2})\.(?:csv|json)")


@dataclass(frozen=True, order=True)
class Row:
    day: str
    target: str
    route: str
    fetcher: str
    country: str  # the exit's ISO 3166 code, "??" if unknown, "" on routes without an exit
    provider: str  # the gate or CAPTCHA vendor, "" for normal pages
    probes: int
    challenges: int
    blocks: int

    @property
    def key(self) -> tuple[str, ...]:
        return self.day, self.target, self.route, self.fetcher, self.country, self.provider


COLUMNS = tuple(f.name for f in fields(Row))


def round_up(count: int) -> int:
    """The next multiple of BIN at or above ``count``: 1 → 8, 8 → 8, 9 → 16; 0 stays 0."""
    return -(-count // BIN) * BIN


def day_bounds(day: date) -> tuple[float, float]:
    """The UTC day as [start, end) in unix time."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def rows(day: date, counts: Iterable[tuple[str, str, str, str, str, str, int]]) -> list[Row]:
    """Rounded rows from (target, fetcher, route, country, provider, verdict, count) groups, in report order."""
    totals: dict[tuple[str, ...], list[int]] = {}
    for target, fetcher, route, country, provider, verdict, count in counts:
        row = totals.setdefault((day.isoformat(), target, route, fetcher, country, provider), [0, 0, 0])
        row[0] += count
        if verdict == "challenge":
            row[1] += count
        elif verdict == "block":
            row[2] += count
    rounded = [Row(*key, *map(round_up, values)) for key, values in totals.items()]
    return sorted(rounded, key=lambda row: (-row.probes, row.key))


def render(report: list[Row], fmt: str, day: date) -> str:
    if fmt == "json":
        document = {"day": day.isoformat(), "bin": BIN, "rows": [dict(zip(COLUMNS, astuple(r))) for r in report]}
        return json.dumps(document, indent=1) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(astuple(row) for row in report)
    return out.getvalue()


def write_report(database: Path, day: date, fmt: str, output: Path) -> int:
    """Write ``day``'s report from ``database`` to ``output``; its row count."""
    report = rows(day, verdict_counts(database, *day_bounds(day)))
    _write(output, render(report, fmt, day))
    return len(report)


def report_path(data_dir: Path, day: date, fmt: str) -> Path:
    return data_dir / "reports" / f"captcha-report-{day.isoformat()}.{fmt}"


def write_daily(data_dir: Path, fmt: str, keep_days: int, today: date) -> Path | None:
    """Yesterday's report (UTC), written once: the path, or None when it exists or the day had no probes.

    Reports of days before ``today - keep_days`` are removed; other files are left alone.
    """
    yesterday = today - timedelta(days=1)
    output, written = report_path(data_dir, yesterday, fmt), None
    if not output.exists():
        report = rows(yesterday, verdict_counts(data_dir / "state.db", *day_bounds(yesterday)))
        if report:
            _write(output, render(report, fmt, yesterday))
            written = output
    oldest = today - timedelta(days=keep_days)
    for day, path in _reports(data_dir):
        if day < oldest:
            path.unlink(missing_ok=True)
    return written


def latest_report(data_dir: Path) -> tuple[date, Path] | None:
    """The newest report in ``data_dir/reports``: its day and file, or None."""
    reports = _reports(data_dir)
    return reports[-1] if reports else None


def _reports(data_dir: Path) -> list[tuple[date, Path]]:
    """The report files in ``data_dir/reports`` by day, oldest first (files of other names are ignored)."""
    try:
        names = [entry.name for entry in (data_dir / "reports").iterdir()]
    except OSError:
        return []
    found = []
    for name in names:
        match = REPORT_FILE.fullmatch(name)
        if match:
            try:
                found.append((date.fromisoformat(match.group(1)), data_dir / "reports" / name))
            except ValueError:  # a name like 2026-13-40
                continue
    return sorted(found)


def _write(output: Path, text: str) -> None:
    """Write ``output`` whole, then rename it into place: a reader never sees half a report."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(text)
    partial.replace(output)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--day", required=True, type=_day, help="the UTC day, YYYY-MM-DD")
    parser.add_argument("--format", choices=FORMATS, default="csv")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--config.file", "--config", dest="config", type=Path,
                       help="the exporter's config: its data_dir holds state.db")
    where.add_argument("--data-dir", type=Path, help="the exporter's data directory (holds state.db)")
    parser.add_argument("--output", type=Path,
                        help="the file to write (default: DATA_DIR/reports/captcha-report-DAY.FORMAT)")


def run(args: argparse.Namespace) -> int:
    data_dir = args.data_dir
    if data_dir is None:
        from exporter.config import ConfigError, load_config

        try:
            data_dir = load_config(args.config).data_dir
        except ConfigError as exc:
            print(f"captcha-exporter report: {exc}", file=sys.stderr)
            return 1
    output = args.output or report_path(data_dir, args.day, args.format)
    try:
        count = write_report(data_dir / "state.db", args.day, args.format, output)
    except (StoreError, OSError) as exc:
        print(f"captcha-exporter report: {exc}", file=sys.stderr)
        return 1
    print(f"{output}: {count} rows for {args.day.isoformat()} (counts rounded up to multiples of {BIN})")
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None
