"""Document responses of the top-level browsing context, read from WebDriver BiDi events.

Firefox (and so Tor Browser) reports every response of a page over BiDi as a
``network.responseStarted`` event (W3C WebDriver BiDi, network module).  The
facts this module relies on:

- ``context`` is the browsing context id, which for a top-level context is
  also its WebDriver classic window handle; ``navigation`` is set only for the
  request that navigates that context (a document load), null for
  sub-resources;
- a redirect hop is its own ``responseStarted`` with a 3xx status; the request
  id stays the same across the hops and ``redirectCount`` counts them;
- headers arrive as ``[{"name": …, "value": {"type": "string", "value": …}}]``
  in wire order; Firefox joins the values of a repeated header with ``\\n``
  into one entry (two ``Set-Cookie`` lines arrive as ``"a=1\\nb=2"``);
- a request that got no response ends in ``network.fetchError`` with Firefox's
  ``errorText`` (``NS_ERROR_…`` or an NSS ``SEC_ERROR_…``/``SSL_ERROR_…`` name).
"""

from __future__ import annotations

import threading

from exporter.fetch.perflog import DocumentFailure, DocumentResponse

RESPONSE_STARTED = "network.responseStarted"
FETCH_ERROR = "network.fetchError"
EVENTS = (RESPONSE_STARTED, FETCH_ERROR)


class BidiLog:
    """The top-level context's document traffic, collected from BiDi event callbacks.

    Selenium delivers each event on a thread of its own, so ``add`` locks.
    """

    def __init__(self, context: str):
        self.context = context
        self._events: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def add(self, method: str, params: dict) -> None:
        with self._lock:
            self._events.append((method, params))

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def documents(self) -> list[DocumentResponse]:
        """Every top-level document response, in arrival order."""
        documents = []
        for method, params in self._snapshot():
            if method != RESPONSE_STARTED or not self._is_top_document(params):
                continue
            response = params["response"]
            status = int(response["status"])
            documents.append(DocumentResponse(
                request_id=params["request"]["request"],
                url=response["url"],
                status=status,
                headers=bidi_headers(response.get("headers", [])),
                is_redirect=300 <= status < 400 and status != 304 and _has_location(response),
            ))
        return documents

    def failure(self) -> DocumentFailure | None:
        """The top-level document request that failed without a response, if any."""
        for method, params in self._snapshot():
            if method == FETCH_ERROR and self._is_top_document(params):
                request = params["request"]
                return DocumentFailure(request["request"], request["url"], params["errorText"])
        return None

    def _snapshot(self) -> list[tuple[str, dict]]:
        with self._lock:
            return list(self._events)

    def _is_top_document(self, params: dict) -> bool:
        return params.get("context") == self.context and params.get("navigation") is not None


def bidi_headers(headers: list[dict]) -> tuple[tuple[str, str], ...]:
    """BiDi header list → wire-order pairs, one pair per repeated value (a ``base64`` value is
    kept encoded)."""
    return tuple((header["name"], value) for header in headers for value in header["value"]["value"].split("\n"))


def _has_location(response: dict) -> bool:
    return any(header["name"].lower() == "location" for header in response.get("headers", []))
