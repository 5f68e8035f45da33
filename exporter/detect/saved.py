"""Saved responses as detector input: HAR 1.2 archives and plain HTML files."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from urllib.parse import urljoin

from exporter.values import Response


class SavedResponseError(Exception):
    """A file that cannot be read as a saved response; ``str()`` says why."""


def load_saved(path: Path, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """The main document in ``path``: a HAR file (by content) or an HTML file.

    ``status`` and ``headers`` apply to HTML files only; a HAR carries its own.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SavedResponseError(f"cannot read {path}: {exc.strerror or exc}") from exc
    text = data.decode("utf-8", errors="replace")
    if text.lstrip("\ufeff \t\r\n").startswith("{"):
        return har_document(_parse_json(text, path), path)
    return Response(url=path.resolve().as_uri(), status=status, headers=headers, body=text)


def har_document(har: object, source: Path | str = "HAR") -> Response:
    """The main document of a HAR 1.2 log.

    It is the first entry whose response is HTML (or a redirect on the way to
    it); redirects are followed to the entry that requested their target.
    """
    entries = _entries(har, source)
    start = next((i for i, e in enumerate(entries) if _is_html(e) or _redirect_target(e)), None)
    if start is None:
        raise SavedResponseError(f"{source}: no HTML document among {len(entries)} HAR entries")
    index, seen = start, {start}
    while (target := _redirect_target(entries[index])) is not None:
        following = next((i for i in range(index + 1, len(entries))
                          if i not in seen and _url(entries[i]) == target), None)
        if following is None:
            break
        index = following
        seen.add(index)
    return _response(entries[index], source)


def _parse_json(text: str, path: Path) -> object:
    try:
        return json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        raise SavedResponseError(f"{path}: not valid JSON (HAR): {exc}") from exc


def _entries(har: object, source: Path | str) -> list[dict]:
    log = har.get("log") if isinstance(har, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SavedResponseError(f"{source}: not a HAR file (no log.entries)")
    valid = [e for e in entries if isinstance(e, dict) and isinstance(e.get("response"), dict)]
    if not valid:
        raise SavedResponseError(f"{source}: no HAR entry has a response")
    return valid


def _headers(entry: dict) -> tuple[tuple[str, str], ...]:
    response = entry["response"]
    headers = tuple((str(h.get("name", "")), str(h.get("value", "")))
                    for h in response.get("headers") or () if isinstance(h, dict))
    if not any(name.lower() == "set-cookie" for name, _ in headers):
        # Some tools list cookies only under response.cookies.
        headers += tuple(("Set-Cookie", f"{c.get('name', '')}={c.get('value', '')}")
                         for c in response.get("cookies") or () if isinstance(c, dict) and c.get("name"))
    return headers


def _url(entry: dict) -> str:
    request = entry.get("request")
    return str(request.get("url", "")) if isinstance(request, dict) else ""


def _status(entry: dict) -> int:
    try:
        return int(entry["response"].get("status") or 0)
    except (TypeError, ValueError):
        return 0


def _is_html(entry: dict) -> bool:
    content = entry["response"].get("content")
    mime = str(content.get("mimeType", "")) if isinstance(content, dict) else ""
    content_type = next((v for k, v in _headers(entry) if k.lower() == "content-type"), "")
    return "html" in mime.lower() or "html" in content_type.lower()


def _redirect_target(entry: dict) -> str | None:
    if not 300 <= _status(entry) < 400:
        return None
    location = entry["response"].get("redirectURL") or next(
        (v for k, v in _headers(entry) if k.lower() == "location"), "")
    if not location:
        return None
    try:
        return urljoin(_url(entry), str(location))
    except ValueError:  # e.g. a malformed IPv6 host: compare the Location as written
        return str(location)


def _response(entry: dict, source: Path | str) -> Response:
    content = entry["response"].get("content")
    text = content.get("text", "") if isinstance(content, dict) else ""
    if not isinstance(text, str):
        text = ""
    if isinstance(content, dict) and content.get("encoding") == "base64":
        try:
            text = base64.b64decode(text, validate=False).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError) as exc:
            raise SavedResponseError(f"{source}: response body is not valid base64") from exc
    return Response(url=_url(entry), status=_status(entry), headers=_headers(entry), body=text)
