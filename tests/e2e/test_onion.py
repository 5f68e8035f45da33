"""The onion route end to end: a real v3 onion service in the private network, the real exporter.

The test bed runs forum.test's onion service (a tor of its own, HSDir flags
voted by the authorities) and forum.test announces it with Onion-Location.
The policy challenges forum through every exit and serves the onion route the
real page, as a site behind Cloudflare's onion routing would.  The exporter,
told ``onion: auto``, learns the onion URL from the exit route's answers and
probes it with no exit: the exit route's challenges and the onion route's
normal pages must show apart in /metrics, and the edge must have served the
onion route through the onion service.

The test bed's onion-service time period is 4 minutes (one shared-random run of
24 ten-second votes) where the Tor network's is a day.  A probe whose stream
tor holds while the client moves into the next period can fail: the old
descriptor expires, the new one lists other introduction points, and tor
drops the stream it was introducing ("Unable to find introduction point",
SOCKS5 reply 0x01) instead of trying them.  Such a failure is tor's, and only
one that the client's rend log explains so is let pass.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support.exporter_process import exporter_config, total

from testbed.bed import TestBed
from testbed.policy import load_policy
from testbed.ports import free_ports

pytestmark = pytest.mark.e2e

POLICY = {"sites": {"forum": {"default": {"behaviour": "challenge", "delay": 1}, "exits": {"onion": "ok"}}}}
INTRO_POINT_GONE = "Unable to find introduction point for service"  # tor's hs_client.c, rend domain, info level


def intro_points_gone(bed) -> int:
    """How often the client dropped an onion stream because the service's new descriptor no longer
    listed the introduction point it was introducing through."""
    log = Path(bed.state()["client"]["data_directory"]) / "rend.log"
    return log.read_text(errors="replace").count(INTRO_POINT_GONE) if log.exists() else 0


@pytest.fixture(scope="module")
def bed():
    with TestBed(exits=2, policy=load_policy(POLICY), onion_site="forum") as test_bed:
        yield test_bed


def probe_forum(bed, run_exporter, tmp_path, fetchers: list[str], onion: str):
    state = bed.state()
    config = exporter_config(state, free_ports(1)[0], tmp_path / "data")
    config["targets"] = [{"name": "forum", "url": state["edge"]["sites"]["forum"], "fetchers": fetchers,
                          "direct": False, "onion": onion}]
    config["schedule"] = {"interval": "5s", "exits_per_run": 2, "concurrency": 2}
    config["fetchers"]["chromium"] = {"ca_file": state["edge"]["ca_file"], "challenge_wait": "3s"}
    exporter = run_exporter(config)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        samples = exporter.samples()
        if all(total(samples, "captcha_probes_total", target="forum", route="onion", fetcher=f) >= 2
               for f in fetchers):
            return exporter, samples
        time.sleep(2)
    pytest.fail("the onion route was never probed:\n" + exporter.get("/metrics").text[-5000:] +
                exporter.log.read_text()[-5000:])


def test_the_onion_route_avoids_the_challenge_the_exit_route_meets(bed, run_exporter, tmp_path):
    before, gone_before = len(bed.edge.requests()), intro_points_gone(bed)
    exporter, samples = probe_forum(bed, run_exporter, tmp_path, ["http"], "auto")
    tor = total(samples, "captcha_probes_total", target="forum", route="tor")
    onion = total(samples, "captcha_probes_total", target="forum", route="onion")
    print(f"forum: {tor:.0f} probes through exits, {onion:.0f} through the onion service")
    assert total(samples, "captcha_challenges_total", target="forum", route="tor", provider="cloudflare") == tor > 0
    assert total(samples, "captcha_challenges_total", target="forum", route="onion") == 0
    failed = [line for line in exporter.log.read_text().splitlines() if "probe failed" in line and "route=onion" in line]
    errors = total(samples, "captcha_probe_errors_total", target="forum", route="onion")
    explained = intro_points_gone(bed) - gone_before  # see the module docstring
    assert onion >= 2 and errors <= explained, (failed, explained)
    assert errors == total(samples, "captcha_probe_errors_total", target="forum", route="onion", reason="connection")
    assert all("SOCKS5 reply 0x01" in line for line in failed), failed
    assert total(samples, "captcha_probes_total", target="forum", route="onion", country="") == onion, "no exit"
    served = [r for r in bed.edge.requests()[before:] if r["site"] == "forum"]
    through_onion = [r for r in served if r["exit"] == "onion"]
    assert through_onion and {r["behaviour"] for r in through_onion} == {"ok"}
    # every exit, the onion service, and the baseline's fetches without tor ("direct")
    assert {r["exit"] for r in served} - {"direct"} == {"onion", *(e["nickname"] for e in bed.state()["exits"])}
    metrics = exporter.get("/metrics").text
    assert 'route="onion"' in metrics and "captcha_target_onion_available" in metrics


def test_a_day_of_probes_becomes_a_report_safe_to_publish(bed, run_exporter, tmp_path):
    """The report command on the exporter's own probes, then the exporter writing yesterday's report itself
    (``reports.daily``) from the same probes moved back a day, and serving it on /reports/latest."""
    exporter, _ = probe_forum(bed, run_exporter, tmp_path, ["http"], "auto")
    config = yaml.safe_load((tmp_path / f"exporter-{exporter.port}.yaml").read_text())
    assert exporter.stop() == 0
    data, today = tmp_path / "data", datetime.now(UTC).date()
    command = [sys.executable, "-m", "exporter", "report", "--day", today.isoformat(), "--data-dir", str(data),
               "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    by_command = data / "reports" / f"captcha-report-{today}.json"
    text = by_command.read_text()
    rows = json.loads(text)["rows"]
    assert {(r["route"], r["provider"]) for r in rows} >= {("tor", "cloudflare"), ("onion", "")}
    assert all(r[count] % 8 == 0 for r in rows for count in ("probes", "challenges", "blocks")), rows
    for relay in bed.state()["exits"]:
        assert relay["fingerprint"] not in text and relay["nickname"] not in text

    by_command.unlink()  # /reports/latest serves the newest day's report, and this one is today's
    with sqlite3.connect(data / "state.db") as database:
        database.execute("UPDATE probe SET started = started - 86400")
    config["web"]["listen"] = f"127.0.0.1:{free_ports(1)[0]}"
    config["reports"] = {"daily": True}
    again = run_exporter(config)
    yesterday = today - timedelta(days=1)
    written = data / "reports" / f"captcha-report-{yesterday}.csv"
    deadline = time.monotonic() + 90
    while not written.exists():
        assert time.monotonic() < deadline, again.log.read_text()[-3000:]
        time.sleep(1)
    latest = again.get("/reports/latest")
    assert latest.status_code == 200 and latest.text == written.read_text()
    assert {(r["route"], r["provider"]) for r in csv.DictReader(io.StringIO(latest.text))} >= {
        ("tor", "cloudflare"), ("onion", "")}
    assert f"Daily report ({yesterday.isoformat()})" in again.get("/").text


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium-driver")
def test_chromium_reaches_the_configured_onion_url(bed, run_exporter, tmp_path):
    _, samples = probe_forum(bed, run_exporter, tmp_path, ["chromium"], bed.state()["onion"]["url"])
    assert total(samples, "captcha_challenges_total", target="forum", route="tor", fetcher="chromium") > 0
    assert total(samples, "captcha_challenges_total", target="forum", route="onion") == 0
