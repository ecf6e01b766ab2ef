//! Simulated people answer the agent's email within the rollout: scripted by the task,
//! or written by the run's `user_model_config` through the same provider code.

use serde_json::{json, Value};

use crate::helpers::*;

async fn rollouts(app: &TestApp, run_id: &str) -> Vec<Value> {
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

fn recruiting_tasks(tasks: &Value) -> Vec<String> {
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect()
}

#[actix_web::test]
async fn scripted_replies_arrive_in_the_inbox_during_the_rollout() {
    let app = spawn_app().await;
    let tasks = recruiting_tasks(&app.get_json("/scenarios/hr_recruiting/tasks").await);
    let launched = app
        .launch(&json!({"scenario_id": "hr_recruiting", "task_ids": tasks,
                        "model_config": {"model": "oracle", "provider": "builtin"}}))
        .await;
    let all = rollouts(&app, launched["run_id"].as_str().unwrap()).await;
    let with_replies: Vec<&Value> = all
        .iter()
        .filter(|r| !r["npc_replies"].as_array().unwrap().is_empty())
        .collect();
    assert!(with_replies.len() >= 4, "at least 4 tasks get an NPC reply");
    let mut acted_on = 0;
    for r in with_replies {
        let reply = &r["npc_replies"][0];
        let arrived = reply["after_tool_calls"].as_u64().unwrap() as usize;
        // The reply is in the final inbox and a later tool call of the agent read it.
        let inbox = r["environment_state"]["email"].to_string();
        assert!(
            inbox.contains(reply["email"]["subject"].as_str().unwrap()),
            "{r}"
        );
        if r["tool_calls"].as_array().unwrap().len() > arrived {
            acted_on += 1;
        }
        assert_eq!(r["score"], 1.0);
    }
    assert!(
        acted_on >= 4,
        "in at least 4 tasks the agent acts on a reply"
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_user_model_writes_the_replies_in_character() {
    let model = start_fake_model(Behaviour::answer_after(0)).await;
    let app = spawn_app().await;
    let tasks = recruiting_tasks(&app.get_json("/scenarios/hr_recruiting/tasks").await);
    let launched = app
        .launch(&json!({"scenario_id": "hr_recruiting", "task_ids": tasks,
                        "model_config": {"model": "oracle", "provider": "builtin"},
                        "user_model_config": {"model": "persona", "provider": "custom", "base_url": model.address,
                                              "api_key": "sk-user-model"}}))
        .await;
    let all = rollouts(&app, launched["run_id"].as_str().unwrap()).await;
    let replies: Vec<&Value> = all
        .iter()
        .flat_map(|r| r["npc_replies"].as_array().unwrap().iter())
        .collect();
    assert!(!replies.is_empty());
    for reply in &replies {
        assert_eq!(
            reply["email"]["body"], "Done.",
            "the model's text is the reply: {reply}"
        );
        assert!(reply["email"]["subject"]
            .as_str()
            .unwrap()
            .starts_with("Re:"));
    }
    let requests = model.requests.lock().clone();
    assert_eq!(requests.len(), replies.len(), "one model call per reply");
    for (auth, body) in &requests {
        assert_eq!(auth.as_deref(), Some("Bearer sk-user-model"));
        assert_eq!(body["model"], "persona");
        let system = body["messages"][0]["content"].as_str().unwrap();
        assert!(system.starts_with("You are "), "{system}");
        assert!(body.get("tools").is_none(), "a person has no tools");
    }
    app.stop().await;
}
