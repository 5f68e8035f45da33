"""`captcha-exporter run` end to end: real tor test bed, real exporter process, its /metrics read back.

The edge is given a known policy (per site, which exit gets which gate), the
exporter probes every exit for about a minute, and what /metrics says is
compared with that policy and with exit weights computed here, independently,
from the consensus text.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.exporter_process import exporter_config, total, value

from testbed.policy import load_policy
from testbed.ports import free_ports

pytestmark = pytest.mark.e2e


@pytest.fixture
def staged_policy(testbed):
    """news: exit1 real page, exit2 Cloudflare challenge, exit3 Cloudflare block, exit4 DataDome;
    shop: per-request tokens everywhere, PerimeterX on exit1. Restores the bed's policy afterwards."""
    names = [e["nickname"] for e in testbed.state()["exits"]]
    previous = testbed.edge.policy
    testbed.edge.set_policy(load_policy({"sites": {
        "news": {"default": "ok", "exits": {names[1]: "challenge", names[2]: "block", names[3]: "datadome"}},
        "shop": {"default": "nonce", "exits": {names[0]: "perimeterx"}},
    }}))
    yield names
    testbed.edge.set_policy(previous)


def consensus_weights(data_directory: str) -> tuple[float, dict[str, float]]:
    """valid-after and exit probabilities computed from the client's cached consensus text,
    by Tor Metrics' formula, without stem."""
    text = next(p for p in (Path(data_directory) / n for n in ("cached-consensus", "cached-microdesc-consensus"))
                if p.exists()).read_text()
    valid_after = calendar.timegm(time.strptime(re.search(r"^valid-after (.+)$", text, re.MULTILINE).group(1),
                                                "%Y-%m-%d %H:%M:%S"))
    weights = dict(re.findall(r"(\w+)=(-?\d+)", re.search(r"^bandwidth-weights (.+)$", text, re.MULTILINE).group(1)))
    raw = {}
    for entry in re.split(r"^r ", text, flags=re.MULTILINE)[1:]:
        fields = entry.split("\n", 1)[0].split()
        identity = fields[1] + "=" * (-len(fields[1]) % 4)
        fingerprint = base64.b64decode(identity).hex().upper()
        flags = set(re.search(r"^s (.*)$", entry, re.MULTILINE).group(1).split())
        bandwidth = int(re.search(r"^w Bandwidth=(\d+)", entry, re.MULTILINE).group(1))
        if {"Running", "Exit"} <= flags and "BadExit" not in flags:
            factor = int(weights["Wed"] if "Guard" in flags else weights["Wee"]) / 10000
            raw[fingerprint] = bandwidth * factor
    total = sum(raw.values())  # 0 in the first consensuses, before the exits' bandwidths are voted
    return valid_after, {fp: w / total for fp, w in raw.items()} if total else {}


def test_run_counts_what_each_exit_gets(testbed, staged_policy, run_exporter, tmp_path):
    state = testbed.state()
    country = {e["nickname"]: e["country"] for e in state["exits"]}
    exporter = run_exporter(exporter_config(state, free_ports(1)[0], tmp_path / "data"))

    # every exit probed for both targets, within about a minute
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        samples = exporter.samples()
        if all(value(samples, "captcha_probes_total", target=t, fetcher="http", country=c) >= 1
               for t in ("news", "shop") for c in country.values()):
            break
        time.sleep(2)
    else:
        pytest.fail("not every exit was probed:\n" + exporter.get("/metrics").text[:4000] +
                    exporter.log.read_text()[-4000:])

    names = staged_policy
    gated = {("news", names[1]): ("challenges", "cloudflare"), ("news", names[2]): ("blocks", "cloudflare"),
             ("news", names[3]): ("challenges", "datadome"), ("shop", names[0]): ("challenges", "perimeterx")}
    for site in ("news", "shop"):
        for nickname in names:
            for kind in ("challenges", "blocks"):
                seen = total(samples, f"captcha_{kind}_total", target=site, country=country[nickname])
                expected = gated.get((site, nickname))
                if expected and expected[0] == kind:
                    assert seen >= 1, (site, nickname, kind)
                    assert total(samples, f"captcha_{kind}_total", target=site, country=country[nickname],
                                 provider=expected[1]) == seen, (site, nickname, kind)
                else:
                    assert seen == 0, (site, nickname, kind, "counted where the policy serves no gate")
    assert value(samples, "captcha_probe_errors_total", target="news", fetcher="http", reason="circuit") == 0

    # the load-time histogram is filled, one observation per answered probe
    answered = total(samples, "captcha_probes_total", target="news")
    assert value(samples, "captcha_page_load_seconds_count", target="news", fetcher="http") == answered > 0

    # exit weights: sum to 1 and equal the formula computed here from the same consensus
    for _ in range(20):
        samples = exporter.samples()
        valid_after, expected_weights = consensus_weights(state["client"]["data_directory"])
        if value(samples, "captcha_consensus_valid_after_timestamp_seconds") == valid_after and expected_weights:
            break
        time.sleep(1)
    else:
        pytest.fail("the exporter's consensus never matched the cached one")
    weights = {dict(labels)["fingerprint"]: v for (name, labels), v in samples.items() if name == "captcha_exit_weight"}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
    assert weights.keys() == expected_weights.keys() == {e["fingerprint"] for e in state["exits"]}
    for fingerprint, weight in weights.items():
        assert weight == pytest.approx(expected_weights[fingerprint], abs=1e-9)

    # the weighted challenge ratio of news: challenged weight (exit2, exit4) over measured weight
    fingerprint = {e["nickname"]: e["fingerprint"] for e in state["exits"]}
    challenged = weights[fingerprint[names[1]]] + weights[fingerprint[names[3]]]
    assert value(samples, "captcha_weighted_challenge_ratio", target="news", fetcher="http") == \
        pytest.approx(challenged, abs=1e-6)
    assert value(samples, "captcha_exit_coverage_ratio", target="news", fetcher="http") == pytest.approx(1.0)

    # the edge saw every exit, and the landing page lists recent probes
    seen_exits = {r["exit"] for r in testbed.edge.requests() if r["site"] == "news"}
    assert set(names) <= seen_exits
    assert "Recent probes" in exporter.get("/").text and names[1] in exporter.get("/").text

    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=exporter.get("/metrics").content,
                               capture_output=True)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_unreachable_tor_is_reported_and_not_fatal(testbed, run_exporter, tmp_path):
    state = testbed.state()
    dead_port = free_ports(1)[0]
    exporter = run_exporter(exporter_config(state, free_ports(1)[0], tmp_path / "data", control_port=dead_port))
    time.sleep(3)
    ready = exporter.get("/-/ready")
    assert ready.status_code == 503
    assert f"127.0.0.1:{dead_port}" in ready.text
    assert exporter.get("/metrics").status_code == 200
    assert exporter.process.poll() is None
    assert f"127.0.0.1:{dead_port}" in exporter.log.read_text()


