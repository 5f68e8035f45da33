"""The detector's answer for one page."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("ok", "widget", "challenge", "block", "error")

GATE_PROVIDERS = (
    "cloudflare", "datadome", "perimeterx", "akamai", "imperva", "aws-waf", "sucuri",
    "kasada", "f5", "ddos-guard", "qrator", "vercel", "anubis", "fastly", "mcaptcha", "generic",
)
WIDGET_PROVIDERS = ("recaptcha", "hcaptcha", "turnstile", "geetest", "arkose", "friendlycaptcha", "mcaptcha")


@dataclass(frozen=True)
class Verdict:
    """``kind`` is one of KINDS; ``provider`` names the gate (challenge, block,
    error) or the CAPTCHA vendor (widget) and is "" for ok; ``markers`` are the
    signals that fired, so an operator can see why."""

    kind: str
    provider: str = ""
    markers: tuple[str, ...] = ()
