use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::*;
use crate::domain::events::{Event, ModelSettings};

fn event(event_type: &str, data: Value) -> Fact {
    Fact::from(Event::decode(event_type, 1, data.to_string().as_bytes()).unwrap())
}

#[test]
fn the_checksum_hashed_in_parallel_chunks_is_that_of_every_view_in_order() {
    let model = serde_json::to_value(ModelSettings::new("custom", "m")).unwrap();
    let mut views = Views::default();
    // Several chunks of rollouts, an odd number of them, and a run of one chunk.
    for r in 0..3 {
        let rollouts: Vec<Value> = (0..2_100)
            .map(|i| json!({"rollout_id": format!("rol_{r}_{i:05}"), "task_id": "t", "seed": i}))
            .collect();
        let launched = event(
            "RunLaunched",
            json!({"run_id": format!("run_{r}"), "scenario_id": "hr", "source": "rl-gym",
                "task_ids": ["t"], "rollout_count": rollouts.len(), "max_parallel": null,
                "model": model, "user_model": null, "rollouts": rollouts,
                "launched_at": "2026-03-02T09:00:00Z"}),
        );
        views.apply(r, &launched);
    }
    assert!(views.rollouts.len() > 5 * 1024);

    use sha2::{Digest, Sha256};
    let mut one_by_one = Sha256::new();
    for run in views.runs.values() {
        one_by_one.update(serde_json::to_vec(run).unwrap());
    }
    for rollout in views.rollouts.values() {
        one_by_one.update(serde_json::to_vec(rollout).unwrap());
    }
    one_by_one.update(views.next_position.to_be_bytes());
    assert_eq!(views.checksum(), hex::encode(one_by_one.finalize()));
}

#[test]
fn a_paused_run_says_so_counts_its_spend_and_is_not_resumed_on_restart() {
    let at = "2026-03-02T09:00:00Z";
    let model = serde_json::to_value(ModelSettings::new("custom", "m")).unwrap();
    let events = [
        event(
            "RunLaunched",
            json!({"run_id": "run_1", "scenario_id": "hr",
            "source": "rl-gym", "task_ids": ["t"], "rollout_count": 2,
            "max_parallel": 1, "model": model, "user_model": null,
            "rollouts": [{"rollout_id": "rol_1", "task_id": "t", "seed": 1},
                         {"rollout_id": "rol_2", "task_id": "t", "seed": 2}],
            "launched_at": at, "budget": {"max_total_tokens": 100},
            "prices": {"model": {"prompt_usd_per_mtok": 1.0,
                                 "completion_usd_per_mtok": 2.0}}}),
        ),
        event(
            "RolloutStarted",
            json!({"rollout_id": "rol_1", "run_id": "run_1",
            "task_id": "t", "messages": [], "started_at": at}),
        ),
        event(
            "ModelCalled",
            json!({"rollout_id": "rol_1", "step": 1, "model": "m",
            "message": {"role": "assistant", "content": "hi"},
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
            "logprobs": null, "latency_ms": 1.0, "called_at": at}),
        ),
        event(
            "RunPaused",
            json!({"run_id": "run_1", "reason": "spent",
            "tokens_used": 110, "cost_usd": 0.00012, "paused_at": at}),
        ),
    ];
    let mut views = Views::default();
    for (i, e) in events.iter().enumerate() {
        views.apply(i as u64, e);
    }
    let run = views.run("run_1").unwrap();
    assert_eq!((run.state(), run.paused), ("paused", true));
    assert_eq!(run.spent.tokens, 110);
    assert!((run.spent.cost_usd - 0.00012).abs() < 1e-12);
    assert!(views.unfinished_runs().is_empty());

    let resumed = event(
        "RunResumed",
        json!({"run_id": "run_1", "budget": null, "resumed_at": at}),
    );
    views.apply(events.len() as u64, &resumed);
    let run = views.run("run_1").unwrap();
    assert_eq!((run.state(), run.budget), ("running", None));
    assert_eq!(views.unfinished_runs().len(), 1);
}

#[test]
fn a_run_is_orphaned_once_its_lease_lapses_or_is_given_up_and_always_for_its_own_node() {
    let launched_at = "2026-03-02T09:00:00Z";
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let model = serde_json::to_value(ModelSettings::new("custom", "m")).unwrap();
    let mut views = Views::default();
    views.apply(
        0,
        &event(
            "RunLaunched",
            json!({"run_id": "run_1", "scenario_id": "hr",
            "source": "rl-gym", "task_ids": ["t"], "rollout_count": 1,
            "max_parallel": null, "model": model, "user_model": null,
            "rollouts": [{"rollout_id": "rol_1", "task_id": "t", "seed": 1}],
            "launched_at": launched_at}),
        ),
    );
    let grace = chrono::Duration::seconds(10);
    let orphans = |views: &Views, now: &str, node: &str| {
        views
            .orphaned_runs(at(now), node, grace)
            .into_iter()
            .map(|(run, rollouts)| (run, rollouts.len()))
            .collect::<Vec<_>>()
    };
    let one = vec![("run_1".to_string(), 1)];
    assert!(
        orphans(&views, "2026-03-02T09:00:05Z", "b").is_empty(),
        "just launched: its node is taking it"
    );
    assert_eq!(
        orphans(&views, "2026-03-02T09:00:11Z", "b"),
        one,
        "never taken"
    );

    views.apply(
        1,
        &event(
            "RunLeaseAcquired",
            json!({"run_id": "run_1", "node_id": "a", "term": 1,
            "expires_at": "2026-03-02T09:00:20Z", "acquired_at": launched_at}),
        ),
    );
    assert!(orphans(&views, "2026-03-02T09:00:19Z", "b").is_empty());
    assert_eq!(
        orphans(&views, "2026-03-02T09:00:19Z", "a"),
        one,
        "its own node"
    );
    assert_eq!(orphans(&views, "2026-03-02T09:00:20Z", "b"), one, "lapsed");

    views.apply(
        2,
        &event(
            "RunLeaseReleased",
            json!({"run_id": "run_1", "node_id": "a", "term": 1,
            "released_at": "2026-03-02T09:00:12Z"}),
        ),
    );
    assert_eq!(
        orphans(&views, "2026-03-02T09:00:13Z", "b"),
        one,
        "given up"
    );
    assert!(views.run("run_1").unwrap().owner.is_none());
}

