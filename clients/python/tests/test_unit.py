"""Tests that need no rl-gym server: URL and query building, errors, the 429 retry,
GRPO advantages, parsing, and the group iterator against a stub feed."""

from __future__ import annotations

import math
import threading
import unittest
import urllib.parse
from typing import Any, Dict, List, Set

from _support import StubServer, json_reply

from rl_gym_client import (
    Client,
    Continuous,
    Group,
    RlGymConnectionError,
    RlGymError,
    RunStatus,
    TokenSequence,
    group_advantages,
    mean_std,
)
from rl_gym_client import _http
from rl_gym_client.feed import GroupStream


class UrlBuilding(unittest.TestCase):
    def test_base_url_loses_its_trailing_slash_and_keeps_a_prefix(self) -> None:
        self.assertEqual(_http.normalize_base_url("http://h:8080/"), "http://h:8080")
        self.assertEqual(_http.normalize_base_url(" https://h/v1/ "), "https://h/v1")
        self.assertEqual(Client("http://h:1/v1/").base_url, "http://h:1/v1")

    def test_base_url_must_be_http_with_a_host_and_no_query(self) -> None:
        for bad in ["ftp://h", "h:8080", "http://", "http://h/?a=1", "http://h/#x"]:
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                _http.normalize_base_url(bad)

    def test_path_segments_are_percent_encoded(self) -> None:
        self.assertEqual(_http.path("runs", "run_1", "groups"), "/runs/run_1/groups")
        self.assertEqual(_http.path("runs", "../x y", 7), "/runs/..%2Fx%20y/7")

    def test_query_leaves_out_none_and_spells_booleans_as_the_server_does(self) -> None:
        self.assertEqual(_http.query_string(None), "")
        self.assertEqual(_http.query_string({"a": None}), "")
        self.assertEqual(
            _http.query_string({"rollouts": False, "x": True, "n": 3, "none": None}),
            "?rollouts=false&x=true&n=3",
        )
        self.assertEqual(
            _http.query_string({"consumer": "a b&c", "wait": 20}),
            "?consumer=a%20b%26c&wait=20",
        )

    def test_a_groups_poll_asks_for_its_consumer_wait_and_limit(self) -> None:
        with StubServer(lambda *_: json_reply(200, {"groups": [], "done": True})) as stub:
            page = Client(stub.url).poll_groups("run 1", "trainer.a", wait=2, limit=7)
            method, target, _, _ = stub.requests[0]
            self.assertEqual(method, "GET")
            self.assertEqual(target, "/runs/run%201/groups?consumer=trainer.a&wait=2&limit=7")
            self.assertTrue(page.done)
            Client(stub.url).poll_groups("r", "c", wait=20.0)  # type: ignore[arg-type]
            self.assertEqual(stub.requests[1][1], "/runs/r/groups?consumer=c&wait=20&limit=16")

    def test_retry_after_is_seconds_or_an_http_date(self) -> None:
        self.assertEqual(_http.parse_retry_after("3"), 3.0)
        self.assertEqual(_http.parse_retry_after("-3"), 0.0)
        self.assertIsNone(_http.parse_retry_after(None))
        self.assertIsNone(_http.parse_retry_after("soon"))
        date = "Wed, 21 Oct 2015 07:28:00 GMT"
        self.assertEqual(_http.parse_retry_after(date, now=1445412480 - 10), 10.0)


class Advantages(unittest.TestCase):
    def test_reward_minus_the_group_mean_over_its_std(self) -> None:
        adv = group_advantages([1.0, 0.0, 1.0, 0.0], eps=0.0)
        self.assertEqual(adv, [1.0, -1.0, 1.0, -1.0])
        adv = group_advantages([1.0, 0.0, 0.0, 0.0], eps=1e-4)
        mean, std = 0.25, math.sqrt(0.1875)
        for got, reward in zip(adv, [1.0, 0.0, 0.0, 0.0]):
            self.assertAlmostEqual(got, (reward - mean) / (std + 1e-4), places=12)
        self.assertAlmostEqual(sum(adv), 0.0, places=12)

    def test_equal_rewards_say_nothing(self) -> None:
        self.assertEqual(group_advantages([1.0, 1.0, 1.0]), [0.0, 0.0, 0.0])
        self.assertEqual(group_advantages([0.5]), [0.0])
        self.assertEqual(group_advantages([]), [])

    def test_a_missing_reward_counts_as_missing(self) -> None:
        self.assertEqual(
            group_advantages([1.0, None], eps=0.0), group_advantages([1.0, 0.0], eps=0.0)
        )
        self.assertEqual(group_advantages([None, 1.0], eps=0.0, missing=1.0), [0.0, 0.0])

    def test_sample_std_and_unscaled(self) -> None:
        self.assertEqual(mean_std([1.0, 0.0], ddof=1), (0.5, math.sqrt(0.5)))
        self.assertEqual(mean_std([2.0], ddof=1), (2.0, 0.0))
        self.assertEqual(group_advantages([1.0, 0.0, 0.5], scale=False), [0.5, -0.5, 0.0])
        with self.assertRaises(ValueError):
            mean_std([])


