"""The edge web server answering each behaviour, with a fake exit identification.

``*.test`` names resolve to 127.0.0.1 here (a resolver override), so requests
carry real URLs, Host headers, SNI and per-host cookie jars.  Each exit the
fake ``identify`` reports is a new connection: a session per exit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import ssl
import time
from urllib.parse import urlsplit

import pytest
import requests

from testbed.behaviours import onion_address, proof_of_work_ok
from testbed.edge import Edge
from testbed.pages import SITES, VENDORS
from testbed.policy import load_policy

CHALLENGE_DELAY = 0.4
# Every behaviour on news.test through the exit of the same name; exitB is a
# second challenging exit, and "clean" sees real pages.
POLICY = {
    "sites": {
        "news": {
            "default": "ok",
            "exits": {
                "challenge": {"behaviour": "challenge", "delay": CHALLENGE_DELAY},
                "exitB": {"behaviour": "challenge", "delay": CHALLENGE_DELAY},
                "interactive": "interactive",
                "block": "block",
                "datadome": "datadome",
                "perimeterx": "perimeterx",
                "anubis": {"behaviour": "anubis", "difficulty": 2},
                "anubisB": {"behaviour": "anubis", "difficulty": 2},
                "nonce": "nonce",
                "injected": "injected",
                "rewritten": "rewritten",
                "different": "different",
                "alt-svc": "alt-svc",
                "onion-location": "onion-location",
                "slow": {"behaviour": "slow", "seconds": 0.6},
                "hang": "hang",
                "reset": "reset",
                "huge": {"behaviour": "huge", "size": 3_000_000},
                "error": {"behaviour": "error", "code": 522},
            },
        },
        "shop": {"default": "challenge", "exits": {"clean": "ok"}},
        "login": {"default": "ok"},
    }
}


class Exits:
    """The fake identify(): whatever exit the test says connections come through."""

    def __init__(self):
        self.current = "clean"
        self.peers: list[tuple[str, int]] = []

    def __call__(self, peer):
        self.peers.append(peer)
        return self.current


@pytest.fixture(autouse=True)
def test_names_resolve_to_loopback(monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".test"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@pytest.fixture
def exits():
    return Exits()


@pytest.fixture
def edge(tmp_path, exits):
    with Edge(load_policy(POLICY), exits, tmp_path) as running:
        yield running


class Browser:
    """A cookie jar that outlives connections: switching exit means new connections."""

    def __init__(self, edge: Edge, exits: Exits):
        self.edge, self.exits = edge, exits
        self.session = self._session()

    def _session(self, cookies=None) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment: loopback only
        if cookies is not None:
            session.cookies.update(cookies)
        return session

    def via(self, exit_name: str) -> Browser:
        self.exits.current = exit_name
        old = self.session
        self.session = self._session(old.cookies)
        old.close()
        return self

    def url(self, site: str, path: str, scheme: str = "http") -> str:
        """A URL on a site, or on a vendor host (as a page from the edge names it)."""
        if site in VENDORS:
            return f"{scheme}://{VENDORS[site]}:{self.edge.site_urls(scheme)['news'].rsplit(':', 1)[1].rstrip('/')}{path}"
        return self.edge.site_urls(scheme)[site].rstrip("/") + path

    def get(self, site="news", path="/", scheme="http", **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)
        if scheme == "https":
            kwargs.setdefault("verify", str(self.edge.ca_file))
        return self.session.get(self.url(site, path, scheme), **kwargs)

    def post(self, site, path, payload) -> requests.Response:
        return self.session.post(self.url(site, path), json=payload, timeout=10)


@pytest.fixture
def browser(edge, exits):
    return Browser(edge, exits)


def title(response) -> str:
    return re.search(r"<title>(.*?)</title>", response.text, re.DOTALL).group(1)


def cf_options(response) -> dict:
    return json.loads(re.search(r"window\._cf_chl_opt=(\{.*?\});", response.text).group(1))


# -- the API others use --------------------------------------------------------


def test_urls_hostnames_and_ports(edge):
    assert edge.hostnames()[:len(SITES)] == [f"{site}.test" for site in SITES]
    assert {"www.portal.test", "challenges.cloudflare.test", "js.hcaptcha.test"} <= set(edge.hostnames())
    assert edge.site_urls()["news"] == f"http://news.test:{edge.http_port}/"
    assert edge.site_urls("https")["login"] == f"https://login.test:{edge.https_port}/"
    assert len({edge.http_port, edge.https_port, int(edge.admin_url.rsplit(":", 1)[1])}) == 3
    assert edge.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_request_log_records_site_exit_behaviour_path_status(browser, edge):
    before = time.time()
    browser.via("block").get(path="/world?x=1")
    browser.via("clean").get(site="forum")
    *_, blocked, clean = edge.requests()
    assert {k: blocked[k] for k in ("site", "exit", "behaviour", "path", "status", "scheme")} == {
        "site": "news", "exit": "block", "behaviour": "block", "path": "/world?x=1", "status": 403, "scheme": "http",
    }
    assert (clean["site"], clean["exit"], clean["behaviour"], clean["status"]) == ("forum", "clean", "ok", 200)
    assert before <= blocked["time"] <= clean["time"] <= time.time()


def test_identify_gets_the_client_address(browser, exits):
    response = browser.get()
    assert response.status_code == 200
    host, port = exits.peers[-1]
    assert host == "127.0.0.1" and port > 0


def test_exit_is_identified_once_per_connection(browser, exits):
    browser.via("clean")
    for _ in range(3):
        browser.get()
    assert len(exits.peers) == 1


def test_unknown_host_is_misdirected(edge):
    response = requests.get(f"http://127.0.0.1:{edge.http_port}/", timeout=5)
    assert response.status_code == 421


def test_a_bad_content_length_is_refused(edge):
    with socket.create_connection(("127.0.0.1", edge.http_port), timeout=5) as connection:
        connection.sendall(b"POST / HTTP/1.1\r\nHost: news.test\r\nContent-Length: lots\r\n\r\n")
        assert connection.recv(1024).startswith(b"HTTP/1.1 400 ")


def test_set_policy_switches_at_runtime(browser, edge):
    assert browser.via("clean").get(site="forum").status_code == 200
    edge.set_policy(load_policy({"sites": {"forum": "block"}}))
    assert browser.via("clean").get(site="forum").status_code == 403


def test_direct_sees_the_real_page_where_exits_are_challenged(browser):
    assert browser.via("someexit").get(site="shop").status_code == 403
    assert browser.via("direct").get(site="shop").status_code == 200


# -- real and modified pages -------------------------------------------------------


def test_every_site_has_a_real_page_with_title_and_links(browser):
    titles = set()
    for site in SITES:
        response = browser.via("clean").get(site=site, allow_redirects=True)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        titles.add(title(response))
        assert response.text.count("<a href=") >= 3
    assert len(titles) == len(SITES)
    assert '<input id="password" name="password" type="password"' in browser.get(site="login").text


def test_a_cloudflare_fronted_real_page_carries_cf_headers_but_no_mitigation(browser):
    response = browser.via("clean").get()
    assert response.headers["server"] == "cloudflare" and response.headers["cf-ray"]
    assert "cf-mitigated" not in response.headers


def test_nonce_changes_only_tokens(browser):
    real = browser.via("clean").get().text
    first, second = browser.via("nonce").get(), browser.via("nonce").get()
    assert first.status_code == 200 and first.text != second.text
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', first.text).group(1)
    assert len(token) >= 24

    def strip(text):
        text = re.sub(r'<meta name="csrf-token"[^>]*>\n', "", text)
        return re.sub(r"<!-- rendered .*? -->\n", "", text)

    assert strip(first.text) == strip(second.text) == real


def test_injected_adds_a_script_to_the_real_page(browser):
    real = browser.via("clean").get().text
    injected = browser.via("injected").get().text
    assert injected.count("<script") == real.count("<script") + 1
    added = injected.replace(real.split("</body>")[0], "")
    assert added.startswith("<script>") and "cdn-metrics.invalid" in added


def test_rewritten_changes_visible_text_not_structure(browser):
    real = browser.via("clean").get().text
    rewritten = browser.via("rewritten").get().text
    assert rewritten != real and title(browser.get()) in rewritten
    assert "verify your account" in rewritten and "verify your account" not in real
    assert re.findall(r"<[a-z0-9]+", rewritten) == re.findall(r"<[a-z0-9]+", real)


def test_different_is_a_wholly_different_page(browser):
    real = browser.via("clean").get()
    different = browser.via("different").get()
    assert different.status_code == 200
    assert title(different) == "news.test (lite)" != title(real)
    assert "City council" not in different.text


def test_alt_svc_names_an_onion_service(browser):
    response = browser.via("alt-svc").get()
    assert re.fullmatch(r'h2="[a-z2-7]{56}\.onion:443"; ma=86400', response.headers["alt-svc"])
    assert response.text == browser.via("clean").get().text


def test_onion_location_header(browser):
    response = browser.via("onion-location").get()
    assert re.fullmatch(r"http://[a-z2-7]{56}\.onion/", response.headers["onion-location"])


def test_onion_addresses_are_well_formed_v3():
    address = onion_address("news")
    raw = base64.b32decode(address.removesuffix(".onion").upper())
    pubkey, checksum, version = raw[:32], raw[32:34], raw[34:]
    assert version == b"\x03"
    assert checksum == hashlib.sha3_256(b".onion checksum" + pubkey + version).digest()[:2]
    assert onion_address("shop") != address


# -- Cloudflare gates ------------------------------------------------------------------


PLATFORM = "/cdn-cgi/challenge-platform/h/b"


def test_challenge_page_markers_and_its_solver_from_the_vendor_host(browser, edge):
    response = browser.via("challenge").get()
    assert response.status_code == 403
    assert response.headers["cf-mitigated"] == "challenge"
    assert response.headers["server"] == "cloudflare"
    assert re.fullmatch(r"[0-9a-f]{16}-[A-Z]{3}", response.headers["cf-ray"])
    assert title(response) == "Just a moment..."
    options = cf_options(response)
    assert options["cType"] == "managed" and options["cZone"] == "news.test"
    platform = f"http://challenges.cloudflare.test:{edge.http_port}"
    assert f"'{platform}{PLATFORM}/orchestrate/chl_page/v1?ray={options['cRay']}'" in response.text
    csp = response.headers["content-security-policy"]
    assert f"script-src 'self' {platform}" in csp and f"frame-src {platform}" in csp
    assert "Enable JavaScript and cookies to continue" in response.text


def test_the_vendor_host_serves_the_solver_and_its_frame(browser, edge):
    script = browser.via("challenge").get(site="challenges", path=f"{PLATFORM}/orchestrate/chl_page/v1?ray=ab")
    assert script.status_code == 200 and script.headers["content-type"] == "application/javascript"
    assert f'"http://challenges.cloudflare.test:{edge.http_port}"' in script.text
    assert "_cf_chl_opt" in script.text and "location.reload()" in script.text
    frame = browser.get(site="challenges", path=f"{PLATFORM}/turnstile/if/ov2/av0/rcv0/0/ab/")
    assert frame.status_code == 200 and "parent.postMessage" in frame.text
    assert browser.get(site="challenges", path="/elsewhere").status_code == 404
    assert edge.requests()[-1]["site"] == "challenges" and edge.requests()[-1]["host"] == "challenges.cloudflare.test"


def test_a_plain_client_never_clears_the_challenge(browser):
    browser.via("challenge")
    first = browser.get()
    time.sleep(CHALLENGE_DELAY + 0.1)
    again = browser.get()
    assert (first.status_code, again.status_code) == (403, 403)
    assert "cf_clearance" not in browser.session.cookies


def solve_in_frame(browser: Browser, options: dict, site="news", human=False) -> requests.Response:
    """What the vendor's frame does: ask its own host's flow endpoint until it hands out a token."""
    flow = f"{PLATFORM}/flow/ov1/{options['cRay']}"
    return browser.post("challenges", flow, {"cH": options["cH"], "zone": f"{site}.test", "human": human})


def redeem(browser: Browser, options: dict, token: str, site="news") -> requests.Response:
    """What the page does with the frame's token: trade it at the site for cf_clearance."""
    return browser.post(site, f"{PLATFORM}/rc/{options['cRay']}", {"token": token})


