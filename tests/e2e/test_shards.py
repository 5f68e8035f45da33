"""Two replicas with --shard 0/2 and 1/2 on the same test bed cover every exit exactly once."""

from __future__ import annotations

import time

import pytest
from support.exporter_process import exporter_config

from exporter.shard import Shard
from testbed.ports import free_ports

pytestmark = pytest.mark.e2e


def probed_exits(exporter) -> set[str]:
    return {dict(labels)["fingerprint"] for (name, labels), value in exporter.samples().items()
            if name == "captcha_exit_probes_total" and value > 0}


def exported_exits(exporter) -> set[str]:
    return {dict(labels)["fingerprint"] for (name, labels), _ in exporter.samples().items()
            if name == "captcha_exit_weight"}


def test_two_shards_cover_every_exit_exactly_once(testbed, run_exporter, tmp_path):
    state = testbed.state()
    every_exit = {e["fingerprint"] for e in state["exits"]}
    replicas = []
    for index in range(2):
        config = exporter_config(state, free_ports(1)[0], tmp_path / f"data-{index}")
        config["targets"] = config["targets"][:1]
        replicas.append(run_exporter(config, "--shard", f"{index}/2"))
    owned = [{fp for fp in every_exit if Shard(index, 2).owns(fp)} for index in range(2)]
    assert owned[0] and owned[1], "the test bed's exits should fall into both shards"

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        probed = [probed_exits(replica) for replica in replicas]
        if probed == owned:
            break
        time.sleep(2)
    assert probed == owned, "each replica probes exactly its own exits"
    assert probed[0] | probed[1] == every_exit and not probed[0] & probed[1]
    assert [exported_exits(replica) for replica in replicas] == owned, "each replica exports its own exits' weights"
    # the replicas' weights are shares of the whole consensus: together they sum to 1
    weights = sum(value for replica in replicas for (name, _), value in replica.samples().items()
                  if name == "captcha_exit_weight")
    assert weights == pytest.approx(1.0, abs=1e-6)
