"""Command line: ``python -m PACKAGE_NAME ROLLOUT.json [--task TASK_ID]``.

Prints the verdict of a rollout (the JSON of ``GET /runs/{run_id}/rollouts/{rollout_id}``,
or ``-`` for standard input) as JSON. The task is the rollout's own ``task_id``
unless ``--task`` names another. Exits 0 after printing a verdict, 1 when the
rollout cannot be read or its task is unknown, 2 on a usage error.
"""

import argparse
import json
import sys

from . import SCENARIO_ID, verify


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m " + __package__,
        description="Score an rl-gym rollout of scenario {!r} as the server does.".format(
            SCENARIO_ID
        ),
    )
    parser.add_argument("rollout", help="rollout view JSON file, or - for standard input")
    parser.add_argument("--task", help="task id (default: the rollout's task_id)")
    args = parser.parse_args(argv)
    try:
        if args.rollout == "-":
            rollout = json.load(sys.stdin)
        else:
            with open(args.rollout, encoding="utf-8") as handle:
                rollout = json.load(handle)
        task_id = args.task or rollout.get("task_id")
        if not task_id:
            raise KeyError("the rollout has no task_id; pass --task")
        verdict = verify(task_id, rollout)
    except (OSError, ValueError, KeyError, AttributeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print("error: {}".format(message), file=sys.stderr)
        return 1
    print(json.dumps(verdict, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
