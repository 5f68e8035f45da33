"""Which relays a test-bed tor's own consensus lists (exits refuse streams from relays they do not know)."""

from __future__ import annotations

from testbed.network import consensus_nicknames

CONSENSUS = """network-status-version 3 microdesc
vote-status consensus
valid-after 2026-12-04 19:32:15
dir-source auth1 8C6E0A381FF821AEE12D6B0F34D3D6AC2CA9BE0D 127.0.0.1 127.0.0.1 51741 55425
r middle2 BIY/s8UOzXrsblTSHqQi5pXKe7Y 2038-01-01 00:00:00 127.0.0.1 46253 0
m yg8phQNuZjMHlS/JP5LhEC2FoQB/XC8o/BJmDGV0CuI
s Fast Guard HSDir Running Stable V2Dir Valid
r exit1 Cp0m0i7xG8eLw6Yq3nK0Xq3kq0A 2038-01-01 00:00:00 127.0.0.21 41001 0
s Exit Fast Running Valid
directory-footer
"""


def test_nicknames_come_from_router_status_lines(tmp_path):
    (tmp_path / "cached-microdesc-consensus").write_text(CONSENSUS)
    assert consensus_nicknames(tmp_path) == {"middle2", "exit1"}


def test_a_tor_without_a_consensus_knows_no_relay(tmp_path):
    assert consensus_nicknames(tmp_path) == set()


def test_a_full_consensus_is_read_when_there_is_no_microdescriptor_one(tmp_path):
    (tmp_path / "cached-consensus").write_text(CONSENSUS.replace(" microdesc", ""))
    assert consensus_nicknames(tmp_path) == {"middle2", "exit1"}
