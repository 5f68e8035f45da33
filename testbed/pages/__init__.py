"""The edge's HTML and JavaScript: the sites' real pages and the gate pages we wrote.

Templates are files next to this module with ``{{name}}`` placeholders;
values are HTML-escaped unless wrapped in ``Raw`` (JSON inside a script).
"""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path

# Site name → its real page; a site is served as ``<name>.test``, except that ``portal``'s apex
# ``portal.test`` redirects to ``www.portal.test``, as many real sites do.
SITES = ("news", "shop", "forum", "login", "static", "portal")
TLD = "test"
# Third-party hosts that pages load from, named like the real ones: the challenge platform (its
# solver script and frame) and a CAPTCHA widget.  The policy names them like sites.
VENDORS = {"challenges": "challenges.cloudflare.test", "hcaptcha": "js.hcaptcha.test"}
# More hosts of a site, beyond the one a visit starts at.
MORE_HOSTS = {"www.portal.test": "portal"}

_HERE = Path(__file__).parent
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class Raw(str):
    """A template value inserted as is."""


@cache
def template(name: str) -> str:
    return (_HERE / name).read_text()


def render(name: str, **values) -> str:
    """Fill template ``name``; a placeholder without a value is an error."""

    def fill(match: re.Match) -> str:
        value = values[match.group(1)]
        return value if isinstance(value, Raw) else html.escape(str(value))

    return _PLACEHOLDER.sub(fill, template(name))


def site_page(site: str) -> str:
    """The site's real page."""
    return template(f"{site}.html")


def hostname(name: str) -> str:
    """The host a visit to site (or vendor) ``name`` starts at."""
    return VENDORS.get(name) or f"{name}.{TLD}"


def host_names() -> dict[str, str]:
    """Every built-in host name → the site or vendor it serves."""
    names = {hostname(site): site for site in SITES}
    names.update(MORE_HOSTS)
    names.update({host: vendor for vendor, host in VENDORS.items()})
    return names
