"""Document responses of the top frame, read from chromedriver's performance log.

With ``goog:loggingPrefs: {"performance": "ALL"}`` chromedriver records the
DevTools ``Network`` events of the page.  The facts this module relies on:

- each top-level load is a ``Document`` request whose ``frameId`` is the tab's
  target id (selenium's window handle), and whose ``loaderId`` names the
  document it loads (``Page.getFrameTree`` gives the shown document's);
- a redirect hop arrives as ``requestWillBeSent.redirectResponse`` and the
  request keeps its ``requestId``; the last hop arrives as ``responseReceived``;
- ``responseReceivedExtraInfo`` holds the raw wire headers (``Set-Cookie``
  included, which ``responseReceived`` may leave out), one event per hop, in
  hop order, possibly before or after the matching response or not at all;
- repeated header names are joined with ``\\n`` in one value;
- a document that got no response ends in ``loadingFailed`` with a
  ``net::ERR_…`` ``errorText``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class DocumentResponse:
    """One response to a top-frame document request (a redirect hop or a final answer)."""

    request_id: str
    url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    is_redirect: bool
    loader_id: str = ""


@dataclass(frozen=True)
class DocumentFailure:
    request_id: str
    url: str
    error: str  # e.g. net::ERR_SOCKS_CONNECTION_FAILED


class NetworkLog:
    """The top frame's document traffic, accumulated over several log reads."""

    def __init__(self, frame_id: str):
        self.frame_id = frame_id
        self.events: list[dict] = []

    def add(self, entries: list[dict]) -> None:
        """Append raw entries as returned by ``driver.get_log("performance")``."""
        for entry in entries:
            message = json.loads(entry["message"])["message"]
            self.events.append(message)

    def documents(self) -> list[DocumentResponse]:
        """Every top-frame document response, in arrival order."""
        hops: list[tuple[str, dict]] = []
        extra: dict[str, list[dict]] = {}
        loaders: dict[str, str] = {}
        for method, params in self._events():
            if method == "Network.requestWillBeSent" and self._is_top_document(params):
                loaders[params["requestId"]] = params.get("loaderId", "")
                if "redirectResponse" in params:
                    hops.append((params["requestId"], dict(params["redirectResponse"], _redirect=True)))
            elif method == "Network.responseReceived" and self._is_top_document(params):
                hops.append((params["requestId"], params["response"]))
            elif method == "Network.responseReceivedExtraInfo":
                extra.setdefault(params["requestId"], []).append(params)
        seen: dict[str, int] = {}
        documents = []
        for request_id, response in hops:
            index = seen.get(request_id, 0)
            seen[request_id] = index + 1
            raw = extra.get(request_id, [])
            wire = raw[index] if index < len(raw) else None
            headers = (wire or response).get("headers", {})
            status = (wire or {}).get("statusCode") or response["status"]
            documents.append(DocumentResponse(
                request_id=request_id,
                url=response["url"],
                status=int(status),
                headers=split_headers(headers),
                is_redirect=bool(response.get("_redirect")),
                loader_id=loaders.get(request_id, ""),
            ))
        return documents

    def failure(self) -> DocumentFailure | None:
        """The top-frame document request that failed without a response, if any."""
        urls: dict[str, str] = {}
        for method, params in self._events():
            if method == "Network.requestWillBeSent" and self._is_top_document(params):
                urls[params["requestId"]] = params["request"]["url"]
            elif method == "Network.loadingFailed" and params["requestId"] in urls and not params.get("canceled"):
                return DocumentFailure(params["requestId"], urls[params["requestId"]], params["errorText"])
        return None

    def origins(self) -> set[str]:
        """Origins of every http(s) request the page made (for wiping their storage)."""
        origins = set()
        for method, params in self._events():
            if method == "Network.requestWillBeSent":
                parts = urlsplit(params["request"]["url"])
                if parts.scheme in ("http", "https"):
                    origins.add(f"{parts.scheme}://{parts.netloc}")
        return origins

    def _events(self):
        for message in self.events:
            yield message.get("method", ""), message.get("params", {})

    def _is_top_document(self, params: dict) -> bool:
        return params.get("type") == "Document" and params.get("frameId") == self.frame_id


def split_headers(headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """DevTools header dict → wire-order pairs, one pair per repeated value."""
    return tuple((name, value) for name, joined in headers.items() for value in joined.split("\n"))
