"""The daily report: counts per day × target × route × fetcher × country × provider, rounded up to 8."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest
from support.spine_values import fetched, page, relay

from exporter import cli
from exporter.app import kept_seconds
from exporter.config import parse_config
from exporter.probe import ProbeResult
from exporter.report import (
    day_bounds,
    latest_report,
    render,
    report_path,
    round_up,
    rows,
    write_daily,
    write_report,
)
from exporter.store import Store, StoreError
from exporter.values import Route, Verdict

DAY = (datetime.now(UTC) - timedelta(days=3)).date()  # within the store's retention in these tests
START, END = day_bounds(DAY)


def probe(n: int, target="news", kind="challenge", provider="cloudflare", exit_n=1, when=START + 3600,
          route=Route.TOR, fetcher="http") -> ProbeResult:
    return ProbeResult(f"20990101T000000Z-{n:06x}", target, fetcher, relay(exit_n) if route == Route.TOR else None,
                       when, 0.1, verdict=Verdict(kind, provider, ("m",)), fetch=fetched(page(403)), route=route)


@pytest.fixture
def database(tmp_path):
    store = Store(tmp_path / "state.db", retention=10 * 86400)
    results = [probe(i, exit_n=1 + i % 3, when=START + 60 * i) for i in range(9)]  # 9 challenges
    results += [probe(100 + i, kind="ok", provider="", exit_n=2) for i in range(8)]  # 8 normal pages
    results += [probe(200, target="shop", kind="block", provider="cloudflare")]  # 1 block
    results += [probe(300, route=Route.DIRECT, kind="ok", provider="")]  # the control without tor
    results += [probe(400, when=START - 1), probe(401, when=END)]  # the days before and after
    results += [ProbeResult("20990101T000000Z-ffffff", "news", "http", relay(1), START + 5, 0.1,
                            error_reason="timeout", error_message="slow")]  # no answer: not counted
    for result in results:
        store.record(result)
    store.close()
    return tmp_path / "state.db"


def test_rounding_up_to_multiples_of_eight():
    assert [round_up(n) for n in (0, 1, 7, 8, 9, 16, 17)] == [0, 8, 8, 8, 16, 16, 24]


def test_the_report_counts_one_utc_day_rounded_and_ordered_by_count_then_key(database, tmp_path):
    output = tmp_path / "report.csv"
    assert write_report(database, DAY, "csv", output) == 4
    table = list(csv.DictReader(io.StringIO(output.read_text())))
    day = DAY.isoformat()
    # relay(n).country is DE for every test relay; the direct route has no exit, so no country
    assert [(r["target"], r["route"], r["country"], r["provider"], r["probes"], r["challenges"], r["blocks"])
            for r in table] == [
        ("news", "tor", "DE", "cloudflare", "16", "16", "0"),  # 9 → 16
        ("news", "direct", "", "", "8", "0", "0"),  # 1 → 8
        ("news", "tor", "DE", "", "8", "0", "0"),  # 8 → 8
        ("shop", "tor", "DE", "cloudflare", "8", "0", "8"),  # 1 → 8
    ]
    assert {r["day"] for r in table} == {day} and {r["fetcher"] for r in table} == {"http"}


def test_rows_are_in_the_same_order_whatever_order_the_events_came_in():
    groups = [("b", "http", "tor", "US", "", "ok", 3), ("a", "http", "tor", "DE", "", "ok", 3),
              ("a", "http", "tor", "DE", "datadome", "challenge", 20), ("a", "chromium", "tor", "DE", "", "ok", 2)]
    forwards, backwards = rows(DAY, groups), rows(DAY, list(reversed(groups)))
    assert forwards == backwards
    assert [(r.target, r.fetcher, r.country, r.probes) for r in forwards] == [
        ("a", "http", "DE", 24), ("a", "chromium", "DE", 8), ("a", "http", "DE", 8), ("b", "http", "US", 8)]


def test_no_fingerprint_address_probe_id_or_time_reaches_the_file(database, tmp_path):
    secrets = [relay(n).fingerprint for n in (1, 2, 3)] + [relay(n).address for n in (1, 2, 3)]
    secrets += ["20990101T000000Z", "exit1", "exit2", str(int(START + 60))]
    for fmt in ("csv", "json"):
        output = tmp_path / f"report.{fmt}"
        write_report(database, DAY, fmt, output)
        text = output.read_text()
        assert not [s for s in secrets if s in text], fmt
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["day"] == DAY.isoformat() and document["bin"] == 8
    assert set(document["rows"][0]) == {"day", "target", "route", "fetcher", "country", "provider", "probes",
                                        "challenges", "blocks"}


def test_an_empty_day_is_a_header_only(database, tmp_path):
    output = tmp_path / "empty.csv"
    assert write_report(database, DAY - timedelta(days=2), "csv", output) == 0
    assert output.read_text() == "day,target,route,fetcher,country,provider,probes,challenges,blocks\n"
    assert render([], "json", date(2026, 1, 2)) == '{\n "day": "2026-01-02",\n "bin": 8,\n "rows": []\n}\n'


def test_the_command_writes_into_the_data_directory_and_says_what_went_wrong(database, tmp_path, capsys):
    assert cli.main(["report", "--day", DAY.isoformat(), "--data-dir", str(tmp_path)]) == 0
    written = tmp_path / "reports" / f"captcha-report-{DAY.isoformat()}.csv"
    assert written.read_text().startswith("day,target,")
    assert "4 rows" in capsys.readouterr().out
    assert cli.main(["report", "--day", DAY.isoformat(), "--data-dir", str(tmp_path / "none")]) == 1
    assert "no state database at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["report", "--day", "yesterday", "--data-dir", str(tmp_path)])
    assert "not a day (YYYY-MM-DD)" in capsys.readouterr().err


def test_an_old_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version=1")
    with pytest.raises(StoreError, match="schema 1, expected 2"):
        write_report(path, DAY, "csv", tmp_path / "out.csv")


def test_the_daily_report_is_written_once_after_its_day_and_old_reports_go(database, tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    too_old = report_path(tmp_path, DAY - timedelta(days=31), "csv")
    kept = report_path(tmp_path, DAY - timedelta(days=29), "json")
    for path in (too_old, kept, reports / "notes.txt", reports / "captcha-report-2026-13-40.csv"):
        path.write_text("x")
    written = write_daily(tmp_path, "csv", 30, DAY + timedelta(days=1))
    assert written == report_path(tmp_path, DAY, "csv")
    assert written.read_text() == render(rows(DAY, [("shop", "http", "tor", "DE", "cloudflare", "block", 1)]
                                              + [("news", "http", "tor", "DE", "cloudflare", "challenge", 9),
                                                 ("news", "http", "tor", "DE", "", "ok", 8),
                                                 ("news", "http", "direct", "", "", "ok", 1)]), "csv", DAY)
    assert not too_old.exists(), "older than keep_days"
    assert kept.exists() and (reports / "notes.txt").exists() and (reports / "captcha-report-2026-13-40.csv").exists()
    written.write_text("written before")
    assert write_daily(tmp_path, "csv", 30, DAY + timedelta(days=1)) is None
    assert written.read_text() == "written before", "a report is written once"
    assert latest_report(tmp_path) == (DAY, written)


def test_a_day_without_probes_gets_no_daily_report(database, tmp_path):
    assert write_daily(tmp_path, "json", 30, DAY + timedelta(days=3)) is None  # the fixture has DAY + 1
    assert latest_report(tmp_path) is None


def test_with_daily_reports_probes_are_kept_two_days_at_least(tmp_path):
    target = "targets:\n  - {name: shop, url: 'https://shop.example/'}\n"
    assert kept_seconds(parse_config(target + "history: {retention: 1h}\n")) == 3600
    assert kept_seconds(parse_config(target + "history: {retention: 1h}\nreports: {daily: true}\n")) == 2 * 86400
    assert kept_seconds(parse_config(target + "history: {retention: 5d}\nreports: {daily: true}\n")) == 5 * 86400
