//! Scoring through the service: on every bundled task the oracle earns full credit
//! and doing nothing earns none; two oracle rollouts end in equal states; and a
//! finished rollout's events, replayed from the log on disk, give back the same final
//! state and verdict.

use std::collections::BTreeMap;

use serde_json::Value;

use rl_gym::domain::events::Event;
use rl_gym::domain::ids::rollout_stream;
use rl_gym::domain::rollout::RolloutState;
use rl_gym::scenarios::Catalog;
use rl_gym::store::file::FileStore;
use rl_gym::store::EventStore;
use rl_gym::tools::replay;

use crate::helpers::*;

async fn all_task_ids(app: &TestApp, scenario: &str) -> Vec<String> {
    let tasks = app.get_json(&format!("/scenarios/{scenario}/tasks")).await;
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect()
}

async fn rollouts_of(app: &TestApp, run_id: &str) -> Vec<Value> {
    let status = app.wait_until_finished(run_id).await;
    let mut out = Vec::new();
    for id in status["rollout_ids"].as_array().unwrap() {
        out.push(
            app.get_json(&format!("/runs/{run_id}/rollouts/{}", id.as_str().unwrap()))
                .await,
        );
    }
    out
}

#[actix_web::test]
async fn oracle_earns_full_credit_and_noop_none_on_every_bundled_task() {
    let app = spawn_app().await;
    let scenarios = app.get_json("/scenarios").await;
    for scenario in scenarios.as_array().unwrap() {
        let scenario_id = scenario["scenario_id"].as_str().unwrap();
        let tasks = all_task_ids(&app, scenario_id).await;
        let ids: Vec<&str> = tasks.iter().map(String::as_str).collect();

        let mut oracle = builtin_run("oracle", &ids, 2);
        oracle["scenario_id"] = scenario_id.into();
        let launched = app.launch(&oracle).await;
        let rollouts = rollouts_of(&app, launched["run_id"].as_str().unwrap()).await;
        let mut states: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for r in &rollouts {
            assert_eq!(r["status"], "completed", "{r}");
            assert_eq!(
                r["score"], 1.0,
                "oracle on {}: {}",
                r["task_id"], r["verdict"]
            );
            assert_eq!(r["label"], "Full Credit");
            assert!(r["verdict"]["checks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["passed"] == true));
            states
                .entry(r["task_id"].as_str().unwrap().to_string())
                .or_default()
                .push(r["environment_state"].clone());
        }
        for (task, pair) in states {
            assert_eq!(pair.len(), 2);
            assert!(pair[0].is_object());
            assert_eq!(
                pair[0], pair[1],
                "two oracle rollouts of {task} ended in different states"
            );
        }

        let mut noop = builtin_run("noop", &ids, 1);
        noop["scenario_id"] = scenario_id.into();
        let launched = app.launch(&noop).await;
        for r in rollouts_of(&app, launched["run_id"].as_str().unwrap()).await {
            assert_eq!(
                r["score"], 0.0,
                "noop on {}: {}",
                r["task_id"], r["verdict"]
            );
            assert_eq!(r["label"], "No Credit");
        }
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_finished_rollout_replayed_from_the_log_gives_the_same_state_and_verdict() {
    let app = spawn_app().await;
    let tasks = all_task_ids(&app, "hr").await;
    let ids: Vec<&str> = tasks.iter().map(String::as_str).collect();
    let launched = app.launch(&builtin_run("oracle", &ids[..3], 1)).await;
    let rollouts = rollouts_of(&app, launched["run_id"].as_str().unwrap()).await;
    let data_dir = app.data_dir.clone();
    let temp = app.stop_keep_data().await;

    let catalog =
        Catalog::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios"))
            .unwrap();
    let scenario = catalog.get("hr").unwrap();
    let (store, _) = FileStore::open(&data_dir).unwrap();
    for view in rollouts {
        let rollout_id = view["rollout_id"].as_str().unwrap();
        let mut state = RolloutState::default();
        let mut recorded_verdict = None;
        for r in store
            .read_stream(&rollout_stream(rollout_id), 0)
            .await
            .unwrap()
        {
            let event = Event::decode(&r.event_type, r.schema_version, &r.data).unwrap();
            if let Event::RolloutVerified(v) = &event {
                recorded_verdict = Some(v.verdict.clone());
            }
            state.evolve(&event, r.revision);
        }
        let task = &*scenario
            .task(view["task_id"].as_str().unwrap())
            .unwrap()
            .instance(view["instance_seed"].as_u64().unwrap())
            .unwrap();
        let calls = state
            .tool_calls
            .iter()
            .map(|c| replay::recorded(&c.tool_name, &c.arguments, c.fault.as_deref()));
        let env = scenario
            .rebuild(
                task,
                view["seed"].as_u64().unwrap(),
                calls,
                &state.npc_replies,
            )
            .unwrap();
        assert_eq!(env.state(), view["environment_state"]);
        let verdict = task.verify(&env.state(), &state.messages);
        assert_eq!(Some(verdict.clone()), recorded_verdict);
        assert_eq!(serde_json::to_value(&verdict).unwrap(), view["verdict"]);
    }
    store.close().await;
    drop(temp);
}
