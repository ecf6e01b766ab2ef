//! Task families (issue 25): a task with `parameters` is a family of instances; a
//! launch runs `instances_per_task` of them (or exactly `instance_seeds`), each
//! rollout shows its instance, each instance's rollouts form a group, and the oracle
//! solves every instance.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{builtin_run, bundled_catalog, run_cli, spawn_app};

const FAMILY: &str = "hr__105_reporting_line_question";

#[actix_web::test]
async fn a_launch_runs_several_instances_of_a_family_each_solved_and_shown() {
    let app = spawn_app().await;
    let mut body = builtin_run("oracle", &[FAMILY], 2);
    body["instances_per_task"] = json!(4);
    let run_id = app.launch(&body).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = app.wait_until_finished(&run_id).await;
    assert_eq!(status["total"], 8, "{status}");
    assert_eq!(status["completed"], 8, "{status}");
    let mut instances = BTreeSet::new();
    let mut tasks_told = BTreeSet::new();
    for id in status["rollout_ids"].as_array().unwrap() {
        let detail = app
            .get_json(&format!("/runs/{run_id}/rollouts/{}", id.as_str().unwrap()))
            .await;
        assert_eq!(detail["score"], 1.0, "{detail}");
        let instance = detail["instance_seed"].as_u64().unwrap();
        instances.insert(instance);
        let told = detail["trajectory"][1]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!told.contains("{{"), "{told}");
        if instance == 0 {
            // Instance 0 is the task as it was written before it became a family.
            assert!(
                told.starts_with("A new finance analyst asks: who does Ravi Patel"),
                "{told}"
            );
        }
        tasks_told.insert(told);
    }
    assert_eq!(instances, (0..4).collect::<BTreeSet<u64>>());
    assert!(tasks_told.len() >= 2, "{tasks_told:?}");

    // Exports and the feed name the instance; each instance's rollouts are a group.
    let export = app.export(&run_id, "format=rl").await.text().await.unwrap();
    let seen: BTreeSet<u64> = export
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["provenance"]["instance_seed"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seen, instances);
    let groups = app
        .get_json(&format!("/runs/{run_id}/groups?consumer=t&wait=0&limit=16"))
        .await;
    let groups = groups["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4);
    for group in groups {
        assert_eq!(group["rollouts"].as_array().unwrap().len(), 2, "{group}");
        let instance = group["instance_seed"].as_u64().unwrap();
        for rollout in group["rollouts"].as_array().unwrap() {
            assert_eq!(rollout["provenance"]["instance_seed"], instance);
        }
    }
    app.stop().await;
}

#[actix_web::test]
async fn explicit_instance_seeds_are_run_and_bad_ones_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let mut body = builtin_run("oracle", &[FAMILY], 1);
    body["instance_seeds"] = json!([7, 123456789]);
    let run_id = app.launch(&body).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = app.wait_until_finished(&run_id).await;
    assert_eq!(status["completed"], 2, "{status}");
    for (bad, field) in [
        (
            json!({"instance_seeds": [], "instances_per_task": null}),
            "instance_seeds",
        ),
        (json!({"instance_seeds": [-1]}), "instance_seeds"),
        (json!({"instances_per_task": 0}), "instances_per_task"),
        (
            json!({"instances_per_task": 2, "instance_seeds": [1]}),
            "instance_seeds",
        ),
    ] {
        let mut body = builtin_run("oracle", &[FAMILY], 1);
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let response = app.post_run(&body).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["detail"][0]["loc"], json!(["body", field]), "{error}");
    }
    app.stop().await;
}

/// Instance seeds `validate` plays here: 60, or `RL_GYM_FAMILY_SEEDS` (the opt-in
/// 10,000-seed run: `RL_GYM_FAMILY_SEEDS=10000 cargo test --release families::`).
fn family_seeds() -> u64 {
    match std::env::var("RL_GYM_FAMILY_SEEDS") {
        Ok(n) => n.parse().expect("RL_GYM_FAMILY_SEEDS is a number"),
        Err(_) => {
            eprintln!(
                "families: 60 instance seeds; set RL_GYM_FAMILY_SEEDS=10000 for the full run"
            );
            60
        }
    }
}

