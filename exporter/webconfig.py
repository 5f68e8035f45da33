"""The web-config file (``--web.config.file``) in the format of Prometheus's exporter-toolkit.

``tls_server_config`` turns on TLS, ``basic_auth_users`` maps user names to
bcrypt hashes and protects every route, ``http_server_config.headers`` adds
response headers, ``rate_limit`` caps requests over all clients (a token
bucket: one request per ``interval``, ``burst`` saved up; 429 beyond).  Like exporter-toolkit, the file (and the certificate, key
and CA files it names) is looked at again for every connection, so
credentials and certificates rotate without a restart; relative paths are
relative to the file's directory.  A file that turns invalid while running
fails closed: requests get 500 until it is fixed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from exporter.config import ConfigError
from exporter.config_yaml import Invalid, Mapping, Value, compose

log = logging.getLogger(__name__)

TOP_LEVEL_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version")
HTTP_KEYS = ("http2", "headers")
RATE_LIMIT_KEYS = ("interval", "burst")

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's tls.ClientAuthType names.  Python's ssl verifies every client certificate
# it asks for, so Go's "request/require any certificate without verifying it"
# policies have no equivalent and are refused.
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")

# The headers exporter-toolkit lets a web config set, with the values it accepts (None: any).
HEADERS = {"Content-Security-Policy": None, "X-Frame-Options": ("deny", "sameorigin"),
           "X-Content-Type-Options": ("nosniff",), "X-XSS-Protection": None, "Strict-Transport-Security": None}

BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
# Checked when the user is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=10))


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file) + ((self.client_ca_file,) if self.client_ca_file else ())

    def context(self) -> ssl.SSLContext:
        """A server-side SSLContext; raises ssl.SSLError or OSError on unusable files."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.maximum_version = TLS_VERSIONS[self.max_version]
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            context.load_verify_locations(cafile=self.client_ca_file)
        context.verify_mode = CLIENT_AUTH[self.client_auth_type]
        return context


@dataclass(frozen=True)
class RateLimit:
    interval: float  # seconds per request
    burst: int


@dataclass(frozen=True)
class WebConfig:
    """A valid web config; ``ssl_context`` is built from it (None without TLS)."""

    tls: TLSServerConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: RateLimit | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)

    @property
    def auth_required(self) -> bool:
        return bool(self.users)


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate the web config at ``path``; raises ConfigError naming file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), None, "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), None, "", "not UTF-8 text") from None
    try:
        return parse_web_config(text, path.absolute().parent)
    except Invalid as exc:
        raise ConfigError(str(path), exc.line, exc.path, exc.message) from None


def parse_web_config(text: str, base_dir: Path) -> WebConfig:
    node = compose(text)
    if node is None:  # an empty file is valid: plain HTTP, no authentication
        return WebConfig()
    top = Value(node, "").mapping(TOP_LEVEL_KEYS)
    tls = _tls(top.section("tls_server_config", TLS_KEYS), base_dir)
    http = top.section("http_server_config", HTTP_KEYS)
    http.read("http2", Value.boolean, True)  # accepted for compatibility; this server speaks HTTP/1.1
    headers = _headers(http.section("headers", tuple(HEADERS)))
    users = _users(top.get("basic_auth_users"))
    rate_limit = _rate_limit(top.section("rate_limit", RATE_LIMIT_KEYS))
    context = None
    if tls is not None:
        try:
            context = tls.context()
        except (ssl.SSLError, OSError) as exc:
            top.fail_at_key("tls_server_config", f"cannot load the certificate, key or CA: {exc}")
    return WebConfig(tls=tls, users=users, headers=headers, rate_limit=rate_limit, ssl_context=context)


def _tls(section: Mapping, base_dir: Path) -> TLSServerConfig | None:
    if not list(section):
        return None
    cert = section.require("cert_file").file_path(base_dir, must_exist="file")
    key = section.require("key_file").file_path(base_dir, must_exist="file")
    auth_value = section.get("client_auth_type")
    if auth_value is not None and auth_value.string() in UNVERIFIED_CLIENT_AUTH:
        auth_value.fail(f"{auth_value.string()} is not supported (client certificates are always verified); "
                        "use VerifyClientCertIfGiven or RequireAndVerifyClientCert")
    auth = auth_value.choice(tuple(CLIENT_AUTH), "client_auth_type") if auth_value else "NoClientCert"
    ca = section.read("client_ca_file", lambda v: v.file_path(base_dir, must_exist="file"), None)
    if auth != "NoClientCert" and ca is None:
        section.fail_at_key("client_auth_type", f"{auth} needs client_ca_file")
    if auth == "NoClientCert" and ca is not None:
        section.fail_at_key("client_ca_file", "client_ca_file is set but client_auth_type is NoClientCert")
    low = section.read("min_version", lambda v: v.choice(tuple(TLS_VERSIONS), "TLS version"), "TLS12")
    high = section.read("max_version", lambda v: v.choice(tuple(TLS_VERSIONS), "TLS version"), "TLS13")
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        section.fail_at_key("max_version", f"max_version {high} is below min_version {low}")
    return TLSServerConfig(cert, key, auth, ca, low, high)


