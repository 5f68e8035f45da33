"""The difficulty a proof-of-work gate asks for, read from its page.

Anubis puts its challenge in the page as JSON, ``<script id="anubis_challenge"
type="application/json">{"rules": {"difficulty": N, ...}, "challenge": ...}``
(``web/index.templ``): the browser must find a SHA-256 hash with N leading hex
zeros, 16^N hashes on average.  mCaptcha's widget works from a PoW config
``{"string", "salt", "difficulty_factor": N}`` (``/api/v1/pow/config``), N
hashes on average; a page that carries that config inline shows N (a widget
that fetches it from its own iframe does not, and then the difficulty is
unknown).  The unit differs by vendor, so the value is only compared within
one provider.

Pages are hostile: each reading is a ``str.find`` of a fixed marker and a
regex without nested repetition over a bounded slice, linear in the page.
"""

from __future__ import annotations

import re

from exporter.values import Response

SCAN_CHARS = 1_000_000  # as the detector: gate data sits near the top
ANUBIS_MARKER = 'id="anubis_challenge"'
ANUBIS_SLICE = 4096  # the challenge JSON is a few hundred bytes
ANUBIS_DIFFICULTY = re.compile(r'"difficulty"\s{0,16}:\s{0,16}(\d{1,3})\b')
MCAPTCHA_FACTOR = re.compile(r'"difficulty_factor"\s{0,16}:\s{0,16}(\d{1,12})\b')
PROVIDERS = ("anubis", "mcaptcha")


def difficulty(provider: str, response: Response) -> int | None:
    """The difficulty ``response`` (a ``provider`` gate page) asks for, or None if it does not say."""
    body = response.body[:SCAN_CHARS]
    if provider == "anubis":
        start = body.find(ANUBIS_MARKER)
        if start < 0:
            return None
        script = body[start:start + ANUBIS_SLICE]
        end = script.find("</script")
        found = ANUBIS_DIFFICULTY.search(script, 0, end if end >= 0 else len(script))
    elif provider == "mcaptcha":
        found = MCAPTCHA_FACTOR.search(body)
    else:
        return None
    return int(found[1]) if found else None
