"""Navigation Timing → a browser probe's load time, phases and challenge clear time."""

from exporter.fetch.outcome import Outcome
from exporter.fetch.timing import browser_result, clear_seconds, phases, seconds
from exporter.values import ChallengeOutcome, Response

LANDING = {"timeOrigin": 1_700_000_000_000.0, "connectStart": 5.0, "connectEnd": 125.5, "responseStart": 300.0,
           "domContentLoadedEventEnd": 450.0, "loadEventEnd": 800.0, "duration": 810.0}
CHALLENGE = Response("https://news.test/", 403, {"cf-mitigated": "challenge"}, "<title>Just a moment...</title>")
PAGE = Response("https://news.test/", 200, {}, "<title>News</title>")


def test_seconds_from_milliseconds_never_negative():
    assert seconds(1234.5) == 1.2345 and seconds(None) == 0.0 and seconds(-3) == 0.0


def test_phases_from_the_landing_entry():
    assert phases(LANDING) == {"connect": 0.1205, "ttfb": 0.3, "dom_content_loaded": 0.45}
    assert phases({}) == {}


def test_a_challenge_that_loaded_a_new_document_clears_at_that_documents_dom_content_loaded():
    reloaded = {"timeOrigin": LANDING["timeOrigin"] + 2_000.0, "domContentLoadedEventEnd": 150.0}
    assert clear_seconds(LANDING, reloaded, polled=2.4) == 2.15


def test_a_challenge_that_rewrote_its_own_document_keeps_the_polled_time():
    assert clear_seconds(LANDING, LANDING, polled=2.4) == 2.4  # same timeOrigin: no new document
    assert clear_seconds(LANDING, {}, polled=2.4) == 2.4  # no entry (e.g. an error page)
    reloading = {"timeOrigin": LANDING["timeOrigin"] + 2_000.0, "domContentLoadedEventEnd": 0}
    assert clear_seconds(LANDING, reloading, polled=2.4) == 2.4  # not loaded yet


def test_browser_result_of_a_cleared_challenge():
    reloaded = {"timeOrigin": LANDING["timeOrigin"] + 2_000.0, "domContentLoadedEventEnd": 150.0}
    result = browser_result(CHALLENGE, ("http://news.test/",), LANDING, Outcome(PAGE, ChallengeOutcome.CLEARED, 2.4), lambda: reloaded)
    assert (result.first, result.final, result.redirects) == (CHALLENGE, PAGE, ("http://news.test/",))
    assert (result.load_seconds, result.outcome, result.clear_seconds) == (0.8, ChallengeOutcome.CLEARED, 2.15)
    assert result.phases == phases(LANDING)


def test_browser_result_reads_the_timing_again_only_for_a_cleared_challenge():
    def unread():
        raise AssertionError("the final page's timing was read")

    result = browser_result(CHALLENGE, (), {"duration": 950.0}, Outcome(CHALLENGE, ChallengeOutcome.INTERACTIVE), unread)
    assert (result.outcome, result.clear_seconds, result.load_seconds) == (ChallengeOutcome.INTERACTIVE, None, 0.95)
