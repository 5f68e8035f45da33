"""The exporter's configuration: YAML in, frozen values out, and back.

Every key is declared once, as a field of the dataclass that holds it
(``exporter.config_schema.key``): its YAML name, the kind of value it takes,
and its default.  The generic builder reads the YAML into these dataclasses;
the renderer writes them back as the YAML an operator would write (what
``/config`` shows, loadable again).  Rules that span sections are checked in
one pass after the build (``check_across``).

Durations are seconds (float) after loading; YAML may give them as numbers or
as strings like ``30s``, ``5m``, ``1h``, ``1d``.  Sizes are bytes after
loading; YAML may give ``5MiB``, ``500KB`` or a number.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import idna
import yaml
from apscheduler.triggers.cron import CronTrigger

from exporter import redact
from exporter.change.onion import is_onion_url
from exporter.config_schema import (
    Context,
    Kind,
    Schema,
    build,
    derived,
    key,
    kind,
    overlay,
    render,
    render_over,
    section,
    yaml_keys,
)
from exporter.config_yaml import (
    CONTROL_CHARACTER,
    MAX_BYTES,
    Invalid,
    Value,
    compose,
    format_duration,
    format_size,
    join,
    parse_duration,
    printable,
    regex_problem,
    shown,
    suggest,
)
from exporter.redact import Redactor

FETCHER_KINDS = ("http", "chromium", "firefox", "tor-browser")
SECURITY_LEVELS = ("standard", "safer", "safest")
TOR_BROWSER_LABELS = tuple(f"tor-browser-{level}" for level in SECURITY_LEVELS)  # the tor-browser kind's labels
FETCHER_NAME = r"[a-z0-9_-]+"
TOR_FLAGS = ("Authority", "BadExit", "Exit", "Fast", "Guard", "HSDir", "MiddleOnly", "NoEdConsensus",
             "Running", "Stable", "StaleDesc", "Sybil", "V2Dir", "Valid")  # dir-spec "known-flags"
TARGET_NAME = r"[a-z0-9_-]+"
# torrc options the exporter sets on the tor it launches or controls (exporter.tor.control, .circuit),
# by their lowercase name: a torrc key may not change them
TOR_OWNED = {name.lower(): name for name in (
    "ControlPort", "ControlSocket", "ControlPortWriteToFile", "CookieAuthentication", "CookieAuthFile",
    "HashedControlPassword", "__HashedControlSessionPassword", "SocksPort", "DataDirectory", "RunAsDaemon",
    "FetchUselessDescriptors", "UseMicrodescriptors", "__LeaveStreamsUnattached", "__DisablePredictedCircuits",
    "__OwningControllerProcess")}
_OWNED_HINTS = {"controlport": " (tor.control gives its host)", "socksport": " (tor.socks gives the lanes' host)",
                "datadirectory": " (use tor.data_directory)"}
_CHARACTER_NAMES = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\0": "a NUL"}


# -- the kinds of value a key takes ------------------------------------------------------------


def _duration(minimum: float = 0.0, above: bool = False) -> Kind:
    return kind(lambda value: value.duration(minimum, above), _duration_text)


def _duration_text(seconds: float) -> str | float:
    """``600`` → ``10m``; a value that text would round stays a number."""
    text = format_duration(seconds)
    return text if parse_duration(text) == seconds else seconds


def _size(minimum: int = 0) -> Kind:
    return kind(lambda value: value.size(minimum), format_size)


def _integer(minimum: int, maximum: int | None = None) -> Kind:
    return kind(lambda value: value.integer(minimum, maximum))


def _choice(choices: tuple[str, ...], what: str) -> Kind:
    return kind(lambda value: value.choice(choices, what))


def _path(must_exist: str | None = None) -> Kind:
    """A filesystem path; a relative one is relative to the config file's directory."""
    return Kind(lambda value, context: value.file_path(context.base_dir, must_exist=must_exist))


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _secret_file(value: Value, context: Context) -> str:
    """A password file's first line (a trailing newline is not part of the password)."""
    path = value.file_path(context.base_dir, must_exist="file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        value.fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    if not lines or not lines[0]:
        value.fail(f"{path} is empty")
    return lines[0]


def _torrc(value: Value) -> dict[str, tuple[str, ...]]:
    """Extra torrc options: ``Option: value`` or ``Option: [value, value]`` (repeated lines).

    Tor matches option names case-insensitively, and stem hands the options to
    tor one per line, so a line break in a value would add options of its own.
    """
    options, mapping = {}, value.mapping()
    for option, item in mapping:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", option):
            item.fail(f"invalid tor option name {option!r}")
        if option.lower() in TOR_OWNED:
            mapping.fail_at_key(option, f"{TOR_OWNED[option.lower()]} is set by the exporter itself and cannot be "
                                        f"changed here{_OWNED_HINTS.get(option.lower(), '')}")
        entries = item.items() if item.kind == "seq" else [item]
        if not entries:
            item.fail("needs at least one value")
        options[option] = tuple(_torrc_value(entry) for entry in entries)
    return options


def _torrc_value(value: Value) -> str:
    if value.kind not in ("str", "int", "float"):
        value.expected("a string or a list of strings")
    return _one_line(value, "a torrc value")


def _one_line(value: Value, what: str) -> str:
    """The value's text, refused when it holds a control character other than a tab (a line break
    above all)."""
    text = value.string()
    if control := CONTROL_CHARACTER.search(text.replace("\t", " ")):
        value.fail(f"{what} must be one line of text: it holds {_character(control.group())} "
                   f"at character {control.start() + 1}")
    return text


def _character(char: str) -> str:
    return _CHARACTER_NAMES.get(char, f"U+{ord(char):04X}")


def _header_value(value: Value) -> str:
    """A request header's value as HTTP sends it (RFC 9110 field-value): one line, visible
    characters, spaces and tabs, no whitespace around, Latin-1 at most (http.client encodes it so)."""
    text = _one_line(value, "a header value")
    if text != text.strip(" \t"):
        value.fail("a header value cannot start or end with whitespace")
    if wide := next((char for char in text if ord(char) > 0xFF), None):
        value.fail(f"holds {wide!r} ({_character(wide)}), which an HTTP header cannot carry (Latin-1 only)")
    return text


def _lanes(value: Value) -> int | None:
    """A number of lanes (1-64), or "auto"."""
    if value.kind == "str" and value.string() == "auto":
        return None
    return value.integer(1, 64)


def _cron(value: Value) -> str:
    """A 5-field crontab line, checked the way the scheduler (APScheduler) will read it, which must
    fire at some time (APScheduler looks up to the year 9999)."""
    text = value.string()
    try:
        trigger = CronTrigger.from_crontab(text, timezone="UTC")
    except ValueError as exc:
        value.fail(f"invalid cron expression {text!r}: {exc}")
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        value.fail(f"the cron expression {text!r} never fires: no date matches it")
    return text


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
        if problem := regex_problem(text):
            item.fail(f"invalid regular expression {shown(repr(text), 60)}: {problem}")
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
        resolved[_ascii_host(name, address)] = text
    return resolved


def _ascii_host(host: str, value: Value) -> str:
    """An internationalised host name as it goes on the wire: IDNA 2008 A-labels, mapped as UTS 46
    (non-transitional) says, as browsers and tor's SOCKS requests carry it (``bücher.example`` →
    ``xn--bcher-kva.example``)."""
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        value.fail(f"invalid host name {host!r}: {exc}")


def _url(value: Value) -> str:
    text = value.string()
    shown_url = repr(redact.BY_SHAPE.text(text))  # an error message is shown and logged: no credentials in it
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        value.fail(f"invalid URL {shown_url}: {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        value.fail(f"expected an absolute http:// or https:// URL with a host, got {shown_url}")
    if any(char.isspace() for char in text):
        value.fail(f"invalid URL {shown_url}: contains whitespace")
    host = _ascii_host(parts.hostname, value)
    if host == parts.hostname:
        return text
    userinfo, at, _ = parts.netloc.rpartition("@")
    port = f":{parts.port}" if parts.port is not None else ""
    return parts._replace(netloc=f"{userinfo}{at}{host}{port}").geturl()


ONION_MODES = ("off", "auto")


def _onion(value: Value) -> str:
    """``off``, ``auto`` (the URL the target's Onion-Location names), or a v3 onion URL."""
    text = value.string()
    if text in ONION_MODES:
        return text
    if not is_onion_url(text):
        value.fail(f"expected off, auto or an http:// or https:// URL of a v3 onion service, got {text!r}")
    return _url(value)


def _fetcher_list(value: Value) -> tuple[str, ...]:
    """Fetcher kinds or variant names (``check_across`` checks they exist: variants come later)."""
    names = []
    for item in value.items():
        name = item.string(FETCHER_NAME, " (a fetcher kind or a variant name)")
        if name in names:
            item.fail(f"{name!r} is listed twice")
        names.append(name)
    if not names:
        value.fail("needs at least one fetcher")
    return tuple(names)


def _expected_status(value: Value) -> int:
    """A status the judged page can have: redirects are followed, so never 1xx or 3xx."""
    status = value.integer(100, 599)
    if status < 200 or 300 <= status < 400:
        value.fail(f"a probe judges the page its redirects lead to, which never has status {status}; "
                   "expect a status from 200-299 or 400-599")
    return status


def _expectation(value: Value, context: Context) -> Expectation:
    mapping = value.mapping(yaml_keys(Expectation))
    if mapping.get("status") is None and mapping.get("title") is None:
        value.fail("an expectation needs a status, a title or both (an empty one always holds)")
    return build(Expectation, mapping, context)


def _browser_prefs(value: Value) -> dict[str, bool | int | str]:
    """Browser preferences (Firefox's about:config, Chromium's profile preferences): name → value."""
    prefs = {}
    for name, item in value.mapping():
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            item.fail(f"invalid preference name {name!r}")
        if item.kind == "bool":
            prefs[name] = item.boolean()
        elif item.kind == "int":
            prefs[name] = item.integer()
        elif item.kind in ("str", "float"):
            prefs[name] = item.string()
        else:
            item.expected("true, false, an integer or a string")
    return prefs


def _arguments(value: Value) -> tuple[str, ...]:
    """Command-line arguments: one line each (a NUL cannot even be passed to a process)."""
    return tuple(_one_line(item, "a browser argument") for item in value.items())


def _variants(value: Value, context: Context) -> dict[str, Variant]:
    """``name: {kind: KIND, key: value, ...}``: the kind's section (``fetchers.KIND``) with these keys changed."""
    variants = {}
    for name, item in value.mapping():
        if not re.fullmatch(FETCHER_NAME, name):
            item.fail(f"invalid variant name {name!r} (use lowercase letters, digits, _ and -)")
        if name in FETCHER_KINDS or name in TOR_BROWSER_LABELS:
            item.fail(f"{name!r} is already the label of a fetcher kind; give the variant a name of its own")
        kind_name = item.mapping().require("kind").choice(FETCHER_KINDS, "fetcher kind")
        base = context.find(_section_field(kind_name))
        settings = overlay(base, item.mapping(("kind", *yaml_keys(type(base)))), context)
        variants[name] = Variant(kind_name, settings, render_over(settings, base))
    return variants


def _render_variants(variants: dict[str, Variant]) -> dict:
    return {name: {"kind": variant.kind, **variant.rendered} for name, variant in variants.items()}


def _section_field(kind_name: str) -> str:
    """The Fetchers field of a kind's section: ``tor-browser`` → ``tor_browser``."""
    return kind_name.replace("-", "_")


_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _host_patterns(value: Value) -> tuple[str, ...]:
    """Host names, or ``*.suffix`` for every name under a suffix, as streams name them: lowercased,
    internationalised names as A-labels (``*.bücher.example`` → ``*.xn--bcher-kva.example``)."""
    return _host_list(value, "a host name or *.suffix, e.g. *.doubleclick.net", wildcards=True)


def _host_names(value: Value) -> tuple[str, ...]:
    """Names a request's Host header may give (DNS names, without a port), as browsers send them:
    lowercased, internationalised names as A-labels."""
    return _host_list(value, "a host name without a port, like exporter.example.org", wildcards=False)


def _host_list(value: Value, expected: str, wildcards: bool) -> tuple[str, ...]:
    names = []
    for item in value.items():
        text = item.string()
        wildcard = "*." if wildcards and text.startswith("*.") else ""
        name = _ascii_host(text.removeprefix(wildcard).rstrip("."), item)
        if not _HOST_NAME.fullmatch(name):
            item.fail(f"invalid value {text!r}: expected {expected}")
        names.append(wildcard + name)
    return tuple(names)


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


def _headers(value: Value) -> dict[str, str]:
    """Extra request headers; names are RFC 9110 tokens."""
    headers = {}
    for name, item in value.mapping():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            item.fail(f"invalid header name {name!r}")
        if item.kind not in ("str", "int", "float"):
            item.expected("a string")
        headers[name] = _header_value(item)
    return headers


def _query_words(value: Value) -> tuple[str, ...]:
    """Words that make a query parameter's name a secret's (matched case-insensitively)."""
    return tuple(item.string(r"[A-Za-z0-9_.-]+", ": expected a word like token").lower() for item in value.items())


def _detect_signatures(value: Value) -> tuple:
    """Custom signatures as plain data, checked by the detector's own validator."""
    raw = [item.plain() for item in value.items()]
    if raw:
        from exporter.detect.signatures import check_custom

        for where, message in check_custom(raw)[:1]:
            _locate(value, list(where)).fail(message)
    return tuple(raw)


def _targets(value: Value, context: Context) -> tuple[Target, ...]:
    items = value.items()
    if not items:
        value.fail("needs at least one target")
    targets, first_line = [], {}
    for item in items:
        mapping = item.mapping(TARGET_KEYS)
        target = build(Target, mapping, context)
        name = mapping.require("name")
        if target.name in first_line:
            name.fail(f"duplicate target name {target.name!r} (first used at line {first_line[target.name]})")
        first_line[target.name] = name.line
        targets.append(target)
    return tuple(targets)


POSITIVE_SECONDS = _duration(above=True)
SECONDS = _duration()
INTERVAL = _duration(minimum=1.0)
AT_LEAST_ONE = _integer(1)
BOOLEAN = kind(Value.boolean)
STRING = kind(Value.string)
SECRET = kind(Value.string, lambda password: password and redact.MARK)  # never shown, not even on /config
HOST_PORT = kind(Value.host_port, _host_port)
COMMAND = Kind(lambda value, context: value.command(context.base_dir))  # a bare name is looked up on PATH later
EXISTING_FILE = _path("file")
LAUNCH, CONNECT = ("mode", "launch"), ("mode", "connect")


# -- the configuration, one declaration per key ------------------------------------------------


@dataclass(frozen=True)
class TorConfig(Schema):
    """How to reach our tor.

    ``mode: launch`` starts a tor with stem (``executable``, ``data_directory``,
    extra ``torrc`` options); ``mode: connect`` uses an existing one through its
    ControlPort (``control``) with cookie or password authentication. Either way
    the exporter owns that tor's stream attachment, so it must not serve users.
    """

    READ_FIRST = ("mode",)

    mode: str = key(_choice(("launch", "connect"), "mode"), "launch")
    control_host: str = key(HOST_PORT, "127.0.0.1", name="control", part=0)
    control_port: int = key(HOST_PORT, 9051, name="control", part=1)
    socks_host: str = key(HOST_PORT, "127.0.0.1", name="socks", part=0)
    socks_port: int = key(HOST_PORT, 9050, name="socks", part=1)
    # a launched tor uses its own cookie
    password: str | None = key(SECRET, None, repr=False, alias=("password_file", Kind(_secret_file)), when=CONNECT)
    cookie_file: Path | None = key(_path(), None, when=CONNECT)
    executable: str = key(COMMAND, "tor", when=LAUNCH)
    data_directory: Path | None = key(_path(), None, when=LAUNCH)
    torrc: dict[str, tuple[str, ...]] = key(kind(_torrc, redact.torrc), default_factory=dict, when=LAUNCH)
    circuit_timeout: float = key(POSITIVE_SECONDS, 20.0)
    hops: int = key(_integer(2, 3), 3)  # circuit length: a user's circuit has three hops
    # hosts (or *.suffix) probes must not reach; streams to them are closed
    deny_hosts: tuple[str, ...] = key(kind(_host_patterns), ())


@dataclass(frozen=True)
class Expectation:
    """What a target's real page looks like (optional): a normal page that differs is counted as a
    page change of kind ``unexpected`` (exporter.change.expect)."""

    status: int | None = key(kind(_expected_status), None)
    title: str | None = key(STRING, None)  # compared with whitespace collapsed, as the detector reads titles


@dataclass(frozen=True)
class ChangeDetection:
    """How a target's page is compared with the page fetched without Tor (see exporter.change)."""

    # similarity below this is a `different` page, above it `rewritten`
    threshold: float = key(kind(_ratio), 0.6)
    # regexes cut from the visible text before comparing
    ignore: tuple[str, ...] = key(kind(_regex_list), ())
    # treat every number in the text as volatile (prices, counters)
    mask_numbers: bool = key(BOOLEAN, False)
    # direct fetches per baseline; what varies between them is ignored
    baseline_fetches: int = key(_integer(2, 20), 3)
    baseline_interval: float = key(INTERVAL, 6 * 3600.0)


@dataclass(frozen=True)
class Target:
    name: str = key(kind(lambda value: value.string(TARGET_NAME, " (use lowercase letters, digits, _ and -)")))
    url: str = key(kind(_url))
    # schedule.interval unless set; setting it also exempts the target from schedule.cron
    interval: float = key(INTERVAL, fallback=lambda context: context.find("schedule").interval,
                          write_if=lambda target: target.cron is None)
    fetchers: tuple[str, ...] = key(kind(_fetcher_list), fallback=lambda context: ("http",))
    exits_per_run: int = key(AT_LEAST_ONE, fallback=lambda context: context.find("schedule").exits_per_run)
    expect: Expectation | None = key(Kind(_expectation, lambda e: None if e is None else render(e)), None)
    change: ChangeDetection = section(ChangeDetection)
    # the direct control: each run also probes the target without Tor, with each of its fetchers
    direct: bool = key(BOOLEAN, True)
    # the onion route: each run also probes the target's onion service (off, auto, or its URL)
    onion: str = key(kind(_onion), "off")
    # schedule.cron, unless the target sets its own interval
    cron: str | None = derived(lambda given, context: None if given.get("interval") else context.find("schedule").cron)


@dataclass(frozen=True)
class ExitSelection(Schema):
    """Which exits to measure: filters first, then ``top`` or ``sample``."""

    EXCLUSIVE = (("top", "sample"),)

    fingerprints: tuple[str, ...] = key(kind(_fingerprints), ())
    countries: tuple[str, ...] = key(kind(_countries), ())
    flags: tuple[str, ...] = key(kind(_flags), ())
    top: int | None = key(AT_LEAST_ONE, None)
    sample: int | None = key(AT_LEAST_ONE, None)


@dataclass(frozen=True)
class Schedule(Schema):
    EXCLUSIVE = (("interval", "cron"),)

    interval: float = key(INTERVAL, 600.0)
    cron: str | None = key(kind(_cron), None)
    jitter: float = key(SECONDS, 0.0)
    # lanes; None ("auto"): chosen from CPUs and memory at start (browsers), learnt while running (plain HTTP)
    concurrency: int | None = key(kind(_lanes, lambda lanes: "auto" if lanes is None else lanes), None)
    exits_per_run: int = key(AT_LEAST_ONE, 10)
    window: float = key(POSITIVE_SECONDS, 86400.0)  # weighted ratio and coverage look this far back


@dataclass(frozen=True)
class HttpFetcherConfig:
    timeout: float = key(POSITIVE_SECONDS, 30.0)
    max_body_bytes: int = key(_size(1), 5 * 1024 * 1024)
    user_agent: str = key(kind(_header_value), "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0")
    ca_file: Path | None = key(EXISTING_FILE, None)
    headers: dict[str, str] = key(kind(_headers, redact.headers), default_factory=dict)


@dataclass(frozen=True)
class BrowserFetcherConfig:
    """Options shared by the browser fetchers (chromium, firefox, tor-browser)."""

    timeout: float = key(POSITIVE_SECONDS, 60.0)
    challenge_wait: float = key(SECONDS, 20.0)
    recycle_after: int = key(AT_LEAST_ONE, 100)
    memory_limit_bytes: int = key(_size(1), 1536 * 1024 * 1024, name="memory_limit")
    binary: str | None = key(COMMAND, None)
    driver: str | None = key(COMMAND, None)
    ca_file: Path | None = key(EXISTING_FILE, None)
    headless: bool = key(BOOLEAN, True)
    # extra command-line arguments of the browser, e.g. Chromium's --lang=de-DE
    arguments: tuple[str, ...] = key(kind(_arguments), ())
    # browser preferences: Firefox's about:config (privacy.resistFingerprinting: true), Chromium's profile
    # preferences (intl.accept_languages: de-DE)
    prefs: dict[str, bool | int | str] = key(kind(_browser_prefs), default_factory=dict)


@dataclass(frozen=True)
class ChromiumConfig(BrowserFetcherConfig):
    """Chromium's options: a browser's, plus whether it runs in its sandbox (exporter.fetch.sandbox)."""

    sandbox: bool = key(BOOLEAN, True)  # false: --no-sandbox, which the operator accepts (logged, in fetcher_info)


@dataclass(frozen=True)
class TorBrowserConfig(BrowserFetcherConfig):
    """Tor Browser's options: a browser's, plus where the bundle is and its security level."""

    tbb_path: Path | None = key(_path("directory"), None)  # the unpacked bundle, which holds Browser/
    security_level: str = key(_choice(SECURITY_LEVELS, "security level"), "standard")


FetcherSettings = HttpFetcherConfig | BrowserFetcherConfig | TorBrowserConfig


@dataclass(frozen=True)
class Variant:
    """A fetcher kind run with other settings: its own ``fetcher`` label (the variant's name)."""

    kind: str
    settings: FetcherSettings
    rendered: dict = dataclasses.field(default_factory=dict, compare=False)  # the keys it changes, as YAML


@dataclass(frozen=True)
class Fetchers:
    http: HttpFetcherConfig = section(HttpFetcherConfig)
    chromium: ChromiumConfig = section(ChromiumConfig)
    firefox: BrowserFetcherConfig = section(BrowserFetcherConfig)
    tor_browser: TorBrowserConfig = section(TorBrowserConfig, name="tor-browser")
    # name → variant, e.g. tor-browser-safest: {kind: tor-browser, security_level: safest}; read after the
    # kinds' sections, which a variant starts from
    variants: dict[str, Variant] = key(Kind(_variants, _render_variants), default_factory=dict)

    def resolve(self, name: str) -> tuple[str, FetcherSettings]:
        """The kind and settings of a fetcher name (a kind or a variant); KeyError for neither."""
        if name in self.variants:
            return self.variants[name].kind, self.variants[name].settings
        if name not in FETCHER_KINDS:
            raise KeyError(name)
        return name, getattr(self, _section_field(name))

    def label(self, name: str) -> str:
        """The ``fetcher`` label of a fetcher name: a variant's name, or the kind's (Tor Browser's carries
        its security level)."""
        if name == "tor-browser":
            return f"tor-browser-{self.tor_browser.security_level}"
        return name


@dataclass(frozen=True)
class Web:
    listen_host: str = key(HOST_PORT, "127.0.0.1", name="listen", part=0)
    listen_port: int = key(HOST_PORT, 10981, name="listen", part=1)
    # the names a request's Host header may give; None: the listen host, localhost and the machine's name
    allowed_hosts: tuple[str, ...] | None = key(kind(_host_names), None)


@dataclass(frozen=True)
class GeoIP:
    country_db: Path | None = key(EXISTING_FILE, None)  # GeoLite2/GeoIP2 Country: country and continent
    asn_db: Path | None = key(EXISTING_FILE, None)  # GeoLite2/GeoIP2 ASN: each exit's network


@dataclass(frozen=True)
class Onionoo:
    """Relays' first-seen times from Onionoo's details document, fetched through an exit every ``interval``."""

    enabled: bool = key(BOOLEAN, True)
    url: str = key(kind(_url), "https://onionoo.torproject.org/details")
    interval: float = key(INTERVAL, 6 * 3600.0)


@dataclass(frozen=True)
class History:
    """The probes kept in data_dir/state.db for the probe pages and /api/v1/probes."""

    retention: float = key(POSITIVE_SECONDS, 86400.0)
    max_probes: int = key(AT_LEAST_ONE, 200_000)


@dataclass(frozen=True)
class Reports:
    """The daily report (exporter.report), written by the running exporter into data_dir/reports."""

    daily: bool = key(BOOLEAN, False)  # write each finished UTC day's report
    keep_days: int = key(AT_LEAST_ONE, 30)  # reports of older days are removed
    format: str = key(_choice(("csv", "json"), "report format"), "csv")


@dataclass(frozen=True)
class Redaction:
    """What counts as a secret besides the fixed rules of exporter.redact."""

    # a query parameter whose name holds one of these words has its value shown as <secret>
    query_params: tuple[str, ...] = key(kind(_query_words), redact.QUERY_WORDS)


@dataclass(frozen=True)
class Evidence:
    max_files: int = key(_integer(0), 1000)
    max_bytes: int = key(_size(), 512 * 1024 * 1024)


@dataclass(frozen=True, kw_only=True)
class Config(Schema):
    READ_FIRST = ("schedule", "targets")  # a target's defaults come from the schedule

    tor: TorConfig = section(TorConfig)
    targets: tuple[Target, ...] = key(Kind(_targets, lambda targets: [render(target) for target in targets]))
    exits: ExitSelection = section(ExitSelection)
    schedule: Schedule = section(Schedule)
    fetchers: Fetchers = section(Fetchers)
    web: Web = section(Web)
    geoip: GeoIP = section(GeoIP)
    onionoo: Onionoo = section(Onionoo)
    evidence: Evidence = section(Evidence)
    history: History = section(History)
    reports: Reports = section(Reports)
    redact: Redaction = section(Redaction)
    data_dir: Path = key(_path(), Path("data"), fallback=lambda context: context.base_dir / "data")
    # custom detector signatures, as parsed by exporter.detect
    detect_signatures: tuple = key(kind(_detect_signatures), (), name="detect.signatures")
    # host name → address for the fetches without Tor (the baseline and the direct control), like curl --resolve
    baseline_resolve: dict[str, str] = key(kind(_resolve), default_factory=dict, name="baseline.resolve")
    source: Path | None = None  # the file it was loaded from (not a key)


TOP_LEVEL_KEYS = yaml_keys(Config)
TOR_KEYS = yaml_keys(TorConfig)
TARGET_KEYS = yaml_keys(Target)
BROWSER_KEYS = yaml_keys(BrowserFetcherConfig)
CHROMIUM_KEYS = yaml_keys(ChromiumConfig)
TOR_BROWSER_KEYS = yaml_keys(TorBrowserConfig)


# -- loading -----------------------------------------------------------------------------------


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
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return printable(" ".join(text.split()))  # one line, whatever the file's name, keys or values hold


_TOO_LARGE = f"larger than {MAX_BYTES >> 20} MiB; a config needs far less"


def load_config(path: str | Path) -> Config:
    """Read and validate the YAML file at ``path``; relative paths in it are relative to its directory."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise ConfigError(str(path), None, "", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(str(path), None, "", _TOO_LARGE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(str(path), line, "", "not UTF-8 text") from None
    config = parse_config(text, source=str(path), base_dir=path.absolute().parent)
    return replace(config, source=path)


def parse_config(text: str, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Validate YAML ``text``; ``source`` names it in errors, ``base_dir`` anchors relative paths."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError(source, None, "", _TOO_LARGE)
    try:
        root_node = compose(text)
        if root_node is None:
            raise Invalid(1, "", "the file is empty; it needs at least a 'targets' list")
        root = Value(root_node, "")
        if root.kind != "map":
            root.fail(f"the top level must be a mapping with keys like 'targets', got {root.describe()}")
        config = build(Config, root.mapping(TOP_LEVEL_KEYS), Context((base_dir or Path.cwd()).absolute()))
        check_across(config, root)
        return config
    except Invalid as exc:
        raise ConfigError(source, exc.line, exc.path, exc.message) from None


def check_across(config: Config, root: Value) -> None:
    """The rules that span sections, each key being valid alone; errors point at the key that asks."""
    fetchers = config.fetchers
    known = (*FETCHER_KINDS, *fetchers.variants)
    for target_index, target in enumerate(config.targets):
        for fetcher_index, name in enumerate(target.fetchers):
            where = ["targets", target_index, "fetchers", fetcher_index]
            if name not in known:
                _locate(root, where).fail(f"unknown fetcher {name!r}{suggest(name, known)}; "
                                          "a fetcher is a kind or a variant named under fetchers.variants")
            kind_name, settings = fetchers.resolve(name)
            if kind_name == "tor-browser" and settings.tbb_path is None:
                needs = "fetchers.tor-browser.tbb_path" if name == kind_name else f"fetchers.variants.{name}.tbb_path"
                _locate(root, where).fail(f"the {name} fetcher needs {needs} (the unpacked Tor Browser directory)")


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
    """The configuration in effect as the YAML an operator writes, secrets redacted: what ``/config``
    shows.  It loads back; each ``<secret>`` then stands where a secret was."""
    data = render(config)
    redactor = Redactor.of(config)
    for target in data["targets"]:
        target.update({key: redactor.text(target[key]) for key in ("url", "onion") if key in target})
    data["onionoo"]["url"] = redactor.text(data["onionoo"]["url"])
    return yaml.safe_dump(data, sort_keys=False)
