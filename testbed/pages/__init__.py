"""The edge's HTML and JavaScript: the sites' real pages and the gate pages we wrote.

Templates are files next to this module with ``{{name}}`` placeholders;
values are HTML-escaped unless wrapped in ``Raw`` (JSON inside a script).
"""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path

# Site name → its real page; every site is served as ``<name>.test``.
SITES = ("news", "shop", "forum", "login", "static")
TLD = "test"

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


def hostname(site: str) -> str:
    return f"{site}.{TLD}"
