"""Against a live server (``RL_GYM_URL``): the group feed of continuous and ordinary
runs, acknowledgements per consumer, and policy updates."""

from __future__ import annotations

import unittest
from typing import List

from _support import NOOP, ORACLE, TASK, TASK_2, live_client, requires_server

from rl_gym_client import Client, Continuous, Group, RlGymError, Run, RunStatus

#: Long polls in these tests: short, so a wrong ``done`` fails fast.
WAIT = 10


def _continuous(
    client: Client, groups: int, size: int = 2, parallel: int = 4, **settings: object
) -> Run:
    return client.launch(
        scenario_id="hr",
        task_ids=[TASK, TASK_2],
        rollout_count=size,
        max_parallel=parallel,
        model_config=ORACLE,
        continuous=Continuous(max_groups=groups, seed=11, **settings),  # type: ignore[arg-type]
    )


def _until_waiting(run: Run) -> RunStatus:
    """The run's status once it waits for a consumer (30 s at most)."""
    for status in run.watch(interval=0.05, timeout=30):
        if status.feed is not None and status.feed.waiting_for_consumer:
            return status
    raise AssertionError(f"{run.run_id} finished without waiting for a consumer")


@requires_server
class ContinuousFeed(unittest.TestCase):
    def setUp(self) -> None:
        self.client = live_client()

    def test_groups_are_consumed_once_per_consumer_and_again_by_another(self) -> None:
        run = _continuous(self.client, groups=4, size=2)
        seen: List[Group] = []
        stream = run.groups("trainer-a", wait=WAIT)
        for group in stream:
            seen.append(group)
            self.assertEqual(group.ack().acknowledged, [group.group_id])
        self.assertTrue(stream.done)
        # Each once (a group that completes before an earlier one may come first).
        ids = sorted(g.group_id for g in seen)
        self.assertEqual(ids, [0, 1, 2, 3])
        for group in seen:
            self.assertIn(group.task_id, (TASK, TASK_2))
            self.assertEqual(len(group.rollouts), 2)
            self.assertEqual(group.rewards, [1.0, 1.0])
            self.assertEqual(group.advantages(), [0.0, 0.0])
            for rollout in group.rollouts:
                self.assertEqual(rollout.status, "completed")
                self.assertFalse(rollout.stale)
                self.assertTrue(rollout.messages, "the conversation is delivered")
                self.assertIsNone(rollout.tokens, "no token-exact model: no tokens")

        status = run.status()
        self.assertTrue(status.finished, status)
        assert status.feed is not None
        self.assertEqual(status.feed.groups_scheduled, 4)
        self.assertEqual(status.feed.groups_complete, 4)
        self.assertEqual(status.feed.groups_unconsumed, 0)
        self.assertFalse(status.feed.waiting_for_consumer)

        # A new client, the same consumer (a restarted trainer): nothing acknowledged
        # comes again.
        again = live_client().groups(run.run_id, "trainer-a", wait=WAIT)
        self.assertEqual(list(again), [])
        self.assertTrue(again.done)
        # Acknowledging again is harmless and says so.
        repeat = self.client.ack(run.run_id, "trainer-a", ids[:1])
        self.assertEqual((repeat.acknowledged, repeat.already_acknowledged), ([], ids[:1]))

        # Another consumer gets every group, the same ones, now in order (all are
        # complete).
        other = [g for g in live_client().groups(run.run_id, "evaluator-b", wait=WAIT)]
        self.assertEqual([g.group_id for g in other], ids)
        by_id = {g.group_id: [r.rollout_id for r in g.rollouts] for g in seen}
        for group in other:
            self.assertEqual([r.rollout_id for r in group.rollouts], by_id[group.group_id])
        # ... until it acknowledges them (all at once here).
        self.assertEqual(self.client.ack(run.run_id, "evaluator-b", other).acknowledged, ids)
        self.assertEqual(list(self.client.groups(run.run_id, "evaluator-b", wait=WAIT)), [])

    def test_a_group_not_acknowledged_is_delivered_again_after_a_restart(self) -> None:
        run = _continuous(self.client, groups=2, size=1)
        run.wait(interval=0.05, timeout=60)  # both groups complete: delivered in order
        first = next(run.groups("restarting", wait=WAIT))
        self.assertEqual(first.group_id, 0)
        # The consumer "crashes" before acknowledging: a new stream starts with it.
        stream = live_client().groups(run.run_id, "restarting", wait=WAIT)
        redelivered = next(stream)
        self.assertEqual(redelivered.group_id, first.group_id)
        self.assertEqual(
            [r.rollout_id for r in redelivered.rollouts], [r.rollout_id for r in first.rollouts]
        )
        redelivered.ack()
        rest = [g.group_id for g in stream]
        for group_id in rest:
            self.client.ack(run.run_id, "restarting", [group_id])
        self.assertNotIn(first.group_id, rest)
        self.assertEqual(len(rest), 1)

    def test_a_policy_update_is_in_force_for_later_turns(self) -> None:
        # One rollout at a time, one group may wait: the run stops after group 0
        # until a consumer acknowledges, so every later group starts after the updates.
        run = _continuous(self.client, groups=3, size=1, parallel=1, max_unconsumed_groups=1)
        _until_waiting(run)
        update = run.set_policy("step-1")
        self.assertEqual(update.run_id, run.run_id)
        self.assertEqual(update.version, "step-1")
        self.assertEqual(update.ordinal, 1)
        second = run.set_policy("step-2", base_url=None)
        self.assertEqual((second.version, second.ordinal), ("step-2", 2))
        status = run.status()
        assert status.feed is not None
        self.assertEqual(status.feed.policy_version, "step-2")
        groups = []
        for group in run.groups("policy-check", wait=WAIT):
            groups.append(group)
            group.ack()
        groups.sort(key=lambda g: g.group_id)
        self.assertEqual([g.group_id for g in groups], [0, 1, 2])
        # One version per model turn: none was set when group 0 ran.
        first, last = groups[0].rollouts[0], groups[-1].rollouts[-1]
        self.assertTrue(first.policy_versions, groups[0].raw)
        self.assertEqual(set(first.policy_versions), {None}, groups[0].raw)
        self.assertTrue(last.policy_versions, groups[-1].raw)
        self.assertEqual(set(last.policy_versions), {"step-2"}, groups[-1].raw)

    def test_a_run_waits_for_its_consumer(self) -> None:
        run = _continuous(self.client, groups=5, size=1, parallel=1, max_unconsumed_groups=1)
        # Nobody consumes: the run stops drawing once one group waits.
        status = _until_waiting(run)
        assert status.feed is not None
        self.assertFalse(status.finished)
        self.assertEqual(status.feed.max_unconsumed_groups, 1)
        self.assertGreaterEqual(status.feed.groups_unconsumed, 1)
        self.assertLess(status.feed.groups_scheduled, 5)
        consumed = 0
        for group in run.groups("late", wait=WAIT):
            group.ack()
            consumed += 1
        self.assertEqual(consumed, 5)
        final = run.status()
        self.assertTrue(final.finished, final)
        assert final.feed is not None
        self.assertEqual((final.feed.groups_complete, final.feed.groups_unconsumed), (5, 0))


