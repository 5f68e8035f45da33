"""The HTTP fetcher's error when tor refuses a stream: the SOCKS5 reply tor gave, not urllib3's long prefix."""

from __future__ import annotations

import socket
import threading

import pytest

from exporter.config import parse_config
from exporter.fetch.http import HttpFetcher
from exporter.values import FetchError, Lane

ONION = "ytsjjeqwpgh2k2gtqhnxw7a6wnlwxlqsredtzyym4dhuljduzwtqksad.onion"


@pytest.fixture
def socks_refusing():
    """A SOCKS5 server on loopback that answers every CONNECT with the reply code it is given."""
    listener = socket.create_server(("127.0.0.1", 0))
    replies: list[int] = []
    asked: list[bytes] = []

    def serve():
        while replies:
            client, _ = listener.accept()
            with client:
                client.recv(3)  # VER NMETHODS METHODS: no authentication
                client.sendall(b"\x05\x00")
                asked.append(client.recv(300))  # VER CMD RSV ATYP=3 LEN HOST PORT
                client.sendall(bytes([5, replies.pop(0), 0, 1, 0, 0, 0, 0, 0, 0]))

    def start(*codes: int) -> Lane:
        replies.extend(codes)
        threading.Thread(target=serve, daemon=True).start()
        return Lane(0, "127.0.0.1", listener.getsockname()[1], 1000)

    start.asked = asked
    yield start
    listener.close()


@pytest.mark.parametrize(("code", "said"), [
    (0xF0, "tor answered SOCKS5 reply 0xf0: onion service descriptor can not be found"),
    (0xF2, "tor answered SOCKS5 reply 0xf2: onion service introduction failed"),
    (0x04, "tor answered SOCKS5 reply 0x04: Host unreachable"),
])
def test_a_refused_stream_is_reported_by_its_socks_reply(socks_refusing, code, said):
    fetcher = HttpFetcher(parse_config("targets: [{name: a, url: 'http://a/'}]\n").fetchers.http)
    with pytest.raises(FetchError) as failed:
        fetcher.fetch(f"http://{ONION}/", socks_refusing(code), 5)
    assert failed.value.reason == "connection"
    assert str(failed.value).endswith(said), str(failed.value)
    assert ONION.encode() in socks_refusing.asked[0]  # the name went to tor (socks5h), not a local lookup
