"""The exporter's configuration: YAML in, frozen values out.

Durations are seconds (float) after loading; YAML may give them as numbers or
as strings like ``30s``, ``5m``, ``1h``, ``1d``.  Sizes are bytes after
loading; YAML may give ``5MiB``, ``500KB`` or a number.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from apscheduler.triggers.cron import CronTrigger

from exporter.config_yaml import Invalid, Mapping, Value, compose, join, suggest


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
class ChangeDetection:
    """How a target's page is compared with the page fetched without Tor (see exporter.change)."""

    threshold: float = 0.6  # similarity below this is a `different` page, above it `rewritten`
    ignore: tuple[str, ...] = ()  # regexes cut from the visible text before comparing
    mask_numbers: bool = False  # treat every number in the text as volatile (prices, counters)
    baseline_fetches: int = 3  # direct fetches per baseline; what varies between them is ignored
    baseline_interval: float = 6 * 3600.0


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    interval: float
    fetchers: tuple[str, ...]
    exits_per_run: int
    expect: Expectation | None = None
    change: ChangeDetection = field(default_factory=ChangeDetection)
    cron: str | None = None  # schedule.cron, unless the target sets its own interval


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
    concurrency: int | None = None  # lanes; None ("auto"): chosen from CPUs and memory at start
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
    sandbox: bool = True  # chromium only: false runs it with --no-sandbox
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
    allowed_hosts: tuple[str, ...] | None = None  # None: the listen host, localhost and the machine's name


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
    # host name → address for the direct (not through Tor) baseline fetch, like curl --resolve
    baseline_resolve: dict[str, str] = field(default_factory=dict)
    source: Path | None = None


FETCHER_KINDS = ("http", "chromium", "firefox", "tor-browser")


class ConfigError(Exception):
    """A configuration mistake: ``str()`` is one line naming file, line and key path."""

    def __init__(self, source: str, line: int | None, path: str, message: str):
        super().__init__(source, line, path, message)
        self.source = source
        self.line = line
        self.path = path
        self.message = message

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        message = " ".join(self.message.split())  # one line, whatever the message holds
        return f"{where}: {self.path}: {message}" if self.path else f"{where}: {message}"


def load_config(path: str | Path) -> Config:
    """Read and validate the YAML file at ``path``; relative paths in it are relative to its directory."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), None, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(str(path), line, "", "not UTF-8 text") from None
    config = parse_config(text, source=str(path), base_dir=path.absolute().parent)
    return replace(config, source=path)


def parse_config(text: str, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Validate YAML ``text``; ``source`` names it in errors, ``base_dir`` anchors relative paths."""
    try:
        return _build(text, (base_dir or Path.cwd()).absolute())
    except Invalid as exc:
        raise ConfigError(source, exc.line, exc.path, exc.message) from None


TOP_LEVEL_KEYS = ("tor", "targets", "exits", "schedule", "fetchers", "web", "geoip", "evidence", "data_dir", "detect",
                  "baseline")
TOR_KEYS = ("mode", "control", "socks", "password", "password_file", "cookie_file", "executable",
            "data_directory", "torrc", "circuit_timeout")
TOR_LAUNCH_ONLY = ("executable", "data_directory", "torrc")
TOR_CONNECT_ONLY = ("password", "password_file", "cookie_file")  # a launched tor uses its own cookie
TARGET_KEYS = ("name", "url", "interval", "fetchers", "exits_per_run", "expect", "change")
CHANGE_KEYS = ("threshold", "ignore", "mask_numbers", "baseline_fetches", "baseline_interval")
EXITS_KEYS = ("fingerprints", "countries", "flags", "top", "sample")
SCHEDULE_KEYS = ("interval", "cron", "jitter", "concurrency", "exits_per_run", "window")
FETCHERS_KEYS = ("http", "chromium", "firefox", "tor-browser")
HTTP_KEYS = ("timeout", "max_body_bytes", "user_agent", "ca_file", "headers")
BROWSER_KEYS = ("timeout", "challenge_wait", "recycle_after", "memory_limit", "binary", "driver", "ca_file", "headless")
CHROMIUM_KEYS = BROWSER_KEYS + ("sandbox",)
TOR_BROWSER_KEYS = BROWSER_KEYS + ("tbb_path", "security_level")
WEB_KEYS = ("listen", "allowed_hosts")
TOR_FLAGS = ("Authority", "BadExit", "Exit", "Fast", "Guard", "HSDir", "MiddleOnly", "NoEdConsensus",
             "Running", "Stable", "StaleDesc", "Sybil", "V2Dir", "Valid")  # dir-spec "known-flags"
