"""`captcha-exporter healthcheck`: the container's health probe, which works with TLS and basic auth on.

Docker's HEALTHCHECK and Kubernetes' exec probes run it inside the container.
It asks ``/-/healthy`` (``--ready``: ``/-/ready``) on the local endpoint, over
plain HTTP or, when the port speaks TLS, over TLS without verifying the
certificate (a liveness check on loopback sends nothing secret unless given
credentials, and the certificate names the public host).

- Alive: the endpoint answers 200, or 401 (basic auth is on and the check has
  no credentials: the server still answers, which is all liveness asks).
- Ready: ``/-/ready`` answers 200.  With basic auth on, give the check a
  user's credentials (``--auth-file``, a file holding ``user:password``; a
  missing file means none, so an optional Kubernetes Secret works), or let the
  health checks through with ``basic_auth_excluded_paths`` in the web config.

Exit status 0 when healthy, 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import ssl
import sys
from pathlib import Path

TIMEOUT_SECONDS = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ready", action="store_true", help="check /-/ready instead of /-/healthy")
    parser.add_argument("--address", default="127.0.0.1:10981", metavar="HOST:PORT",
                        help="the exporter's web.listen as seen from inside (default: 127.0.0.1:10981)")
    parser.add_argument("--auth-file", metavar="FILE", default=None,
                        help="a file holding user:password for basic auth (a missing file means none)")


def run(args: argparse.Namespace) -> int:
    path = "/-/ready" if args.ready else "/-/healthy"
    host, _, port = args.address.rpartition(":")
    headers = {"Authorization": _basic(Path(args.auth_file))} if args.auth_file else {}
    headers = {name: value for name, value in headers.items() if value}
    try:
        status, body = ask(host.strip("[]"), int(port), path, headers)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"unhealthy: cannot ask {args.address}{path}: {exc}", file=sys.stderr)
        return 1
    if status == 200 or (status == 401 and not args.ready):
        return 0
    reason = " ".join(body.split())[:200] or http.client.responses.get(status, "")
    print(f"unhealthy: {args.address}{path} answered {status}: {reason}", file=sys.stderr)
    return 1


def ask(host: str, port: int, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """(status, body) of GET ``path``, over plain HTTP or, if the port speaks TLS, over TLS."""
    try:
        return _get(http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS), path, headers)
    except (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError):
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        secure = http.client.HTTPSConnection(host, port, timeout=TIMEOUT_SECONDS, context=unverified)
        return _get(secure, path, headers)


def _get(connection: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> tuple[int, str]:
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(4096).decode("utf-8", "replace")
    finally:
        connection.close()


def _basic(path: Path) -> str | None:
    """``Basic …`` from the file's first line, None when the file does not exist."""
    try:
        credentials = path.read_text(encoding="utf-8").splitlines()[0].strip()
    except FileNotFoundError:
        return None
    except IndexError:
        raise SystemExit(f"unhealthy: {path} is empty; it should hold user:password") from None
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