def earn_clearance(browser: Browser, site="news") -> requests.Response:
    options = cf_options(browser.get(site=site))
    early = solve_in_frame(browser, options, site)
    assert early.status_code == 202 and early.json()["retry_ms"] > 0
    time.sleep(CHALLENGE_DELAY)
    solved = solve_in_frame(browser, options, site)
    assert solved.status_code == 200
    return redeem(browser, options, solved.json()["token"], site)


def test_clearance_after_the_delay_gives_the_real_page(browser):
    granted = earn_clearance(browser.via("challenge"))
    assert granted.status_code == 200
    assert "cf_clearance" in granted.headers["set-cookie"] and "HttpOnly" in granted.headers["set-cookie"]
    page = browser.get()
    assert page.status_code == 200 and title(page) == title(browser.via("clean").get())


def test_clearance_is_bound_to_the_exit_it_was_earned_on(browser):
    assert earn_clearance(browser.via("challenge")).status_code == 200
    assert browser.get().status_code == 200
    assert "cf_clearance" in browser.session.cookies
    assert browser.via("exitB").get().status_code == 403
    assert browser.via("challenge").get().status_code == 200


def test_clearance_is_bound_to_the_site(browser, edge):
    assert earn_clearance(browser.via("challenge")).status_code == 200
    clearance = browser.session.cookies["cf_clearance"]
    response = requests.get(edge.site_urls()["shop"], cookies={"cf_clearance": clearance}, timeout=5)
    assert response.status_code == 403


