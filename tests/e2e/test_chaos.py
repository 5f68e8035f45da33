"""Chaos on the test bed: things break around a running exporter, and it keeps its promises.

Each case breaks one thing (an exit, our tor client, a browser, a target that
hangs, sends 50 MB or sends garbage, a broken config, an unwritable evidence
directory) and then checks the invariants of ``invariants.py``: the process
stays up, /metrics stays valid, every attempt is accounted, a removed target
leaves no series, and no process outlives the exporter.  Each case prints its
figures (attempts, accounted, recovery time) on one ``chaos:`` line.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.exporter_process import exporter_config, total, value
from support.invariants import (
    assert_invariants,
    attempts_logged,
    check_metrics,
    cmdline,
    comm,
    config_path,
    descendants,
    reload,
    rewrite_config,
    stop_without_leaks,
    wait_for,
)

from testbed.policy import load_policy
from testbed.ports import free_ports

pytestmark = pytest.mark.e2e

_DONE = re.compile(r'\bmsg="probe done"')


@pytest.fixture
def edge_policy(testbed):
    """Set the edge's policy from a YAML-shaped mapping; the bed's policy is restored afterwards."""
    previous = testbed.edge.policy
    yield lambda sites: testbed.edge.set_policy(load_policy({"sites": sites}))
    testbed.edge.set_policy(previous)


@pytest.fixture
def figures(request):
    """Print a case's figures on one line, even though output is captured."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def report(**numbers):
        with capture.global_and_fixture_disabled():
            print(f"\nchaos: case={request.node.name} " + " ".join(f"{k}={v}" for k, v in numbers.items()))

    return report


def chaos_config(testbed, tmp_path, **http) -> dict:
    """news and shop every 5 s through every exit, two lanes, short timeouts."""
    state = testbed.state()
    config = exporter_config(state, free_ports(1)[0], tmp_path / "data")
    config["schedule"]["interval"] = "5s"
    config["fetchers"]["http"].update({"timeout": "8s", **http})
    return config


def probes_done(exporter, target: str | None = None) -> int:
    return sum(1 for line in exporter.log.read_text(errors="replace").splitlines()
               if _DONE.search(line) and (target is None or f" target={target} " in line))


def test_an_exit_killed_mid_sweep(testbed, edge_policy, run_exporter, tmp_path, figures):
    names = [e["nickname"] for e in testbed.state()["exits"]]
    victim = names[-1]
    edge_policy({"news": {"default": {"behaviour": "slow", "seconds": 2}}, "shop": "nonce"})
    config = chaos_config(testbed, tmp_path)
    exporter = run_exporter(config)
    wait_for(lambda: value(exporter.samples(), "captcha_probes_in_flight") > 0 and probes_done(exporter) > 0,
             60, "a sweep in progress")
    testbed.network.kill(victim)
    killed_at, done_before = time.monotonic(), probes_done(exporter, "news")
    try:
        check_metrics(exporter)
        # the other exits go on answering; the dead one costs failed attempts, not the exporter
        wait_for(lambda: probes_done(exporter, "news") >= done_before + 2 * (len(names) - 1), 90,
                 "probes through the surviving exits")
        assert exporter.process.poll() is None
    finally:
        testbed.network.restart(victim)
    failed = total(exporter.samples(), "captcha_probe_errors_total", target="news")
    figures(**assert_invariants(exporter, config, kept="news", removed="shop"),
            errors=int(failed), seconds_after_kill=round(time.monotonic() - killed_at, 1))
    stop_without_leaks(exporter)


def test_our_tor_client_killed_and_restarted(testbed, edge_policy, run_exporter, tmp_path, figures):
    edge_policy({"news": "ok", "shop": "nonce"})
    config = chaos_config(testbed, tmp_path)
    exporter = run_exporter(config)
    wait_for(lambda: probes_done(exporter, "news") > 0, 60, "a first probe")
    testbed.network.kill("client")
    try:
        wait_for(lambda: exporter.get("/-/ready").status_code == 503, 30, "/-/ready to report the lost tor")
        check_metrics(exporter)
        assert exporter.process.poll() is None
        time.sleep(3)  # let a reconnect attempt or two fail
        done_before = probes_done(exporter)
    finally:
        testbed.network.restart("client")
    restarted_at = time.monotonic()
    wait_for(lambda: probes_done(exporter) > done_before, 120, "a successful probe after the restart", 0.2)
    recovery = time.monotonic() - restarted_at
    assert "lost tor" in exporter.log.read_text()
    figures(**assert_invariants(exporter, config, kept="news", removed="shop"), recovery_seconds=round(recovery, 1))
    stop_without_leaks(exporter)


