"""Errors raised by the client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple, Union

__all__ = ["FieldError", "RlGymError", "RlGymConnectionError"]


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a 422 answer: where (``loc``), what, and its type."""

    loc: Tuple[Union[str, int], ...]
    msg: str
    type: str

    @property
    def field(self) -> str:
        """The field's path without the leading ``body``/``query``, dotted:
        ``continuous.max_groups``."""
        parts = [str(p) for p in self.loc]
        if parts and parts[0] in ("body", "query", "path"):
            parts = parts[1:]
        return ".".join(parts)

    def __str__(self) -> str:
        return f"{'.'.join(str(p) for p in self.loc)}: {self.msg}"


class RlGymError(Exception):
    """The server answered with an error status (4xx or 5xx).

    ``status`` is the HTTP status, ``detail`` the body's ``detail`` as the server sent
    it (a message, or for a 422 a list of ``{"loc", "msg", "type"}``), ``code`` the
    body's ``code`` (``validation_error``, ``run_not_found``, ...; ``None`` when the
    body was not the server's JSON error), ``errors`` the 422's fields parsed, and
    ``retry_after`` the ``Retry-After`` header in seconds when there was one.
    """

    def __init__(
        self,
        status: int,
        detail: Any,
        code: Optional[str] = None,
        *,
        method: str = "",
        url: str = "",
        retry_after: Optional[float] = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.code = code
        self.method = method
        self.url = url
        self.retry_after = retry_after
        self.errors: List[FieldError] = _field_errors(detail)
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"{self.status}"
        if self.code:
            head += f" {self.code}"
        if self.url:
            head += f" ({self.method} {self.url})" if self.method else f" ({self.url})"
        if self.errors:
            return head + ": " + "; ".join(str(e) for e in self.errors)
        return f"{head}: {self.detail}"

    def field_errors(self, field: str) -> List[FieldError]:
        """The 422's errors about ``field`` (dotted, without ``body``/``query``: ``limit``,
        ``continuous.on_stale``) or inside it (``group_ids`` finds ``group_ids.0``), or
        whose ``loc`` ends with it."""
        return [
            e
            for e in self.errors
            if e.field == field
            or e.field.startswith(field + ".")
            or (e.loc and str(e.loc[-1]) == field)
        ]


class RlGymConnectionError(ConnectionError):
    """The server could not be reached (refused, reset, DNS, timeout)."""

    def __init__(self, url: str, reason: object) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach {url}: {reason}")


def _field_errors(detail: Any) -> List[FieldError]:
    if not isinstance(detail, list):
        return []
    out: List[FieldError] = []
    for item in detail:
        if isinstance(item, dict) and "loc" in item:
            loc = item.get("loc") or []
            out.append(
                FieldError(
                    loc=tuple(loc) if isinstance(loc, list) else (str(loc),),
                    msg=str(item.get("msg", "")),
                    type=str(item.get("type", "")),
                )
            )
    return out