def _group_json(group_id: int, rewards: List[Any]) -> Dict[str, Any]:
    return {
        "group_id": group_id,
        "task_id": "t",
        "rollouts": [
            {
                "rollout_id": f"rol_{group_id}_{i}",
                "status": "completed" if r is not None else "failed",
                "reward": r,
                "stale": False,
                "policy_versions": ["v1"],
                "tokens": None,
                "messages": [{"role": "user", "content": "hi"}],
            }
            for i, r in enumerate(rewards)
        ],
        "stale_count": 0,
        "restarted_count": 0,
    }


class Parsing(unittest.TestCase):
    def test_a_422_lists_its_fields(self) -> None:
        error = RlGymError(
            422,
            [
                {"loc": ["body", "continuous", "on_stale"], "msg": "bad", "type": "value_error"},
                {"loc": ["query", "limit"], "msg": "too big", "type": "less_than_equal"},
            ],
            "validation_error",
        )
        self.assertEqual(error.status, 422)
        self.assertEqual([e.field for e in error.errors], ["continuous.on_stale", "limit"])
        self.assertEqual(len(error.field_errors("on_stale")), 1)
        self.assertEqual(len(error.field_errors("continuous.on_stale")), 1)
        self.assertEqual(len(error.field_errors("continuous")), 1)
        nested = RlGymError(422, [{"loc": ["body", "group_ids", "0"], "msg": "no", "type": "v"}])
        self.assertEqual(nested.field_errors("group_ids")[0].field, "group_ids.0")
        self.assertIn("body.continuous.on_stale: bad", str(error))
        self.assertEqual(RlGymError(404, "Run not found").errors, [])

    def test_a_run_status_and_its_feed(self) -> None:
        status = RunStatus.from_json(
            {
                "run_id": "r",
                "status": "running",
                "total": 4,
                "completed": 1,
                "failed": 1,
                "cancelled": 0,
                "in_progress": 1,
                "pending": 1,
                "feed": {
                    "groups_scheduled": 2,
                    "groups_complete": 1,
                    "groups_unconsumed": 1,
                    "max_unconsumed_groups": 8,
                    "waiting_for_consumer": False,
                    "policy_version": None,
                },
            }
        )
        self.assertFalse(status.finished)
        assert status.feed is not None
        self.assertEqual(status.feed.groups_complete, 1)
        self.assertIsNone(status.feed.policy_version)
        done = RunStatus.from_json({"status": "completed", "total": 2, "completed": 2})
        self.assertTrue(done.finished)
        self.assertIsNone(done.feed)
        paused = RunStatus.from_json({"status": "paused", "total": 2, "completed": 1})
        self.assertFalse(paused.finished)

    def test_a_group_its_rewards_and_tokens(self) -> None:
        raw = _group_json(3, [1.0, None])
        raw["rollouts"][0]["tokens"] = {
            "prompt_ids": [1, 2],
            "response_ids": [3, 4, 5],
            "loss_mask": [1, 0, 1],
            "logprobs": [-0.5, 0.0, -0.25],
            "reward": 1.0,
            "policy_versions": ["v1"],
            "turns": [{"prompt_end": 2, "completion_start": 2, "completion_end": 3}],
        }
        group = Group.from_json(raw)
        self.assertEqual(group.group_id, 3)
        self.assertEqual(group.rewards, [1.0, None])
        self.assertEqual(group.advantages(eps=0.0), [1.0, -1.0])
        tokens = group.rollouts[0].tokens
        assert tokens is not None
        self.assertEqual(tokens.input_ids, [1, 2, 3, 4, 5])
        self.assertEqual(
            tokens.to_trl(),
            {
                "prompt_ids": [1, 2],
                "completion_ids": [3, 4, 5],
                "logprobs": [-0.5, 0.0, -0.25],
                "env_mask": [1, 0, 1],
            },
        )
        self.assertEqual(tokens.to_verl()["response_mask"], [1, 0, 1])
        self.assertEqual(tokens.to_verl()["reward_score"], 1.0)
        self.assertEqual(tokens.to_prime_rl()["completion_mask"], [True, False, True])
        self.assertEqual(tokens.to_prime_rl()["prompt_mask"], [False, False])
        no_logprobs = TokenSequence.from_json({"prompt_ids": [1], "response_ids": [2, 3]})
        self.assertEqual(no_logprobs.to_trl()["logprobs"], [0.0, 0.0])
        self.assertIsNone(no_logprobs.to_verl()["response_logprobs"])
        with self.assertRaises(RuntimeError):
            group.ack()  # not delivered by a client

    def test_continuous_settings_as_json(self) -> None:
        self.assertEqual(
            Continuous(max_groups=3, seed=7).to_json(),
            {
                "max_groups": 3,
                "max_unconsumed_groups": 8,
                "max_staleness": None,
                "on_stale": "finish",
                "seed": 7,
            },
        )


