"""What the vendor hosts answer: the challenge platform and the CAPTCHA widget that pages load.

On the real web a gate's solver and a widget come from the vendor's own hosts
(``challenges.cloudflare.com``, ``js.hcaptcha.com``), so a browser probe opens
streams to hosts that are not the site's.  Here:

- ``challenges.cloudflare.test`` serves the managed challenge's solver script
  (which the challenge page names), the challenge frame, and the frame's flow
  endpoint.  The flow checks the page's challenge token against the exit this
  request came through, waits out the challenge's delay (or a click, for an
  interactive one), and returns a solved token bound to that site and exit,
  which the page redeems at the site (``behaviours._cloudflare_redeem``).
- ``js.hcaptcha.test`` serves the widget loader ``/1/api.js`` and its
  checkbox frame.

Under any behaviour but ``ok`` a vendor host answers as that behaviour says
(slow, hanging, reset, failing, or blocked), so the policy can break a vendor
for one exit as it breaks a site.
"""

from __future__ import annotations

import time

from testbed.behaviours import (
    ANSWERS,
    CF_FLOW,
    CF_FRAME,
    CF_ORCHESTRATE,
    CF_REDEEM,
    CHALLENGE_TTL,
    HTML,
    Reply,
    Visit,
    json_body,
    json_reply,
)
from testbed.pages import host_names, render
from testbed.passes import Passes
from testbed.policy import Behaviour

JS = "application/javascript"
HCAPTCHA_API = "/1/api.js"
HCAPTCHA_FRAME = "/captcha/v1/static/hcaptcha.html"
# The vendor's own pages run inline scripts and call their own host, nothing else.
FRAME_CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors *"


def answer(visit: Visit, behaviour: Behaviour, passes: Passes) -> Reply:
    """The vendor host's reply under ``behaviour``."""
    if behaviour.name != "ok":
        return ANSWERS[behaviour.name](visit, behaviour, passes)
    if visit.site == "challenges":
        return _challenge_platform(visit, passes)
    if visit.site == "hcaptcha":
        return _hcaptcha(visit)
    return _not_found()


def _challenge_platform(visit: Visit, passes: Passes) -> Reply:
    if visit.route == CF_ORCHESTRATE:
        js = render("cf_orchestrate.js", origin=visit.origin(visit.host), frame=CF_FRAME, redeem=CF_REDEEM)
        return Reply(200, [("Content-Type", JS), ("Server", "cloudflare")], js.encode())
    if visit.route.startswith(CF_FRAME):
        body = render("cf_frame.html", flow=CF_FLOW)
        return Reply(200, [("Content-Type", HTML), ("Server", "cloudflare"), ("Content-Security-Policy", FRAME_CSP)],
                     body.encode())
    if visit.route.startswith(CF_FLOW) and visit.method == "POST":
        return _flow(visit, passes)
    return _not_found()


def _flow(visit: Visit, passes: Passes) -> Reply:
    """The frame's attempt: wait, ask for a click, or hand out the solved token."""
    request = json_body(visit)
    site = host_names().get(str(request.get("zone", "")).lower())
    claims = passes.check(request.get("cH"), "cf-chl", site or "", visit.exit, CHALLENGE_TTL)
    if claims is None:
        return json_reply(403, {"error": "challenge token invalid, expired, or from another exit"})
    if claims["i"] and request.get("human") is not True:
        return json_reply(403, {"interactive": True})
    wait = claims["t"] + claims["d"] - time.time()
    if wait > 0:
        return json_reply(202, {"retry_ms": int(wait * 1000) + 50})
    return json_reply(200, {"token": passes.issue("cf-solved", site, visit.exit)})


def _hcaptcha(visit: Visit) -> Reply:
    if visit.route == HCAPTCHA_API:
        js = render("hcaptcha_api.js", origin=visit.origin(visit.host))
        return Reply(200, [("Content-Type", JS), ("Access-Control-Allow-Origin", "*")], js.encode())
    if visit.route == HCAPTCHA_FRAME:
        return Reply(200, [("Content-Type", HTML), ("Content-Security-Policy", FRAME_CSP)],
                     render("hcaptcha_frame.html").encode())
    return _not_found()


def _not_found() -> Reply:
    return Reply(404, [("Content-Type", "text/plain")], b"not found\n")