def test_the_vendor_refuses_a_challenge_from_another_exit(browser):
    options = cf_options(browser.via("challenge").get())
    time.sleep(CHALLENGE_DELAY)
    assert solve_in_frame(browser.via("exitB"), options).status_code == 403
    assert solve_in_frame(browser.via("direct"), options).status_code == 403
    assert solve_in_frame(browser.via("challenge"), dict(options, cH=options["cH"][:-2] + "xx")).status_code == 403
    assert solve_in_frame(browser, options, site="shop").status_code == 403  # another zone
    assert solve_in_frame(browser, options).status_code == 200


def test_a_token_solved_through_another_exit_is_not_redeemed(browser):
    """The page's vendor request and its site requests must leave through one exit, as on the real web,
    where clearance is bound to the client's address."""
    options = cf_options(browser.via("challenge").get())
    time.sleep(CHALLENGE_DELAY)
    token = solve_in_frame(browser, options).json()["token"]
    assert redeem(browser.via("exitB"), options, token).status_code == 403
    assert redeem(browser.via("challenge"), options, token.replace(".", ".x")).status_code == 403
    assert redeem(browser.via("challenge"), options, token).status_code == 200


def test_a_forged_clearance_is_refused(browser):
    browser.via("challenge")
    browser.session.cookies.set("cf_clearance", "eyJrIjoiY2xlYXJhbmNlIn0.bm9wZQ", domain="news.test")
    assert browser.get().status_code == 403


