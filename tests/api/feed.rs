//! Online training (issue 24): a continuous run draws groups as it goes, a named
//! consumer takes each complete group exactly once (`GET …/groups`, `POST …/groups/ack`)
//! across its own restarts and the server's, complete groups nobody took hold the run
//! back (backpressure), a policy update is recorded on every later turn, and a rollout
//! that falls more than `max_staleness` versions behind is restarted or marked stale.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    ack_groups, builtin_run, first_hr_task, get_json_at, launch_at, poll_groups, spawn_app,
    start_fake_model, Behaviour, ServerProcess, TestApp,
};
use rl_gym::actors::breakpoints::Breakpoint;

fn continuous(mut body: Value, settings: Value) -> Value {
    body["continuous"] = settings;
    body
}

fn group_ids(answer: &Value) -> Vec<u64> {
    answer["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group_id"].as_u64().unwrap())
        .collect()
}

/// Consumes the whole feed, one group at a time, acknowledging each; asserts no group
/// it acknowledged ever comes back. Answers the groups in the order taken.
async fn consume_all(
    client: &reqwest::Client,
    address: &str,
    run_id: &str,
    consumer: &str,
    acked: &mut BTreeSet<u64>,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut taken = Vec::new();
    loop {
        let answer = poll_groups(client, address, run_id, consumer, 1).await;
        for group in answer["groups"].as_array().unwrap() {
            let id = group["group_id"].as_u64().unwrap();
            assert!(
                acked.insert(id),
                "group {id} came to {consumer} again after its ack"
            );
            ack_groups(client, address, run_id, consumer, &[id]).await;
            taken.push(group.clone());
        }
        if answer["done"] == true {
            return taken;
        }
        assert!(
            Instant::now() < deadline,
            "the feed did not finish: {answer}"
        );
    }
}

#[test]
fn every_group_reaches_a_consumer_exactly_once_across_its_restart_and_a_server_sigkill() {
    let temp = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = crate::helpers::http_client();
    let mut server = ServerProcess::start(temp.path());
    let address = server.address.clone();
    let mut acked = BTreeSet::new();
    let run_id = runtime.block_on(async {
        let tasks = get_json_at(&client, &address, "/scenarios/hr/tasks").await;
        let task_ids: Vec<&str> = tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .take(3)
            .map(|t| t["task_id"].as_str().unwrap())
            .collect();
        let body = continuous(
            builtin_run("oracle", &task_ids, 2),
            json!({"max_groups": 8, "max_unconsumed_groups": 2, "seed": 11}),
        );
        let launched = launch_at(&client, &address, &body).await;
        let run_id = launched["run_id"].as_str().unwrap().to_string();

        let first = poll_groups(&client, &address, &run_id, "trainer", 1).await;
        assert_eq!(group_ids(&first), [0]);
        let group = &first["groups"][0];
        assert_eq!(group["rollouts"].as_array().unwrap().len(), 2, "{group}");
        for rollout in group["rollouts"].as_array().unwrap() {
            assert_eq!(rollout["status"], "completed");
            assert_eq!(rollout["reward"], 1.0);
            assert!(!rollout["messages"].as_array().unwrap().is_empty());
        }
        let answer = ack_groups(&client, &address, &run_id, "trainer", &[0]).await;
        assert_eq!(answer["acknowledged"], json!([0]));
        acked.insert(0);
        // Acknowledged again (a retry): recorded once.
        let again = ack_groups(&client, &address, &run_id, "trainer", &[0]).await;
        assert_eq!(again["acknowledged"], json!([]));
        assert_eq!(again["already_acknowledged"], json!([0]));

        // The consumer takes group 1 and dies before acknowledging it: its next
        // incarnation gets group 1 again.
        let taken = poll_groups(&client, &address, &run_id, "trainer", 1).await;
        assert_eq!(group_ids(&taken), [1]);
        let restarted = poll_groups(&client, &address, &run_id, "trainer", 1).await;
        assert_eq!(group_ids(&restarted), [1]);
        ack_groups(&client, &address, &run_id, "trainer", &[1]).await;
        acked.insert(1);
        run_id
    });
    server.kill();

    let restarted = ServerProcess::start(temp.path());
    let address = restarted.address.clone();
    runtime.block_on(async {
        let rest = consume_all(&client, &address, &run_id, "trainer", &mut acked).await;
        assert_eq!(acked, (0..8).collect::<BTreeSet<u64>>());
        assert!(rest
            .iter()
            .all(|g| g["rollouts"].as_array().unwrap().len() == 2));
        // Another consumer gets every group, whatever the first one took, and the
        // same groups: the first reader of a rollout finished after the restart had
        // the content its step loop left, this one reads the log.
        let mut evaluator = BTreeSet::new();
        let all = consume_all(&client, &address, &run_id, "evaluator", &mut evaluator).await;
        assert_eq!(evaluator, (0..8).collect::<BTreeSet<u64>>());
        for group in &rest {
            let again = all
                .iter()
                .find(|g| g["group_id"] == group["group_id"])
                .unwrap();
            assert_eq!(again, group);
        }
        let status = get_json_at(&client, &address, &format!("/runs/{run_id}")).await;
        assert_eq!(status["status"], "completed", "{status}");
        assert_eq!(status["total"], 16, "{status}");
        assert_eq!(status["feed"]["groups_scheduled"], 8, "{status}");
        assert_eq!(status["feed"]["groups_unconsumed"], 0, "{status}");
        assert_eq!(status["feed"]["consumers"]["trainer"], 8, "{status}");
    });
}

