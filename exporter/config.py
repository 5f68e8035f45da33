"""The exporter's configuration: YAML in, frozen values out.

Durations are seconds (float) after loading; YAML may give them as numbers or
as strings like ``30s``, ``5m``, ``1h``, ``1d``.  Sizes are bytes after
loading; YAML may give ``5MiB``, ``500KB`` or a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TorConfig:
    """How to reach our tor.

    ``mode: launch`` starts a tor with stem (``executable``, ``data_directory``,
    extra ``torrc`` options); ``mode: connect`` uses an existing one through its
    ControlPort (``control``) with cookie or password authentication. Either way
    the exporter owns that tor's stream attachment, so it must not serve users.
    """

    mode: str = "launch"  # launch | connect
    control_host: str = "127.0.0.1"
    control_port: int = 9051
    socks_host: str = "127.0.0.1"
    socks_port: int = 9050
    password: str | None = field(default=None, repr=False)
    cookie_file: Path | None = None
    executable: str = "tor"
    data_directory: Path | None = None
    torrc: dict[str, tuple[str, ...]] = field(default_factory=dict)
    circuit_timeout: float = 20.0


@dataclass(frozen=True)
class Expectation:
    """What a target's real page looks like (optional)."""

    status: int | None = None
    title: str | None = None


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    interval: float
    fetchers: tuple[str, ...]
    exits_per_run: int
    expect: Expectation | None = None


@dataclass(frozen=True)
class ExitSelection:
    """Which exits to measure: filters first, then ``top`` or ``sample``."""

    fingerprints: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    top: int | None = None
    sample: int | None = None


@dataclass(frozen=True)
class Schedule:
    interval: float = 600.0
    cron: str | None = None
    jitter: float = 0.0
    concurrency: int = 2
    exits_per_run: int = 10
    window: float = 86400.0  # weighted ratio and coverage look this far back


@dataclass(frozen=True)
class HttpFetcherConfig:
    timeout: float = 30.0
    max_body_bytes: int = 5 * 1024 * 1024
    user_agent: str = "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0"
    ca_file: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BrowserFetcherConfig:
    """Options shared by the browser fetchers (chromium, firefox, tor-browser)."""

    timeout: float = 60.0
    challenge_wait: float = 20.0
    recycle_after: int = 100
    memory_limit_bytes: int = 1536 * 1024 * 1024
    binary: str | None = None
    driver: str | None = None
    ca_file: Path | None = None
    headless: bool = True
    tbb_path: Path | None = None  # tor-browser only
    security_level: str = "standard"  # tor-browser only: standard | safer | safest


@dataclass(frozen=True)
class Fetchers:
    http: HttpFetcherConfig = field(default_factory=HttpFetcherConfig)
    chromium: BrowserFetcherConfig = field(default_factory=BrowserFetcherConfig)
    firefox: BrowserFetcherConfig = field(default_factory=BrowserFetcherConfig)
    tor_browser: BrowserFetcherConfig = field(default_factory=BrowserFetcherConfig)


@dataclass(frozen=True)
class Web:
    listen_host: str = "127.0.0.1"
    listen_port: int = 9981


@dataclass(frozen=True)
class GeoIP:
    country_db: Path | None = None
    asn_db: Path | None = None


@dataclass(frozen=True)
class Evidence:
    max_files: int = 1000
    max_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    targets: tuple[Target, ...]
    tor: TorConfig = field(default_factory=TorConfig)
    exits: ExitSelection = field(default_factory=ExitSelection)
    schedule: Schedule = field(default_factory=Schedule)
    fetchers: Fetchers = field(default_factory=Fetchers)
    web: Web = field(default_factory=Web)
    geoip: GeoIP = field(default_factory=GeoIP)
    evidence: Evidence = field(default_factory=Evidence)
    data_dir: Path = Path("data")
    detect_signatures: tuple = ()  # custom detector signatures, as parsed by exporter.detect
    source: Path | None = None


FETCHER_KINDS = ("http", "chromium", "firefox", "tor-browser")


class ConfigError(Exception):
    """A configuration mistake: ``str()`` is one line naming file, line and key path."""
