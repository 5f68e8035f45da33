"""`captcha-exporter probe`: one probe through a chosen exit, printed in full (blackbox's debug=true)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from testbed.policy import load_policy

pytestmark = pytest.mark.e2e


def test_one_probe_prints_log_verdict_metrics_and_config(testbed, tmp_path):
    state = testbed.state()
    challenged, clean = state["exits"][1], state["exits"][0]
    previous = testbed.edge.policy
    testbed.edge.set_policy(load_policy({"sites": {"news": {"default": "ok",
                                                            "exits": {challenged["nickname"]: "challenge"}}}}))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "tor": {"mode": "connect", "control": f"127.0.0.1:{state['client']['control_port']}",
                "cookie_file": state["client"]["cookie_file"]},
        "targets": [{"name": "news", "url": state["edge"]["sites"]["news"]}],
        "geoip": {"country_db": state["geoip_db"]},
    }))
    try:
        outputs = {}
        for exit in (challenged, clean):
            run = subprocess.run([sys.executable, "-m", "exporter", "probe", "--config", str(config),
                                  "--target", "news", "--exit", exit["fingerprint"]],
                                 capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stdout + run.stderr
            outputs[exit["nickname"]] = run.stdout
    finally:
        testbed.edge.set_policy(previous)

    out = outputs[challenged["nickname"]]
    for section in ("Logs for the probe:", "Verdict:", "Metrics that would have been added:", "Module configuration:"):
        assert section in out
    assert "verdict: challenge" in out and "provider: cloudflare" in out
    assert "cloudflare-challenge/cf-mitigated" in out
    assert f'captcha_challenges_total{{country="{challenged["country"]}",fetcher="http",provider="cloudflare",' \
           f'route="tor",target="news"}} 1.0' in out
    assert f"exit={challenged['fingerprint']}" in out and "verdict=challenge" in out
    assert "verdict: ok" in outputs[clean["nickname"]]
    assert "captcha_challenges_total" not in outputs[clean["nickname"]]
    # the edge saw both probes, each through the exit asked for
    seen = [r["exit"] for r in testbed.edge.requests() if r["site"] == "news"][-2:]
    assert seen == [challenged["nickname"], clean["nickname"]]


def test_unknown_target_and_exit_are_clear_errors(testbed, tmp_path):
    config = tmp_path / "config.yaml"
    state = testbed.state()
    config.write_text(yaml.safe_dump({
        "tor": {"mode": "connect", "control": f"127.0.0.1:{state['client']['control_port']}",
                "cookie_file": state["client"]["cookie_file"]},
        "targets": [{"name": "news", "url": state["edge"]["sites"]["news"]}]}))
    run = subprocess.run([sys.executable, "-m", "exporter", "probe", "--config", str(config), "--target", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "no target named 'nope'" in run.stdout and "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "exporter", "probe", "--config", str(config), "--target", "news",
                          "--exit", "F" * 40], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "is not an exit in the current consensus" in run.stdout
    assert "Traceback" not in run.stderr
