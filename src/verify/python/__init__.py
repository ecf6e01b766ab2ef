"""Verifiers of an rl-gym scenario: score a rollout exactly as the server does.

    >>> import json
    >>> import PACKAGE_NAME as verifiers
    >>> rollout = json.load(open("rollout.json"))  # GET /runs/{run_id}/rollouts/{rollout_id}
    >>> verifiers.verify(rollout["task_id"], rollout)
    {'score': 1.0, 'label': 'Full Credit', 'checks': [{'id': ..., 'passed': True, ...}]}

The checks of every task of the scenario are in ``tasks.json``, written by the
server from the very task definitions it scores with; ``checks.py`` is the check
language. Standard library only, Python 3.8 or newer. The package also runs from
the zip archive itself (``sys.path.insert(0, "<scenario>_verifiers.zip")``).
"""

import json
import pkgutil

from .checks import FULL_CREDIT, NO_CREDIT, PARTIAL_CREDIT, combine, verify_task
from .family import instance

__all__ = [
    "FULL_CREDIT",
    "NO_CREDIT",
    "PARTIAL_CREDIT",
    "SCENARIO_ID",
    "TASKS",
    "combine",
    "task_ids",
    "verify",
    "verify_task",
]

_BUNDLE = json.loads(pkgutil.get_data(__name__, "tasks.json").decode("utf-8"))

#: The scenario these verifiers belong to.
SCENARIO_ID = _BUNDLE["scenario_id"]

#: task_id -> {"task_id", "name", "checks", "scoring"}, as in ``tasks.json``.
TASKS = {task["task_id"]: task for task in _BUNDLE["tasks"]}


def task_ids():
    """The ids of the scenario's tasks, in the server's order."""
    return [task["task_id"] for task in _BUNDLE["tasks"]]


def verify(task_id, rollout):
    """Scores ``rollout`` (the parsed JSON of the server's rollout view) against the
    checks of ``task_id``.

    Reads the rollout's ``trajectory`` (OpenAI chat messages) and its
    ``environment_state`` (the final state, keyed by tool-server name). A missing
    or null ``environment_state`` counts as an empty environment.

    Returns ``{"score": float, "label": str, "checks": [{"id", "description",
    "passed", "reason"}]}``, equal to the server's ``verdict`` for the same rollout.
    Raises ``KeyError`` for a task that is not in this scenario.
    """
    task = TASKS.get(task_id)
    if task is None:
        raise KeyError(
            "task {!r} is not in scenario {!r}; its tasks are {}".format(
                task_id, SCENARIO_ID, ", ".join(task_ids())
            )
        )
    task = instance(task, rollout.get("instance_seed") or 0)
    return verify_task(task, rollout.get("environment_state"), rollout.get("trajectory") or [])
