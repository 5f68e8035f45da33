"""The web-config file (``--web.config.file``) in the format of Prometheus's exporter-toolkit.

``tls_server_config`` turns on TLS, ``basic_auth_users`` maps user names to
bcrypt hashes and protects every route (``basic_auth_excluded_paths`` may let
the health checks through: our own key, proposed for exporter-toolkit but not
in it, so ``promtool check web-config`` does not know it), ``http_server_config.headers`` adds
response headers, ``rate_limit`` caps requests over all clients (a token
bucket: one request per ``interval``, ``burst`` saved up; 429 beyond).  Like exporter-toolkit, the file (and the certificate, key
and CA files it names) is looked at again for every connection, so
credentials and certificates rotate without a restart; relative paths are
relative to the file's directory.

The file fails closed.  An empty or comment-only file, or a
``basic_auth_users`` that names no one, is refused: auth is off only when the
file leaves the key out.  A re-read takes a changed file only once it has
stayed unchanged for ``SETTLE_SECONDS`` (an editor that truncates and then
writes in place leaves an empty or half-written file for a moment), and never
takes one that is invalid or that drops TLS or basic auth (that takes a
restart): the last good settings stay in force, and the log says why.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from exporter.config import ConfigError
from exporter.config_yaml import Invalid, Mapping, Value, compose

log = logging.getLogger(__name__)

TOP_LEVEL_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "basic_auth_excluded_paths",
                  "rate_limit")
EXCLUDABLE_PATHS = ("/-/healthy", "/-/ready")  # what a probe may ask without credentials, at the operator's word
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
SETTLE_SECONDS = 1.0  # a changed file is read once it has stayed unchanged this long


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
    auth_excluded_paths: tuple[str, ...] = ()
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
    if node is None or Value(node, "").is_null:
        raise Invalid(1, "", "the file is empty or only comments; write {} for no TLS and no basic auth")
    top = Value(node, "").mapping(TOP_LEVEL_KEYS)
    tls = _tls(top.section("tls_server_config", TLS_KEYS), base_dir)
    http = top.section("http_server_config", HTTP_KEYS)
    http.read("http2", Value.boolean, True)  # accepted for compatibility; this server speaks HTTP/1.1
    headers = _headers(http.section("headers", tuple(HEADERS)))
    users = _users(dict(top).get("basic_auth_users"))
    excluded = top.read("basic_auth_excluded_paths", _excluded_paths, ())
    if excluded and not users:
        top.fail_at_key("basic_auth_excluded_paths", "only means something with basic_auth_users")
    rate_limit = _rate_limit(top.section("rate_limit", RATE_LIMIT_KEYS))
    context = None
    if tls is not None:
        try:
            context = tls.context()
        except (ssl.SSLError, OSError) as exc:
            top.fail_at_key("tls_server_config", f"cannot load the certificate, key or CA: {exc}")
    return WebConfig(tls=tls, users=users, auth_excluded_paths=excluded, headers=headers, rate_limit=rate_limit, ssl_context=context)


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
    """User → bcrypt hash; hashes are secrets, so errors never repeat them.

    Basic auth is off only when the key is left out: given, it must name a user.
    """
    if value is None:
        return {}
    if value.is_null or not list(value.mapping()):
        value.fail("names no users; leave the key out to turn basic auth off")
    users = {}
    for name, hashed in value.mapping():
        if ":" in name:
            hashed.fail("a basic auth user name cannot contain ':'")
        if hashed.kind != "str" or not BCRYPT_HASH.fullmatch(hashed.node.value):
            hashed.fail("expected a bcrypt hash like $2y$10$… (e.g. from htpasswd -nBC 10 \"\")")
        users[name] = hashed.node.value.encode("ascii")
    return users


def _excluded_paths(value: Value) -> tuple[str, ...]:
    return tuple(item.choice(EXCLUDABLE_PATHS, "path (only the health checks may skip basic auth)")
                 for item in value.items())


class WebConfigFile:
    """The web config at ``path``, re-read when it or a file it names changes (see the module docstring).

    ``current()`` always returns the settings in force: the last good ones while
    the file is being written, invalid, or would turn TLS or auth off.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.settle = SETTLE_SECONDS
        self._lock = threading.Lock()
        self._config = load_web_config(self.path)  # a bad file at start-up is the caller's to report
        self._stamp = self._fingerprint(self._config)
        self._changed: tuple | None = None  # the stamp of a change not yet settled, and since when
        self._changed_since = 0.0
        self._refused: tuple | None = None  # the stamp of a file already refused (and logged)
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
            stamp = self._fingerprint(self._config)
            if stamp in (self._stamp, self._refused):
                return self._config
            now = time.monotonic()
            if stamp != self._changed:
                self._changed, self._changed_since = stamp, now
            elif now - self._changed_since >= self.settle:
                self._reread(stamp)
            return self._config

    def _reread(self, stamp: tuple) -> None:
        """Take the changed file if it is valid and keeps TLS and auth on; else log why not, once."""
        try:
            config = load_web_config(self.path)
        except ConfigError as exc:
            problem = str(exc)
        else:
            if self._fingerprint(self._config) != stamp:
                return  # written to while we read: it has not settled after all
            problem = _turned_off(self._config, config, self.path)
            if problem is None:
                if config.rate_limit != self._config.rate_limit:
                    self._bucket = TokenBucket(config.rate_limit)
                self._config, self._stamp, self._refused = config, self._fingerprint(config), None
                log.info("web config reloaded", extra={"path": str(self.path), "users": len(config.users),
                                                       "tls": config.tls is not None})
                return
        self._refused = stamp
        log.error("web config change refused; the last good settings stay in force", extra={"err": problem})

    def allow(self) -> bool:
        """Whether the rate limit lets one more request through now."""
        with self._lock:
            return self._bucket.take()


def _turned_off(old: WebConfig, new: WebConfig, path: Path) -> str | None:
    """Why ``new`` may not replace ``old`` while running, or None."""
    if old.users and not new.users:
        return f"{path}: basic_auth_users: left out; turning basic auth off takes a restart"
    if old.tls and not new.tls:
        return f"{path}: tls_server_config: left out; turning TLS off takes a restart"
    return None


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
