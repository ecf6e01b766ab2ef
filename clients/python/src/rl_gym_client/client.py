"""The client of an rl-gym server."""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Union

from . import _http
from .feed import GroupStream
from .schema import AckResult, Group, GroupPage, PolicyUpdate, RunStatus

__all__ = ["Client", "Run", "DEFAULT_URL", "EXPORT_FORMATS"]

DEFAULT_URL = "http://127.0.0.1:8080"
EXPORT_FORMATS = ("sft", "rl", "preference", "tokens")

GroupRef = Union[Group, int]


def _jsonable(value: Any) -> Any:
    """A launch field as JSON: objects with ``to_json()`` (``Continuous``) are
    converted, ``continuous=True`` means every default."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    return value


class Client:
    """A client of one rl-gym server.

    ``base_url`` is the server's root (``http://127.0.0.1:8080``; a ``/v1`` prefix
    works too), ``token`` is sent as ``Authorization: Bearer`` when given, ``timeout``
    bounds each request in seconds (a long poll gets its ``wait`` on top), and a 429
    is asked again once after its ``Retry-After`` when that is at most
    ``max_retry_wait`` seconds (else, or when the second answer is a 429 too,
    :class:`RlGymError` is raised).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: Optional[str] = None,
        timeout: float = 30.0,
        *,
        max_retry_wait: float = 60.0,
    ) -> None:
        self._http = _http.Transport(base_url, token, timeout, max_retry_wait)

    @classmethod
    def from_env(cls, **kwargs: Any) -> "Client":
        """A client of ``RL_GYM_URL`` (default ``http://127.0.0.1:8080``) with the token
        ``RL_GYM_API_TOKEN``, as the ``rl-gym`` command line reads them."""
        kwargs.setdefault("base_url", os.environ.get("RL_GYM_URL") or DEFAULT_URL)
        kwargs.setdefault("token", os.environ.get("RL_GYM_API_TOKEN") or None)
        return cls(**kwargs)

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def timeout(self) -> float:
        return self._http.timeout

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    # -- Any endpoint ------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, _http.QueryValue]] = None,
        body: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Any endpoint: ``path`` from the root (``/scenarios``); the answer's JSON.
        Raises :class:`RlGymError` for an error status."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        return self._http.request(method, path, query=query, body=body, timeout=timeout)

    # -- Runs ----------------------------------------------------------------------

    def launch(self, body: Optional[Mapping[str, Any]] = None, **fields: Any) -> "Run":
        """``POST /runs``: launch a run described by ``body`` and/or keyword fields
        (which win): ``scenario_id``, ``task_ids``, ``rollout_count``,
        ``max_parallel``, ``model_config`` ({``model``, ``provider``, ...}),
        ``continuous`` (a :class:`Continuous`, a dict, or ``True`` for its defaults),
        and any other field of the API."""
        merged: Dict[str, Any] = dict(body or {})
        merged.update(fields)
        if merged.get("continuous") is True:
            merged["continuous"] = {}
        merged = {name: _jsonable(value) for name, value in merged.items()}
        answer = self._http.request("POST", "/runs", body=merged)
        return Run(self, answer)

    def status(self, run_id: str, rollouts: bool = False) -> RunStatus:
        """``GET /runs/{id}``: the counts (with ``rollouts=True`` also the per-rollout
        breakdown, in ``raw["rollouts"]``)."""
        query = None if rollouts else {"rollouts": False}
        answer = self._http.request("GET", _http.path("runs", run_id), query=query)
        return RunStatus.from_json(answer)

    def watch(
        self, run_id: str, interval: float = 0.5, timeout: Optional[float] = None
    ) -> Iterator[RunStatus]:
        """Yields the run's status when it changes (the first and the last always),
        polling every ``interval`` seconds, until it is finished
        (:attr:`RunStatus.finished`). A paused run is not finished. ``timeout``
        (seconds) raises :class:`TimeoutError` if it is still going then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Optional[Dict[str, Any]] = None
        while True:
            status = self.status(run_id)
            if status.finished:
                yield status
                return
            if status.raw != last:
                last = status.raw
                yield status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"run {run_id} not finished after {timeout} s: {status.status}"
                )
            time.sleep(interval)

    def wait(
        self, run_id: str, interval: float = 0.5, timeout: Optional[float] = None
    ) -> RunStatus:
        """The run's status once it is finished (see :meth:`watch`)."""
        status: Optional[RunStatus] = None
        for status in self.watch(run_id, interval=interval, timeout=timeout):
            pass
        assert status is not None
        return status

    def cancel(self, run_id: str) -> Dict[str, Any]:
        """``POST /runs/{id}/cancel``: ``{"run_id", "cancelled_rollouts"}``."""
        answer: Dict[str, Any] = self._http.request("POST", _http.path("runs", run_id, "cancel"))
        return answer

    def export(
        self,
        run_id: str,
        format: str = "rl",
        *,
        min_score: Optional[float] = None,
        max_pairs_per_task: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        """``GET /runs/{id}/export``: every line of the export, parsed (``format``
        ``sft``, ``rl``, ``preference`` or ``tokens``)."""
        return list(
            self.iter_export(
                run_id, format, min_score=min_score, max_pairs_per_task=max_pairs_per_task
            )
        )

    def iter_export(
        self,
        run_id: str,
        format: str = "rl",
        *,
        min_score: Optional[float] = None,
        max_pairs_per_task: Optional[int] = None,
    ) -> Iterator[Dict[str, Any]]:
        """:meth:`export` line by line as the server streams it (a big run is never
        held in memory). The request is sent on the first ``next()``."""
        query: Dict[str, _http.QueryValue] = {
            "format": format,
            "min_score": min_score,
            "max_pairs_per_task": max_pairs_per_task,
        }
        return self._http.request_lines(
            "GET", _http.path("runs", run_id, "export"), query=query
        )

    # -- The group feed --------------------------------------------------------------

    def _poll_timeout(self, wait: int) -> float:
        return self.timeout + wait

    def poll_groups(
        self, run_id: str, consumer: str, wait: int = 20, limit: int = 16
    ) -> GroupPage:
        """One ``GET /runs/{id}/groups``: up to ``limit`` (1–100) complete groups
        ``consumer`` has not acknowledged, oldest first, waiting up to ``wait`` whole
        seconds (0–60) for one when none is ready."""
        wait = int(wait)
        query: Dict[str, _http.QueryValue] = {
            "consumer": consumer,
            "wait": wait,
            "limit": limit,
        }
        answer = self._http.request(
            "GET",
            _http.path("runs", run_id, "groups"),
            query=query,
            timeout=self._poll_timeout(wait),
        )
        answer_run = str(answer.get("run_id", run_id))
        answer_consumer = str(answer.get("consumer", consumer))
        groups = [
            Group.from_json(g, run_id=answer_run, consumer=answer_consumer, client=self)
            for g in answer.get("groups") or []
        ]
        return GroupPage(
            run_id=answer_run,
            consumer=answer_consumer,
            groups=groups,
            done=bool(answer.get("done", False)),
            raw=answer,
        )

    def groups(
        self, run_id: str, consumer: str, wait: int = 20, limit: int = 16
    ) -> GroupStream:
        """An iterator of the run's complete groups for ``consumer`` (see
        :class:`GroupStream`): ``for group in client.groups(run, "trainer"): ...;
        group.ack()``. It ends once the run produces no more groups and every one was
        acknowledged."""
        return GroupStream(self, run_id, consumer, wait=wait, limit=limit)

    def ack(
        self, run_id: str, consumer: str, group_ids: Union[GroupRef, Iterable[GroupRef]]
    ) -> AckResult:
        """``POST /runs/{id}/groups/ack``: ``consumer`` is done with these groups
        (ids or :class:`Group` objects); they are not delivered to it again."""
        if isinstance(group_ids, (Group, int)):
            group_ids = [group_ids]
        ids = [g.group_id if isinstance(g, Group) else int(g) for g in group_ids]
        answer = self._http.request(
            "POST",
            _http.path("runs", run_id, "groups", "ack"),
            body={"consumer": consumer, "group_ids": ids},
        )
        return AckResult.from_json(answer)

    def set_policy(
        self, run_id: str, version: str, base_url: Optional[str] = None
    ) -> PolicyUpdate:
        """``POST /runs/{id}/policy``: every later model turn of the run is written by
        policy ``version`` (served at ``base_url`` when given, else where it was)."""
        answer = self._http.request(
            "POST",
            _http.path("runs", run_id, "policy"),
            body={"version": version, "base_url": base_url},
        )
        return PolicyUpdate.from_json(answer)


class Run:
    """A launched run: its id, the launch's answer, and the client's calls bound to
    it (``run.wait()``, ``run.groups("trainer")``, ...)."""

    def __init__(self, client: Client, launched: Mapping[str, Any]) -> None:
        self.client = client
        self.raw: Dict[str, Any] = dict(launched)
        self.run_id: str = str(launched["run_id"])
        run_status = launched.get("run_status")
        #: The status as the launch answered it.
        self.launched_status: Optional[RunStatus] = (
            RunStatus.from_json(run_status) if isinstance(run_status, Mapping) else None
        )
        #: The scheduled rollouts as the launch answered them.
        self.rollouts: List[Dict[str, Any]] = list(launched.get("rollouts") or [])

    def __repr__(self) -> str:
        return f"Run({self.run_id!r})"

    def status(self, rollouts: bool = False) -> RunStatus:
        return self.client.status(self.run_id, rollouts=rollouts)

    def watch(self, interval: float = 0.5, timeout: Optional[float] = None) -> Iterator[RunStatus]:
        return self.client.watch(self.run_id, interval=interval, timeout=timeout)

    def wait(self, interval: float = 0.5, timeout: Optional[float] = None) -> RunStatus:
        return self.client.wait(self.run_id, interval=interval, timeout=timeout)

    def cancel(self) -> Dict[str, Any]:
        return self.client.cancel(self.run_id)

    def export(self, format: str = "rl", **params: Any) -> List[Dict[str, Any]]:
        return self.client.export(self.run_id, format, **params)

    def groups(self, consumer: str, wait: int = 20, limit: int = 16) -> GroupStream:
        return self.client.groups(self.run_id, consumer, wait=wait, limit=limit)

    def ack(self, consumer: str, group_ids: Union[GroupRef, Iterable[GroupRef]]) -> AckResult:
        return self.client.ack(self.run_id, consumer, group_ids)

    def set_policy(self, version: str, base_url: Optional[str] = None) -> PolicyUpdate:
        return self.client.set_policy(self.run_id, version, base_url)
