"""The normal form: what a reader sees and what runs, with per-request values removed."""

from __future__ import annotations

from exporter.change.normalise import clean_text, known_injection, normalise, script_id

PAGE = """<!doctype html><html><head>
<meta charset="utf-8"><meta name="csrf-token" content="{token}">
<title>  Shop –
  Home </title>
<script nonce="{token}">window.cfg = {{"session": "{token}", "t": {stamp}}};</script>
<script src="https://cdn.example.org/lib.js?v={stamp}#x"></script>
</head><body>
<!-- rendered {stamp} -->
<h1>Autumn <b>sale</b></h1>
<p>Prices   valid until
   2026-11-22T03:15:00Z.</p>
<form><input type="hidden" name="authenticity_token" value="{token}"><input name="q"></form>
<style>p {{ color: red }}</style>
</body></html>"""


def page(token="a1b2c3d4e5f6a7b8c9d0e1f2", stamp=1795317898):
    return PAGE.format(token=token, stamp=stamp)


def test_normal_form_keeps_title_visible_lines_tags_and_scripts():
    form = normalise(page())
    assert form.title == "Shop – Home"
    assert form.lines == ("Autumn sale", "Prices valid until <time>.")
    assert form.tags == ("meta", "title", "h1", "b", "p", "form", "input", "style")
    assert form.scripts[1] == "src:cdn.example.org/lib.js"
    assert form.scripts[0].startswith("inline:")
    assert form.injections == ()


def test_tokens_nonces_timestamps_and_comments_do_not_change_the_normal_form():
    assert normalise(page()) == normalise(page(token="Zz9" * 10, stamp=1))


def test_a_changed_inline_script_has_another_id():
    assert script_id(None, "track(1, 'a')") == script_id(None, "track(2, 'b')")
    assert script_id(None, "track(1)") != script_id(None, "steal(1)")


def test_text_placeholders():
    assert clean_text("mail webmaster@news.test or [email\u00a0protected]") == "mail <email> or <email>"
    assert clean_text("at 10:42 pm, id 4f9a0c2e8b7d6a5f4e3d2c1b") == "at <time>, id <token>"
    assert clean_text("€189.00 for 2") == "€189.00 for 2"
    assert clean_text("€189.00 for 2", mask_numbers=True) == "€<n> for <n>"
    assert clean_text("a sentence with ordinary words stays") == "a sentence with ordinary words stays"


def test_known_cloudflare_injections_are_named_not_listed_as_scripts():
    html = """<body><p>Hi</p>
    <script defer
      src="https://static.cloudflareinsights.com/beacon.min.js/v8c78df7c7c0f484497ecbca7046644da1771523124516"
      data-cf-beacon='{"token": "abc"}'></script>
    <script>(function(){var a=document.createElement('script');a.src='/cdn-cgi/challenge-platform/scripts/jsd/main.js';
      document.head.appendChild(a)})();</script>
    <a href="/cdn-cgi/l/email-protection#0c6d">[email&#160;protected]</a>
    <script data-cfasync="false" src="/cdn-cgi/scripts/5c5dd728/cloudflare-static/email-decode.min.js"></script>
    </body>"""
    form = normalise(html)
    assert form.scripts == ()
    assert form.injections == ("cloudflare-beacon", "cloudflare-jsd", "cloudflare-email-protection")
    assert form.lines == ("Hi", "<email>")


def test_inline_elements_join_a_line_block_elements_end_it():
    form = normalise("<div>one <a href=/x>two</a> <em>three</em><br>four<li>five</li></div>")
    assert form.lines == ("one two three", "four", "five")


def test_unclosed_script_still_counts():
    assert normalise("<p>x</p><script>steal()").scripts[0].startswith("inline:")
    assert known_injection("https://static.cloudflareinsights.com/beacon.min.js") == "cloudflare-beacon"
    assert known_injection("/js/app.js") is None


def test_raw_text_elements_are_not_read_as_markup():
    form = normalise("<SCRIPT>var a = '<p>x</p>'</script ><p>A &amp; B&nbsp;C</p>"
                     "<textarea>hi <b>there</textarea><noscript><p>enable js</p></noscript><p>z")
    assert form.lines == ("A & B C", "hi <b>there", "z")
    assert form.tags == ("p", "textarea", "noscript", "p")
    assert len(form.scripts) == 1


def test_quoted_attribute_values_may_hold_angle_brackets():
    assert normalise("<div title='a>b'>one</div><img src=x alt=\"q\"/>two").lines == ("one", "two")