TARGET_NAME = r"[a-z0-9_-]+"


def _build(text: str, base_dir: Path) -> Config:
    root_node = compose(text)
    if root_node is None:
        raise Invalid(1, "", "the file is empty; it needs at least a 'targets' list")
    root = Value(root_node, "")
    if root.kind != "map":
        root.fail(f"the top level must be a mapping with keys like 'targets', got {root.describe()}")
    root = root.mapping(TOP_LEVEL_KEYS)
    schedule = _schedule(root.section("schedule", SCHEDULE_KEYS))
    return Config(
        targets=_targets(root.require("targets"), schedule),
        tor=_tor(root.section("tor", TOR_KEYS), base_dir),
        exits=_exits(root.section("exits", EXITS_KEYS)),
        schedule=schedule,
        fetchers=_fetchers(root.section("fetchers", FETCHERS_KEYS), base_dir),
        web=_web(root.section("web", WEB_KEYS)),
        geoip=_geoip(root.section("geoip", ("country_db", "asn_db")), base_dir),
        evidence=_evidence(root.section("evidence", ("max_files", "max_bytes"))),
        data_dir=root.read("data_dir", lambda v: v.file_path(base_dir), base_dir / Config.data_dir),
        detect_signatures=_detect_signatures(root.section("detect", ("signatures",))),
        baseline_resolve=root.section("baseline", ("resolve",)).read("resolve", _resolve, {}),
    )


def _positive_seconds(value: Value) -> float:
    return value.duration(above=True)


def _at_least_one(value: Value) -> int:
    return value.integer(1)


def _tor(section: Mapping, base_dir: Path) -> TorConfig:
    default = TorConfig()
    mode = section.read("mode", lambda v: v.choice(("launch", "connect"), "mode"), default.mode)
    other_mode, unused = ("connect", TOR_CONNECT_ONLY) if mode == "launch" else ("launch", TOR_LAUNCH_ONLY)
    for key in unused:
        if section.get(key) is not None:
            section.fail_at_key(key, f"only used with mode: {other_mode} (tor.mode is {mode})")
    section.exclusive("password", "password_file")
    control_host, control_port = section.read("control", Value.host_port, (default.control_host, default.control_port))
    socks_host, socks_port = section.read("socks", Value.host_port, (default.socks_host, default.socks_port))
    return TorConfig(
        mode=mode,
        control_host=control_host,
        control_port=control_port,
        socks_host=socks_host,
        socks_port=socks_port,
        password=section.read("password", Value.string, None)
        or section.read("password_file", lambda v: _secret_file(v, base_dir), None),
        cookie_file=section.read("cookie_file", lambda v: v.file_path(base_dir), None),
        executable=section.read("executable", lambda v: v.command(base_dir), default.executable),
        data_directory=section.read("data_directory", lambda v: v.file_path(base_dir), None),
        torrc=section.read("torrc", _torrc, {}),
        circuit_timeout=section.read("circuit_timeout", _positive_seconds, default.circuit_timeout),
    )


