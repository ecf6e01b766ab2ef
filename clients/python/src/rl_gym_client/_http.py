"""The HTTP transport: urllib from the standard library, nothing else."""

from __future__ import annotations

import email.utils
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Union

from .errors import RlGymConnectionError, RlGymError

QueryValue = Union[str, int, float, bool, None]

USER_AGENT = "rl-gym-client-python"


def normalize_base_url(base_url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; ValueError for
    anything else (no query or fragment: paths are appended to it)."""
    parsed = urllib.parse.urlsplit(base_url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"base_url must be an http(s) URL with a host, not {base_url!r}")
    if parsed.query or parsed.fragment:
        raise ValueError(f"base_url may not have a query or fragment: {base_url!r}")
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))


def path(*segments: Union[str, int]) -> str:
    """``/a/b/c`` with every segment percent-encoded (a run id cannot add a path)."""
    return "".join("/" + urllib.parse.quote(str(s), safe="") for s in segments)


def query_string(query: Optional[Mapping[str, QueryValue]]) -> str:
    """``?a=1&b=true`` from a mapping; ``None`` values are left out, booleans are
    ``true``/``false``; empty when nothing is left."""
    if not query:
        return ""
    pairs = []
    for name, value in query.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append((name, str(value)))
    if not pairs:
        return ""
    return "?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None if absent or
    unreadable. Never negative."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class Transport:
    """One server: its base URL, token and timeouts."""

    def __init__(
        self,
        base_url: str,
        token: Optional[str] = None,
        timeout: float = 30.0,
        max_retry_wait: float = 60.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        opener: Optional[urllib.request.OpenerDirector] = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.token = token
        self.timeout = timeout
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._opener = opener or urllib.request.build_opener()

    def url(self, path: str, query: Optional[Mapping[str, QueryValue]] = None) -> str:
        return self.base_url + path + query_string(query)

    def headers(self, has_body: bool) -> Dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if has_body:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _open(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, QueryValue]],
        body: Any,
        timeout: Optional[float],
    ) -> Any:
        """The open response of a 2xx; RlGymError otherwise (a 429 is asked again
        once, after its Retry-After, if that is at most ``max_retry_wait``)."""
        url = self.url(path, query)
        data = None if body is None else json.dumps(body).encode("utf-8")
        attempts = 2
        for attempt in range(attempts):
            request = urllib.request.Request(
                url, data=data, method=method, headers=self.headers(data is not None)
            )
            try:
                return self._opener.open(
                    request, timeout=self.timeout if timeout is None else timeout
                )
            except urllib.error.HTTPError as error:
                failure = _error_of(error, method, url)
                retry = failure.retry_after
                if (
                    failure.status == 429
                    and attempt + 1 < attempts
                    and retry is not None
                    and retry <= self.max_retry_wait
                ):
                    self._sleep(retry)
                    continue
                raise failure from None
            except urllib.error.URLError as error:
                raise RlGymConnectionError(url, error.reason) from None
            except (socket.timeout, TimeoutError, ConnectionError) as error:
                raise RlGymConnectionError(url, error) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, QueryValue]] = None,
        body: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """The answer's JSON (None for an empty body)."""
        response = self._open(method, path, query, body, timeout)
        with response:
            try:
                raw = response.read()
            except (socket.timeout, TimeoutError, ConnectionError) as error:
                raise RlGymConnectionError(self.url(path, query), error) from None
        if not raw.strip():
            return None
        return json.loads(raw.decode("utf-8"))

    def request_lines(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, QueryValue]] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[Dict[str, Any]]:
        """A JSON Lines answer, one parsed object per line, read as it arrives."""
        response = self._open(method, path, query, None, timeout)
        with response:
            for line in response:
                line = line.strip()
                if line:
                    yield json.loads(line.decode("utf-8"))


def _error_of(error: urllib.error.HTTPError, method: str, url: str) -> RlGymError:
    try:
        raw = error.read()
    except Exception:  # a body cut short: the status still says what happened
        raw = b""
    finally:
        error.close()
    detail: Any = raw.decode("utf-8", errors="replace")
    code: Optional[str] = None
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "detail" in parsed:
        detail = parsed["detail"]
        code = parsed.get("code") if isinstance(parsed.get("code"), str) else None
    elif not detail:
        detail = error.reason
    headers = error.headers
    retry_after = parse_retry_after(headers.get("Retry-After") if headers else None)
    return RlGymError(
        error.code, detail, code, method=method, url=url, retry_after=retry_after
    )