def browsers(exporter) -> list[int]:
    """PIDs of the exporter's browser processes (the Chromium main processes, not their helpers)."""
    return [pid for pid in descendants(exporter.process.pid)
            if comm(pid).startswith("chrom") and "chromedriver" not in comm(pid) and "--type=" not in cmdline(pid)]


@pytest.mark.browser
def test_a_browser_killed_mid_run(testbed, edge_policy, run_exporter, tmp_path, figures):
    edge_policy({"news": "ok", "shop": "nonce"})
    config = chaos_config(testbed, tmp_path)
    config["targets"][0]["fetchers"] = ["chromium"]
    config["fetchers"]["chromium"] = {"ca_file": testbed.state()["edge"]["ca_file"], "timeout": "30s",
                                   "challenge_wait": "3s"}
    exporter = run_exporter(config)
    wait_for(lambda: probes_done(exporter, "news") > 0, 90, "a first Chromium probe")
    victims = wait_for(lambda: browsers(exporter), 10, "the browser processes")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed_at, done_before = time.monotonic(), probes_done(exporter, "news")
    wait_for(lambda: probes_done(exporter, "news") >= done_before + 2, 120, "Chromium probes after the kill")
    recovery = time.monotonic() - killed_at
    fresh = browsers(exporter)
    assert fresh and not set(fresh) & set(victims), "later probes ran in a fresh browser"
    figures(**assert_invariants(exporter, config, kept="news", removed="shop"), killed=len(victims),
            recovery_seconds=round(recovery, 1))
    stop_without_leaks(exporter)


@pytest.mark.parametrize("behaviour, reason", [
    ("hang", "timeout"),
    ({"behaviour": "huge", "size": 50_000_000}, "too_large"),
], ids=["hanging target", "50 MB body"])
def test_a_target_that_hangs_or_floods(testbed, edge_policy, run_exporter, tmp_path, figures, behaviour, reason):
    edge_policy({"news": {"default": behaviour}, "shop": "nonce"})
    config = chaos_config(testbed, tmp_path, timeout="4s")
    exporter = run_exporter(config)
    wait_for(lambda: total(exporter.samples(), "captcha_probe_errors_total", target="news", reason=reason) >= 4,
             90, f"{reason} errors")
    check_metrics(exporter)
    assert total(exporter.samples(), "captcha_probes_total", target="shop") > 0, "other targets go on"
    figures(**assert_invariants(exporter, config, kept="news", removed="shop"),
            errors=int(total(exporter.samples(), "captcha_probe_errors_total", target="news", reason=reason)))
    stop_without_leaks(exporter)


def garbage(seed: int) -> bytes:
    """Bytes no browser or parser expects: invalid UTF-8, NULs, unclosed and 5000-deep tags,
    a script that never ends."""
    rng = random.Random(seed)
    return b"".join([
        b"\xff\xfe<html<<head><title>\x00\xc3(</tit", bytes(rng.randrange(256) for _ in range(20000)),
        b"<div>" * 5000, b"<a href='", b"\xed\xa0\x80" * 100, b"<script>var x = '", b"\x00" * 1000,
    ])


@pytest.fixture
def garbage_site(testbed):
    """A loopback server (garbage.test) answering every GET with garbage labelled text/html."""

    class Garbage(BaseHTTPRequestHandler):
        def do_GET(self):
            body = garbage(random.randrange(1000))
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    testbed.dns.add("garbage.test", "127.0.0.1")
    yield f"http://garbage.test:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_garbage_html(testbed, edge_policy, garbage_site, run_exporter, tmp_path, figures):
    edge_policy({"news": "ok", "shop": "nonce"})
    config = chaos_config(testbed, tmp_path)
    config["targets"] = [{"name": "garbage", "url": garbage_site}, config["targets"][0]]
    config["baseline"]["resolve"]["garbage.test"] = "127.0.0.1"
    exporter = run_exporter(config)
    wait_for(lambda: attempts_logged(exporter.log, "garbage") >= 8, 90, "probes of the garbage site")
    check_metrics(exporter)
    figures(**assert_invariants(exporter, config, kept="garbage", removed="news"),
            answered=int(total(exporter.samples(), "captcha_probes_total", target="garbage")))
    stop_without_leaks(exporter)


