//! The event catalog: every event type has a schema per version in `events/schema/`,
//! and the golden logs in `events/golden/` still decode to the same payloads and
//! replay to the same views. Changing an event's shape without a new schema version
//! (and an upcaster) fails here.
//!
//! `RL_GYM_BLESS=1 cargo test catalog` rewrites the v1 golden log and its views; do
//! that only when adding a new golden log, never to paper over a changed shape.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use rl_gym::domain::budget::{Budget, Price, RunPrices};
use rl_gym::domain::chat::{FunctionCall, Message, ToolCall};
use rl_gym::domain::events::*;
use rl_gym::domain::faults::ToolFaults;
use rl_gym::domain::verdict::{CheckResult, CriterionGrade, RubricStatus, RubricVerdict, Verdict};
use rl_gym::projections;
use rl_gym::store::memory::MemoryStore;
use rl_gym::store::{EventData, EventStore, ExpectedState};

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_442_000 + seconds, 0).unwrap()
}

fn model() -> ModelSettings {
    ModelSettings::builtin("oracle")
}

fn launched(run_id: &str, rollouts: &[&str], time: i64) -> Event {
    Event::RunLaunched(Box::new(RunLaunched {
        run_id: run_id.into(),
        scenario_id: "hr".into(),
        source: "rl-gym".into(),
        task_ids: vec!["hr__101_approve_leave_request".into()],
        rollout_count: rollouts.len() as u32,
        max_parallel: Some(2),
        model: model(),
        user_model: None,
        judge_model: None,
        task_overrides: Default::default(),
        parent: None,
        tool_faults: None,
        rollouts: rollouts
            .iter()
            .enumerate()
            .map(|(i, id)| ScheduledRollout {
                rollout_id: id.to_string(),
                task_id: "hr__101_approve_leave_request".into(),
                seed: 1000 + i as u64,
                instance_seed: 0,
            })
            .collect(),
        launched_at: at(time),
        budget: None,
        prices: None,
        continuous: None,
    }))
}

/// A continuous run (issue 24): a drawn group, a policy update, a turn answered by it,
/// a stale rollout restarted, and a consumer's acknowledgement.
fn feed_golden_events() -> Vec<(String, Event)> {
    let scheduled = |id: &str, seed: u64| ScheduledRollout {
        rollout_id: id.into(),
        task_id: "hr__101_approve_leave_request".into(),
        seed,
        instance_seed: 3,
    };
    let mut launch = match launched("run_f", &[], 0) {
        Event::RunLaunched(launch) => launch,
        _ => unreachable!(),
    };
    launch.rollout_count = 2;
    launch.continuous = Some(ContinuousSettings {
        max_groups: Some(1),
        max_unconsumed_groups: 4,
        max_staleness: Some(0),
        on_stale: OnStale::Restart,
        seed: 7,
    });
    let turn = |rollout_id: &str, ordinal: u32, time: i64| {
        Event::ModelCalled(ModelCalled {
            rollout_id: rollout_id.into(),
            step: 1,
            model: "oracle".into(),
            message: Message::assistant(Some("Done.".into()), vec![]),
            usage: None,
            logprobs: None,
            latency_ms: 1.0,
            called_at: at(time),
            tokens: None,
            policy_ordinal: ordinal,
        })
    };
    let run = "run-run_f".to_string();
    vec![
        (run.clone(), Event::RunLaunched(launch)),
        (
            run.clone(),
            Event::GroupScheduled(GroupScheduled {
                run_id: "run_f".into(),
                group: 0,
                task_id: "hr__101_approve_leave_request".into(),
                rollouts: vec![scheduled("rol_f1", 11), scheduled("rol_f2", 12)],
                scheduled_at: at(1),
            }),
        ),
        ("rollout-rol_f1".into(), started("rol_f1", "run_f", 2)),
        ("rollout-rol_f1".into(), turn("rol_f1", 0, 3)),
        (
            run.clone(),
            Event::PolicyUpdated(PolicyUpdated {
                run_id: "run_f".into(),
                version: "step-1".into(),
                base_url: Some("http://127.0.0.1:8000/v1".into()),
                ordinal: 1,
                updated_at: at(4),
            }),
        ),
        (
            "rollout-rol_f1".into(),
            Event::RolloutCancelled(RolloutCancelled {
                rollout_id: "rol_f1".into(),
                reason: "stale: restarted from scratch".into(),
                cancelled_at: at(5),
            }),
        ),
        (
            run.clone(),
            Event::RolloutRestarted(RolloutRestarted {
                run_id: "run_f".into(),
                group: 0,
                replaced: "rol_f1".into(),
                rollout: scheduled("rol_f3", 11),
                reason: "stale: restarted from scratch".into(),
                restarted_at: at(5),
            }),
        ),
        ("rollout-rol_f3".into(), started("rol_f3", "run_f", 6)),
        ("rollout-rol_f3".into(), turn("rol_f3", 1, 7)),
        (
            "rollout-rol_f3".into(),
            Event::RolloutCompleted(RolloutCompleted {
                rollout_id: "rol_f3".into(),
                reason: CompletionReason::FinalAnswer,
                steps: 1,
                completed_at: at(8),
            }),
        ),
        (
            "rollout-rol_f2".into(),
            Event::RolloutCancelled(RolloutCancelled {
                rollout_id: "rol_f2".into(),
                reason: "run cancelled".into(),
                cancelled_at: at(8),
            }),
        ),
        (
            run,
            Event::GroupConsumed(GroupConsumed {
                run_id: "run_f".into(),
                consumer: "trainer".into(),
                groups: vec![0],
                consumed_at: at(9),
            }),
        ),
    ]
}