class Transport(unittest.TestCase):
    def test_the_token_is_sent_as_a_bearer_and_bodies_as_json(self) -> None:
        with StubServer(lambda *_: json_reply(200, {"run_id": "r", "rollouts": []})) as stub:
            run = Client(stub.url, token="s3cret").launch(
                {"scenario_id": "hr", "rollout_count": 1},
                rollout_count=2,
                continuous=Continuous(max_groups=1),
            )
            self.assertEqual(run.run_id, "r")
            method, target, headers, body = stub.requests[0]
            self.assertEqual((method, target), ("POST", "/runs"))
            self.assertEqual(headers["authorization"], "Bearer s3cret")
            self.assertEqual(headers["content-type"], "application/json")
            self.assertEqual(body["rollout_count"], 2)
            self.assertEqual(body["continuous"]["max_groups"], 1)
        with StubServer(lambda *_: json_reply(200, {"run_id": "r"})) as stub:
            Client(stub.url).launch(scenario_id="hr", continuous=True)
            self.assertNotIn("authorization", stub.requests[0][2])
            self.assertEqual(stub.requests[0][3]["continuous"], {})

    def test_a_429_is_asked_again_once_after_its_retry_after(self) -> None:
        answers = [
            json_reply(429, {"detail": "busy", "code": "too_many_pending_rollouts"},
                       {"Retry-After": "0"}),
            json_reply(200, {"run_id": "r", "status": "running"}),
        ]
        with StubServer(lambda *_: answers.pop(0)) as stub:
            status = Client(stub.url).status("r")
            self.assertEqual(status.status, "running")
            self.assertEqual(len(stub.requests), 2)

    def test_a_second_429_or_a_long_retry_after_is_raised(self) -> None:
        busy = json_reply(429, {"detail": "busy", "code": "too_many_pending_rollouts"},
                          {"Retry-After": "0"})
        with StubServer(lambda *_: busy) as stub:
            with self.assertRaises(RlGymError) as caught:
                Client(stub.url).status("r")
            self.assertEqual(caught.exception.status, 429)
            self.assertEqual(caught.exception.code, "too_many_pending_rollouts")
            self.assertEqual(caught.exception.retry_after, 0.0)
            self.assertEqual(len(stub.requests), 2)
        slow = json_reply(429, {"detail": "busy", "code": "x"}, {"Retry-After": "30"})
        with StubServer(lambda *_: slow) as stub:
            with self.assertRaises(RlGymError) as caught:
                Client(stub.url, max_retry_wait=1).status("r")
            self.assertEqual(caught.exception.retry_after, 30.0)
            self.assertEqual(len(stub.requests), 1)

    def test_an_error_that_is_not_the_servers_json_keeps_its_text(self) -> None:
        with StubServer(lambda *_: (502, {"Content-Type": "text/plain"}, b"bad gateway")) as stub:
            with self.assertRaises(RlGymError) as caught:
                Client(stub.url).status("r")
            self.assertEqual(caught.exception.status, 502)
            self.assertEqual(caught.exception.detail, "bad gateway")
            self.assertIsNone(caught.exception.code)

    def test_an_unreachable_server_is_a_connection_error(self) -> None:
        with StubServer(lambda *_: json_reply(200, {})) as stub:
            url = stub.url
        with self.assertRaises(RlGymConnectionError) as caught:
            Client(url, timeout=2).status("r")
        self.assertIn(url, str(caught.exception))

    def test_an_export_is_read_line_by_line(self) -> None:
        lines = b'{"a": 1}\n\n{"a": 2}\n'
        with StubServer(lambda *_: (200, {"Content-Type": "application/x-ndjson"}, lines)) as stub:
            self.assertEqual(
                Client(stub.url).export("r", "sft", min_score=0.5), [{"a": 1}, {"a": 2}]
            )
            target = urllib.parse.urlsplit(stub.requests[0][1])
            self.assertEqual(target.path, "/runs/r/export")
            self.assertEqual(
                urllib.parse.parse_qs(target.query), {"format": ["sft"], "min_score": ["0.5"]}
            )


