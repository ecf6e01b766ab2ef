"""Against a live server (``RL_GYM_URL``): runs, status, export, cancel and errors."""

from __future__ import annotations

import unittest

from _support import NOOP, ORACLE, TASK, TASK_2, live_client, live_url, requires_server

from rl_gym_client import Client, RlGymError


@requires_server
class Runs(unittest.TestCase):
    def setUp(self) -> None:
        self.client = live_client()

    def test_an_oracle_run_completes_with_full_credit_and_exports(self) -> None:
        run = self.client.launch(
            scenario_id="hr",
            task_ids=[TASK, TASK_2],
            rollout_count=2,
            max_parallel=4,
            model_config=ORACLE,
        )
        self.assertTrue(run.run_id.startswith("run_"), run.run_id)
        self.assertIsNotNone(run.launched_status)
        assert run.launched_status is not None
        self.assertEqual(run.launched_status.total, 4)
        self.assertEqual(len(run.rollouts), 4)

        seen = list(run.watch(interval=0.05, timeout=60))
        final = seen[-1]
        self.assertTrue(final.finished)
        self.assertTrue(all(not s.finished for s in seen[:-1]), seen)
        self.assertEqual(final.status, "completed")
        self.assertEqual((final.completed, final.failed, final.total), (4, 0, 4))
        self.assertEqual(self.client.wait(run.run_id, timeout=5), final)

        lines = run.export("rl")
        self.assertEqual(len(lines), 4)
        for line in lines:
            self.assertEqual(line["reward"], 1.0)
            self.assertEqual(line["provenance"]["run_id"], run.run_id)
            self.assertIn(line["provenance"]["task_id"], (TASK, TASK_2))
            self.assertEqual(line["messages"][0]["role"], "system")
        self.assertEqual(len(self.client.export(run.run_id, "sft", min_score=1.0)), 4)
        # Every rollout scored alike: no preference pair.
        self.assertEqual(self.client.export(run.run_id, "preference"), [])
        streamed = list(self.client.iter_export(run.run_id, "rl"))
        self.assertEqual(
            [l["provenance"]["rollout_id"] for l in streamed],
            [l["provenance"]["rollout_id"] for l in lines],
        )

    def test_the_v1_prefix_and_the_status_with_its_rollouts(self) -> None:
        run = self.client.launch(
            scenario_id="hr", task_ids=[TASK], rollout_count=1, model_config=NOOP
        )
        status = Client(f"{live_url()}/v1/").wait(run.run_id, interval=0.05, timeout=60)
        self.assertEqual(status.completed, 1)
        detailed = self.client.status(run.run_id, rollouts=True)
        self.assertEqual(len(detailed.raw["rollouts"]), 1)
        self.assertNotIn("rollouts", status.raw)
        # A noop scores 0: nothing for SFT at the default min_score.
        self.assertEqual(run.export("sft"), [])
        self.assertEqual(run.export("rl")[0]["reward"], 0.0)

    def test_a_cancelled_run_finishes_cancelled(self) -> None:
        run = self.client.launch(
            scenario_id="hr",
            task_ids=[TASK],
            rollout_count=40,
            max_parallel=1,
            model_config=NOOP,
        )
        answer = run.cancel()
        self.assertEqual(answer["run_id"], run.run_id)
        final = run.wait(interval=0.05, timeout=60)
        self.assertEqual(final.status, "cancelled")
        self.assertEqual(final.finished_rollouts, final.total)
        self.assertGreater(final.cancelled, 0)


@requires_server
class Errors(unittest.TestCase):
    def setUp(self) -> None:
        self.client = live_client()

    def test_a_bad_launch_is_a_422_naming_each_field(self) -> None:
        with self.assertRaises(RlGymError) as caught:
            self.client.launch(
                scenario_id="hr", task_ids=[], rollout_count=0, model_config=ORACLE
            )
        error = caught.exception
        self.assertEqual(error.status, 422)
        self.assertEqual(error.code, "validation_error")
        locs = {e.loc for e in error.errors}
        self.assertIn(("body", "rollout_count"), locs)
        self.assertIn(("body", "task_ids"), locs)
        self.assertTrue(error.field_errors("rollout_count")[0].msg)
        self.assertIn("body.rollout_count", str(error))

    def test_an_unknown_run_is_a_404(self) -> None:
        with self.assertRaises(RlGymError) as caught:
            self.client.status("run_does_not_exist")
        self.assertEqual(caught.exception.status, 404)
        self.assertEqual(caught.exception.code, "run_not_found")
        self.assertEqual(caught.exception.errors, [])

    def test_a_tokens_export_of_a_run_without_tokens_is_a_422_on_format(self) -> None:
        run = self.client.launch(
            scenario_id="hr", task_ids=[TASK], rollout_count=1, model_config=NOOP
        )
        run.wait(interval=0.05, timeout=60)
        with self.assertRaises(RlGymError) as caught:
            run.export("tokens")
        self.assertEqual(caught.exception.status, 422)
        self.assertEqual(caught.exception.errors[0].loc, ("query", "format"))

    def test_an_unknown_scenario_is_a_404(self) -> None:
        with self.assertRaises(RlGymError) as caught:
            self.client.launch(
                scenario_id="nope", task_ids=[TASK], rollout_count=1, model_config=NOOP
            )
        self.assertEqual(caught.exception.status, 404)
        self.assertEqual(caught.exception.code, "scenario_not_found")


if __name__ == "__main__":
    unittest.main()