fn started(rollout_id: &str, run_id: &str, time: i64) -> Event {
    Event::RolloutStarted(RolloutStarted {
        rollout_id: rollout_id.into(),
        run_id: run_id.into(),
        task_id: "hr__101_approve_leave_request".into(),
        messages: vec![
            Message::system("You are an assistant."),
            Message::user("Approve the leave request."),
        ],
        started_at: at(time),
    })
}

/// One of every event type, as (stream, event), in log order.
fn golden_events() -> Vec<(String, Event)> {
    let run = |id: &str| format!("run-{id}");
    let rol = |id: &str| format!("rollout-{id}");
    vec![
        (run("run_a"), launched("run_a", &["rol_a1"], 0)),
        (rol("rol_a1"), started("rol_a1", "run_a", 1)),
        (
            rol("rol_a1"),
            Event::ModelCalled(ModelCalled {
                rollout_id: "rol_a1".into(),
                step: 1,
                model: "oracle".into(),
                message: Message::assistant(
                    None,
                    vec![ToolCall {
                        id: "call_1".into(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: "approve_leave_request".into(),
                            arguments: "{\"request_id\":\"lr_0001\"}".into(),
                        },
                    }],
                ),
                usage: Some(TokenUsage {
                    prompt_tokens: 120,
                    completion_tokens: 20,
                    total_tokens: 140,
                }),
                logprobs: Some(json!({"content": [{"token": "{", "logprob": -0.01}]})),
                latency_ms: 250.5,
                called_at: at(2),
                tokens: None,
                policy_ordinal: 0,
            }),
        ),
        (
            rol("rol_a1"),
            Event::ToolCalled(ToolCalled {
                rollout_id: "rol_a1".into(),
                step: 1,
                call_id: "call_1".into(),
                server: Some("hrms".into()),
                tool_name: "approve_leave_request".into(),
                arguments: "{\"request_id\":\"lr_0001\"}".into(),
                observation: "{\"status\":\"approved\"}".into(),
                is_error: false,
                fault: None,
                latency_ms: 0.2,
                called_at: at(3),
            }),
        ),
        (
            rol("rol_a1"),
            Event::ContextSummarized(ContextSummarized {
                rollout_id: "rol_a1".into(),
                step: 2,
                summary: "Looked up lr_0001 and approved it.".into(),
                replaced_messages: 2,
                usage: Some(TokenUsage {
                    prompt_tokens: 300,
                    completion_tokens: 40,
                    total_tokens: 340,
                }),
                summarized_at: at(3),
            }),
        ),
        (
            rol("rol_a1"),
            Event::NpcReplied(NpcReplied {
                rollout_id: "rol_a1".into(),
                step: 1,
                profile_id: "lisa-anderson".into(),
                after_tool_calls: 1,
                email: NpcEmail {
                    from: "lisa.anderson@techcorp.com".into(),
                    to: vec!["hr@techcorp.com".into()],
                    cc: vec![],
                    subject: "Re: Leave request".into(),
                    body: "Thanks, noted.".into(),
                    in_reply_to: Some("msg_0007".into()),
                },
                replied_at: at(3),
            }),
        ),
        (
            rol("rol_a1"),
            Event::ModelCalled(ModelCalled {
                rollout_id: "rol_a1".into(),
                step: 2,
                model: "oracle".into(),
                message: Message::assistant(Some("Approved.".into()), vec![]),
                usage: None,
                logprobs: None,
                latency_ms: 180.0,
                called_at: at(4),
                tokens: None,
                policy_ordinal: 0,
            }),
        ),
        (
            rol("rol_a1"),
            Event::RolloutVerified(RolloutVerified {
                rollout_id: "rol_a1".into(),
                verdict: Verdict {
                    score: 1.0,
                    label: "Full Credit".into(),
                    checks: vec![CheckResult {
                        id: "approved".into(),
                        description: "The request is approved".into(),
                        passed: true,
                        reason: "lr_0001 is approved".into(),
                    }],
                },
                verified_at: at(5),
            }),
        ),
        (
            rol("rol_a1"),
            Event::RolloutCompleted(RolloutCompleted {
                rollout_id: "rol_a1".into(),
                reason: CompletionReason::FinalAnswer,
                steps: 2,
                completed_at: at(6),
            }),
        ),
        (run("run_b"), launched("run_b", &["rol_b1", "rol_b2"], 10)),
        (rol("rol_b2"), started("rol_b2", "run_b", 11)),
        (
            run("run_b"),
            Event::RunCancelRequested(RunCancelRequested {
                run_id: "run_b".into(),
                requested_at: at(12),
            }),
        ),
        (
            rol("rol_b1"),
            Event::RolloutCancelled(RolloutCancelled {
                rollout_id: "rol_b1".into(),
                reason: "run cancelled before the rollout started".into(),
                cancelled_at: at(13),
            }),
        ),
        (
            rol("rol_b2"),
            Event::RolloutFailed(RolloutFailed {
                rollout_id: "rol_b2".into(),
                error: "model call failed at step 1: provider answered 500: overloaded".into(),
                failed_at: at(14),
            }),
        ),
        (run("run_c"), launched("run_c", &["rol_c1"], 20)),
        (
            run("run_c"),
            Event::RunDeleted(RunDeleted {
                run_id: "run_c".into(),
                deleted_at: at(21),
            }),
        ),
        // Added with RubricGraded and the optional `judge_model` of RunLaunched.
        (run("run_d"), {
            let mut launch = launched("run_d", &["rol_d1"], 30);
            if let Event::RunLaunched(l) = &mut launch {
                l.judge_model = Some(ModelSettings {
                    temperature: 0.0,
                    has_api_key: true,
                    ..ModelSettings::new("openai", "gpt-4.1-mini")
                });
            }
            launch
        }),
        (rol("rol_d1"), started("rol_d1", "run_d", 31)),
        (
            rol("rol_d1"),
            Event::RolloutVerified(RolloutVerified {
                rollout_id: "rol_d1".into(),
                verdict: Verdict {
                    score: 0.5,
                    label: "Partial Credit".into(),
                    checks: vec![],
                },
                verified_at: at(32),
            }),
        ),
        (
            rol("rol_d1"),
            Event::RubricGraded(RubricGraded {
                rollout_id: "rol_d1".into(),
                rubric: RubricVerdict {
                    status: RubricStatus::Graded,
                    judge: Some("openai/gpt-4.1-mini".into()),
                    score: Some(1.0),
                    label: Some("Full Credit".into()),
                    reason: "Polite and complete.".into(),
                    criteria: vec![CriterionGrade {
                        criterion: "Tone".into(),
                        label: "Full Credit".into(),
                        score: 1.0,
                        reason: "Thanks the employee.".into(),
                    }],
                },
                usage: Some(TokenUsage {
                    prompt_tokens: 900,
                    completion_tokens: 60,
                    total_tokens: 960,
                }),
                graded_at: at(33),
            }),
        ),
        (
            rol("rol_d1"),
            Event::RolloutCompleted(RolloutCompleted {
                rollout_id: "rol_d1".into(),
                reason: CompletionReason::FinalAnswer,
                steps: 0,
                completed_at: at(34),
            }),
        ),
        // Added with budgets: RunLaunched's optional `budget` and `prices`, RunPaused
        // and RunResumed.
        (run("run_e"), {
            let mut launch = launched("run_e", &["rol_e1"], 40);
            if let Event::RunLaunched(l) = &mut launch {
                l.budget = Some(Budget {
                    max_total_tokens: Some(100),
                    max_cost_usd: Some(0.01),
                });
                l.prices = Some(RunPrices {
                    model: Some(Price {
                        prompt_usd_per_mtok: 0.15,
                        completion_usd_per_mtok: 0.6,
                    }),
                    judge: None,
                });
            }
            launch
        }),
        (rol("rol_e1"), started("rol_e1", "run_e", 41)),
        (
            rol("rol_e1"),
            Event::ModelCalled(ModelCalled {
                rollout_id: "rol_e1".into(),
                step: 1,
                model: "oracle".into(),
                message: Message::assistant(Some("Working on it.".into()), vec![]),
                usage: Some(TokenUsage {
                    prompt_tokens: 100,
                    completion_tokens: 10,
                    total_tokens: 110,
                }),
                logprobs: None,
                latency_ms: 90.0,
                called_at: at(42),
                tokens: None,
                policy_ordinal: 0,
            }),
        ),
        (
            run("run_e"),
            Event::RunPaused(RunPaused {
                run_id: "run_e".into(),
                reason: "token budget spent: 110 of max_total_tokens 100".into(),
                tokens_used: 110,
                cost_usd: 0.000021,
                paused_at: at(43),
            }),
        ),
        (
            run("run_e"),
            Event::RunResumed(RunResumed {
                run_id: "run_e".into(),
                budget: Some(Budget {
                    max_total_tokens: Some(1000),
                    max_cost_usd: None,
                }),
                resumed_at: at(44),
            }),
        ),
        (
            rol("rol_e1"),
            Event::RolloutCompleted(RolloutCompleted {
                rollout_id: "rol_e1".into(),
                reason: CompletionReason::FinalAnswer,
                steps: 1,
                completed_at: at(45),
            }),
        ),
        // Added with RolloutReverified, `ToolCalled.fault` and the optional `parent`
        // and `tool_faults` of RunLaunched: a fork of rol_a1 after its first step,
        // with injected faults, and a re-verification of rol_d1.
        (run("run_f"), {
            let mut launch = launched("run_f", &["rol_f1"], 50);
            if let Event::RunLaunched(l) = &mut launch {
                l.parent = Some(ForkParent {
                    run_id: "run_a".into(),
                    rollout_id: "rol_a1".into(),
                    at_step: 1,
                });
                l.tool_faults = Some(ToolFaults {
                    error_rate: 0.25,
                    latency_ms: 50,
                    seed: 7,
                });
            }
            launch
        }),
        (rol("rol_f1"), started("rol_f1", "run_f", 51)),
        (
            rol("rol_f1"),
            Event::ToolCalled(ToolCalled {
                rollout_id: "rol_f1".into(),
                step: 1,
                call_id: "call_9".into(),
                server: Some("hrms".into()),
                tool_name: "approve_leave_request".into(),
                arguments: "{\"request_id\":\"lr_0001\"}".into(),
                observation: "Error: 503 Service Unavailable: the hrms service could not handle `approve_leave_request` right now; nothing was changed. Try again.".into(),
                is_error: true,
                fault: Some("unavailable".into()),
                latency_ms: 50.3,
                called_at: at(52),
            }),
        ),
        (
            rol("rol_d1"),
            Event::RolloutReverified(RolloutReverified {
                rollout_id: "rol_d1".into(),
                verdict: Verdict {
                    score: 0.5,
                    label: "Partial Credit".into(),
                    checks: vec![],
                },
                rubric: Some(RubricVerdict {
                    status: RubricStatus::Graded,
                    judge: Some("openai/gpt-4.1-mini".into()),
                    score: Some(0.0),
                    label: Some("No Credit".into()),
                    reason: "The stricter rubric wants a reason.".into(),
                    criteria: vec![],
                }),
                usage: Some(TokenUsage {
                    prompt_tokens: 950,
                    completion_tokens: 40,
                    total_tokens: 990,
                }),
                task_override: Some(json!({"rubric_markdown": "- Gives a reason"})),
                reverified_at: at(55),
            }),
        ),
        // Added with run leases (several nodes on one log): run_a taken by node-1,
        // renewed, released, then taken by node-2 in term 2.
        (
            "lease-run_a".to_string(),
            Event::RunLeaseAcquired(RunLeaseAcquired {
                run_id: "run_a".into(),
                node_id: "node-1".into(),
                term: 1,
                expires_at: at(70),
                acquired_at: at(60),
            }),
        ),
        (
            "lease-run_a".to_string(),
            Event::RunLeaseRenewed(RunLeaseRenewed {
                run_id: "run_a".into(),
                node_id: "node-1".into(),
                term: 1,
                expires_at: at(73),
                renewed_at: at(63),
            }),
        ),
        (
            "lease-run_a".to_string(),
            Event::RunLeaseReleased(RunLeaseReleased {
                run_id: "run_a".into(),
                node_id: "node-1".into(),
                term: 1,
                released_at: at(64),
            }),
        ),
        (
            "lease-run_a".to_string(),
            Event::RunLeaseAcquired(RunLeaseAcquired {
                run_id: "run_a".into(),
                node_id: "node-2".into(),
                term: 2,
                expires_at: at(75),
                acquired_at: at(65),
            }),
        ),
    ]
}

