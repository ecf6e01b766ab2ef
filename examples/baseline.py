#!/usr/bin/env python3
"""A baseline of one model on the bundled worlds: per scenario, one rollout of each
of its first `--tasks` task families on one instance, then the mean score, how many
earned full credit, how the rollouts ended and the checks they passed.

    python3 examples/baseline.py --url http://127.0.0.1:8080 \\
        --model-url http://127.0.0.1:8000/v1 --model smollm2-135m --max-steps 4
    python3 examples/baseline.py --agent oracle   # the reference solutions: 1.0 each

The last line is `summary: rollouts=N mean_score=X full_credit=K`; one line per
scenario before it. docs/scenarios.md reports SmolLM2-135M-Instruct's baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from typing import Any, Dict, List, Optional

try:
    import rl_gym_client  # noqa: F401  (installed: pip install clients/python)
except ImportError:  # run from a checkout: use the client next to this file
    sys.path.insert(
        0,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python", "src"),
    )

from rl_gym_client import Client  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("RL_GYM_URL") or "http://127.0.0.1:8080",
                        help="the rl-gym server (default: RL_GYM_URL or http://127.0.0.1:8080)")
    parser.add_argument("--token", default=os.environ.get("RL_GYM_API_TOKEN"),
                        help="API token (default: RL_GYM_API_TOKEN)")
    parser.add_argument("--model-url", default=None,
                        help="an OpenAI-compatible server to evaluate (provider custom)")
    parser.add_argument("--model", default="smollm2-135m", help="its model name")
    parser.add_argument("--agent", choices=["oracle", "noop"], default="oracle",
                        help="without --model-url, the builtin agent (default: oracle)")
    parser.add_argument("--scenarios", default="",
                        help="comma-separated scenario ids (default: every one)")
    parser.add_argument("--tasks", type=int, default=4,
                        help="task families per scenario, in id order (default: 4)")
    parser.add_argument("--instance-seed", type=int, default=1,
                        help="the instance of each family (default: 1)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="model turns at most (default: the server's)")
    parser.add_argument("--timeout", type=float, default=7200.0,
                        help="seconds to wait for a scenario's run (default: 7200)")
    return parser.parse_args(argv)


def model_config(args: argparse.Namespace) -> Dict[str, Any]:
    if args.model_url:
        config = {"provider": "custom", "model": args.model, "base_url": args.model_url,
                  "temperature": 0.0}
    else:
        config = {"provider": "builtin", "model": args.agent}
    if args.max_steps is not None:
        config["max_steps"] = args.max_steps
    return config


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    client = Client(args.url, token=args.token)
    scenarios = [s for s in args.scenarios.split(",") if s] or [
        s["scenario_id"] for s in client.request("GET", "/scenarios")
    ]
    scores: List[float] = []
    full = 0
    for scenario in scenarios:
        listed = client.request("GET", f"/scenarios/{scenario}/tasks")["tasks"]
        task_ids = sorted(t["task_id"] for t in listed)[: args.tasks]
        run = client.launch(scenario_id=scenario, task_ids=task_ids, rollout_count=1,
                            instance_seeds=[args.instance_seed], max_parallel=1,
                            model_config=model_config(args))
        client.wait(run.run_id, interval=2.0, timeout=args.timeout)
        rollouts = client.request("GET", "/rollouts",
                                  query={"run_id": run.run_id, "limit": 200})["rollouts"]
        ended: Counter = Counter()
        passed = total = 0
        here: List[float] = []
        for r in rollouts:
            result = r.get("result") or {}
            ended[r.get("termination_reason") or r.get("status")] += 1
            here.append(float(result.get("score") or 0.0))
            full += bool(result.get("success"))
            detail = client.request("GET", f"/runs/{run.run_id}/rollouts/{r['rollout_id']}")
            checks = (detail.get("verdict") or {}).get("checks") or []
            passed += sum(1 for c in checks if c.get("passed"))
            total += len(checks)
        scores.extend(here)
        mean = sum(here) / len(here) if here else 0.0
        print(f"{scenario}: run={run.run_id} rollouts={len(here)} mean_score={mean:.3f} "
              f"checks_passed={passed}/{total} ended={dict(sorted(ended.items()))}", flush=True)
    mean = sum(scores) / len(scores) if scores else 0.0
    print(f"summary: rollouts={len(scores)} mean_score={mean:.3f} full_credit={full}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