def test_interactive_never_clears_without_a_human(browser):
    response = browser.via("interactive").get()
    assert response.status_code == 403 and response.headers["cf-mitigated"] == "challenge"
    options = cf_options(response)
    assert options["cType"] == "interactive"
    for _ in range(2):
        answer = solve_in_frame(browser, options)
        assert answer.status_code == 403 and answer.json() == {"interactive": True}
    assert browser.get().status_code == 403
    # the checkbox in the vendor's frame, once a person ticks it, is what clears it
    solved = solve_in_frame(browser, options, human=True)
    assert solved.status_code == 200
    assert redeem(browser, options, solved.json()["token"]).status_code == 200
    assert browser.get().status_code == 200


def test_block_is_a_1020_page_without_challenge(browser):
    response = browser.via("block").get()
    assert response.status_code == 403
    assert response.headers["server"] == "cloudflare" and "cf-mitigated" not in response.headers
    assert title(response) == "Attention Required! | Cloudflare"
    assert "Sorry, you have been blocked" in response.text
    assert '<span class="cf-error-code">1020</span>' in response.text
    ray = response.headers["cf-ray"].split("-")[0]
    assert f"Cloudflare Ray ID: <strong>{ray}</strong>" in response.text
    assert "challenge-platform" not in response.text and "_cf_chl_opt" not in response.text


def test_error_is_a_cloudflare_522_page(browser):
    response = browser.via("error").get()
    assert response.status_code == 522
    assert response.headers["server"] == "cloudflare"
    assert title(response) == "news.test | 522: Connection timed out"
    assert 'id="cf-error-details"' in response.text and "Error code 522" in response.text


# -- other vendors ------------------------------------------------------------------------


def test_datadome_captcha_page(browser):
    response = browser.via("datadome").get()
    assert response.status_code == 403
    assert response.headers["x-datadome"] == "protected"
    assert "datadome" in response.cookies
    assert title(response) == "news.test"
    dd = json.loads(re.search(r"var dd=(\{.*?\})</script>", response.text).group(1))
    assert dd["host"] == "geo.captcha-delivery.com" and dd["t"] == "fe"
    assert re.search(r'<iframe src="https://geo\.captcha-delivery\.com/captcha/\?initialCid=', response.text)