#[test]
fn validate_plays_every_familys_instances_and_reports_how_many_differ() {
    let seeds = family_seeds();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios");
    let (code, out, err) = run_cli(&[
        "scenarios",
        "validate",
        dir.to_str().unwrap(),
        "--seeds",
        &seeds.to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("family: ")).collect();
    assert!(lines.len() >= 60, "{out}");
    assert!(lines.iter().any(|l| l.contains(FAMILY)), "{out}");
    for line in lines {
        assert!(line.starts_with("ok"), "{line}");
        assert!(line.contains(&format!("{seeds} seeds")), "{line}");
        let distinct: u64 = line
            .split("family: ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        // Most instances differ: at least half of the first 1,000 (issue 25's bar).
        assert!(distinct >= (seeds.min(1000) / 2), "{line}");
    }
}

/// A hosted environment plays one instance: its own records, told in its description.
#[actix_web::test]
async fn a_hosted_environment_plays_the_instance_it_is_asked_for() {
    let app = spawn_app().await;
    let task_id = "hr__101_approve_leave_request";
    let catalog = bundled_catalog();
    let family = catalog.get("hr").unwrap().task(task_id).unwrap().clone();
    // An instance whose world differs from the scenario's (it adds records).
    let seed = (1..50)
        .find(|&s| {
            let i = family.instance(s).unwrap();
            i.environment
                .values()
                .any(|v| v.to_string().contains("LR-0"))
        })
        .expect("an instance that adds a leave request");
    let instance = family.instance(seed).unwrap().into_owned();
    let response = app
        .post_environment(&json!({"scenario_id": "hr", "task_id": task_id, "instance_seed": seed}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["instance_seed"], seed);
    assert_eq!(created["description"], instance.description.as_str());
    assert!(!instance.description.contains("{{"));

    // Every call of the instance's reference solution succeeds on it, on the server
    // that lists the tool.
    let mut server_of = std::collections::HashMap::new();
    for server in created["tool_servers"].as_array().unwrap() {
        let url = server["tool_server_url"].as_str().unwrap();
        let path = url.strip_prefix(&app.address).unwrap().to_string();
        for tool in app.get_json(&format!("{path}/tools")).await["tools"]
            .as_array()
            .unwrap()
        {
            server_of.insert(tool["name"].as_str().unwrap().to_string(), path.clone());
        }
    }
    for step in &instance.reference_solution {
        let path = &server_of[&step.tool_name];
        let call = json!({"action": {"tool_name": step.tool_name, "parameters": step.parameters}});
        let answer: Value = app
            .post(&format!("{path}/step"), &call)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer.get("is_error"),
            None,
            "{} on instance {seed}: {answer}",
            step.tool_name
        );
    }

    // A continuous run draws instance seeds from the whole 64-bit range.
    let response = app
        .post_environment(
            &json!({"scenario_id": "hr", "task_id": task_id, "instance_seed": u64::MAX}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["instance_seed"], u64::MAX);

    let response = app
        .post_environment(&json!({"scenario_id": "hr", "task_id": task_id, "instance_seed": -1}))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "instance_seed"]));
    app.stop().await;
}

/// A scenario's task list shows each family as written (its instance 0) with its
/// parameters' sizes; a rubric can be asked for any instance.
#[actix_web::test]
async fn the_task_list_shows_instance_zero_and_a_rubric_any_instance() {
    let app = spawn_app().await;
    let catalog = bundled_catalog();
    let hr = catalog.get("hr").unwrap();
    let listed = app.get_json("/scenarios/hr/tasks").await;
    for task in listed["tasks"].as_array().unwrap() {
        let id = task["task_id"].as_str().unwrap();
        let family = hr.task(id).unwrap();
        assert!(!task.to_string().contains("{{"), "{id}: {task}");
        assert_eq!(
            task["description"],
            family.instance(0).unwrap().description.as_str()
        );
        assert_eq!(
            task["parameters"].as_object().map_or(0, |p| p.len()),
            family.parameters.len(),
            "{id}"
        );
    }
    let family = hr.task(FAMILY).unwrap();
    let rubric = app
        .get_json(&format!(
            "/scenarios/hr/tasks/{FAMILY}/rubric?instance_seed=5"
        ))
        .await;
    assert_eq!(rubric, json!(family.instance(5).unwrap().rubric));
    assert!(!rubric.to_string().contains("{{"));
    let bad = app
        .get(&format!(
            "/scenarios/hr/tasks/{FAMILY}/rubric?instance_seed=x"
        ))
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let last = app
        .get_json(&format!(
            "/scenarios/hr/tasks/{FAMILY}/rubric?instance_seed={}",
            u64::MAX
        ))
        .await;
    assert_eq!(last, json!(family.instance(u64::MAX).unwrap().rubric));
    app.stop().await;
}
