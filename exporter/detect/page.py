"""What the detector reads from one response, computed once per page."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import cached_property

from exporter.detect.literals import fold
from exporter.values import Response

# Gate markers sit in the head or near the top; a page can be megabytes.
BODY_SCAN_CHARS = 1_000_000
TITLE_SCAN_CHARS = 64 * 1024
TITLE_RE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
SPACE_RE = re.compile(r"\s+")


@dataclass
class Page:
    """A response reduced to the fields signatures test."""

    response: Response

    @property
    def status(self) -> int:
        return self.response.status

    @cached_property
    def headers(self) -> dict[str, list[str]]:
        """Header values by lowercased name."""
        headers: dict[str, list[str]] = {}
        for name, value in self.response.headers:
            headers.setdefault(str(name).strip().lower(), []).append(str(value))
        return headers

    @cached_property
    def cookie_names(self) -> list[str]:
        return [value.split("=", 1)[0].strip() for value in self.headers.get("set-cookie", ()) if "=" in value]

    @cached_property
    def body(self) -> str:
        return self.response.body[:BODY_SCAN_CHARS]

    @cached_property
    def folded_body(self) -> str:
        """The scanned body as literal prefilters compare it."""
        return fold(self.body)

    @cached_property
    def title(self) -> str:
        """The first <title>, unescaped with whitespace collapsed ("" if none)."""
        match = TITLE_RE.search(self.response.body, 0, TITLE_SCAN_CHARS)
        if not match:
            return ""
        return SPACE_RE.sub(" ", html.unescape(match[1])).strip()