def test_perimeterx_block_page(browser):
    response = browser.via("perimeterx").get()
    assert response.status_code == 403
    assert title(response) == "Access to this page has been denied"
    assert '<meta name="description" content="px-captcha">' in response.text
    assert re.search(r"window\._pxAppId = 'PX\w+';", response.text)
    assert '<div id="px-captcha"></div>' in response.text
    assert "_pxhd" in response.cookies


def anubis_challenge(response) -> dict:
    found = re.search(r'<script id="anubis_challenge" type="application/json">(.*?)</script>', response.text)
    return json.loads(found.group(1))


def solve(challenge: str, difficulty: int) -> tuple[str, str]:
    for nonce in range(10_000_000):
        digest = hashlib.sha256(f"{challenge}{nonce}".encode()).hexdigest()
        if digest.startswith("0" * difficulty):
            return str(nonce), digest
    raise AssertionError("no proof found")


def pass_anubis(browser: Browser, data: dict, nonce: str, digest: str, redir="/world") -> requests.Response:
    query = {"challenge": data["challenge"], "response": digest, "nonce": nonce, "redir": redir, "elapsedTime": "5"}
    return browser.get(path="/.within.website/x/cmd/anubis/api/pass-challenge", params=query)


def test_anubis_page_markers(browser):
    response = browser.via("anubis").get()
    assert response.status_code == 200
    assert title(response) == "Making sure you&#39;re not a bot!"
    assert response.headers["cache-control"] == "no-store"
    assert anubis_challenge(response)["rules"]["difficulty"] == 2
    script = browser.get(path="/.within.website/x/cmd/anubis/static/js/main.mjs")
    assert script.status_code == 200 and "pass-challenge" in script.text
    assert "Protected by <a" in response.text and "Techaro" in response.text


def test_anubis_proof_of_work_earns_a_cookie_and_the_real_page(browser):
    data = anubis_challenge(browser.via("anubis").get())
    passed = pass_anubis(browser, data, *solve(data["challenge"], 2))
    assert passed.status_code == 302 and passed.headers["location"] == "/world"
    assert "techaro.lol-anubis-auth" in browser.session.cookies
    page = browser.get()
    assert page.status_code == 200 and "City council" in page.text


def test_anubis_checks_the_proof(browser):
    data = anubis_challenge(browser.via("anubis").get())
    nonce, digest = solve(data["challenge"], 2)
    assert pass_anubis(browser, data, str(int(nonce) + 1), digest).status_code == 403  # wrong nonce
    weak = next(str(n) for n in range(1000) if not hash_of(data["challenge"], n).startswith("00"))
    assert pass_anubis(browser, data, weak, hash_of(data["challenge"], weak)).status_code == 403  # too few zeros
    forged = dict(data, challenge=data["challenge"][:-3] + "abc")
    assert pass_anubis(browser, forged, *solve(forged["challenge"], 2)).status_code == 403  # not our token
    assert "techaro.lol-anubis-auth" not in browser.session.cookies
    assert "anubis_challenge" in browser.get().text


def hash_of(challenge: str, nonce) -> str:
    return hashlib.sha256(f"{challenge}{nonce}".encode()).hexdigest()


def test_anubis_proof_and_cookie_are_bound_to_the_exit(browser):
    data = anubis_challenge(browser.via("anubis").get())
    proof = solve(data["challenge"], 2)
    assert pass_anubis(browser.via("anubisB"), data, *proof).status_code == 403
    assert pass_anubis(browser.via("anubis"), data, *proof).status_code == 302
    assert "City council" in browser.get().text
    assert "anubis_challenge" in browser.via("anubisB").get().text


def test_anubis_redirects_only_within_the_site(browser):
    data = anubis_challenge(browser.via("anubis").get())
    passed = pass_anubis(browser, data, *solve(data["challenge"], 2), redir="//evil.example/")
    assert passed.headers["location"] == "/"


def test_proof_of_work_check():
    nonce, digest = solve("abc", 3)
    assert proof_of_work_ok("abc", nonce, digest, 3)
    assert not proof_of_work_ok("abd", nonce, digest, 3)
    zeros = len(digest) - len(digest.lstrip("0"))
    assert not proof_of_work_ok("abc", nonce, digest, zeros + 1)


# -- failures -------------------------------------------------------------------------------


