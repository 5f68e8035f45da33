"""Signed tokens the edge hands out: challenge tokens and the cookies that pass a gate.

A token is ``base64url(JSON claims) "." base64url(HMAC-SHA256)`` under a key
made per edge start.  Claims always carry the kind, site, exit and issue
time, so a cookie earned through one exit is worthless on another (as
Cloudflare's ``cf_clearance`` is bound to the client's IP address).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time


class Passes:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def issue(self, kind: str, site: str, exit_name: str | None, **claims) -> str:
        payload = json.dumps({"k": kind, "s": site, "e": exit_name, "t": time.time(), **claims})
        encoded = _b64(payload.encode())
        return f"{encoded}.{self._sign(encoded)}"

    def check(self, token: str | None, kind: str, site: str, exit_name: str | None, max_age: float) -> dict | None:
        """The token's claims if it is ours, of ``kind``, for this site and exit, and fresh; else None."""
        if not token or token.count(".") != 1:
            return None
        encoded, signature = token.split(".")
        if not hmac.compare_digest(signature, self._sign(encoded)):
            return None
        claims = json.loads(_unb64(encoded))
        fresh = 0 <= time.time() - claims["t"] <= max_age
        if claims["k"] == kind and claims["s"] == site and claims["e"] == exit_name and fresh:
            return claims
        return None

    def _sign(self, encoded: str) -> str:
        return _b64(hmac.new(self._key, encoded.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
