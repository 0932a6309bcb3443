"""Validated ranged GETs: the only way Pippin reads part of a remote file.

A range answer must be ``206`` with a ``Content-Range`` naming exactly the bytes asked for
(and the file size, when known), a matching ``Content-Length`` and no content coding. A
``200`` carrying the whole file, a shifted range or a 5xx is refused; the ones a retry may
cure raise :class:`RetryableNetworkError`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from installer.errors import NetworkError

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Request errors no retry can cure: a malformed URL or proxy, a scheme nobody speaks.
_HOPELESS = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
             requests.exceptions.InvalidSchema, requests.exceptions.URLRequired,
             requests.exceptions.InvalidHeader)


class RetryableNetworkError(NetworkError):
    """A transient failure: dropped connection, 5xx, wrong or missing range in the answer."""


class UnreachableError(NetworkError):
    """No connection to the host at all: refused, no route, no DNS, connect timeout.
    The session already retried the refusals; with no network this is the answer."""


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.ProxyError):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, NewConnectionError):  # refused, unreachable, DNS (a subclass)
            return True
        inner = getattr(cur, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in cur.args if isinstance(a, BaseException)), None)
        cur = inner or cur.__cause__ or cur.__context__
    return False


def request_error(url: str, exc: requests.RequestException, what: str = "") -> NetworkError:
    """Our error for a failed request to ``url`` (``what``: the request, for the message;
    default ``GET url``): :class:`UnreachableError` naming the host when no connection
    could be made, :class:`RetryableNetworkError` for what a retry may cure."""
    what = what or f"GET {url}"
    if isinstance(exc, _HOPELESS):
        return NetworkError(f"{what}: {reason(exc)}")
    if _is_unreachable(exc):
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1] or url
        via = " (through the proxy)" if isinstance(exc, requests.exceptions.ProxyError) else ""
        return UnreachableError(f"cannot reach {host}{via}: {reason(exc)}",
                                hint="check the network connection and proxy settings")
    return RetryableNetworkError(f"{what}: {reason(exc)}")


def reason(exc: BaseException) -> str:
    """A short cause for a requests failure ("Connection refused", "read timed out",
    "Remote end closed connection without response"), not urllib3's nested repr."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "read timed out"
    seen: set[int] = set()
    cur: BaseException | None = exc
    text = None  # the innermost plain message met on the way down
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, TimeoutError) or type(cur).__name__ == "ReadTimeoutError":
            return "read timed out"
        if isinstance(cur, OSError) and cur.strerror:
            return cur.strerror
        if cur.args and isinstance(cur.args[0], str):
            text = cur.args[0]
        inner = getattr(cur, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in cur.args if isinstance(a, BaseException)), None)
        cur = inner or cur.__cause__ or cur.__context__
    text = text or str(exc)
    return text if len(text) <= 160 else text[:157] + "..."


def _where(url: str, start: int, end: int) -> str:
    return f"{url} bytes {start}-{end - 1}" if start >= 0 else f"{url} last {-start} bytes"


def get_range(
    session: requests.Session,
    url: str,
    start: int,
    end: int | None,
    *,
    total: int | None = None,
    timeout: tuple[float, float] = (10.0, 30.0),
) -> tuple[requests.Response, int, int, int]:
    """GET bytes ``[start, end)`` of ``url``; a negative ``start`` with ``end=None`` asks
    for the last ``-start`` bytes.

    Returns the streaming response (the caller closes it) and the validated
    ``(first, end, total)`` it carries.
    """
    spec = f"bytes={start}-{end - 1}" if end is not None else f"bytes={start}"
    where = _where(url, start, end if end is not None else 0)
    try:
        resp = session.get(url, headers={"Range": spec, "Accept-Encoding": "identity"},
                           stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise request_error(url, exc, f"GET {where}") from exc
    try:
        first, last, size = _check(resp, where, start, end, total)
    except NetworkError:
        resp.close()
        raise
    return resp, first, last + 1, size


def _check(resp: requests.Response, where: str, start: int, end: int | None,
           total: int | None) -> tuple[int, int, int]:
    if resp.status_code != 206:
        if resp.status_code == 200:
            raise RetryableNetworkError(
                f"GET {where}: server answered 200 (whole file) to a range request",
                hint="the server or a proxy ignores Range; try another mirror (IPSW_BASE)")
        if resp.status_code in _RETRY_STATUS:
            raise RetryableNetworkError(f"GET {where}: HTTP {resp.status_code}")
        raise NetworkError(f"GET {where}: HTTP {resp.status_code}")
    if resp.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise RetryableNetworkError(f"GET {where}: unexpected Content-Encoding "
                                    f"{resp.headers['Content-Encoding']}")
    cr = resp.headers.get("Content-Range", "")
    m = _CONTENT_RANGE.fullmatch(cr.strip())
    if m is None or m.group(3) == "*":
        raise RetryableNetworkError(f"GET {where}: bad Content-Range {cr!r}")
    first, last, size = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if end is None:  # suffix request
        want_first, want_last = max(0, size + start), size - 1
    else:
        want_first, want_last = start, min(end, size) - 1
    if (first, last) != (want_first, want_last) or last >= size or (
            total is not None and size != total):
        raise RetryableNetworkError(
            f"GET {where}: server sent Content-Range {cr!r}, not the bytes asked for")
    clen = resp.headers.get("Content-Length")
    if clen is not None and clen.strip() != str(last - first + 1):
        raise RetryableNetworkError(f"GET {where}: Content-Length {clen} does not match "
                                    f"Content-Range {cr!r}")
    return first, last, size
