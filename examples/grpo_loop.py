#!/usr/bin/env python3
"""An async-RL training loop against rl-gym, GRPO-style, with no GPU and the standard
library only.

It launches a *continuous* run (the server keeps drawing tasks and running groups of
rollouts while the trainer trains), consumes the complete groups as they arrive,
computes GRPO's group-relative advantages, hands them to `Trainer.update` (where a
real trainer's gradient step goes), publishes a new policy version every few groups
with `set_policy`, and acknowledges each group only after its update: a trainer that
crashes before the acknowledgement gets the group again when it comes back with the
same consumer name.

    python3 examples/grpo_loop.py --url http://127.0.0.1:8080 --groups 8
    python3 examples/grpo_loop.py --agent noop --group-size 2 --policy-every 1

The builtin agents need no model and no key: `oracle` solves every task (reward 1),
`noop` none (reward 0); either way every group's rewards are equal, so every advantage
is 0. Point `model_config` at a real model (and its `base_url` at the server your
trainer updates) for advantages that teach something.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional

try:
    import rl_gym_client  # noqa: F401  (installed: pip install clients/python)
except ImportError:  # run from a checkout: use the client next to this file
    sys.path.insert(
        0,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python", "src"),
    )

from rl_gym_client import Client, Continuous, Group, RlGymError  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("RL_GYM_URL") or "http://127.0.0.1:8080",
        help="the rl-gym server (default: RL_GYM_URL or http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("RL_GYM_API_TOKEN"),
        help="API token (default: RL_GYM_API_TOKEN)",
    )
    parser.add_argument("--agent", choices=["oracle", "noop"], default="oracle",
                        help="the builtin agent that plays the policy (default: oracle)")
    parser.add_argument("--model-url", default=None,
                        help="an OpenAI-compatible server that plays the policy instead "
                             "(provider custom, e.g. vLLM); each published version is "
                             "served there too")
    parser.add_argument("--scenario", default="hr", help="scenario (default: hr)")
    parser.add_argument("--tasks", default="",
                        help="comma-separated task ids to draw from (default: the "
                             "scenario's first four)")
    parser.add_argument("--groups", type=int, default=8,
                        help="stop after training on this many groups (default: 8)")
    parser.add_argument("--group-size", type=int, default=4,
                        help="rollouts per group, GRPO's G (default: 4)")
    parser.add_argument("--policy-every", type=int, default=2,
                        help="publish a new policy version every N groups (default: 2)")
    parser.add_argument("--max-parallel", type=int, default=4,
                        help="rollouts running at once (default: 4)")
    parser.add_argument("--max-unconsumed", type=int, default=4,
                        help="complete groups the run may get ahead of the trainer "
                             "(default: 4)")
    parser.add_argument("--consumer", default="grpo-example",
                        help="this trainer's consumer name (default: grpo-example)")
    parser.add_argument("--seed", type=int, default=7, help="task draw seed (default: 7)")
    parser.add_argument("--eps", type=float, default=1e-4,
                        help="added to the group's std (default: 1e-4)")
    args = parser.parse_args(argv)
    if args.groups < 1 or args.group_size < 1 or args.policy_every < 1:
        parser.error("--groups, --group-size and --policy-every must be at least 1")
    return args


class Trainer:
    """A stand-in for the learner: it keeps counters where a real one keeps weights."""

    def __init__(self) -> None:
        self.step = 0
        self.samples = 0
        self.sum_abs_advantage = 0.0

    # ================================================================================
    # THE TRAINER'S UPDATE GOES HERE.
    #
    # A real GRPO step turns each rollout into a training sample and takes a gradient
    # step on  -advantage * log p(sampled tokens)  (clipped, maybe with a KL term):
    #
    #   * token-exact runs (model_config "return_tokens" or "token_in"): each
    #     rollout.tokens has prompt_ids, response_ids, loss_mask (1 = a sampled token,
    #     the only ones to train on) and the sampler's logprobs (the "old" policy's,
    #     for the importance ratio); rollout.tokens.to_trl() / .to_verl() /
    #     .to_prime_rl() give them in those trainers' field names;
    #   * otherwise rollout.messages is the conversation (OpenAI chat messages) to
    #     tokenize with your chat template.
    #
    # Rollouts with rollout.stale set were written by a policy more than the run's
    # max_staleness versions old: drop them or weight them down.
    # ================================================================================
    def update(self, group: Group, advantages: List[float]) -> Dict[str, Any]:
        for rollout, advantage in zip(group.rollouts, advantages):
            self.samples += 1
            self.sum_abs_advantage += abs(advantage)
            _ = rollout  # a real trainer builds its sample from the rollout here
        self.step += 1
        return {"step": self.step}

    def publish(self) -> str:
        """Save the new weights where the policy server reads them (a checkpoint, a
        LoRA adapter, an NCCL broadcast to vLLM...) and name the version."""
        return f"step-{self.step}"


def default_tasks(client: Client, scenario: str) -> List[str]:
    listed = client.request("GET", f"/scenarios/{scenario}/tasks")
    return [t["task_id"] for t in listed["tasks"]][:4]


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    client = Client(args.url, token=args.token)
    tasks = [t for t in args.tasks.split(",") if t] or default_tasks(client, args.scenario)

    if args.model_url:
        model_config = {"model": "policy", "provider": "custom",
                        "base_url": args.model_url, "policy_version": "step-0"}
    else:
        model_config = {"model": args.agent, "provider": "builtin"}
    run = client.launch(
        scenario_id=args.scenario,
        task_ids=tasks,
        rollout_count=args.group_size,
        max_parallel=args.max_parallel,
        model_config=model_config,
        continuous=Continuous(
            max_groups=args.groups,
            max_unconsumed_groups=args.max_unconsumed,
            seed=args.seed,
        ),
    )
    agent = args.model_url or args.agent
    print(f"launched {run.run_id}: {agent} on {len(tasks)} tasks, "
          f"groups of {args.group_size}", flush=True)

    trainer = Trainer()
    started = time.monotonic()
    consumed = acked = stale = policy_updates = 0
    rewards: List[float] = []
    policy: Optional[str] = None
    try:
        for group in run.groups(args.consumer, wait=20):
            advantages = group.advantages(eps=args.eps)
            trainer.update(group, advantages)
            consumed += 1
            if consumed % args.policy_every == 0:
                # New weights: every later model turn of the run is written by them.
                # (A real trainer names the server now holding them: with vLLM,
                # the same endpoint after a weight update.)
                policy = run.set_policy(trainer.publish(), args.model_url).version
                policy_updates += 1
            # The update is done (and, in a real trainer, checkpointed): only now is
            # the group acknowledged, so a crash before this line redelivers it.
            group.ack()
            acked += 1
            stale += group.stale_count
            rewards.extend(0.0 if r is None else r for r in group.rewards)
            print(f"group {group.group_id} task={group.task_id} "
                  f"rewards={group.rewards} "
                  f"advantages={[round(a, 3) for a in advantages]} policy={policy}",
                  flush=True)
            if consumed >= args.groups:
                break
    finally:
        try:
            if not run.status().finished:
                run.cancel()
        except RlGymError as error:  # never hide the loop's own exception
            print(f"could not cancel {run.run_id}: {error}", file=sys.stderr)

    elapsed = time.monotonic() - started
    mean_reward = sum(rewards) / len(rewards) if rewards else 0.0
    mean_abs_adv = trainer.sum_abs_advantage / trainer.samples if trainer.samples else 0.0
    print(
        f"summary: groups={consumed} acked={acked} rollouts={trainer.samples} "
        f"mean_reward={mean_reward:.3f} mean_abs_advantage={mean_abs_adv:.3f} "
        f"policy={policy} policy_updates={policy_updates} stale={stale} "
        f"seconds={elapsed:.1f} run={run.run_id}",
        flush=True,
    )
    return 0 if consumed == args.groups else 1


if __name__ == "__main__":
    sys.exit(main())