def test_evidence_directory_unwritable(testbed, edge_policy, run_exporter, tmp_path, figures):
    names = [e["nickname"] for e in testbed.state()["exits"]]
    edge_policy({"news": {"default": "challenge", "exits": {names[0]: "block"}}, "shop": "nonce"})
    config = chaos_config(testbed, tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "evidence").write_text("a file where the evidence directory should be\n")
    exporter = run_exporter(config)
    wait_for(lambda: total(exporter.samples(), "captcha_challenges_total", target="news") >= 3, 90,
             "challenges counted")
    assert "evidence not saved" in exporter.log.read_text()
    assert exporter.get("/").status_code == 200
    figures(**assert_invariants(exporter, config, kept="news", removed="shop"),
            challenges=int(total(exporter.samples(), "captcha_challenges_total", target="news")))
    stop_without_leaks(exporter)


def launch_torrc(testbed) -> dict:
    """What a tor we launch needs to join the test network (as in test_tor_testbed's launch test)."""
    client_torrc = testbed.network.client.torrc_path.read_text().splitlines()
    return {"DirAuthority": [line.split(" ", 1)[1] for line in client_torrc if line.startswith("DirAuthority ")],
            "TestingTorNetwork": "1", "AssumeReachable": "1", "PathsNeededToBuildCircuits": "0.67",
            "ClientUseIPv6": "0"}


def test_a_reload_that_changes_nothing_about_tor_keeps_our_launched_tor(testbed, edge_policy, run_exporter,
                                                                        tmp_path, figures):
    """Launch mode: a reload of targets, schedule and the tor keys only a session reads restarts
    probing on the same tor process; one that changes the torrc starts a new tor."""
    edge_policy({"news": "ok", "shop": "ok"})
    config = chaos_config(testbed, tmp_path)
    config["tor"] = {"mode": "launch", "torrc": launch_torrc(testbed), "circuit_timeout": "20s"}
    exporter = run_exporter(config)

    def our_tor() -> list[int]:
        return sorted(pid for pid in descendants(exporter.process.pid) if comm(pid) == "tor")

    started = time.monotonic()
    wait_for(lambda: probes_done(exporter, "news") > 0, 180, "a probe through our launched tor")
    bootstrap_seconds = time.monotonic() - started
    first = our_tor()
    assert len(first) == 1, first

    # targets, schedule and the pinner's tor keys change: nothing tor was started with
    rewrite_config(exporter, {**config, "targets": config["targets"][:1], "schedule": {**config["schedule"],
                              "interval": "6s"}, "tor": {**config["tor"], "circuit_timeout": "30s",
                                                         "deny_hosts": ["*.ads.example"]}})
    reloaded = time.monotonic()
    assert reload(exporter, "post")[0] == 200
    # the old session's probes are all logged before the new one starts (its prober is shut down first)
    wait_for(lambda: exporter.log.read_text().count(" msg=probing ") == 2, 60, "the new session")
    assert "restarting probing on the same tor" in exporter.log.read_text()
    before = probes_done(exporter, "news")
    wait_for(lambda: probes_done(exporter, "news") > before, 60, "probing after the tor-neutral reload")
    resumed_seconds = time.monotonic() - reloaded
    kept = our_tor()
    assert kept == first, "the reload restarted tor"

    # a torrc change needs a new tor
    rewrite_config(exporter, {**config, "tor": {**config["tor"], "torrc": {**config["tor"]["torrc"],
                                                                           "NumEntryGuards": "2"}}})
    reloaded = time.monotonic()
    assert reload(exporter, "post")[0] == 200
    # one read per look: the old tor stops before the new one starts, so two reads can see [old], then []
    wait_for(lambda: (now := our_tor()) and now != first, 60, "a new tor for the new torrc")
    second = our_tor()
    assert len(second) == 1 and second != first, second
    before = probes_done(exporter, "news")  # the old tor's probes ended before it was stopped
    wait_for(lambda: probes_done(exporter, "news") > before, 180, "probing through the new tor")
    figures(first_probe_seconds=f"{bootstrap_seconds:.1f}", probing_again_same_tor_seconds=f"{resumed_seconds:.1f}",
            probing_again_new_tor_seconds=f"{time.monotonic() - reloaded:.1f}", tor_pid=first[0],
            tor_pid_after_tor_neutral_reload=kept[0], tor_pid_after_torrc_reload=second[0])
    stop_without_leaks(exporter)


