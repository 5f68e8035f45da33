"""The test bed's DNS server, queried over real UDP on loopback."""

from __future__ import annotations

import pytest
from dnslib import RCODE, DNSRecord

from testbed.dns import DnsServer


@pytest.fixture
def dns():
    server = DnsServer("127.0.0.1")
    server.start()
    server.add("news.test", "127.0.0.1")
    yield server
    server.stop()


def ask(server, name, qtype="A"):
    return DNSRecord.parse(DNSRecord.question(name, qtype).send(server.host, server.port, timeout=2))


def test_known_name_gets_its_address_case_insensitively(dns):
    for name in ("news.test", "NEWS.Test."):
        reply = ask(dns, name)
        assert reply.header.rcode == RCODE.NOERROR
        assert [str(rr.rdata) for rr in reply.rr] == ["127.0.0.1"]


def test_every_other_name_is_nxdomain(dns):
    for name in ("example.com", "shop.test", "news.test.example.com"):
        reply = ask(dns, name)
        assert reply.header.rcode == RCODE.NXDOMAIN
        assert reply.rr == []


def test_known_name_without_an_aaaa_record_answers_empty(dns):
    reply = ask(dns, "news.test", "AAAA")
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []


def test_names_added_after_start_are_answered_and_queries_are_recorded(dns):
    dns.add("late.test", "127.0.0.9")
    assert str(ask(dns, "late.test").rr[0].rdata) == "127.0.0.9"
    assert ("late.test", "A") in dns.resolver.queries


def test_resolv_conf_names_only_this_server(dns, tmp_path):
    text = dns.write_resolv_conf(tmp_path / "resolv.conf").read_text()
    assert text == f"nameserver 127.0.0.1:{dns.port}\n"