@requires_server
class OrdinaryRunGroups(unittest.TestCase):
    def test_an_ordinary_run_has_a_group_per_task(self) -> None:
        client = live_client()
        run = client.launch(
            scenario_id="hr", task_ids=[TASK, TASK_2], rollout_count=3, model_config=NOOP
        )
        run.wait(interval=0.05, timeout=60)
        stream = run.groups("ordinary", wait=WAIT)
        groups = list(stream)
        self.assertEqual([g.task_id for g in groups], [TASK, TASK_2])
        self.assertEqual([len(g.rollouts) for g in groups], [3, 3])
        self.assertEqual(groups[0].rewards, [0.0, 0.0, 0.0])
        self.assertEqual(stream.held, sorted(g.group_id for g in groups))
        stream.ack(groups)
        self.assertEqual(stream.held, [])
        self.assertEqual(list(run.groups("ordinary", wait=WAIT)), [])


@requires_server
class FeedErrors(unittest.TestCase):
    def setUp(self) -> None:
        self.client = live_client()
        self.run_ = self.client.launch(
            scenario_id="hr", task_ids=[TASK], rollout_count=1, model_config=NOOP
        )
        self.run_.wait(interval=0.05, timeout=60)

    def test_an_unknown_group_is_a_422_naming_group_ids(self) -> None:
        with self.assertRaises(RlGymError) as caught:
            self.client.ack(self.run_.run_id, "c", [999])
        self.assertEqual(caught.exception.status, 422)
        self.assertTrue(caught.exception.field_errors("group_ids"), caught.exception.detail)

    def test_a_bad_consumer_name_is_a_422_naming_consumer(self) -> None:
        for bad in ["", "has space", "x" * 101]:
            with self.subTest(consumer=bad), self.assertRaises(RlGymError) as caught:
                self.client.poll_groups(self.run_.run_id, bad, wait=0)
            self.assertEqual(caught.exception.status, 422)
            self.assertTrue(caught.exception.field_errors("consumer"), caught.exception.detail)

    def test_wait_and_limit_are_bounded(self) -> None:
        with self.assertRaises(RlGymError) as caught:
            self.client.poll_groups(self.run_.run_id, "c", wait=61)
        self.assertTrue(caught.exception.field_errors("wait"), caught.exception.detail)
        with self.assertRaises(RlGymError) as caught:
            self.client.poll_groups(self.run_.run_id, "c", wait=0, limit=0)
        self.assertTrue(caught.exception.field_errors("limit"), caught.exception.detail)

    def test_a_bad_continuous_setting_is_a_422_naming_it(self) -> None:
        with self.assertRaises(RlGymError) as caught:
            self.client.launch(
                scenario_id="hr",
                task_ids=[TASK],
                model_config=NOOP,
                continuous={"on_stale": "sometimes"},
            )
        self.assertEqual(
            [e.loc for e in caught.exception.errors], [("body", "continuous", "on_stale")]
        )

    def test_groups_of_an_unknown_run_are_a_404(self) -> None:
        with self.assertRaises(RlGymError) as caught:
            self.client.poll_groups("run_nope", "c", wait=0)
        self.assertEqual(caught.exception.status, 404)


if __name__ == "__main__":
    unittest.main()
