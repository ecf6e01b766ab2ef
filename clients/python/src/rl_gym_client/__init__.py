"""A Python client of the rl-gym HTTP API, standard library only.

    from rl_gym_client import Client, Continuous

    client = Client("http://127.0.0.1:8080")
    run = client.launch(scenario_id="hr", task_ids=["hr__101_approve_leave_request"],
                        rollout_count=4, model_config={"model": "oracle", "provider": "builtin"},
                        continuous=Continuous(max_groups=10))
    for group in run.groups("trainer"):
        advantages = group.advantages()
        ...  # the update
        group.ack()
"""

from .client import DEFAULT_URL, EXPORT_FORMATS, Client, Run
from .errors import FieldError, RlGymConnectionError, RlGymError
from .feed import GroupStream
from .grpo import group_advantages, mean_std
from .schema import (
    TERMINAL_RUN_STATES,
    AckResult,
    Continuous,
    Feed,
    Group,
    GroupPage,
    PolicyUpdate,
    Rollout,
    RunStatus,
    TokenSequence,
)

__version__ = "0.1.0"

__all__ = [
    "AckResult",
    "Client",
    "Continuous",
    "DEFAULT_URL",
    "EXPORT_FORMATS",
    "Feed",
    "FieldError",
    "Group",
    "GroupPage",
    "GroupStream",
    "PolicyUpdate",
    "RlGymConnectionError",
    "RlGymError",
    "Rollout",
    "Run",
    "RunStatus",
    "TERMINAL_RUN_STATES",
    "TokenSequence",
    "group_advantages",
    "mean_std",
    "__version__",
]