def _secret_file(value: Value, base_dir: Path) -> str:
    """A password file's first line (a trailing newline is not part of the password)."""
    path = value.file_path(base_dir, must_exist="file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        value.fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    if not lines or not lines[0]:
        value.fail(f"{path} is empty")
    return lines[0]


def _torrc(value: Value) -> dict[str, tuple[str, ...]]:
    """Extra torrc options: ``Option: value`` or ``Option: [value, value]`` (repeated lines)."""
    options = {}
    for option, item in value.mapping():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", option):
            item.fail(f"invalid tor option name {option!r}")
        entries = item.items() if item.kind == "seq" else [item]
        if not entries:
            item.fail("needs at least one value")
        options[option] = tuple(_torrc_value(entry) for entry in entries)
    return options


def _torrc_value(value: Value) -> str:
    if value.kind not in ("str", "int", "float"):
        value.expected("a string or a list of strings")
    return value.string()


def _schedule(section: Mapping) -> Schedule:
    default = Schedule()
    section.exclusive("interval", "cron")
    return Schedule(
        interval=section.read("interval", _interval, default.interval),
        cron=section.read("cron", _cron, None),
        jitter=section.read("jitter", Value.duration, default.jitter),
        concurrency=section.read("concurrency", _lanes, default.concurrency),
        exits_per_run=section.read("exits_per_run", _at_least_one, default.exits_per_run),
        window=section.read("window", _positive_seconds, default.window),
    )


def _lanes(value: Value) -> int | None:
    """A number of lanes (1-64), or "auto"."""
    if value.kind == "str" and value.string() == "auto":
        return None
    return value.integer(1, 64)


def _interval(value: Value) -> float:
    return value.duration(minimum=1.0)


def _cron(value: Value) -> str:
    """A 5-field crontab line, checked the way the scheduler (APScheduler) will read it."""
    text = value.string()
    try:
        CronTrigger.from_crontab(text, timezone="UTC")
    except ValueError as exc:
        value.fail(f"invalid cron expression {text!r}: {exc}")
    return text


def _targets(value: Value, schedule: Schedule) -> tuple[Target, ...]:
    items = value.items()
    if not items:
        value.fail("needs at least one target")
    targets, first_line = [], {}
    for item in items:
        section = item.mapping(TARGET_KEYS)
        target = _target(section, schedule)
        name = section.require("name")
        if target.name in first_line:
            name.fail(f"duplicate target name {target.name!r} (first used at line {first_line[target.name]})")
        first_line[target.name] = name.line
        targets.append(target)
    return tuple(targets)


def _target(section: Mapping, schedule: Schedule) -> Target:
    own_interval = section.get("interval")
    return Target(
        name=section.require("name").string(TARGET_NAME, " (use lowercase letters, digits, _ and -)"),
        url=_url(section.require("url")),
        interval=_interval(own_interval) if own_interval else schedule.interval,
        fetchers=section.read("fetchers", _fetcher_list, ("http",)),
        exits_per_run=section.read("exits_per_run", _at_least_one, schedule.exits_per_run),
        expect=section.read("expect", _expectation, None),
        cron=None if own_interval else schedule.cron,
        change=section.read("change", _change, ChangeDetection()),
    )


def _change(value: Value) -> ChangeDetection:
    section, default = value.mapping(CHANGE_KEYS), ChangeDetection()
    return ChangeDetection(
        threshold=section.read("threshold", _ratio, default.threshold),
        ignore=section.read("ignore", _regex_list, default.ignore),
        mask_numbers=section.read("mask_numbers", Value.boolean, default.mask_numbers),
        baseline_fetches=section.read("baseline_fetches", lambda v: v.integer(2, 20), default.baseline_fetches),
        baseline_interval=section.read("baseline_interval", _interval, default.baseline_interval),
    )


def _ratio(value: Value) -> float:
    if value.kind not in ("int", "float"):
        value.expected("a number from 0 to 1")
    number = value._number()
    if not 0 <= number <= 1:
        value.fail(f"expected a number from 0 to 1, got {number}")
    return float(number)


def _regex_list(value: Value) -> tuple[str, ...]:
    patterns = []
    for item in value.items():
        text = item.string()
        try:
            re.compile(text)
        except re.error as exc:
            item.fail(f"invalid regular expression {text!r}: {exc}")
        patterns.append(text)
    return tuple(patterns)


def _resolve(value: Value) -> dict[str, str]:
    resolved = {}
    for name, address in value.mapping():
        text = address.string()
        try:
            ipaddress.ip_address(text)
        except ValueError:
            address.fail(f"expected an IP address for {name!r}, got {text!r}")
        resolved[name.lower()] = text
    return resolved


def _url(value: Value) -> str:
    text = value.string()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        value.fail(f"invalid URL {text!r}: {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        value.fail(f"expected an absolute http:// or https:// URL with a host, got {text!r}")
    if any(char.isspace() for char in text):
        value.fail(f"invalid URL {text!r}: contains whitespace")
    return text


def _fetcher_list(value: Value) -> tuple[str, ...]:
    kinds = []
    for item in value.items():
        kind = item.choice(FETCHER_KINDS, "fetcher")
        if kind in kinds:
            item.fail(f"{kind!r} is listed twice")
        kinds.append(kind)
    if not kinds:
        value.fail("needs at least one fetcher")
    return tuple(kinds)


def _expectation(value: Value) -> Expectation:
    section = value.mapping(("status", "title"))
    return Expectation(
        status=section.read("status", lambda v: v.integer(100, 599), None),
        title=section.read("title", Value.string, None),
    )


def _exits(section: Mapping) -> ExitSelection:
    section.exclusive("top", "sample")
    return ExitSelection(
        fingerprints=section.read("fingerprints", _fingerprints, ()),
        countries=section.read("countries", _countries, ()),
        flags=section.read("flags", _flags, ()),
        top=section.read("top", _at_least_one, None),
        sample=section.read("sample", _at_least_one, None),
    )


def _fingerprints(value: Value) -> tuple[str, ...]:
    """Relay identity fingerprints: 40 hex digits (SHA-1), uppercased as tor writes them."""
    return tuple(item.string(r"[0-9A-Fa-f]{40}", ": expected 40 hex characters").upper() for item in value.items())


def _countries(value: Value) -> tuple[str, ...]:
    """ISO 3166-1 alpha-2 codes, uppercased as GeoIP databases give them."""
    hint = ": expected an ISO 3166 alpha-2 code like DE"
    return tuple(item.string(r"[A-Za-z]{2}", hint).upper() for item in value.items())


def _flags(value: Value) -> tuple[str, ...]:
    """Relay flags, spelled as in the consensus (matched case-insensitively)."""
    by_lower = {flag.lower(): flag for flag in TOR_FLAGS}
    flags = []
    for item in value.items():
        text = item.string()
        if text.lower() not in by_lower:
            item.fail(f"unknown relay flag {text!r}{suggest(text, TOR_FLAGS)}")
        flags.append(by_lower[text.lower()])
    return tuple(flags)


def _fetchers(section: Mapping, base_dir: Path) -> Fetchers:
    return Fetchers(
        http=_http(section.section("http", HTTP_KEYS), base_dir),
        chromium=_browser(section.section("chromium", CHROMIUM_KEYS), base_dir),
        firefox=_browser(section.section("firefox", BROWSER_KEYS), base_dir),
        tor_browser=_browser(section.section("tor-browser", TOR_BROWSER_KEYS), base_dir),
    )


def _http(section: Mapping, base_dir: Path) -> HttpFetcherConfig:
    default = HttpFetcherConfig()
    return HttpFetcherConfig(
        timeout=section.read("timeout", _positive_seconds, default.timeout),
        max_body_bytes=section.read("max_body_bytes", lambda v: v.size(1), default.max_body_bytes),
        user_agent=section.read("user_agent", Value.string, default.user_agent),
        ca_file=section.read("ca_file", lambda v: v.file_path(base_dir, must_exist="file"), None),
        headers=section.read("headers", _headers, {}),
    )


def _headers(value: Value) -> dict[str, str]:
    """Extra request headers; names are RFC 9110 tokens."""
    headers = {}
    for name, item in value.mapping():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            item.fail(f"invalid header name {name!r}")
        if item.kind not in ("str", "int", "float"):
            item.expected("a string")
        headers[name] = item.string()
    return headers


def _browser(section: Mapping, base_dir: Path) -> BrowserFetcherConfig:
    default = BrowserFetcherConfig()
    return BrowserFetcherConfig(
        timeout=section.read("timeout", _positive_seconds, default.timeout),
        challenge_wait=section.read("challenge_wait", Value.duration, default.challenge_wait),
        recycle_after=section.read("recycle_after", _at_least_one, default.recycle_after),
        memory_limit_bytes=section.read("memory_limit", lambda v: v.size(1), default.memory_limit_bytes),
        binary=section.read("binary", lambda v: v.command(base_dir), None),
        driver=section.read("driver", lambda v: v.command(base_dir), None),
        ca_file=section.read("ca_file", lambda v: v.file_path(base_dir, must_exist="file"), None),
        headless=section.read("headless", Value.boolean, default.headless),
        sandbox=section.read("sandbox", Value.boolean, default.sandbox),
        tbb_path=section.read("tbb_path", lambda v: v.file_path(base_dir, must_exist="directory"), None),
        security_level=section.read("security_level", _security_level, default.security_level),
    )


def _security_level(value: Value) -> str:
    """Tor Browser's security slider positions."""
    return value.choice(("standard", "safer", "safest"), "security level")


def _web(section: Mapping) -> Web:
    host, port = section.read("listen", Value.host_port, (Web.listen_host, Web.listen_port))
    return Web(listen_host=host, listen_port=port, allowed_hosts=section.read("allowed_hosts", _host_names, None))


def _host_names(value: Value) -> tuple[str, ...]:
    """Names a request's Host header may give (DNS names, without a port), lowercased."""
    label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    hint = ": expected a host name without a port, like exporter.example.org"
    return tuple(item.string(rf"{label}(?:\.{label})*\.?", hint).lower().rstrip(".") for item in value.items())


def _geoip(section: Mapping, base_dir: Path) -> GeoIP:
    def database(value: Value) -> Path:
        return value.file_path(base_dir, must_exist="file")

    return GeoIP(
        country_db=section.read("country_db", database, None),
        asn_db=section.read("asn_db", database, None),
    )


def _evidence(section: Mapping) -> Evidence:
    return Evidence(
        max_files=section.read("max_files", lambda v: v.integer(0), Evidence.max_files),
        max_bytes=section.read("max_bytes", Value.size, Evidence.max_bytes),
    )


def _detect_signatures(section: Mapping) -> tuple:
    """Custom signatures as plain data, checked by the detector's own validator."""
    value = section.get("signatures")
    if value is None:
        return ()
    items = value.items()
    raw = [item.plain() for item in items]
    if raw:
        from exporter.detect.signatures import check_custom

        for where, message in check_custom(raw)[:1]:
            _locate(value, list(where)).fail(message)
    return tuple(raw)


def _locate(value: Value, where: list[str | int]) -> Value:
    """The deepest node along ``where`` (keys and list indexes), for its line and key path."""
    for depth, step in enumerate(where):
        if isinstance(step, int) and value.kind == "seq" and 0 <= step < len(value.node.value):
            value = value.items()[step]
        elif isinstance(step, str) and value.kind == "map" and value.mapping().get(step) is not None:
            value = value.mapping().get(step)
        else:
            path = value.path
            for missing in where[depth:]:
                path = join(path, missing)
            return Value(value.node, path)
    return value


def config_yaml(config: Config) -> str:
    """The configuration in effect as YAML, secrets redacted."""
    data = dataclasses.asdict(config)
    if data["tor"].get("password"):
        data["tor"]["password"] = "<secret>"
    return yaml.safe_dump(plain(data), sort_keys=False)


def plain(value):
    """``value`` (a config dataclass, once through ``dataclasses.asdict``) as YAML-safe data."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, frozenset, set)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
