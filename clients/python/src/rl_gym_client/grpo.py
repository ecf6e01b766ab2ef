"""Group-relative advantages (GRPO), in plain Python."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

__all__ = ["group_advantages", "mean_std"]


def mean_std(values: Sequence[float], ddof: int = 0) -> Tuple[float, float]:
    """The mean and standard deviation of ``values`` (``ddof=0``: population, as
    numpy's default; ``ddof=1``: sample, as ``torch.std``'s default). The std of fewer
    than ``ddof + 1`` values is 0."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std of no values")
    mean = math.fsum(values) / n
    if n - ddof <= 0:
        return mean, 0.0
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - ddof)
    return mean, math.sqrt(variance)


def group_advantages(
    rewards: Sequence[Optional[float]],
    eps: float = 1e-4,
    missing: float = 0.0,
    ddof: int = 0,
    scale: bool = True,
) -> List[float]:
    """GRPO's advantage of each rollout of one group: ``(r - mean) / (std + eps)``
    over the group's rewards (``scale=False``: ``r - mean`` only, as Dr. GRPO).

    A reward of ``None`` (a failed rollout, which has no verdict) counts as
    ``missing``. A group whose rewards are all equal gets advantages of 0: it says
    nothing about which completion was better."""
    values = [missing if r is None else float(r) for r in rewards]
    if not values:
        return []
    mean, std = mean_std(values, ddof)
    if not scale:
        return [v - mean for v in values]
    if std == 0.0:
        return [0.0 for _ in values]
    return [(v - mean) / (std + eps) for v in values]
