"""The browser's challenge outcome: cleared, interactive, blocked, or none."""

from exporter.fetch.outcome import settle
from exporter.values import ChallengeOutcome, Response, Verdict


def classify(response: Response) -> Verdict:
    """A stand-in detector: the page body names its kind."""
    for kind in ("challenge", "block"):
        if kind in response.body:
            return Verdict(kind, "cloudflare")
    return Verdict("ok")


class FakeBrowser:
    """Pages that change over a fake clock, which only sleeping advances."""

    def __init__(self, timeline: list[tuple[float, str]]):
        self.timeline = timeline  # (from second, body)
        self.now = 0.0
        self.reads = 0

    def read_page(self) -> Response:
        self.reads += 1
        body = [body for since, body in self.timeline if since <= self.now][-1]
        return Response("https://news.test/", 200, (), body)

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def settle(self, landing_body: str, wait: float = 5.0):
        landing = Response("https://news.test/", 403, (), landing_body)
        return settle(landing, self.read_page, classify, wait, lambda: self.now, poll_interval=0.25, sleep=self.sleep)


def test_self_clearing_challenge_is_cleared_with_the_time_it_took():
    browser = FakeBrowser([(0.0, "challenge"), (1.5, "welcome")])
    outcome = browser.settle("challenge")
    assert outcome.outcome == ChallengeOutcome.CLEARED
    assert outcome.clear_seconds == 1.5
    assert outcome.final.body == "welcome"


def test_challenge_that_never_clears_is_interactive_at_the_deadline():
    browser = FakeBrowser([(0.0, "challenge")])
    outcome = browser.settle("challenge", wait=2.0)
    assert outcome.outcome == ChallengeOutcome.INTERACTIVE
    assert outcome.clear_seconds is None
    assert browser.now == 2.0
    assert outcome.final.body == "challenge"


def test_challenge_that_turns_into_a_block_page_is_blocked():
    browser = FakeBrowser([(0.0, "challenge"), (1.0, "block")])
    outcome = browser.settle("challenge")
    assert outcome.outcome == ChallengeOutcome.BLOCKED
    assert outcome.final.body == "block"


def test_block_as_first_response_is_blocked_without_waiting():
    browser = FakeBrowser([(0.0, "block")])
    outcome = browser.settle("block")
    assert (outcome.outcome, browser.now, browser.reads) == (ChallengeOutcome.BLOCKED, 0.0, 1)


def test_ok_page_has_no_outcome_and_is_read_once():
    browser = FakeBrowser([(0.0, "welcome")])
    outcome = browser.settle("welcome")
    assert (outcome.outcome, outcome.clear_seconds, browser.reads) == (None, None, 1)
    assert outcome.final.body == "welcome"


def test_ok_first_response_whose_page_becomes_a_block_is_blocked():
    browser = FakeBrowser([(0.0, "block")])
    assert browser.settle("welcome").outcome == ChallengeOutcome.BLOCKED
