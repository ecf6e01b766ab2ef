"""The API's answers as dataclasses. Each keeps the whole JSON in ``raw`` (fields this
client does not know about yet are there)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from .grpo import group_advantages

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = [
    "TERMINAL_RUN_STATES",
    "Continuous",
    "Feed",
    "RunStatus",
    "TokenSequence",
    "Rollout",
    "Group",
    "GroupPage",
    "AckResult",
    "PolicyUpdate",
]

#: The run states after which nothing more happens (``paused`` is not one: a paused
#: run goes on when resumed).
TERMINAL_RUN_STATES = ("completed", "failed", "cancelled")


def _int(d: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = d.get(name)
    return default if value is None else int(value)


def _opt_int(d: Mapping[str, Any], name: str) -> Optional[int]:
    value = d.get(name)
    return None if value is None else int(value)


def _opt_float(d: Mapping[str, Any], name: str) -> Optional[float]:
    value = d.get(name)
    return None if value is None else float(value)


def _opt_str(d: Mapping[str, Any], name: str) -> Optional[str]:
    value = d.get(name)
    return None if value is None else str(value)


def _versions(d: Mapping[str, Any]) -> List[Optional[str]]:
    return [None if v is None else str(v) for v in d.get("policy_versions") or []]


@dataclass
class Continuous:
    """A launch's ``continuous`` settings: tasks drawn from ``task_ids`` by ``seed``,
    ``rollout_count`` rollouts per drawn task forming a group, until the run is
    cancelled or ``max_groups`` groups were drawn (``None``: no bound). Once
    ``max_unconsumed_groups`` complete groups wait for an acknowledgement, no new
    rollout starts until one comes; a rollout that fell more than ``max_staleness``
    policy versions behind is stale and is finished marked or restarted
    (``on_stale``: ``"finish"`` or ``"restart"``). ``seed`` draws the tasks (``None``:
    a random one)."""

    max_groups: Optional[int] = None
    max_unconsumed_groups: int = 8
    max_staleness: Optional[int] = None
    on_stale: str = "finish"
    seed: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "max_groups": self.max_groups,
            "max_unconsumed_groups": self.max_unconsumed_groups,
            "max_staleness": self.max_staleness,
            "on_stale": self.on_stale,
            "seed": self.seed,
        }


@dataclass
class Feed:
    """A run's group feed (``feed`` of ``GET /runs/{id}``)."""

    groups_scheduled: int
    groups_complete: int
    groups_unconsumed: int
    max_unconsumed_groups: Optional[int]
    waiting_for_consumer: bool
    policy_version: Optional[str]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Feed":
        return cls(
            groups_scheduled=_int(d, "groups_scheduled"),
            groups_complete=_int(d, "groups_complete"),
            groups_unconsumed=_int(d, "groups_unconsumed"),
            max_unconsumed_groups=_opt_int(d, "max_unconsumed_groups"),
            waiting_for_consumer=bool(d.get("waiting_for_consumer", False)),
            policy_version=_opt_str(d, "policy_version"),
        )