def test_a_restart_keeps_coverage_the_weighted_ratio_and_recent_probes(testbed, staged_policy, run_exporter,
                                                                       tmp_path):
    state = testbed.state()
    config = exporter_config(state, free_ports(1)[0], tmp_path / "data")
    config["targets"] = config["targets"][:1]
    first = run_exporter(config)
    deadline = time.monotonic() + 90
    while value(first.samples(), "captcha_exit_coverage_ratio", target="news", fetcher="http") < 1.0 - 1e-9:
        assert time.monotonic() < deadline, "never reached full coverage"
        time.sleep(2)
    before = first.samples()
    assert first.stop() == 0

    # restarted with a cron that never fires during the test: no new probe, so only the persisted
    # measurements (with the consensus' weights) can give the values
    config["schedule"] = {"cron": "0 0 1 1 *", "exits_per_run": len(state["exits"]), "concurrency": 2}
    second = run_exporter(config)
    deadline = time.monotonic() + 30
    while second.get("/-/ready").status_code != 200:
        assert time.monotonic() < deadline, second.get("/-/ready").text
        time.sleep(0.5)
    after = second.samples()
    assert total(after, "captcha_probes_total", target="news") == 0, "the restarted exporter probed nothing"
    for name in ("captcha_exit_coverage_ratio", "captcha_weighted_challenge_ratio"):
        assert value(after, name, target="news", fetcher="http") == pytest.approx(
            value(before, name, target="news", fetcher="http")), name
    assert "challenge" in second.get("/").text, "recent probes survive the restart"


def test_evidence_of_a_challenge_is_saved_linked_served_inert_and_reclassifiable(testbed, staged_policy,
                                                                                  run_exporter, tmp_path):
    state = testbed.state()
    config = exporter_config(state, free_ports(1)[0], tmp_path / "data")
    config["targets"] = config["targets"][:1]
    exporter = run_exporter(config)
    deadline = time.monotonic() + 60
    while not (links := re.findall(r'href="/evidence/([^/"]+)/probe\.har"', exporter.get("/").text)):
        assert time.monotonic() < deadline, "no evidence linked from the landing page"
        time.sleep(1)
    evidence = exporter.get(f"/evidence/{links[0]}/page.html")
    assert evidence.status_code == 200
    assert evidence.headers["Content-Security-Policy"].startswith("sandbox")
    assert evidence.headers["Content-Type"].startswith("text/plain"), "captured HTML never renders as HTML"
    assert exporter.get(f"/evidence/{links[0]}/..%2Fstate.db").status_code == 404
    saved = tmp_path / "data" / "evidence" / links[0] / "probe.har"
    classify = subprocess.run([sys.executable, "-m", "exporter", "classify", "--json", str(saved)],
                              capture_output=True, text=True, timeout=60)
    assert classify.returncode == 0
    verdict = json.loads(classify.stdout.splitlines()[0])
    assert (verdict["verdict"], verdict["provider"]) in {("challenge", "cloudflare"), ("block", "cloudflare"),
                                                         ("challenge", "datadome")}
    # only gated probes keep evidence: news through the first exit is a normal page
    assert len(links) <= 3 * len({r["exit"] for r in testbed.edge.requests()})
