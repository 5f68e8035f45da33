"""Page-change detection through real exits: only exits whose policy modifies the page count as changed,
with the right kind; pages with per-request nonces never count; onion announcements are reported."""

from __future__ import annotations

import time

import pytest
from support.exporter_process import exporter_config, total, value

from testbed.policy import load_policy
from testbed.ports import free_ports

pytestmark = pytest.mark.e2e


def test_only_modified_pages_count_as_changed(testbed, run_exporter, tmp_path):
    state = testbed.state()
    names = [e["nickname"] for e in state["exits"]]
    country = {e["nickname"]: e["country"] for e in state["exits"]}
    modified = {names[1]: "injected", names[2]: "rewritten", names[3]: "different"}
    previous = testbed.edge.policy
    testbed.edge.set_policy(load_policy({"sites": {
        # news: every exit gets a per-request nonce, except the three that modify the page
        "news": {"default": "nonce", "exits": dict(modified)},
        "forum": {"default": "alt-svc"},
        "login": {"default": "onion-location"},
    }}))
    try:
        config = exporter_config(state, free_ports(1)[0], tmp_path / "data")
        config["targets"] = [{"name": site, "url": state["edge"]["sites"][site]} for site in ("news", "forum", "login")]
        exporter = run_exporter(config)
        deadline = time.monotonic() + 120
        while True:
            samples = exporter.samples()
            compared = total(samples, "captcha_page_changed_total", target="news")
            if all(value(samples, "captcha_probes_total", target=t, fetcher="http", country=c) >= 2
                   for c in country.values() for t in ("news", "forum", "login")) and compared >= 3:
                break
            assert time.monotonic() < deadline, exporter.log.read_text()[-3000:]
            time.sleep(2)
    finally:
        testbed.edge.set_policy(previous)

    for nickname in names:
        for kind in ("injected", "rewritten", "different"):
            seen = value(samples, "captcha_page_changed_total", target="news", fetcher="http",
                         country=country[nickname], kind=kind)
            if modified.get(nickname) == kind:
                assert seen >= 1, (nickname, kind)
            else:
                assert seen == 0, (nickname, kind, "counted a change the policy did not make")
    assert 0 <= value(samples, "captcha_page_similarity_ratio", target="news", fetcher="http") <= 1
    log = exporter.log.read_text()
    assert "changed=injected" in log and "changed=no" in log
    # forum announces its onion service with Alt-Svc, login with Onion-Location, news with neither
    onion = {(t, kind): value(samples, "captcha_target_onion_available", target=t, kind=kind)
             for t in ("news", "forum", "login") for kind in ("alt_svc", "onion_location")}
    assert onion == {("news", "alt_svc"): 0, ("news", "onion_location"): 0, ("forum", "alt_svc"): 1,
                     ("forum", "onion_location"): 0, ("login", "alt_svc"): 0, ("login", "onion_location"): 1}
