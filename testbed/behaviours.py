"""What the edge answers for each behaviour: a Reply built from a Visit.

The gate pages are our own, written from the markers each vendor is known
by (title, headers, cookies, script names), not copies of captured pages.
Two gates clear by themselves in a real browser, as they do on the web:
``challenge`` (Cloudflare managed challenge: the solver script and its frame
come from the vendor host, ``vendors.py``; the frame earns a token there and
hands it to the page, which redeems it at the site for ``cf_clearance`` and
reloads) and ``anubis`` (SHA-256 proof of work checked by ``pass-challenge``).
Every pass is bound to the exit it was earned through, the vendor's token
too, so a page whose requests leave through different exits never clears.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from testbed.pages import VENDORS, Raw, hostname, render, site_page, template
from testbed.passes import Passes
from testbed.policy import Behaviour

HTML = "text/html; charset=utf-8"
# Keeps browsers from loading anything but the site and the vendor hosts a page names (the
# DataDome and PerimeterX pages name real hosts, which the test bed does not serve).
CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"

CHALLENGE_TTL = 30 * 60  # how long a challenge page's token can be redeemed
CLEARANCE_TTL = 30 * 60  # cf_clearance lifetime (Cloudflare's default Challenge Passage)
ANUBIS_TTL = 7 * 24 * 3600

CF_PLATFORM = "/cdn-cgi/challenge-platform/h/b"
CF_ORCHESTRATE = f"{CF_PLATFORM}/orchestrate/chl_page/v1"
CF_FLOW = f"{CF_PLATFORM}/flow/ov1/"  # on the vendor host: the frame earns its token here
CF_FRAME = f"{CF_PLATFORM}/turnstile/if/ov2/av0/rcv0/0/"  # the challenge frame, on the vendor host
CF_REDEEM = f"{CF_PLATFORM}/rc/"  # on the site: the page trades the frame's token for cf_clearance
ANUBIS_PREFIX = "/.within.website/x/cmd/anubis"
ANUBIS_SCRIPT = f"{ANUBIS_PREFIX}/static/js/main.mjs"
ANUBIS_PASS = f"{ANUBIS_PREFIX}/api/pass-challenge"
ANUBIS_COOKIE = "techaro.lol-anubis-auth"

# Sites whose real pages come through Cloudflare (server/cf-ray on a normal
# page are not a challenge; a detector must not say otherwise).
CLOUDFLARE_FRONTED = {"news", "login"}


@dataclass(frozen=True)
class Visit:
    """One request as the behaviours see it."""

    site: str
    exit: str | None
    scheme: str
    method: str
    path: str  # with the query string
    cookies: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    authority: str = ""  # the host asked for (Host, :authority), without the port
    port: int | None = None  # the port in Host, if any

    @property
    def host(self) -> str:
        return self.authority or hostname(self.site)

    def origin(self, host: str) -> str:
        """``host`` on the port and scheme this request came to: the edge serves every host on both."""
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port else "")

    def vendor(self, name: str) -> str:
        """The origin of vendor ``name`` as this page must name it."""
        return self.origin(VENDORS[name])

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}


@dataclass
class Reply:
    """``status`` None with ``action`` "hang" or "reset": no HTTP answer at all.

    ``chunks``/``length`` stream a body too large to build; ``delay`` waits
    before answering.
    """

    status: int | None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunks: Iterator[bytes] | None = None
    length: int = 0
    action: str | None = None
    delay: float = 0.0


Answer = Callable[[Visit, Behaviour, Passes], Reply]


def answer(visit: Visit, behaviour: Behaviour, passes: Passes) -> Reply:
    """The reply for ``visit`` under ``behaviour``; gate endpoints and redirects answer under any behaviour."""
    if visit.route.startswith("/cdn-cgi/"):
        return _cloudflare_endpoint(visit, passes)
    if visit.route.startswith(f"{ANUBIS_PREFIX}/"):
        return _anubis_endpoint(visit, passes)
    hop = redirect(visit)
    if hop is not None:
        return hop
    return ANSWERS[behaviour.name](visit, behaviour, passes)


# -- redirects across hosts ------------------------------------------------------

PORTAL_APEX, PORTAL_WWW = "portal.test", "www.portal.test"
# A sign-in that bounces between the apex and www before landing: three redirects, two hosts.
PORTAL_SIGN_IN = {
    (PORTAL_APEX, "/go"): (302, PORTAL_WWW, "/sso/authorize"),
    (PORTAL_WWW, "/sso/authorize"): (302, PORTAL_APEX, "/sso/callback"),
    (PORTAL_APEX, "/sso/callback"): (302, PORTAL_WWW, "/account"),
}


def redirect(visit: Visit) -> Reply | None:
    """The portal's redirects: its sign-in chain, and the apex sending everything else to www (301)."""
    hop = PORTAL_SIGN_IN.get((visit.host, visit.route))
    if hop is None and visit.host == PORTAL_APEX:
        hop = (301, PORTAL_WWW, visit.path)
    if hop is None:
        return None
    status, host, path = hop
    headers = [("Location", visit.origin(host) + path), ("Content-Type", "text/plain"), ("Server", "nginx")]
    return Reply(status, headers, f"moved to {visit.origin(host)}{path}\n".encode())