def _headers(section: Mapping) -> tuple[tuple[str, str], ...]:
    headers = []
    for name, value in section:
        if value.is_null or value.node.value == "":
            continue  # "unset if blank"
        allowed = HEADERS[name]
        text = value.choice(allowed, f"{name} value") if allowed else value.string()
        if "\r" in text or "\n" in text:
            value.fail("a header value cannot span lines")
        headers.append((name, text))
    return tuple(headers)


def _rate_limit(section: Mapping) -> RateLimit | None:
    """None when absent or ``interval`` is 0 (exporter-toolkit: "set to 0 to disable")."""
    interval = section.read("interval", Value.duration, 0.0)
    if interval == 0:
        return None
    return RateLimit(interval, section.require("burst").integer(minimum=1))


def _users(value: Value | None) -> dict[str, bytes]:
    """User → bcrypt hash; hashes are secrets, so errors never repeat them."""
    if value is None:
        return {}
    users = {}
    for name, hashed in value.mapping():
        if ":" in name:
            hashed.fail("a basic auth user name cannot contain ':'")
        if hashed.kind != "str" or not BCRYPT_HASH.fullmatch(hashed.node.value):
            hashed.fail("expected a bcrypt hash like $2y$10$… (e.g. from htpasswd -nBC 10 \"\")")
        users[name] = hashed.node.value.encode("ascii")
    return users


class WebConfigFile:
    """The web config at ``path``, re-read when it or a file it names changes.

    ``current()`` raises ConfigError while the file is invalid; each new error is logged once.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._config = load_web_config(self.path)  # a bad file at start-up is the caller's to report
        self._stamp = self._fingerprint(self._config)
        self._error: ConfigError | None = None
        self._matched: dict[str, bytes] = {}  # user → sha256(user, hash, password) that last matched
        self._bcrypt = threading.Lock()  # one bcrypt at a time: guessing passwords cannot take every core
        self._bucket = TokenBucket(self._config.rate_limit)

    def _fingerprint(self, config: WebConfig) -> tuple:
        files = (self.path,) + (config.tls.files if config.tls else ())
        stamps = []
        for path in files:
            try:
                stat = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(stamps)

    def current(self) -> WebConfig:
        with self._lock:
            if self._error is None and self._fingerprint(self._config) == self._stamp:
                return self._config
            try:
                config = load_web_config(self.path)
            except ConfigError as exc:
                if self._error is None or str(exc) != str(self._error):
                    log.error("invalid web config; refusing requests until it is fixed", extra={"err": str(exc)})
                self._error = exc
                raise
            if self._error is not None:
                log.info("web config valid again", extra={"path": str(self.path)})
            if config.rate_limit != self._config.rate_limit:
                self._bucket = TokenBucket(config.rate_limit)
            self._config, self._stamp, self._error = config, self._fingerprint(config), None
            return config

    def allow(self) -> bool:
        """Whether the rate limit lets one more request through now."""
        with self._lock:
            return self._bucket.take()

    def authorized(self, config: WebConfig, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries a configured user's password (RFC 7617).

        bcrypt is slow by design, so a match is remembered (as a digest) until the
        password or the hash changes; an unknown user costs one bcrypt like a known one.
        """
        if not config.auth_required:
            return True
        user, password = _basic_credentials(authorization)
        if user is None:
            return False
        hashed = config.users.get(user)
        digest = hashlib.sha256(b"\0".join((user.encode(), hashed or b"", password.encode()))).digest()
        with self._lock:
            if hashed is not None and hmac.compare_digest(self._matched.get(user, b""), digest):
                return True
        try:
            with self._bcrypt:
                valid = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH) and hashed is not None
        except ValueError:  # bcrypt refuses passwords longer than 72 bytes
            return False
        if valid:
            with self._lock:
                self._matched[user] = digest
        return valid


class TokenBucket:
    """One token per ``limit.interval`` seconds, at most ``limit.burst`` saved; no limit without one."""

    def __init__(self, limit: RateLimit | None):
        self.limit = limit
        self._tokens = float(limit.burst) if limit else 0.0
        self._when = time.monotonic()

    def take(self) -> bool:
        if self.limit is None:
            return True
        now = time.monotonic()
        self._tokens = min(self.limit.burst, self._tokens + (now - self._when) / self.limit.interval)
        self._when = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _basic_credentials(authorization: str | None) -> tuple[str | None, str]:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None, ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else (None, "")