#[test]
fn a_group_is_complete_once_its_rollouts_end_counting_a_restart_in_its_place() {
    let at = "2026-03-02T09:00:00Z";
    let model = serde_json::to_value(ModelSettings::new("builtin", "oracle")).unwrap();
    let scheduled = |group: u32, ids: &[&str]| {
        let rollouts: Vec<Value> = ids
            .iter()
            .map(|id| json!({"rollout_id": id, "task_id": "t", "seed": 1}))
            .collect();
        event(
            "GroupScheduled",
            json!({"run_id": "run_1", "group": group, "task_id": "t",
                "rollouts": rollouts, "scheduled_at": at}),
        )
    };
    let ended = |id: &str| {
        event(
            "RolloutCompleted",
            json!({"rollout_id": id, "reason": "final_answer", "steps": 1,
                "completed_at": at}),
        )
    };
    let mut views = Views::default();
    let apply = |views: &mut Views, fact: Fact| views.apply(views.next_position, &fact);
    apply(
        &mut views,
        event(
            "RunLaunched",
            json!({"run_id": "run_1", "scenario_id": "hr", "source": "rl-gym",
                "task_ids": ["t"], "rollout_count": 2, "max_parallel": null,
                "model": model, "user_model": null, "rollouts": [], "launched_at": at,
                "continuous": {"max_groups": null, "max_unconsumed_groups": 4,
                    "max_staleness": 0, "on_stale": "restart", "seed": 1}}),
        ),
    );
    apply(&mut views, scheduled(0, &["rol_a", "rol_b"]));
    apply(&mut views, scheduled(1, &["rol_c", "rol_d"]));
    apply(&mut views, ended("rol_a"));
    apply(&mut views, ended("rol_c"));
    apply(&mut views, ended("rol_d"));
    let progress = |views: &Views| {
        let run = views.run("run_1").unwrap();
        (
            run.groups.is_complete(0),
            run.groups.is_complete(1),
            run.groups.complete(),
        )
    };
    assert_eq!(progress(&views), (false, true, 1));

    // rol_b goes stale: rol_e takes its place, and rol_b's own end counts no more.
    apply(
        &mut views,
        event(
            "RolloutRestarted",
            json!({"run_id": "run_1", "group": 0, "replaced": "rol_b",
                "rollout": {"rollout_id": "rol_e", "task_id": "t", "seed": 1},
                "reason": "stale", "restarted_at": at}),
        ),
    );
    apply(&mut views, ended("rol_b"));
    assert_eq!(progress(&views), (false, true, 1));
    apply(&mut views, ended("rol_e"));
    assert_eq!(progress(&views), (true, true, 2));

    // Every group's count is what walking its rollouts says.
    let run = views.run("run_1").unwrap();
    for (index, group) in views.groups(run).iter().enumerate() {
        let walked = group
            .rollout_ids
            .iter()
            .all(|id| views.rollout(id).unwrap().status.is_terminal());
        assert_eq!(
            run.groups.is_complete(index as u32),
            walked,
            "group {index}"
        );
    }
}

#[test]
fn an_ordinary_runs_groups_are_its_task_instances_in_order_of_first_appearance() {
    let at = "2026-03-02T09:00:00Z";
    let model = serde_json::to_value(ModelSettings::builtin("oracle")).unwrap();
    let rollout = |id: &str, task: &str, instance: u64| json!({"rollout_id": id, "task_id": task, "seed": 1, "instance_seed": instance});
    let mut views = Views::default();
    let launched = event(
        "RunLaunched",
        json!({"run_id": "run_1", "scenario_id": "hr", "source": "rl-gym",
            "task_ids": ["t", "u"], "rollout_count": 2, "max_parallel": null,
            "model": model, "user_model": null, "launched_at": at,
            "rollouts": [rollout("rol_a", "u", 0), rollout("rol_b", "t", 5),
                         rollout("rol_c", "u", 0), rollout("rol_d", "t", 6)]}),
    );
    views.apply(0, &launched);
    let ended = event(
        "RolloutCompleted",
        json!({"rollout_id": "rol_b", "reason": "final_answer", "steps": 1,
            "completed_at": at}),
    );
    views.apply(1, &ended);
    let run = views.run("run_1").unwrap();
    let groups = views.groups(run);
    let members: Vec<Vec<&str>> = groups
        .iter()
        .map(|g| g.rollout_ids.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        members,
        [vec!["rol_a", "rol_c"], vec!["rol_b"], vec!["rol_d"]]
    );
    for (index, group) in groups.iter().enumerate() {
        let walked = group
            .rollout_ids
            .iter()
            .all(|id| views.rollout(id).unwrap().status.is_terminal());
        assert_eq!(
            run.groups.is_complete(index as u32),
            walked,
            "group {index}"
        );
    }
    assert_eq!((run.groups.len(), run.groups.complete()), (3, 1));
}