/// The feed hands a group out from what the step loops left in memory to its first
/// reader and from the log to the next: both the same.
#[actix_web::test]
async fn a_group_read_first_from_memory_then_from_the_log_is_the_same() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let body = continuous(
        builtin_run("oracle", &[&task], 3),
        json!({"max_groups": 4, "max_unconsumed_groups": 4}),
    );
    let run_id = app.launch(&body).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (client, address) = (app.client.clone(), app.address.clone());
    let mut first = BTreeSet::new();
    let trainer = consume_all(&client, &address, &run_id, "trainer", &mut first).await;
    let mut second = BTreeSet::new();
    let evaluator = consume_all(&client, &address, &run_id, "evaluator", &mut second).await;
    assert_eq!(first, (0..4).collect::<BTreeSet<u64>>());
    assert_eq!(first, second);
    for group in &trainer {
        let again = evaluator
            .iter()
            .find(|g| g["group_id"] == group["group_id"])
            .unwrap();
        assert_eq!(again, group);
        let messages = group["rollouts"][0]["messages"].as_array().unwrap();
        assert!(messages.len() > 2, "{group}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn complete_groups_nobody_took_stop_new_rollouts_until_a_consumer_acknowledges() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let body = continuous(
        builtin_run("oracle", &[&task], 1),
        json!({"max_unconsumed_groups": 2}),
    );
    let mut points = app.breakpoints.subscribe();
    let run_id = app.launch(&body).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let held = app
        .run_until(&run_id, |s| s["feed"]["waiting_for_consumer"] == true)
        .await;
    assert_eq!(held["feed"]["groups_unconsumed"], 2, "{held}");
    assert_eq!(held["status"], "running", "{held}");
    // Held back: once its scheduler held back with nothing running, nothing more
    // starts however long the consumer takes (a group drawn ahead waits, pending).
    let started = |s: &Value| s["completed"].as_u64().unwrap() + s["in_progress"].as_u64().unwrap();
    let idle = Breakpoint::HeldBackByConsumers {
        run_id: run_id.clone(),
        running: 0,
    };
    points.advance_till(|p| *p == idle).await;
    let held = app.run_until(&run_id, |s| s["in_progress"] == 0).await;
    assert_eq!(held["feed"]["waiting_for_consumer"], true, "{held}");

    // A consumer holding group 0 asks for newer groups only.
    let newer = app
        .get_json(&format!(
            "/runs/{run_id}/groups?consumer=trainer&after=0&wait=0"
        ))
        .await;
    assert_eq!(group_ids(&newer), [1], "{newer}");
    let answer = ack_groups(&app.client, &app.address, &run_id, "trainer", &[0]).await;
    assert_eq!(answer["acknowledged"], json!([0]));
    let acknowledged = Breakpoint::FeedChanged {
        run_id: run_id.clone(),
    };
    let meanwhile = points.advance_till(|p| *p == acknowledged).await;
    assert!(
        !meanwhile
            .iter()
            .any(|p| matches!(p, Breakpoint::RolloutStarted { .. })),
        "a rollout started before the acknowledgement: {meanwhile:#?}"
    );
    let after = app
        .run_until(&run_id, |s| {
            started(s) > started(&held) && s["feed"]["waiting_for_consumer"] == true
        })
        .await;
    assert_eq!(after["feed"]["groups_unconsumed"], 2, "{after}");
    // An unknown or unfinished group is refused, naming it.
    let response = app
        .post(
            &format!("/runs/{run_id}/groups/ack"),
            &json!({"consumer": "trainer", "group_ids": [1, 9999]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["detail"][0]["loc"], json!(["body", "group_ids", "1"]));

    let cancelled = app.cancel(&run_id).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let end = app.run_until(&run_id, |s| s["status"] == "cancelled").await;
    assert_eq!(end["feed"]["waiting_for_consumer"], false, "{end}");
    app.stop().await;
}

#[actix_web::test]
async fn bad_feed_requests_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let bad = continuous(
        builtin_run("oracle", &[&task], 1),
        json!({"max_unconsumed_groups": 0, "on_stale": "later", "extra": 1}),
    );
    let response = app.post_run(&bad).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = response.json().await.unwrap();
    let fields: BTreeSet<String> = error["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["loc"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for field in ["max_unconsumed_groups", "on_stale", "extra"] {
        assert!(fields.contains(field), "{error}");
    }
    let run_id = app.launch(&builtin_run("oracle", &[&task], 2)).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    for query in [
        "",
        "consumer=a%20b",
        "consumer=t&wait=61",
        "consumer=t&limit=0",
    ] {
        let response = app.groups(&run_id, query).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
    }
    let missing = app.groups("run_nope", "consumer=t&wait=0").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let policy = app.post_policy(&run_id, &json!({"version": ""})).await;
    assert_eq!(policy.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // An ordinary run feeds too: its groups are its tasks' rollouts.
    app.wait_until_finished(&run_id).await;
    let answer = poll_groups(&app.client, &app.address, &run_id, "t", 16).await;
    assert_eq!(group_ids(&answer), [0]);
    assert_eq!(answer["groups"][0]["rollouts"].as_array().unwrap().len(), 2);
    ack_groups(&app.client, &app.address, &run_id, "t", &[0]).await;
    let done = poll_groups(&app.client, &app.address, &run_id, "t", 16).await;
    assert_eq!(done["done"], true, "{done}");
    app.stop().await;
}

/// A continuous run of one task at a time on a fake model server at `model` whose
/// replies take `delay_ms`: a tool call, then an answer.
fn fake_model_run(task: &str, model: &str, settings: Value) -> Value {
    json!({
        "scenario_id": "hr",
        "task_ids": [task],
        "rollout_count": 1,
        "max_parallel": 1,
        "model_config": {"model": "m", "provider": "custom", "base_url": model,
                         "policy_version": "v0"},
        "continuous": settings,
    })
}

async fn rollout_turns(app: &TestApp, run_id: &str, rollout_id: &str) -> Vec<Value> {
    let detail = app.rollout(run_id, rollout_id).await;
    detail["trajectory"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .cloned()
        .collect()
}

/// Two model servers (the old one slow, so that its first turn is in flight) and a
/// continuous run of one rollout per group on the old one, switched to the new one
/// (`v1`) while that first turn runs.
struct Switched {
    app: TestApp,
    run_id: String,
    old: crate::helpers::FakeModel,
    new: crate::helpers::FakeModel,
}

async fn switch_during_the_first_turn(continuous: Value) -> Switched {
    let old = start_fake_model(Behaviour::ToolThenAnswer { delay_ms: 300 }).await;
    let new = start_fake_model(Behaviour::ToolThenAnswer { delay_ms: 0 }).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let body = fake_model_run(&task, &old.address, continuous);
    let mut points = app.breakpoints.subscribe();
    let run_id = app.launch(&body).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    points
        .advance_till(|p| matches!(p, Breakpoint::ModelCallSent { step: 1, .. }))
        .await;
    let switched = app
        .post_policy(&run_id, &json!({"version": "v1", "base_url": new.address}))
        .await;
    assert_eq!(switched.status(), StatusCode::OK);
    let switched: Value = switched.json().await.unwrap();
    assert_eq!(switched["ordinal"], 1);
    Switched {
        app,
        run_id,
        old,
        new,
    }
}

#[actix_web::test]
async fn a_policy_switch_mid_rollout_is_recorded_on_every_later_turn_and_a_stale_rollout_is_marked()
{
    let Switched {
        app,
        run_id,
        old,
        new,
    } = switch_during_the_first_turn(
        json!({"max_groups": 2, "max_staleness": 0, "on_stale": "finish"}),
    )
    .await;
    let mut taken = BTreeSet::new();
    let groups = consume_all(&app.client, &app.address, &run_id, "trainer", &mut taken).await;
    assert_eq!(groups.len(), 2);
    // Group 0 began under v0 and ended under v1: delivered, marked stale.
    let first = &groups[0]["rollouts"][0];
    assert_eq!(first["policy_versions"], json!(["v0", "v1"]), "{first}");
    assert_eq!(first["stale"], true);
    assert_eq!(groups[0]["stale_count"], 1);
    // Group 1 ran wholly under v1.
    let second = &groups[1]["rollouts"][0];
    assert_eq!(second["policy_versions"], json!(["v1", "v1"]), "{second}");
    assert_eq!(second["stale"], false);
    // The old server answered one turn; every later one went to the new server.
    assert_eq!(old.requests.lock().len(), 1);
    assert_eq!(new.requests.lock().len(), 3);
    let turns = rollout_turns(&app, &run_id, first["rollout_id"].as_str().unwrap()).await;
    assert_eq!(turns.len(), 2);
    let status = app.run_summary(&run_id).await;
    assert_eq!(status["feed"]["policy_version"], "v1", "{status}");
    assert_eq!(status["status"], "completed", "{status}");
    app.stop().await;
}

#[actix_web::test]
async fn a_rollout_more_than_max_staleness_behind_is_restarted_from_scratch_under_the_new_policy() {
    let Switched { app, run_id, .. } = switch_during_the_first_turn(
        json!({"max_groups": 1, "max_staleness": 0, "on_stale": "restart"}),
    )
    .await;
    let mut taken = BTreeSet::new();
    let groups = consume_all(&app.client, &app.address, &run_id, "trainer", &mut taken).await;
    assert_eq!(groups.len(), 1);
    let group = &groups[0];
    assert_eq!(group["restarted_count"], 1, "{group}");
    assert_eq!(group["stale_count"], 0, "{group}");
    let rollout = &group["rollouts"][0];
    assert_eq!(rollout["policy_versions"], json!(["v1", "v1"]), "{rollout}");
    assert!(rollout["reward"].as_f64().is_some(), "{rollout}");
    // The stale rollout was cancelled with the reason; the run counts both.
    let stale_id = group["restarted"][0].as_str().unwrap();
    let stale = app.rollout(&run_id, stale_id).await;
    assert_eq!(stale["status"], "cancelled", "{stale}");
    assert!(
        stale["error"].as_str().unwrap().contains("max_staleness"),
        "{stale}"
    );
    let status = app.run_summary(&run_id).await;
    assert_eq!(status["total"], 2, "{status}");
    assert_eq!(status["status"], "completed", "{status}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("rl_gym_rollouts_restarted_stale_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

/// A continuous run's live events follow the rollouts it draws after the stream
/// opened, and end with the run, not when the rollouts drawn so far have ended; a
/// re-verification covers them too, and each can be forked.
#[actix_web::test]
async fn a_continuous_runs_event_stream_reverification_and_forks_cover_its_drawn_rollouts() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let body = continuous(
        builtin_run("oracle", &[&task], 1),
        json!({"max_groups": 3, "max_unconsumed_groups": 1}),
    );
    let run_id = app.launch(&body).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut events = crate::helpers::Sse::open(&app, &format!("/runs/{run_id}/events"), None).await;
    // The run holds back after one complete group until it is acknowledged.
    let mut acked = BTreeSet::new();
    let consumer = async {
        consume_all(&app.client, &app.address, &run_id, "trainer", &mut acked).await;
    };
    let (all, ()) = tokio::join!(events.rest(), consumer);
    let count = |kind: &str| all.iter().filter(|e| e.event == kind).count();
    assert_eq!(count("GroupScheduled"), 3);
    assert_eq!(count("RolloutCompleted"), 3);
    // Groups 0 and 1 had to be acknowledged before the next could start; the last
    // acknowledgement comes after the run's end, where the stream ends.
    assert_eq!(count("GroupConsumed"), 2);
    assert_eq!(acked.len(), 3);
    // Re-verifying covers the rollouts drawn after the launch.
    let response = app.reverify(&run_id, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rescored: Value = response.json().await.unwrap();
    let rollouts = rescored["rollouts"].as_array().unwrap();
    assert_eq!(rollouts.len(), 3, "{rescored}");
    assert!(rollouts.iter().all(|r| r["new_score"] == 1.0), "{rescored}");
    // And one of them can be forked.
    let drawn = rollouts[2]["rollout_id"].as_str().unwrap();
    let fork = app.fork(&run_id, drawn, &json!({"at_step": 1})).await;
    assert_eq!(fork.status(), StatusCode::OK);
    let fork: Value = fork.json().await.unwrap();
    let child = app.only_rollout(&fork).await;
    assert_eq!(child["status"], "completed", "{child}");
    assert_eq!(child["score"], 1.0, "{child}");
    app.stop().await;
}
