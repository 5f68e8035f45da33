"""HTTP basic auth (RFC 7617) against the web config's bcrypt hashes, at a bounded cost.

bcrypt is slow by design (cost 12 takes a quarter of a second of one core), so:

- a user we do not know costs a bcrypt at the highest cost among the configured
  users' hashes, so the time of an answer tells no user names;
- at most ``workers`` checks run at once and ``queue`` more wait for one;
  beyond that a request is refused at once (``Busy``) rather than queued, so
  guessing clients cannot make a correct login wait seconds for the CPU;
- answers are remembered as digests of (user, hash, password): a correct
  password costs one bcrypt until it or its hash changes, and a wrong one that
  many clients repeat (a fleet of scrapers with an old password) costs one
  bcrypt, not one per request, even when they all ask at once.

Passwords longer than bcrypt's 72 bytes are refused without a check (bcrypt
would ignore the rest).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import threading
from collections import OrderedDict

import bcrypt

WORKERS = max(2, os.cpu_count() or 2)
QUEUE = 2 * WORKERS
REMEMBERED_FAILURES = 4096
MAX_PASSWORD_BYTES = 72


class Busy(Exception):
    """More password checks are running and waiting than the pool takes."""


def cost(hashed: bytes) -> int:
    """A bcrypt hash's cost factor (``$2b$12$…`` → 12)."""
    return int(hashed[4:6])


@functools.cache
def _dummy_hash(rounds: int) -> bytes:
    """A hash nobody's password matches, at ``rounds``; checked for unknown users."""
    return bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(rounds=rounds))


def credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None when it carries none.

    The header arrives decoded as Latin-1, so a hostile one may hold any
    character; anything but base64 of UTF-8 ``user:password`` is None.
    """
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, non-ASCII text, or not UTF-8
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class BasicAuth:
    """Checks ``Authorization`` headers against ``users`` (name → bcrypt hash)."""

    def __init__(self, workers: int = WORKERS, queue: int = QUEUE):
        self._running = threading.BoundedSemaphore(workers)
        self._admitted = threading.BoundedSemaphore(workers + queue)
        self._lock = threading.Lock()
        self._matched: dict[str, bytes] = {}  # user → digest of the password that last matched
        self._failed: OrderedDict[bytes, None] = OrderedDict()  # digests that did not match, newest last
        self._checking: dict[bytes, threading.Event] = {}  # digests being checked now, set when done

    def authorized(self, users: dict[str, bytes], authorization: str | None) -> bool:
        """Whether the header carries a configured user's password; raises Busy when the pool is full."""
        given = credentials(authorization)
        if given is None or not users:
            return False
        user, password = given
        secret = password.encode()
        if len(secret) > MAX_PASSWORD_BYTES:
            return False
        hashed = users.get(user)
        digest = hashlib.sha256(b"\0".join((user.encode(), hashed or b"", secret))).digest()
        while True:
            with self._lock:
                if hashed is not None and hmac.compare_digest(self._matched.get(user, b""), digest):
                    return True
                if digest in self._failed:
                    self._failed.move_to_end(digest)
                    return False
                running = self._checking.get(digest)
                if running is None:
                    self._checking[digest] = done = threading.Event()
                    break
            running.wait()  # the same credentials are being checked: take that answer
        outcome = None  # stays None when the pool refused the check: nothing to remember
        try:
            outcome = self._check(secret, hashed, max(map(cost, users.values())))
        finally:
            with self._lock:
                del self._checking[digest]
                if outcome:
                    self._matched[user] = digest
                elif outcome is False:
                    self._failed[digest] = None
                    if len(self._failed) > REMEMBERED_FAILURES:
                        self._failed.popitem(last=False)
            done.set()
        return outcome

    def _check(self, secret: bytes, hashed: bytes | None, rounds: int) -> bool:
        """bcrypt in the pool; an unknown user (no hash) is checked against a dummy at ``rounds``."""
        if not self._admitted.acquire(blocking=False):
            raise Busy("too many password checks at once")
        try:
            with self._running:  # bcrypt releases the GIL: these run on as many cores
                return bcrypt.checkpw(secret, hashed or _dummy_hash(rounds)) and hashed is not None
        finally:
            self._admitted.release()