def test_reload_rejects_broken_yaml_and_drops_removed_targets(testbed, edge_policy, run_exporter, tmp_path,
                                                             figures):
    # shop answers slowly, so a shop probe is likely running when shop is removed
    edge_policy({"news": "ok", "shop": {"default": {"behaviour": "slow", "seconds": 2}}})
    config = chaos_config(testbed, tmp_path)
    exporter = run_exporter(config)
    wait_for(lambda: probes_done(exporter, "shop") > 0 and probes_done(exporter, "news") > 0, 60, "both targets")
    first_success = value(exporter.samples(), "captcha_config_last_reload_success_timestamp_seconds")

    # broken YAML, by POST then by SIGHUP: rejected with the parser's message, the old config stays
    config_path(exporter).write_text("targets:\n  - name: news\n\turl: x\n")  # a tab on line 3
    status, body = reload(exporter, "post")
    assert status == 500 and "invalid YAML" in body and f"{config_path(exporter).name}:3" in body, body
    assert "invalid YAML" in exporter.log.read_text().split("reload rejected", 1)[1], "the error is logged"
    samples = exporter.samples()
    assert value(samples, "captcha_config_last_reload_successful") == 0
    assert value(samples, "captcha_config_last_reload_success_timestamp_seconds") == first_success
    reload(exporter, "sighup")
    wait_for(lambda: exporter.log.read_text().count("reload rejected") >= 2, 10, "the SIGHUP reload to be rejected")
    shop_before = attempts_logged(exporter.log, "shop")
    wait_for(lambda: attempts_logged(exporter.log, "shop") > shop_before, 30, "probing with the old config")
    assert value(exporter.samples(), "captcha_config_last_reload_successful") == 0
    check_metrics(exporter)

    # a good config without shop, by SIGHUP: accepted, shop's series gone, the timestamp advanced
    wait_for(lambda: value(exporter.samples(), "captcha_probes_in_flight") > 0, 30, "probes in flight")
    without_shop = {**config, "targets": config["targets"][:1]}
    rewrite_config(exporter, without_shop)
    reload(exporter, "sighup")
    wait_for(lambda: value(exporter.samples(), "captcha_config_last_reload_successful") == 1, 20,
             "the SIGHUP reload to succeed")
    assert value(exporter.samples(), "captcha_config_last_reload_success_timestamp_seconds") > first_success
    time.sleep(6)  # probes running at the reload finish (and are logged) meanwhile
    samples = exporter.samples()
    stale = sorted({n for (n, labels), _ in samples.items() if ("target", "shop") in labels})
    assert not stale, f"series of the removed target remain: {stale}"
    news_before = attempts_logged(exporter.log, "news")
    wait_for(lambda: attempts_logged(exporter.log, "news") > news_before, 30, "news probed after the reload")

    # the same by POST: shop comes back, then goes again in the final check
    shop_before = probes_done(exporter, "shop")
    rewrite_config(exporter, config)
    status, body = reload(exporter, "post")
    assert status == 200 and "2 targets" in body, body
    wait_for(lambda: probes_done(exporter, "shop") > shop_before, 30, "shop probed again")
    figures(**assert_invariants(exporter, config, kept="news", removed="shop"),
            rejected=exporter.log.read_text().count("reload rejected"))
    stop_without_leaks(exporter)


def compared(exporter, target: str) -> int:
    """Probes of ``target`` whose page was compared with the direct baseline (logged with changed=)."""
    return sum(1 for line in exporter.log.read_text(errors="replace").splitlines()
               if _DONE.search(line) and f" target={target} " in line and " changed=" in line)


def test_a_hostile_page_never_stalls_metrics(testbed, edge_policy, run_exporter, tmp_path, figures):
    """Every exit serves news with 3 MB of tags that never close; each page is judged and compared
    with the direct page (the old tokenizer took minutes on it, holding the GIL) while /metrics
    keeps answering within a second."""
    edge_policy({"news": {"default": {"behaviour": "hostile", "size": 3_000_000}}, "shop": "nonce"})
    config = chaos_config(testbed, tmp_path)
    exporter = run_exporter(config)
    slowest, scrapes = 0.0, 0
    deadline = time.monotonic() + 150
    while compared(exporter, "news") < 4:
        assert time.monotonic() < deadline, "news pages were not compared:\n" + exporter.log.read_text()[-3000:]
        started = time.monotonic()
        text = exporter.get("/metrics").text
        slowest, scrapes = max(slowest, time.monotonic() - started), scrapes + 1
        assert "captcha_probes_total" in text
        time.sleep(0.1)
    assert slowest < 1.0, f"/metrics took {slowest:.2f} s while hostile pages were read"
    figures(**assert_invariants(exporter, config, kept="news", removed="shop"), scrapes=scrapes,
            slowest_scrape_ms=round(slowest * 1000), compared=compared(exporter, "news"))
    stop_without_leaks(exporter)