class FakeFeed:
    """The groups endpoints' contract, in memory: complete groups, acknowledgements
    per consumer, and a run that is finished or not."""

    def __init__(self, groups: int, finished: bool = True) -> None:
        self.groups = list(range(groups))
        self.finished = finished
        self.acked: Dict[str, Set[int]] = {}
        self.lock = threading.Lock()

    def __call__(self, method: str, target: str, headers: Dict[str, str], body: Any):
        url = urllib.parse.urlsplit(target)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        with self.lock:
            if method == "GET" and url.path == "/runs/r/groups":
                consumer = query["consumer"]
                acked = self.acked.setdefault(consumer, set())
                waiting = [g for g in self.groups if g not in acked]
                page = waiting[: int(query["limit"])]
                done = self.finished and not waiting
                return json_reply(200, {
                    "run_id": "r",
                    "consumer": consumer,
                    "groups": [_group_json(g, [1.0, 0.0]) for g in page],
                    "done": done,
                })
            if method == "POST" and url.path == "/runs/r/groups/ack":
                acked = self.acked.setdefault(body["consumer"], set())
                ids = body["group_ids"]
                new = [i for i in ids if i not in acked]
                acked.update(ids)
                return json_reply(200, {
                    "acknowledged": new,
                    "already_acknowledged": [i for i in ids if i not in new],
                })
            if method == "GET" and url.path == "/runs/r":
                state = "completed" if self.finished else "running"
                return json_reply(200, {"run_id": "r", "status": state, "total": 0})
        return json_reply(404, {"detail": "no", "code": "not_found"})


def _stream(url: str, consumer: str, limit: int = 2) -> GroupStream:
    return GroupStream(Client(url), "r", consumer, wait=0, limit=limit, sleep=lambda _: None)


class GroupIterator(unittest.TestCase):
    def test_each_group_once_in_order_and_the_end_when_all_are_acknowledged(self) -> None:
        feed = FakeFeed(5)
        with StubServer(feed) as stub:
            seen = []
            stream = _stream(stub.url, "a")
            for group in stream:
                seen.append(group.group_id)
                self.assertEqual(group.run_id, "r")
                self.assertEqual(group.consumer, "a")
                self.assertEqual(group.ack().acknowledged, [group.group_id])
            self.assertEqual(seen, [0, 1, 2, 3, 4])
            self.assertTrue(stream.done)
            self.assertEqual(list(_stream(stub.url, "a")), [])
            self.assertEqual([g.group_id for g in _stream(stub.url, "b")], [0, 1, 2, 3, 4])

    def test_groups_held_unacknowledged_are_not_yielded_twice_nor_block_later_ones(self) -> None:
        feed = FakeFeed(5)
        with StubServer(feed) as stub:
            stream = _stream(stub.url, "a", limit=2)
            seen = [g.group_id for g in stream]
            # Nothing was acknowledged, the run is finished: the stream ends.
            self.assertEqual(seen, [0, 1, 2, 3, 4])
            self.assertEqual(stream.held, [0, 1, 2, 3, 4])
            self.assertEqual(stream.ack(seen[:2]).acknowledged, [0, 1])
            self.assertEqual(stream.held, [2, 3, 4])
            # Held groups come again to a new stream (a restarted consumer).
            again = _stream(stub.url, "a")
            self.assertEqual([g.group_id for g in again], [2, 3, 4])
            again.ack([2, 3, 4])
            self.assertEqual(list(_stream(stub.url, "a")), [])

    def test_a_batch_is_acknowledged_after_its_update(self) -> None:
        feed = FakeFeed(6)
        with StubServer(feed) as stub:
            stream = _stream(stub.url, "a", limit=1)
            batch, batches = [], []
            for group in stream:
                batch.append(group)
                if len(batch) == 3:
                    batches.append([g.group_id for g in batch])
                    stream.ack(batch)
                    batch = []
            self.assertEqual(batches, [[0, 1, 2], [3, 4, 5]])
            self.assertEqual(feed.acked["a"], set(range(6)))

    def test_a_group_yielded_and_dropped_comes_back_after_a_restart(self) -> None:
        feed = FakeFeed(2)
        with StubServer(feed) as stub:
            first = next(_stream(stub.url, "a"))
            self.assertEqual(first.group_id, 0)
            restarted = _stream(stub.url, "a")
            self.assertEqual(next(restarted).group_id, 0)


if __name__ == "__main__":
    unittest.main()
