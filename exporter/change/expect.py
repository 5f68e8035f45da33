"""Is a normal page the page the operator expects (``targets[].expect``)?

The expectation names the real page's status and/or title.  A probe whose
normal page differs (a login wall, a "lite" page, a 404 for Tor users) is
counted as a page change of its own kind, ``unexpected``, on either route: on
``direct`` it says the site changed for everyone (or the expectation is stale).
The title is read as the detector reads it (the first ``<title>``, unescaped,
whitespace collapsed, by the linear page reader), and compared the same way.
"""

from __future__ import annotations

from exporter.config import Expectation
from exporter.detect.page import Page
from exporter.markup import text_of
from exporter.values import Response

UNEXPECTED = "unexpected"  # the kind of page change it is counted as


def unexpected(expectation: Expectation | None, page: Response) -> str | None:
    """What differs from ``expectation`` on ``page``, in one line, or None when it holds."""
    if expectation is None:
        return None
    differences = []
    if expectation.status is not None and page.status != expectation.status:
        differences.append(f"status {page.status}, expected {expectation.status}")
    if expectation.title is not None:
        title = Page(page).title
        if title != text_of(expectation.title).strip():
            differences.append(f"title {title!r}, expected {expectation.title!r}")
    return "; ".join(differences) or None