fn envelope(stream: &str, event: &Event) -> Value {
    let data: Value = serde_json::from_slice(&event.to_data()).unwrap();
    json!({
        "stream": stream,
        "event_type": event.event_type(),
        "schema_version": CURRENT_SCHEMA_VERSION,
        "time": event.time(),
        "data": data,
    })
}

async fn replay_summary(lines: &[Value]) -> Value {
    let store = Arc::new(MemoryStore::new());
    for (i, line) in lines.iter().enumerate() {
        let event_type = line["event_type"].as_str().unwrap();
        let version = line["schema_version"].as_u64().unwrap() as u16;
        let data = serde_json::to_vec(&line["data"]).unwrap();
        store
            .append(
                line["stream"].as_str().unwrap(),
                ExpectedState::Any,
                vec![EventData {
                    id: uuid::Uuid::from_u128(i as u128 + 1),
                    event_type: event_type.to_string(),
                    schema_version: version,
                    time: serde_json::from_value(line["time"].clone()).unwrap(),
                    data,
                }],
            )
            .await
            .unwrap();
    }
    let views = projections::rebuild(store.as_ref()).await.unwrap();
    // The views keep summaries; what each rollout did is read from its stream.
    let mut rollout_ids: Vec<String> = lines
        .iter()
        .filter_map(|l| match l["event_type"].as_str() {
            Some("RunLaunched" | "GroupScheduled") => l["data"]["rollouts"].as_array().cloned(),
            Some("RolloutRestarted") => Some(std::slice::from_ref(&l["data"]["rollout"]).to_vec()),
            _ => None,
        })
        .flatten()
        .map(|r| r["rollout_id"].as_str().unwrap().to_string())
        .collect();
    rollout_ids.sort_unstable();
    let mut contents = Sha256::new();
    for id in rollout_ids {
        let content = projections::RolloutContent::load(store.as_ref(), &id)
            .await
            .unwrap();
        contents.update(serde_json::to_vec(&content).unwrap());
    }
    json!({
        "events": views.next_position(),
        "runs": views.run_count(),
        "rollouts": views.rollout_count(),
        "checksum": views.checksum(),
        "contents_checksum": hex::encode(contents.finalize()),
    })
}

