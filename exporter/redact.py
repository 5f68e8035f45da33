"""Secrets out of everything the exporter shows: /config, its pages, its logs, probe records, evidence.

A config holds secrets in a few places: ``tor.password``; a URL's userinfo
(``https://user:pass@host/``: a target's ``url`` and ``onion``,
``onionoo.url``) and the values of its query parameters named like secrets
(``?token=``, ``?api_key=``, ``&sig=``; the words are
``redact.query_params``); the ``headers`` of ``fetchers.http`` and of its
variants, other than the few that only describe the client (``Accept``,
``User-Agent``…), since ``Authorization``, ``Cookie`` or ``X-Api-Key`` are
credentials; and torrc options that carry credentials
(``Socks5ProxyPassword``, ``HTTPSProxyAuthenticator``, private ``Bridge``
lines).  They travel on: a failed probe's error quotes its URL, a redirect
keeps the query, a page may echo it.

A :class:`Redactor`, built from the config in force, replaces each with
``<secret>``: ``text`` in anything the exporter writes (URL userinfo and
secret-named query values wherever a URL appears, and every configured
secret value), ``page`` in what a site sent (only the configured values:
the site's own URLs are evidence).  The config renderer writes ``<secret>``
for secret headers and torrc options itself (:func:`headers`,
:func:`torrc`).  Both scans run in time linear in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, unquote_plus, urlsplit

if TYPE_CHECKING:
    from exporter.config import Config

MARK = "<secret>"
QUERY_WORDS = ("token", "key", "secret", "password", "auth", "sig")  # redact.query_params' default
# request headers that only describe the client; any other configured header may be a credential
SAFE_HEADERS = frozenset({
    "accept", "accept-charset", "accept-encoding", "accept-language", "cache-control", "dnt", "pragma",
    "sec-fetch-dest", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-user", "sec-gpc", "te",
    "upgrade-insecure-requests", "user-agent", "x-requested-with",
})
# torrc options whose values are credentials or private addresses (tor-manual: CLIENT OPTIONS)
SECRET_TORRC = frozenset({"socks5proxyusername", "socks5proxypassword", "httpproxyauthenticator",
                          "httpsproxyauthenticator", "bridge"})
SECRET_FIELDS = ("password", "cookie", "secret", "token")  # log fields named so are never shown
MIN_SEARCHED = 6  # a shorter secret value is redacted where it is configured, not searched for in text

# ``scheme://userinfo@``; the userinfo ends at the first / ? # @ or space, so each scan is local
_USERINFO = re.compile(r"://[^/?#@\s]*@")
# a query (or fragment, or ;-separated) parameter: delimiter, name, =, value up to the next delimiter
_PARAMETER = re.compile(r"([?&;#])([^=&#?;\s]*)=([^&#;\s\"'<>]*)")


@dataclass(frozen=True)
class Redactor:
    """Replaces secrets with ``<secret>``; ``Redactor()`` knows no configured values, only the shapes."""

    query_words: tuple[str, ...] = QUERY_WORDS
    values: tuple[str, ...] = ()  # configured secrets (and their percent-encodings), longest first

    @classmethod
    def of(cls, config: Config) -> Redactor:
        """The redactor for ``config``: its query words, and every secret value it holds."""
        words = config.redact.query_params
        found = [config.tor.password or ""]
        urls = [config.onionoo.url, *(target.url for target in config.targets),
                *(target.onion for target in config.targets if "://" in target.onion)]  # onion: off, auto or a URL
        for url in urls:
            parts = urlsplit(url)
            found += [unquote(parts.username or ""), unquote(parts.password or "")]
            for name, _, raw in (pair.partition("=") for pair in parts.query.split("&")):
                if _secret_name(name, words):
                    found += [raw, unquote_plus(raw)]
        configured = [config.fetchers.http.headers,
                      *(getattr(variant.settings, "headers", {}) for variant in config.fetchers.variants.values())]
        found += [part for headers in configured for name, value in headers.items() if name.lower() not in SAFE_HEADERS
                  for part in _credentials(value)]
        found += [value for option, values in config.tor.torrc.items() if option.lower() in SECRET_TORRC
                  for value in values]
        searched = {form for value in found if len(value) >= MIN_SEARCHED for form in (value, quote(value, safe=""))}
        return cls(words, tuple(sorted(searched, key=len, reverse=True)))

    def text(self, text: str) -> str:
        """``text`` with URL userinfo, secret-named query values and every configured secret replaced."""
        text = _USERINFO.sub(f"://{MARK}@", text)
        text = _PARAMETER.sub(self._parameter, text)
        return self.page(text)

    def page(self, text: str) -> str:
        """``text`` (what a site sent) with every configured secret replaced."""
        for value in self.values:
            if value in text:
                text = text.replace(value, MARK)
        return text

    def data(self, value: Any) -> Any:
        """Plain data (a probe record) with ``text`` applied to every string in it."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.data(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(item) for item in value]
        return value

    def field(self, name: str, value: Any) -> Any:
        """A log line's field: hidden whole when its name says it is a secret, else ``text``ed."""
        if any(word in name.lower() for word in SECRET_FIELDS):
            return MARK
        return self.text(value) if isinstance(value, str) else value

    def _parameter(self, match: re.Match) -> str:
        delimiter, name, value = match.groups()
        if value and _secret_name(name, self.query_words):
            return f"{delimiter}{name}={MARK}"
        return match.group()


def _secret_name(name: str, words: Iterable[str]) -> bool:
    """A query parameter whose name holds one of ``words`` (``api_key``, ``X-Amz-Signature``)."""
    lowered = unquote(name).lower()
    return any(word in lowered for word in words)


def _credentials(value: str) -> list[str]:
    """A header value, and the parts of it a site may send back alone: the credentials after an
    auth scheme (``Bearer <token>``) and each cookie's value (``a=<value>; b=<value>``)."""
    parts = [value, value.rsplit(" ", 1)[-1]]
    return parts + [piece.partition("=")[2].strip() for piece in value.split(";") if "=" in piece]


def headers(configured: Mapping[str, str]) -> dict[str, str]:
    """Request headers as ``/config`` shows them: values of all but the safe ones redacted."""
    return {name: value if name.lower() in SAFE_HEADERS else MARK for name, value in configured.items()}


def torrc(options: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """torrc options as ``/config`` shows them: values of secret options redacted."""
    return {option: tuple(MARK for _ in values) if option.lower() in SECRET_TORRC else values
            for option, values in options.items()}


BY_SHAPE = Redactor()  # knows no configured secret: URL userinfo and secret-named query values only