def test_slow_answers_the_real_page_late(browser):
    started = time.monotonic()
    response = browser.via("slow").get()
    assert response.status_code == 200 and "City council" in response.text
    assert time.monotonic() - started >= 0.6


def test_hang_never_answers(browser, edge):
    with pytest.raises(requests.exceptions.ReadTimeout):
        browser.via("hang").get(timeout=0.5)
    assert edge.requests()[-1]["behaviour"] == "hang" and edge.requests()[-1]["status"] is None


def test_reset_sends_rst(edge, exits):
    exits.current = "reset"
    with socket.create_connection(("127.0.0.1", edge.http_port), timeout=5) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: news.test\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            connection.recv(1024)


def test_huge_streams_the_whole_size(browser):
    response = browser.via("huge").get(stream=True)
    assert response.status_code == 200 and response.headers["content-length"] == "3000000"
    total = sum(len(chunk) for chunk in response.iter_content(1 << 16))
    assert total == 3_000_000


# -- TLS ----------------------------------------------------------------------------------------


def test_https_verifies_against_the_ca_for_every_site(browser):
    for site in SITES:
        assert browser.via("clean").get(site=site, scheme="https", allow_redirects=True).status_code == 200


def test_https_without_our_ca_fails_verification(edge):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(edge.site_urls("https")["news"], timeout=5)


def test_https_certificate_does_not_cover_other_names(edge):
    with pytest.raises(requests.exceptions.SSLError, match="(?i)hostname|match"):
        requests.get(f"https://elsewhere.test:{edge.https_port}/", verify=str(edge.ca_file), timeout=5)


