"""Proof-of-work cost end to end: the real exporter, Chromium, the test bed's Anubis and mCaptcha gates.

Each gate is served at two difficulties on two sites (every exit gets the
same one), so each target meets one difficulty; the exporter must export the
difficulty each page asked for, and the harder gate must take longer to solve.
A solve takes a geometric number of hashes: the easy gates need 65,536 and
50,000 on average, the hard ones a million each (about 12 s at the ~80,000
hashes/s of the page's JavaScript SHA-256 here), and the means of three solves
are compared, so chance reverses the order about once in five hundred runs.
Easier gates are not used: a gate solved before the browser reads the page
(Anubis at difficulty 1 clears in milliseconds) is a normal page to the detector.
"""

from __future__ import annotations

import shutil
import time

import pytest
from support.exporter_process import exporter_config, total, value

from testbed.policy import load_policy
from testbed.ports import free_ports

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium-driver"),
]

GATES = {  # target: (provider, policy behaviour, difficulty)
    "news": ("anubis", {"behaviour": "anubis", "difficulty": 4}, 4),
    "forum": ("anubis", {"behaviour": "anubis", "difficulty": 5}, 5),
    "shop": ("mcaptcha", {"behaviour": "mcaptcha", "difficulty_factor": 50_000}, 50_000),
    "login": ("mcaptcha", {"behaviour": "mcaptcha", "difficulty_factor": 1_000_000}, 1_000_000),
}
PROBES = 3  # per target: three exits


@pytest.fixture
def pow_policy(testbed):
    previous = testbed.edge.policy
    testbed.edge.set_policy(load_policy({"sites": {site: {"default": gate} for site, (_, gate, _) in GATES.items()}}))
    yield
    testbed.edge.set_policy(previous)


def test_harder_proof_of_work_takes_longer_and_is_exported_with_its_difficulty(testbed, pow_policy, run_exporter,
                                                                                tmp_path):
    state = testbed.state()
    config = exporter_config(state, free_ports(1)[0], tmp_path / "data")
    sites = state["edge"]["sites"]
    config["targets"] = [{"name": site, "url": sites[site], "fetchers": ["chromium"], "direct": False}
                         for site in GATES]
    # runs repeat until every gate was solved PROBES times: a solve the browser read mid-navigation
    # (a 403 status beside the real page) or finished before the page was read is not one
    config["schedule"] = {"interval": "15s", "exits_per_run": PROBES, "concurrency": 1}
    config["fetchers"]["chromium"] = {"ca_file": state["edge"]["ca_file"], "challenge_wait": "90s",
                                      "timeout": "120s"}
    exporter = run_exporter(config)

    deadline = time.monotonic() + 540
    while time.monotonic() < deadline:
        samples = exporter.samples()
        if all(value(samples, "captcha_pow_solve_seconds_count", target=t, provider=p) >= PROBES
               for t, (p, _, _) in GATES.items()):
            break
        time.sleep(3)
    else:
        pytest.fail("not every gate was solved three times:\n" + exporter.get("/metrics").text[-6000:] +
                    exporter.log.read_text()[-4000:])

    mean = {}
    for target, (provider, _, difficulty) in GATES.items():
        assert value(samples, "captcha_pow_difficulty", target=target, provider=provider) == difficulty
        assert total(samples, "captcha_challenges_total", target=target, route="tor", provider=provider) >= PROBES
        count = value(samples, "captcha_pow_solve_seconds_count", target=target, provider=provider)
        mean[target] = value(samples, "captcha_pow_solve_seconds_sum", target=target, provider=provider) / count
    print("mean solve seconds:", {t: round(s, 2) for t, s in mean.items()})
    assert mean["news"] < mean["forum"], mean  # Anubis: 4 vs 5 leading hex zeros
    assert mean["shop"] < mean["login"], mean  # mCaptcha: difficulty factor 50,000 vs 1,000,000