# -- real pages and modified pages ----------------------------------------


def real_page(visit: Visit, html: str | None = None, status: int = 200, extra=(), csp: str = CSP) -> Reply:
    """The site's page with the headers its front (Cloudflare or nginx) adds."""
    if visit.site in CLOUDFLARE_FRONTED:
        front = [("Server", "cloudflare"), ("CF-RAY", _ray()), ("CF-Cache-Status", "DYNAMIC")]
    else:
        front = [("Server", "nginx")]
    headers = [("Content-Type", HTML), *front, ("Content-Security-Policy", csp), *extra]
    return Reply(status, headers, (html or site_page(visit.site)).encode())


def csp_with(*origins: str) -> str:
    """CSP that also lets the page load scripts and frames from ``origins`` (vendor hosts)."""
    listed = " ".join(origins)
    return CSP.replace("script-src 'self'", f"script-src 'self' {listed}", 1) + f"; frame-src {listed}"


def _ok(visit, behaviour, passes):
    return real_page(visit)


def _nonce(visit, behaviour, passes):
    """Per-request tokens that change nothing a reader sees as content."""
    token = secrets.token_urlsafe(24)
    page = site_page(visit.site)
    page = page.replace("<head>", f'<head>\n<meta name="csrf-token" content="{token}">', 1)
    page = re.sub(r"(<form[^>]*>)", rf'\1\n    <input type="hidden" name="csrf_token" value="{token}">', page)
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    page = page.replace("</body>", f'<!-- rendered {stamp} request {secrets.token_hex(8)} -->\n</body>', 1)
    return real_page(visit, page, extra=[("Set-Cookie", f"session={secrets.token_hex(16)}; Path=/; HttpOnly")])


def _injected(visit, behaviour, passes):
    """The real page plus a script the site never sent (what a tampering exit adds)."""
    script = render("injected.html")
    return real_page(visit, site_page(visit.site).replace("</body>", f"{script}</body>", 1))


def _rewritten(visit, behaviour, passes):
    """The real page with its headline and first paragraph replaced."""
    page = re.sub(
        r"(<h1[^>]*>).*?(</h1>)", r"\1Important: verify your account to continue\2", site_page(visit.site), count=1
    )
    page = re.sub(
        r"(<p>).*?(</p>)",
        r"\1Our payment address has changed. Send all transfers to the new wallet listed on this page.\2",
        page,
        count=1,
        flags=re.DOTALL,
    )
    return real_page(visit, page)


def _widget(visit, behaviour, passes):
    """The real page with an hCaptcha widget in its first form (or at its end), loaded from the widget host."""
    origin = visit.vendor("hcaptcha")
    widget = render("hcaptcha_widget.html", origin=origin, sitekey=_uuid())
    page = site_page(visit.site)
    if "</form>" in page:
        page = page.replace("</form>", f"{widget}\n  </form>", 1)
    else:
        page = page.replace("</body>", f"{widget}\n</body>", 1)
    return real_page(visit, page, csp=csp_with(origin))


def _different(visit, behaviour, passes):
    return real_page(visit, render("lite.html", host=visit.host))


def _alt_svc(visit, behaviour, passes):
    """Alt-Svc (RFC 7838) naming an onion service: Tor Browser uses it silently."""
    return real_page(visit, extra=[("Alt-Svc", f'h2="{onion_address(visit.site)}:443"; ma=86400')])


def _onion_location(visit, behaviour, passes):
    """Onion-Location: Tor Browser offers the onion service in the URL bar."""
    return real_page(visit, extra=[("Onion-Location", f"http://{onion_address(visit.site)}{visit.route}")])