@dataclass
class RunStatus:
    """``GET /runs/{id}``: the run's state in one word (``status``: ``pending``,
    ``running``, ``paused``, ``completed``, ``failed``, ``cancelled``) and how many of
    its ``total`` rollouts are in each state."""

    run_id: str
    status: str
    total: int
    completed: int
    failed: int
    cancelled: int
    in_progress: int
    pending: int
    feed: Optional[Feed]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RunStatus":
        feed = d.get("feed")
        return cls(
            run_id=str(d.get("run_id", "")),
            status=str(d.get("status", "")),
            total=_int(d, "total"),
            completed=_int(d, "completed"),
            failed=_int(d, "failed"),
            cancelled=_int(d, "cancelled"),
            in_progress=_int(d, "in_progress"),
            pending=_int(d, "pending"),
            feed=Feed.from_json(feed) if isinstance(feed, Mapping) else None,
            raw=dict(d),
        )

    @property
    def finished_rollouts(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def finished(self) -> bool:
        """Nothing more will happen: a terminal ``status`` with every rollout
        finished (a continuous run: and no group still to be scheduled)."""
        if self.status not in TERMINAL_RUN_STATES:
            return False
        if self.finished_rollouts < self.total:
            return False
        feed = self.feed
        if feed is not None and feed.waiting_for_consumer:
            return False
        return True


@dataclass
class TokenSequence:
    """A rollout's whole token sequence (a ``format=tokens`` export line;
    ``policy_versions`` has one entry per model turn, ``None`` for a turn of a policy
    without a version):
    ``input_ids = prompt_ids + response_ids``; ``loss_mask`` and ``logprobs`` are
    aligned with ``response_ids`` (1 and the sampled id's log-probability where the
    model sampled it, 0 and 0.0 where rl-gym wrote it)."""

    prompt_ids: List[int]
    response_ids: List[int]
    loss_mask: List[int]
    logprobs: Optional[List[float]]
    reward: Optional[float]
    policy_versions: List[Optional[str]]
    turns: List[Dict[str, Any]]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TokenSequence":
        logprobs = d.get("logprobs")
        return cls(
            prompt_ids=[int(i) for i in d.get("prompt_ids") or []],
            response_ids=[int(i) for i in d.get("response_ids") or []],
            loss_mask=[int(i) for i in d.get("loss_mask") or []],
            logprobs=None if logprobs is None else [float(x) for x in logprobs],
            reward=_opt_float(d, "reward"),
            policy_versions=_versions(d),
            turns=[dict(t) for t in d.get("turns") or []],
            raw=dict(d),
        )

    @property
    def input_ids(self) -> List[int]:
        return self.prompt_ids + self.response_ids

    def _logprobs_or_zeros(self) -> List[float]:
        if self.logprobs is not None:
            return list(self.logprobs)
        return [0.0] * len(self.response_ids)

    def to_trl(self) -> Dict[str, Any]:
        """One sample of TRL ``GRPOTrainer``'s ``rollout_func`` output:
        ``prompt_ids``, ``completion_ids``, ``logprobs`` and ``env_mask`` (1 = a token
        the model sampled; TRL multiplies it into the completion mask)."""
        return {
            "prompt_ids": list(self.prompt_ids),
            "completion_ids": list(self.response_ids),
            "logprobs": self._logprobs_or_zeros(),
            "env_mask": list(self.loss_mask),
        }

    def to_verl(self) -> Dict[str, Any]:
        """The token fields of a verl ``AgentLoopOutput``."""
        return {
            "prompt_ids": list(self.prompt_ids),
            "response_ids": list(self.response_ids),
            "response_mask": list(self.loss_mask),
            "response_logprobs": None if self.logprobs is None else list(self.logprobs),
            "reward_score": self.reward,
            "num_turns": len(self.turns),
        }

    def to_prime_rl(self) -> Dict[str, Any]:
        """The fields of a prime-rl ``TrainingSample`` (without its advantage)."""
        return {
            "prompt_ids": list(self.prompt_ids),
            "prompt_mask": [False] * len(self.prompt_ids),
            "completion_ids": list(self.response_ids),
            "completion_mask": [bool(m) for m in self.loss_mask],
            "completion_logprobs": self._logprobs_or_zeros(),
        }


@dataclass
class Rollout:
    """One rollout of a group: its outcome, the policy version of each of its model
    turns (``None`` for a turn answered before any version was set), its
    conversation (OpenAI chat messages) and, for a token-exact run, its tokens."""

    rollout_id: str
    status: str
    reward: Optional[float]
    stale: bool
    policy_versions: List[Optional[str]]
    tokens: Optional[TokenSequence]
    messages: List[Dict[str, Any]]
    raw: Dict[str, Any] = field(repr=False, compare=False)
    #: The rollout's environment seed, when the server says.
    seed: Optional[int] = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Rollout":
        tokens = d.get("tokens")
        return cls(
            rollout_id=str(d.get("rollout_id", "")),
            status=str(d.get("status", "")),
            reward=_opt_float(d, "reward"),
            stale=bool(d.get("stale", False)),
            policy_versions=_versions(d),
            tokens=TokenSequence.from_json(tokens) if isinstance(tokens, Mapping) else None,
            messages=[dict(m) for m in d.get("messages") or []],
            raw=dict(d),
            seed=_opt_int(d, "seed"),
        )


@dataclass
class Group:
    """A complete group (GRPO's group): the rollouts of one drawn task.

    ``ack()`` acknowledges it for the consumer it was delivered to; until then the
    server delivers it to that consumer again (after a restart, say)."""

    group_id: int
    task_id: str
    rollouts: List[Rollout]
    stale_count: int
    restarted_count: int
    raw: Dict[str, Any] = field(repr=False, compare=False)
    #: Ids of rollouts replaced because they went stale (``on_stale="restart"``).
    restarted: List[str] = field(default_factory=list)
    run_id: Optional[str] = None
    consumer: Optional[str] = None
    _client: Optional["Client"] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(
        cls,
        d: Mapping[str, Any],
        *,
        run_id: Optional[str] = None,
        consumer: Optional[str] = None,
        client: Optional["Client"] = None,
    ) -> "Group":
        return cls(
            group_id=int(d["group_id"]),
            task_id=str(d.get("task_id", "")),
            rollouts=[Rollout.from_json(r) for r in d.get("rollouts") or []],
            stale_count=_int(d, "stale_count"),
            restarted_count=_int(d, "restarted_count"),
            raw=dict(d),
            restarted=[str(r) for r in d.get("restarted") or []],
            run_id=run_id,
            consumer=consumer,
            _client=client,
        )

    @property
    def rewards(self) -> List[Optional[float]]:
        """Each rollout's reward, in order (``None`` for one without a verdict)."""
        return [r.reward for r in self.rollouts]

    def advantages(
        self, eps: float = 1e-4, missing: float = 0.0, ddof: int = 0, scale: bool = True
    ) -> List[float]:
        """GRPO advantages of the rollouts, in order (see
        :func:`rl_gym_client.grpo.group_advantages`)."""
        return group_advantages(self.rewards, eps=eps, missing=missing, ddof=ddof, scale=scale)

    def ack(self) -> "AckResult":
        """Acknowledge this group for its consumer: it is not delivered to that
        consumer again. Call it once the update that used it is durable."""
        if self._client is None or self.run_id is None or self.consumer is None:
            raise RuntimeError("this Group was not delivered by a Client: use Client.ack")
        return self._client.ack(self.run_id, self.consumer, [self.group_id])


@dataclass
class GroupPage:
    """One answer of ``GET /runs/{id}/groups``."""

    run_id: str
    consumer: str
    groups: List[Group]
    done: bool
    raw: Dict[str, Any] = field(repr=False, compare=False)


@dataclass
class AckResult:
    """``POST /runs/{id}/groups/ack``: the ids acknowledged now and the ids this
    consumer had acknowledged before."""

    acknowledged: List[int]
    already_acknowledged: List[int]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "AckResult":
        return cls(
            acknowledged=[int(i) for i in d.get("acknowledged") or []],
            already_acknowledged=[int(i) for i in d.get("already_acknowledged") or []],
        )


@dataclass
class PolicyUpdate:
    """``POST /runs/{id}/policy``: the version now in force and its ordinal (its
    place in the run's sequence of policy versions, as the server counts it)."""

    run_id: str
    version: str
    ordinal: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PolicyUpdate":
        return cls(
            run_id=str(d.get("run_id", "")),
            version=str(d.get("version", "")),
            ordinal=_int(d, "ordinal"),
        )
