"""Consuming a run's groups: a long-polling iterator."""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Callable, Deque, Iterable, Iterator, List, Set, Union

from .schema import AckResult, Group, GroupPage

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["GroupStream"]

#: The server's bound on ``limit``.
MAX_LIMIT = 100


class GroupStream(Iterator[Group]):
    """Yields a run's complete groups for one consumer, long-polling
    ``GET /runs/{id}/groups``; ends when the server says ``done`` (the run will
    produce no more groups and this consumer acknowledged every one). Groups come in
    group order among those complete: one that completes before an earlier one comes
    first.

    Delivery is at-least-once: the server hands a group to a consumer until that
    consumer acknowledges it, so a group yielded and not acknowledged comes again
    after a restart (a new stream, or a new process, with the same consumer name).
    Within one stream a group is yielded once: the stream remembers what it yielded,
    and a poll that answers only groups it already yielded (held, not yet
    acknowledged) is asked again after a short pause, with a limit raised by the number
    held, so groups behind them are seen.

    The stream also ends, without ``done``, when the only groups left are ones it
    already yielded and the run is finished (nothing new can come): acknowledge them
    after the loop. Holding the run's ``max_unconsumed_groups`` groups
    unacknowledged (with no other consumer acknowledging them) stalls a continuous
    run: it waits for its consumers.
    """

    def __init__(
        self,
        client: "Client",
        run_id: str,
        consumer: str,
        wait: int = 20,
        limit: int = 16,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.consumer = consumer
        self.wait = wait
        self.limit = limit
        #: True once the server said ``done`` (or the run finished with nothing new).
        self.done = False
        self._buffer: Deque[Group] = collections.deque()
        self._held: Set[int] = set()
        self._sleep = sleep
        self._idle_polls = 0

    def __iter__(self) -> "GroupStream":
        return self

    @property
    def held(self) -> List[int]:
        """Ids of groups this stream yielded that the server still hands to this
        consumer (as of the last poll): not yet acknowledged."""
        return sorted(self._held)

    def __next__(self) -> Group:
        while not self._buffer:
            if self.done:
                raise StopIteration
            self._poll()
        group = self._buffer.popleft()
        self._held.add(group.group_id)
        return group

    def _poll(self) -> None:
        limit = min(MAX_LIMIT, self.limit + len(self._held))
        page: GroupPage = self.client.poll_groups(
            self.run_id, self.consumer, wait=self.wait, limit=limit
        )
        answered = [g.group_id for g in page.groups]
        if len(page.groups) < limit:
            # The whole backlog was answered: a held group missing from it has been
            # acknowledged (by us or through the client) and will not come back.
            self._held.intersection_update(answered)
        fresh = [g for g in page.groups if g.group_id not in self._held]
        self._buffer.extend(fresh)
        if page.done:
            self.done = True
            return
        if fresh:
            self._idle_polls = 0
            return
        if page.groups:
            # Only groups we hold: the server answered at once without waiting.
            # Nothing new can come if the run is over and the page was the whole
            # backlog; otherwise pause before asking again.
            if len(page.groups) < limit and self.client.status(self.run_id).finished:
                self.done = True
                return
            self._idle_polls += 1
            self._sleep(min(1.0, 0.05 * (2 ** min(self._idle_polls, 5))))
        elif self.wait <= 0:
            # Nothing yet and no long poll: do not spin.
            self._sleep(0.2)

    def ack(self, groups: Union[Group, int, Iterable[Union[Group, int]]]) -> AckResult:
        """Acknowledge one group or several (``Group`` objects or ids) for this
        stream's consumer."""
        if isinstance(groups, (Group, int)):
            groups = [groups]
        ids = [g.group_id if isinstance(g, Group) else int(g) for g in groups]
        result = self.client.ack(self.run_id, self.consumer, ids)
        self._held.difference_update(ids)
        return result

    def close(self) -> None:
        """Stop iterating (groups yielded and not acknowledged will come again)."""
        self.done = True
        self._buffer.clear()
