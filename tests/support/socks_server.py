"""A minimal SOCKS5 server on loopback (no auth, CONNECT only) that dials every name at 127.0.0.1, for unit tests."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading


class _Connect(socketserver.BaseRequestHandler):
    def handle(self):
        client = self.request
        greeting = client.recv(2)
        client.recv(greeting[1])  # the offered methods: we take "no authentication"
        client.sendall(b"\x05\x00")
        _version, _command, _reserved, kind = client.recv(4)
        if kind == 3:  # a host name: the exit (here: we) resolves it
            client.recv(client.recv(1)[0])
        else:
            client.recv(4 if kind == 1 else 16)
        (port,) = struct.unpack("!H", client.recv(2))
        self.server.names_seen += 1
        with socket.create_connection(("127.0.0.1", port)) as upstream:
            client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
            pump(client, upstream)


def pump(source, sink):
    """Copy ``source`` to ``sink`` until EOF, then half-close ``sink``."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class SocksServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Connect)
        self.names_seen = 0
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()