@cache
def onion_address(site: str) -> str:
    """A well-formed v3 onion address (rend-spec-v3 §6): base32(pubkey | checksum | version)."""
    seed = hashlib.sha256(f"captcha-exporter test bed {site}".encode()).digest()
    pubkey = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    version = b"\x03"
    checksum = hashlib.sha3_256(b".onion checksum" + pubkey + version).digest()[:2]
    return base64.b32encode(pubkey + checksum + version).decode().lower() + ".onion"


# -- failures ---------------------------------------------------------------


def _slow(visit, behaviour, passes):
    reply = real_page(visit)
    reply.delay = behaviour["seconds"]
    return reply


def _hang(visit, behaviour, passes):
    return Reply(None, action="hang")


def _reset(visit, behaviour, passes):
    return Reply(None, action="reset")


def _huge(visit, behaviour, passes):
    """A page of ``size`` bytes, streamed (never held in memory)."""
    size = behaviour["size"]
    head = f"<!doctype html><html><head><title>{visit.host}</title></head><body><pre>\n".encode()
    tail = b"</pre></body></html>\n"
    return Reply(
        200,
        [("Content-Type", HTML), ("Server", "nginx")],
        chunks=_exactly(size, head, tail),
        length=size,
    )


def _hostile(visit, behaviour, passes):
    """The site's page followed by ``size`` bytes of tags that never close ("<a <a <a ..."):
    a tokenizer that looks for each tag's end from every "<" takes quadratic time on it."""
    page = site_page(visit.site)
    unit = "<a "
    return real_page(visit, page.replace("</body>", unit * (behaviour["size"] // len(unit)), 1))


def _exactly(size: int, head: bytes, tail: bytes) -> Iterator[bytes]:
    if size <= len(head) + len(tail):
        yield (head + tail)[:size]
        return
    line = b"all work and no play makes a very large page " * 16 + b"\n"
    block = line * (65536 // len(line))
    filler = size - len(head) - len(tail)
    yield head
    while filler > 0:
        chunk = block[:filler]
        filler -= len(chunk)
        yield chunk
    yield tail


def _error(visit, behaviour, passes):
    """Cloudflare 52x: Cloudflare answered, the origin did not."""
    code = behaviour["code"]
    title = CLOUDFLARE_ORIGIN_ERRORS[code]
    ray = _ray()
    body = render("cf_error.html", host=visit.host, code=code, title=title, ray=ray.split("-")[0], when=_utc_now())
    return Reply(code, _cloudflare_headers(ray), body.encode())


CLOUDFLARE_ORIGIN_ERRORS = {
    520: "Web server is returning an unknown error",
    521: "Web server is down",
    522: "Connection timed out",
    523: "Origin is unreachable",
    524: "A timeout occurred",
    525: "SSL handshake failed",
    526: "Invalid SSL certificate",
    527: "Railgun Listener to origin error",
}


# -- Cloudflare gates ---------------------------------------------------------


def _challenge(visit, behaviour, passes):
    return _cloudflare_challenge(visit, behaviour, passes, interactive=False)


def _interactive(visit, behaviour, passes):
    return _cloudflare_challenge(visit, behaviour, passes, interactive=True)


def _cloudflare_challenge(visit: Visit, behaviour: Behaviour, passes: Passes, interactive: bool) -> Reply:
    """Managed challenge: 403 + ``cf-mitigated: challenge`` until a valid ``cf_clearance`` comes back."""
    if passes.check(visit.cookies.get("cf_clearance"), "clearance", visit.site, visit.exit, CLEARANCE_TTL):
        return real_page(visit)
    ray = _ray()
    delay = 0.0 if interactive else behaviour["delay"]
    token = passes.issue("cf-chl", visit.site, visit.exit, d=delay, i=interactive)
    options = {
        "cvId": "3",
        "cZone": visit.host,
        "cType": "interactive" if interactive else "managed",
        "cRay": ray.split("-")[0],
        "cH": token,
        "cUPMDTk": f"{visit.route}?__cf_chl_tk={secrets.token_urlsafe(32)}",
        "cFPWv": "b",
        "cITimeS": str(int(time.time())),
        "cTplV": 5,
        "cTplB": "cf",
        "fa": f"{visit.route}?__cf_chl_f_tk={secrets.token_urlsafe(32)}",
        "md": secrets.token_urlsafe(48),
        "mdrd": secrets.token_urlsafe(48),
    }
    platform = visit.vendor("challenges")
    body = render(
        "cf_challenge.html",
        host=visit.host,
        options=Raw(_script_json(options)),
        script=f"{platform}{CF_ORCHESTRATE}?ray={options['cRay']}",
        ray=options["cRay"],
    )
    headers = [
        *_cloudflare_headers(ray, csp_with(platform)),
        ("cf-mitigated", "challenge"),
        ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate"),
        ("Set-Cookie", f"__cf_bm={secrets.token_urlsafe(32)}; path=/; max-age=1800; HttpOnly"),
    ]
    return Reply(403, headers, body.encode())


def _block(visit, behaviour, passes):
    """Cloudflare 1020 (a firewall rule): final, with no challenge script."""
    ray = _ray()
    body = render("cf_block.html", host=visit.host, ray=ray.split("-")[0])
    return Reply(403, _cloudflare_headers(ray), body.encode())


def _cloudflare_endpoint(visit: Visit, passes: Passes) -> Reply:
    """The site's side of the challenge platform: redeeming a solved token for ``cf_clearance``."""
    if visit.route.startswith(CF_REDEEM) and visit.method == "POST":
        return _cloudflare_redeem(visit, passes)
    if visit.route == "/cdn-cgi/styles/cf.errors.css":
        return Reply(200, [("Content-Type", "text/css"), ("Server", "cloudflare")], template("cf.errors.css").encode())
    return Reply(404, _cloudflare_headers(_ray()), b"not found\n")


def _cloudflare_redeem(visit: Visit, passes: Passes) -> Reply:
    """The token the vendor's frame earned, for this site through this exit → ``cf_clearance``."""
    if passes.check(json_body(visit).get("token"), "cf-solved", visit.site, visit.exit, CHALLENGE_TTL) is None:
        return json_reply(403, {"error": "token invalid, expired, for another site or from another exit"})
    clearance = passes.issue("clearance", visit.site, visit.exit)
    reply = json_reply(200, {"cleared": True})
    reply.headers.append(("Set-Cookie", f"cf_clearance={clearance}; {_cookie_attributes(visit, CLEARANCE_TTL)}"))
    return reply


def _cloudflare_headers(ray: str, csp: str = CSP) -> list[tuple[str, str]]:
    return [
        ("Content-Type", HTML),
        ("Server", "cloudflare"),
        ("CF-RAY", ray),
        ("Content-Security-Policy", csp),
        ("X-Frame-Options", "SAMEORIGIN"),
        ("Referrer-Policy", "same-origin"),
    ]


def _ray() -> str:
    return f"{secrets.token_hex(8)}-AMS"


# -- other vendors' gates -------------------------------------------------------


def _datadome(visit, behaviour, passes):
    """DataDome captcha (``t=fe``: solvable by a human; nothing solves it here)."""
    cid = secrets.token_urlsafe(48)
    dd = {
        "rt": "c",
        "cid": cid,
        "hsh": secrets.token_hex(15).upper(),
        "t": "fe",
        "s": 48219,
        "e": secrets.token_hex(32),
        "host": "geo.captcha-delivery.com",
        "cookie": secrets.token_urlsafe(64),
    }
    frame = (
        f"https://geo.captcha-delivery.com/captcha/?initialCid={cid}&hash={dd['hsh']}"
        f"&cid={dd['cookie']}&t=fe&referer=http%3A%2F%2F{visit.host}%2F&s=48219&e={dd['e']}"
    )
    body = render("datadome.html", host=visit.host, dd=Raw(_script_json(dd)), frame=frame)
    headers = [
        ("Content-Type", HTML),
        ("Server", "nginx"),
        ("X-DataDome", "protected"),
        ("X-DataDome-CID", cid),
        ("Content-Security-Policy", CSP),
        ("Cache-Control", "max-age=0, private, no-cache, no-store, must-revalidate"),
        ("Set-Cookie", f"datadome={dd['cookie']}; {_cookie_attributes(visit, 31536000)}"),
    ]
    return Reply(403, headers, body.encode())


def _perimeterx(visit, behaviour, passes):
    """HUMAN (PerimeterX) block page with its press-and-hold captcha."""
    app_id = "PXq7Xk2Pn1"
    uuid = _uuid()
    body = render(
        "perimeterx.html",
        app_id=app_id,
        first_party=app_id[2:],
        uuid=uuid,
        vid=_uuid(),
        host=visit.host,
    )
    headers = [
        ("Content-Type", HTML),
        ("Server", "nginx"),
        ("Content-Security-Policy", CSP),
        ("Cache-Control", "no-cache, no-store"),
        ("Set-Cookie", f"_pxhd={secrets.token_urlsafe(40)}:{_uuid()}; {_cookie_attributes(visit, 31536000)}"),
    ]
    return Reply(403, headers, body.encode())


def _uuid() -> str:
    h = secrets.token_hex(16)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _anubis(visit, behaviour, passes):
    """Anubis: 200 + a SHA-256 proof of work; ``pass-challenge`` checks it and sets the cookie."""
    if passes.check(visit.cookies.get(ANUBIS_COOKIE), "anubis-auth", visit.site, visit.exit, ANUBIS_TTL):
        return real_page(visit)
    difficulty = behaviour["difficulty"]
    challenge = {
        "rules": {"algorithm": "fast", "difficulty": difficulty, "report_as": difficulty},
        "challenge": passes.issue("anubis", visit.site, visit.exit, d=difficulty),
    }
    body = render(
        "anubis.html",
        challenge=Raw(_script_json(challenge)),
        script=ANUBIS_SCRIPT,
        version=Raw(_script_json("v1.21.3")),
    )
    headers = [
        ("Content-Type", HTML),
        ("Server", "nginx"),
        ("Content-Security-Policy", CSP),
        ("Cache-Control", "no-store"),
        ("Set-Cookie", f"techaro.lol-anubis-cookie-verification={secrets.token_hex(16)}; Path=/; SameSite=Lax"),
    ]
    return Reply(200, headers, body.encode())


def _anubis_endpoint(visit: Visit, passes: Passes) -> Reply:
    if visit.route == ANUBIS_SCRIPT:
        return Reply(200, [("Content-Type", "text/javascript")], template("anubis.js").encode())
    if visit.route != ANUBIS_PASS:
        return Reply(404, [("Content-Type", "text/plain")], b"not found\n")
    query = visit.query
    token, nonce, response = query.get("challenge", ""), query.get("nonce", ""), query.get("response", "")
    claims = passes.check(token, "anubis", visit.site, visit.exit, CHALLENGE_TTL)
    if claims is None or not nonce.isdigit() or not proof_of_work_ok(token, nonce, response, claims["d"]):
        body = render("anubis_denied.html", code=hashlib.sha256(visit.path.encode()).hexdigest()[:16])
        return Reply(403, [("Content-Type", HTML), ("Content-Security-Policy", CSP)], body.encode())
    cookie = passes.issue("anubis-auth", visit.site, visit.exit)
    headers = [
        ("Location", _local_redirect(query.get("redir", "/"))),
        ("Set-Cookie", f"{ANUBIS_COOKIE}={cookie}; {_cookie_attributes(visit, ANUBIS_TTL)}"),
    ]
    return Reply(302, headers)


def proof_of_work_ok(challenge: str, nonce: str, response: str, difficulty: int) -> bool:
    """SHA-256(challenge + nonce) in hex must equal ``response`` and start with ``difficulty`` zeros."""
    digest = hashlib.sha256(f"{challenge}{nonce}".encode()).hexdigest()
    return digest == response and digest.startswith("0" * difficulty)


def _local_redirect(target: str) -> str:
    """Only paths on this site: ``//host`` and absolute URLs would make an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


# -- helpers ---------------------------------------------------------------------


def _cookie_attributes(visit: Visit, max_age: int) -> str:
    # SameSite=None requires Secure, which a browser ignores on plain HTTP.
    tail = "SameSite=None; Secure" if visit.scheme == "https" else "SameSite=Lax"
    return f"Path=/; Max-Age={max_age}; HttpOnly; {tail}"


def json_reply(status: int, value) -> Reply:
    return Reply(status, [("Content-Type", "application/json"), ("Server", "cloudflare")], json.dumps(value).encode())


def json_body(visit: Visit) -> dict:
    """The request's JSON object body, or {} for anything else."""
    try:
        value = json.loads(visit.body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _script_json(value) -> str:
    """JSON safe inside <script>: no ``</script>`` can close the element early."""
    return json.dumps(value).replace("<", "\\u003c")


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


ANSWERS: dict[str, Answer] = {
    "ok": _ok,
    "nonce": _nonce,
    "challenge": _challenge,
    "interactive": _interactive,
    "block": _block,
    "datadome": _datadome,
    "perimeterx": _perimeterx,
    "anubis": _anubis,
    "injected": _injected,
    "rewritten": _rewritten,
    "different": _different,
    "widget": _widget,
    "alt-svc": _alt_svc,
    "onion-location": _onion_location,
    "slow": _slow,
    "hang": _hang,
    "reset": _reset,
    "huge": _huge,
    "hostile": _hostile,
    "error": _error,
}
