"""Small builders of the values the spine passes around, for unit tests."""

from exporter.config import Target
from exporter.tor.relay import ExitRelay
from exporter.values import FetchResult, Lane, Response


def relay(n: int, probability: float = 0.25, country: str = "DE", flags=("Exit", "Running", "Fast")) -> ExitRelay:
    return ExitRelay(fingerprint=f"{n:040X}", nickname=f"exit{n}", address=f"127.0.0.{20 + n}",
                     flags=frozenset(flags), bandwidth=100 * n, probability=probability, country=country)


def target(name: str = "news", fetchers=("http",), exits_per_run: int = 2) -> Target:
    return Target(name=name, url=f"http://{name}.test/", interval=60.0, fetchers=tuple(fetchers),
                  exits_per_run=exits_per_run)


def page(status: int = 200, body: str = "<title>News</title>", headers=()) -> Response:
    return Response(url="http://news.test/", status=status, headers=tuple(headers), body=body)


def fetched(first: Response, final: Response | None = None, load: float = 0.4, **kw) -> FetchResult:
    return FetchResult(first=first, final=final or first, load_seconds=load, **kw)


LANE = Lane(index=0, socks_host="127.0.0.1", socks_port=9050, session_group=1001)