def test_sni_and_san(edge):
    context = ssl.create_default_context(cafile=str(edge.ca_file))
    with socket.create_connection(("127.0.0.1", edge.https_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="forum.test") as tls:
            names = {value for kind, value in tls.getpeercert()["subjectAltName"]}
    assert names == set(edge.hostnames())


def test_https_challenge_cookie_is_secure(browser):
    browser.via("challenge")
    options = cf_options(browser.get(scheme="https"))
    time.sleep(CHALLENGE_DELAY)
    verify = str(browser.edge.ca_file)
    flow = browser.url("challenges", f"{PLATFORM}/flow/ov1/{options['cRay']}", "https")
    solved = browser.session.post(flow, json={"cH": options["cH"], "zone": "news.test"}, verify=verify, timeout=5)
    rc = browser.url("news", f"{PLATFORM}/rc/{options['cRay']}", "https")
    granted = browser.session.post(rc, json={"token": solved.json()["token"]}, verify=verify, timeout=5)
    assert granted.status_code == 200 and "SameSite=None; Secure" in granted.headers["set-cookie"]
    assert browser.get(scheme="https").status_code == 200


# -- admin --------------------------------------------------------------------------------------


def test_admin_reads_policy_and_requests(browser, edge):
    browser.via("block").get()
    assert requests.get(f"{edge.admin_url}/policy", timeout=5).json() == edge.policy.to_dict()
    served = requests.get(f"{edge.admin_url}/requests", timeout=5).json()
    assert served[-1]["behaviour"] == "block" and served[-1]["status"] == 403


def test_admin_put_policy_stages_a_challenge_spike(browser, edge):
    assert browser.via("clean").get(site="forum").status_code == 200
    answer = requests.put(f"{edge.admin_url}/policy", data="sites: {forum: {default: challenge}}", timeout=5)
    assert answer.status_code == 200 and answer.json()["sites"]["forum"]["default"]["behaviour"] == "challenge"
    assert browser.via("clean").get(site="forum").status_code == 403
    as_json = json.dumps({"sites": {"forum": "ok"}})
    assert requests.put(f"{edge.admin_url}/policy", data=as_json, timeout=5).status_code == 200
    assert browser.via("clean").get(site="forum").status_code == 200


def test_admin_rejects_a_bad_policy_and_keeps_the_old_one(edge):
    before = edge.policy
    answer = requests.put(f"{edge.admin_url}/policy", data="sites: {forum: {default: chalenge}}", timeout=5)
    assert answer.status_code == 400
    assert "sites.forum.default: unknown behaviour 'chalenge'" in answer.json()["error"]
    assert edge.policy is before


def test_admin_unknown_endpoint(edge):
    assert requests.get(f"{edge.admin_url}/nope", timeout=5).status_code == 404


# -- lifecycle ----------------------------------------------------------------------------------


def test_stop_releases_hanging_connections_and_ports(tmp_path):
    exits = Exits()
    exits.current = "hang"
    edge = Edge(load_policy(POLICY), exits, tmp_path)
    edge.start()
    port = edge.http_port
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    connection.sendall(b"GET / HTTP/1.1\r\nHost: news.test\r\n\r\n")
    time.sleep(0.2)
    started = time.monotonic()
    edge.stop()
    assert time.monotonic() - started < 3
    assert connection.recv(1024) == b""  # closed by the edge, not answered
    connection.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_hostile_page_is_the_site_page_with_endless_unclosed_tags():
    from testbed.behaviours import Visit, answer
    from testbed.passes import Passes
    from testbed.policy import Behaviour

    reply = answer(Visit("news", "exit1", "https", "GET", "/"), Behaviour("hostile", {"size": 30_000}), Passes())
    body = reply.body.decode()
    assert reply.status == 200 and body.count("<a ") >= 10_000
    assert body.index("<a <a <a") > body.index("<body")  # the site's page, then the tags that never close


# -- vendor hosts, widgets, redirects across hosts -----------------------------------------------


def test_widget_page_loads_its_widget_from_the_widget_host(browser, edge):
    edge.set_policy(load_policy({"sites": {"login": {"default": "widget"}}}))
    page = browser.via("clean").get(site="login")
    origin = f"http://js.hcaptcha.test:{edge.http_port}"
    assert page.status_code == 200 and '<div class="h-captcha" data-sitekey="' in page.text
    assert f'<script src="{origin}/1/api.js" async defer></script>' in page.text
    assert page.text.index("h-captcha") < page.text.index("</form>")  # inside the sign-in form
    assert f"frame-src {origin}" in page.headers["content-security-policy"]
    api = browser.get(site="hcaptcha", path="/1/api.js")
    assert api.status_code == 200 and f'"{origin}"' in api.text and "/captcha/v1/static/hcaptcha.html" in api.text
    frame = browser.get(site="hcaptcha", path="/captcha/v1/static/hcaptcha.html")
    assert frame.status_code == 200 and 'id="checkbox"' in frame.text
    assert [r["site"] for r in edge.requests()[-3:]] == ["login", "hcaptcha", "hcaptcha"]


def test_vendor_hosts_follow_the_policy_per_exit(browser, edge):
    edge.set_policy(load_policy({"sites": {"hcaptcha": {"default": "ok", "exits": {"blocked": "block"}}}}))
    assert browser.via("clean").get(site="hcaptcha", path="/1/api.js").status_code == 200
    assert browser.via("blocked").get(site="hcaptcha", path="/1/api.js").status_code == 403
    assert edge.requests()[-1]["exit"] == "blocked"


def test_a_vendor_host_takes_only_behaviours_a_vendor_can_have():
    with pytest.raises(ValueError, match=r"sites\.challenges\.exits\.exit2: a vendor host cannot answer 'anubis'"):
        load_policy({"sites": {"challenges": {"exits": {"exit2": "anubis"}}}})


def test_apex_redirects_to_www_keeping_scheme_port_and_path(browser, edge):
    for scheme, port in (("http", edge.http_port), ("https", edge.https_port)):
        hop = browser.via("clean").get(site="portal", path="/help?x=1", scheme=scheme)
        assert hop.status_code == 301 and hop.headers["location"] == f"{scheme}://www.portal.test:{port}/help?x=1"
    page = browser.get(site="portal", allow_redirects=True)
    assert page.status_code == 200 and title(page) == "Meridian Portal – Your account"
    assert [(r["host"], r["status"]) for r in edge.requests()[-2:]] == [("portal.test", 301), ("www.portal.test", 200)]


def test_sign_in_chain_bounces_three_times_across_two_hosts_then_meets_the_policy(browser, edge):
    edge.set_policy(load_policy({"sites": {"portal": {"default": "ok", "exits": {"gate": "challenge"}}}}))
    page = browser.via("gate").get(site="portal", path="/go", allow_redirects=True)
    assert [(urlsplit(r.url).hostname, r.status_code) for r in page.history] == [
        ("portal.test", 302), ("www.portal.test", 302), ("portal.test", 302)]
    assert urlsplit(page.url).path == "/account" and page.status_code == 403
    assert page.headers["cf-mitigated"] == "challenge"
    assert browser.via("clean").get(site="portal", path="/go", allow_redirects=True).status_code == 200