fn read_golden(name: &str) -> Vec<Value> {
    std::fs::read_to_string(events_dir().join("golden").join(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[actix_web::test]
async fn golden_logs_decode_unchanged_and_replay_to_the_same_views() {
    if std::env::var("RL_GYM_BLESS").as_deref() == Ok("feed") {
        let lines: Vec<Value> = feed_golden_events()
            .iter()
            .map(|(s, e)| envelope(s, e))
            .collect();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(events_dir().join("golden/v1-feed.jsonl"), text).unwrap();
        let summary = replay_summary(&lines).await;
        std::fs::write(
            events_dir().join("golden/v1-feed.views.json"),
            serde_json::to_string_pretty(&summary).unwrap() + "\n",
        )
        .unwrap();
    } else if std::env::var("RL_GYM_BLESS").is_ok() {
        let lines: Vec<Value> = golden_events()
            .iter()
            .map(|(s, e)| envelope(s, e))
            .collect();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(events_dir().join("golden/v1.jsonl"), text).unwrap();
        let summary = replay_summary(&lines).await;
        std::fs::write(
            events_dir().join("golden/v1.views.json"),
            serde_json::to_string_pretty(&summary).unwrap() + "\n",
        )
        .unwrap();
    }
    let mut golden_logs: Vec<_> = std::fs::read_dir(events_dir().join("golden"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    golden_logs.sort();
    assert!(!golden_logs.is_empty());
    for name in golden_logs {
        let lines = read_golden(&name);
        for line in &lines {
            let event_type = line["event_type"].as_str().unwrap();
            let version = line["schema_version"].as_u64().unwrap() as u16;
            let data = serde_json::to_vec(&line["data"]).unwrap();
            let event = Event::decode(event_type, version, &data).unwrap_or_else(|e| {
                panic!("{name}: {event_type} v{version} no longer decodes: {e}")
            });
            if version == CURRENT_SCHEMA_VERSION {
                let again: Value = serde_json::from_slice(&event.to_data()).unwrap();
                assert_eq!(
                    again, line["data"],
                    "{name}: the shape of {event_type} changed without a new schema version"
                );
            }
        }
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(
                events_dir()
                    .join("golden")
                    .join(name.replace(".jsonl", ".views.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            replay_summary(&lines).await,
            expected,
            "{name} replays to other views"
        );
    }
}

#[test]
fn every_event_type_has_a_schema_matching_the_golden_payload() {
    let lines: Vec<Value> = ["v1.jsonl", "v1-tokens.jsonl", "v1-feed.jsonl"]
        .into_iter()
        .flat_map(read_golden)
        .collect();
    let covered: BTreeSet<&str> = lines
        .iter()
        .map(|l| l["event_type"].as_str().unwrap())
        .collect();
    for event_type in EVENT_TYPES {
        assert!(
            covered.contains(event_type),
            "the golden log has no {event_type}"
        );
        let path = events_dir()
            .join("schema")
            .join(format!("{event_type}.v{CURRENT_SCHEMA_VERSION}.json"));
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("missing {}", path.display())),
        )
        .unwrap();
        let properties: BTreeSet<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        for line in lines.iter().filter(|l| l["event_type"] == *event_type) {
            let keys: BTreeSet<&str> = line["data"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            assert!(
                required.is_subset(&keys) && keys.is_subset(&properties),
                "{event_type}: payload fields {keys:?} differ from {}",
                path.display()
            );
        }
    }
}
