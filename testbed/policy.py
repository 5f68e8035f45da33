"""The edge's policy: for each site and exit, which behaviour it answers with.

YAML shape::

    sites:
      news: {default: ok, exits: {exit2: {behaviour: challenge, delay: 2}, exit3: block}}
      shop: {default: nonce, exits: {exit1: datadome}}

A behaviour is a name or a mapping ``{behaviour: NAME, PARAM: VALUE, ...}``.
Sites not listed answer ``ok``; exits not listed get the site's default,
except ``direct`` (a fetch not through tor), which gets the real page unless
listed.  Vendor hosts (``challenges``, ``hcaptcha``) are named like sites and
take the behaviours that make sense for a third-party host (``VENDOR_BEHAVIOURS``).
Errors name the key path, e.g. ``sites.news.exits.exit2.dealy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed.pages import SITES, VENDORS

DIRECT = "direct"

# Every behaviour and its parameters with their defaults (ints stay ints).
BEHAVIOURS: dict[str, dict[str, float]] = {
    # the real page, plain or with per-request tokens
    "ok": {},
    "nonce": {},
    # Cloudflare: self-clearing managed challenge, click-only challenge, 1020 block
    "challenge": {"delay": 2.0},
    "interactive": {},
    "block": {},
    # other vendors' gates
    "datadome": {},
    "perimeterx": {},
    "anubis": {"difficulty": 4},
    # the real page, modified, or headers announcing an onion service
    "injected": {},
    "rewritten": {},
    "different": {},
    "widget": {},  # the real page with a CAPTCHA widget from the widget host
    "alt-svc": {},
    "onion-location": {},
    # failures
    "slow": {"seconds": 5.0},
    "hang": {},
    "reset": {},
    "huge": {"size": 50_000_000},
    "hostile": {"size": 3_000_000},  # a page of unclosed tags, hostile to naive parsers
    "error": {"code": 522},
}

# What a vendor host can be made to do: serve, or fail as any host can.
VENDOR_BEHAVIOURS = ("ok", "slow", "hang", "reset", "error", "block")

# Inclusive bounds of each parameter.
PARAMETER_RANGES = {
    "delay": (0.0, 600.0),
    "difficulty": (1, 6),
    "seconds": (0.0, 3600.0),
    "size": (1, 2**34),
    "code": (520, 527),
}


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class Behaviour:
    """A behaviour name with every parameter filled in."""

    name: str
    params: Mapping[str, float] = field(default_factory=dict)

    def __getitem__(self, param: str) -> float:
        return self.params[param]

    def to_dict(self) -> str | dict:
        if not self.params:
            return self.name
        return {"behaviour": self.name, **self.params}


OK = Behaviour("ok")


@dataclass(frozen=True)
class SitePolicy:
    default: Behaviour = OK
    exits: Mapping[str, Behaviour] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "default": self.default.to_dict(),
            "exits": {name: b.to_dict() for name, b in sorted(self.exits.items())},
        }


@dataclass(frozen=True)
class Policy:
    sites: Mapping[str, SitePolicy] = field(default_factory=dict)

    def behaviour(self, site: str, exit_name: str | None) -> Behaviour:
        """What ``site`` answers to a request that came through ``exit_name``."""
        site_policy = self.sites.get(site, SitePolicy())
        if exit_name in site_policy.exits:
            return site_policy.exits[exit_name]
        if exit_name == DIRECT:
            return OK
        return site_policy.default

    def to_dict(self) -> dict:
        return {"sites": {name: sp.to_dict() for name, sp in sorted(self.sites.items())}}


def load_policy(source: str | Path | Mapping, sites: tuple[str, ...] = SITES,
                limits: Mapping[str, tuple[str, ...]] | None = None) -> Policy:
    """A policy from a YAML/JSON file path, YAML/JSON text, or an already parsed mapping.

    ``sites`` are the site names it may use (replayed captures add theirs), vendors always;
    ``limits`` names the only behaviours some of them can answer (vendors: ``VENDOR_BEHAVIOURS``).
    """
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and Path(source).is_file()):
        source = Path(source).read_text()
    if isinstance(source, str):
        try:
            source = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise PolicyError(f"policy is not valid YAML: {exc}") from None
    limits = {**{vendor: VENDOR_BEHAVIOURS for vendor in VENDORS}, **(limits or {})}
    return _parse_policy(source, (*sites, *(name for name in limits if name not in sites)), limits)


def _parse_policy(data, known: tuple[str, ...], limits: Mapping[str, tuple[str, ...]]) -> Policy:
    if data is None:
        return Policy()
    if not isinstance(data, Mapping):
        raise PolicyError("policy: expected a mapping with key 'sites'")
    _reject_unknown(data, {"sites"}, "policy")
    sites = data.get("sites") or {}
    if not isinstance(sites, Mapping):
        raise PolicyError("sites: expected a mapping of site name to site policy")
    parsed = {}
    for site, spec in sites.items():
        if site not in known:
            shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            raise PolicyError(f"sites.{site}: unknown site (known: {shown})")
        parsed[site] = _parse_site(spec, f"sites.{site}")
        if site in limits:
            _only(limits[site], parsed[site], f"sites.{site}", "a vendor host" if site in VENDORS else "this site")
    return Policy(parsed)


def _only(allowed: tuple[str, ...], site: SitePolicy, path: str, what: str) -> None:
    for where, behaviour in (("default", site.default), *((f"exits.{e}", b) for e, b in site.exits.items())):
        if behaviour.name not in allowed:
            raise PolicyError(f"{path}.{where}: {what} cannot answer {behaviour.name!r} "
                              f"(it can: {', '.join(allowed)})")


def _parse_site(spec, path: str) -> SitePolicy:
    if isinstance(spec, str):
        return SitePolicy(default=parse_behaviour(spec, f"{path}.default"))
    if spec is None:
        return SitePolicy()
    if not isinstance(spec, Mapping):
        raise PolicyError(f"{path}: expected a behaviour or a mapping with keys default, exits")
    _reject_unknown(spec, {"default", "exits"}, path)
    default = parse_behaviour(spec.get("default", "ok"), f"{path}.default")
    exits = spec.get("exits") or {}
    if not isinstance(exits, Mapping):
        raise PolicyError(f"{path}.exits: expected a mapping of exit nickname to behaviour")
    return SitePolicy(
        default=default,
        exits={str(name): parse_behaviour(b, f"{path}.exits.{name}") for name, b in exits.items()},
    )


def parse_behaviour(spec, path: str) -> Behaviour:
    """``NAME`` or ``{behaviour: NAME, PARAM: VALUE}`` → Behaviour with defaults filled in."""
    if isinstance(spec, str):
        name, given = spec, {}
    elif isinstance(spec, Mapping):
        if "behaviour" not in spec:
            raise PolicyError(f"{path}: a mapping needs the key 'behaviour'")
        given = dict(spec)
        name = given.pop("behaviour")
    else:
        raise PolicyError(f"{path}: expected a behaviour name or a mapping, got {spec!r}")
    if name not in BEHAVIOURS:
        raise PolicyError(f"{path}: unknown behaviour {name!r} (known: {', '.join(BEHAVIOURS)})")
    defaults = BEHAVIOURS[name]
    params = dict(defaults)
    for key, value in given.items():
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            raise PolicyError(f"{path}.{key}: unknown parameter {key!r} for behaviour {name} (known: {known})")
        params[key] = _parse_number(value, key, type(defaults[key]), f"{path}.{key}")
    return Behaviour(name, params)


def _parse_number(value, key: str, kind: type, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"{path}: expected a number, got {value!r}")
    if kind is int and value != int(value):
        raise PolicyError(f"{path}: expected a whole number, got {value!r}")
    low, high = PARAMETER_RANGES[key]
    if not low <= value <= high:
        raise PolicyError(f"{path}: {value!r} is outside {low}..{high}")
    return kind(value)


def _reject_unknown(data: Mapping, known: set[str], path: str) -> None:
    for key in data:
        if key not in known:
            raise PolicyError(f"{path}.{key}: unknown key (known: {', '.join(sorted(known))})")


# The default spread, most telling first: each family early, so even two
# exits (five slots) show a Cloudflare gate, another vendor, a modified page
# and a failure.  Slow failures (huge, hang) and a hostile page come last.
_SPREAD = (
    Behaviour("challenge", {"delay": 2.0}),
    Behaviour("block"),
    Behaviour("datadome"),
    Behaviour("injected"),
    Behaviour("error", {"code": 522}),
    Behaviour("anubis", {"difficulty": 4}),
    Behaviour("interactive"),
    Behaviour("perimeterx"),
    Behaviour("alt-svc"),
    Behaviour("slow", {"seconds": 3.0}),
    Behaviour("rewritten"),
    Behaviour("onion-location"),
    Behaviour("different"),
    Behaviour("reset"),
    Behaviour("huge", {"size": 8_000_000}),
    Behaviour("hang"),
    Behaviour("hostile", {"size": 3_000_000}),
)


# The portal (apex → www, and a sign-in chain of redirects) on the first gated exits.
_PORTAL = (Behaviour("challenge", {"delay": 2.0}), Behaviour("widget"))


def default_policy(exit_nicknames: list[str]) -> Policy:
    """A spread of behaviours over sites × exits.

    The first exit is left to the sites' defaults, which are real pages
    (so tests can assert that challenges appear only where the policy puts
    them); the other exits take the
    spread in order, site by site, the main site (news) first.  ``shop``
    always carries per-request tokens (``nonce``), which are no modification.
    The portal, reached through redirects, shows a challenge and a widget.
    """
    gated = list(exit_nicknames[1:])
    spread = [site for site in SITES if site != "portal"]
    slots = [(site, exit_name) for site in spread for exit_name in gated]
    exits: dict[str, dict[str, Behaviour]] = {site: {} for site in SITES}
    for (site, exit_name), behaviour in zip(slots, _SPREAD):
        exits[site][exit_name] = behaviour
    exits["portal"] = dict(zip(gated, _PORTAL))
    defaults = {site: Behaviour("nonce") if site == "shop" else OK for site in SITES}
    return Policy({site: SitePolicy(defaults[site], exits[site]) for site in SITES})
