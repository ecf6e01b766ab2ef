//! Export of a big run in bounded memory: a log holding a finished run of 10,000
//! rollouts (written straight to the embedded log), the service started on it, and
//! `GET /runs/{id}/export?format=rl` streamed through HTTP while the process's
//! resident memory is sampled. The export must not grow memory with the run's size:
//! the figure to read is the peak growth during the export against its size.
//!
//! Run: `cargo bench --bench export` (`EXPORT_ROLLOUTS=N` to change the size).

use std::time::Instant;

use chrono::Utc;
use rl_gym::config::Settings;
use rl_gym::domain::chat::Message;
use rl_gym::domain::events::*;
use rl_gym::domain::ids::{rollout_stream, run_stream};
use rl_gym::domain::verdict::{CheckResult, Verdict};
use rl_gym::journal::encode;
use rl_gym::startup::Application;
use rl_gym::store::file::FileStore;
use rl_gym::store::{EventStore, ExpectedState};

const TASK: &str = "hr__105_reporting_line_question";

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A finished rollout: the task, one long final answer, a full-credit verdict.
fn rollout_events(run_id: &str, rollout_id: &str) -> Vec<Event> {
    let now = Utc::now();
    let answer = "Ravi Patel reports to Tom Becker, who reports to David Okafor. ".repeat(30);
    vec![
        Event::RolloutStarted(RolloutStarted {
            rollout_id: rollout_id.into(),
            run_id: run_id.into(),
            task_id: TASK.into(),
            messages: vec![
                Message::system("You are an operations assistant."),
                Message::user("Who does Ravi Patel report to, and who is above them?"),
            ],
            started_at: now,
        }),
        Event::ModelCalled(ModelCalled {
            rollout_id: rollout_id.into(),
            step: 1,
            model: "m".into(),
            message: Message::assistant(Some(answer), vec![]),
            usage: Some(TokenUsage {
                prompt_tokens: 900,
                completion_tokens: 400,
                total_tokens: 1300,
            }),
            logprobs: None,
            latency_ms: 900.0,
            called_at: now,
            tokens: None,
            policy_ordinal: 0,
        }),
        Event::RolloutVerified(RolloutVerified {
            rollout_id: rollout_id.into(),
            verdict: Verdict {
                score: 1.0,
                label: "Full Credit".into(),
                checks: vec![CheckResult {
                    id: "answer".into(),
                    description: "names the manager".into(),
                    passed: true,
                    reason: "found".into(),
                }],
            },
            verified_at: now,
        }),
        Event::RolloutCompleted(RolloutCompleted {
            rollout_id: rollout_id.into(),
            reason: CompletionReason::FinalAnswer,
            steps: 1,
            completed_at: now,
        }),
    ]
}

fn main() {
    let rollouts: usize = std::env::var("EXPORT_ROLLOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let run_id = "run_export_bench";
    actix_rt::System::new().block_on(async {
        let written = Instant::now();
        {
            let (store, _) = FileStore::open(dir.path()).unwrap();
            let store = std::sync::Arc::new(store);
            let ids: Vec<String> = (0..rollouts).map(|i| format!("rol_bench_{i}")).collect();
            let launch = Event::RunLaunched(Box::new(RunLaunched {
                run_id: run_id.into(),
                scenario_id: "hr".into(),
                source: "rl-gym".into(),
                task_ids: vec![TASK.into()],
                rollout_count: rollouts as u32,
                max_parallel: None,
                model: ModelSettings {
                    base_url: Some("http://127.0.0.1:9/v1".into()),
                    ..ModelSettings::new("custom", "m")
                },
                user_model: None,
                judge_model: None,
                task_overrides: Default::default(),
                parent: None,
                tool_faults: None,
                rollouts: ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| ScheduledRollout {
                        rollout_id: id.clone(),
                        task_id: TASK.into(),
                        seed: i as u64,
                        instance_seed: 0,
                    })
                    .collect(),
                launched_at: Utc::now(),
                budget: None,
                prices: None,
                continuous: None,
            }));
            let stream = run_stream(run_id);
            store
                .append(
                    &stream,
                    ExpectedState::NoStream,
                    encode(&stream, 0, &[launch]),
                )
                .await
                .unwrap();
            // Many appends in flight at once: the log commits them in groups.
            let mut tasks = Vec::new();
            for chunk in ids.chunks(ids.len().div_ceil(64)) {
                let store = store.clone();
                let chunk = chunk.to_vec();
                tasks.push(tokio::spawn(async move {
                    for id in chunk {
                        let stream = rollout_stream(&id);
                        let events = rollout_events(run_id, &id);
                        store
                            .append(
                                &stream,
                                ExpectedState::NoStream,
                                encode(&stream, 0, &events),
                            )
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            store.close().await;
        }
        println!(
            "wrote {rollouts} finished rollouts in {:.1} s",
            written.elapsed().as_secs_f64()
        );

        let mut settings = Settings::defaults();
        settings.bind = "127.0.0.1:0".parse().unwrap();
        settings.data_dir = dir.path().to_path_buf();
        let app = Application::build(settings).await.unwrap();
        let url = format!("http://{}/runs/{run_id}/export?format=rl", app.address());
        let handle = app.handle();
        let server = actix_rt::spawn(app.run_until_stopped());

        for round in 1..=3 {
            let before = resident_kib();
            let started = Instant::now();
            let mut response = reqwest::get(&url).await.unwrap();
            assert!(response.status().is_success());
            let (mut bytes, mut lines, mut peak) = (0usize, 0usize, before);
            while let Some(chunk) = response.chunk().await.unwrap() {
                bytes += chunk.len();
                lines += chunk.iter().filter(|b| **b == b'\n').count();
                peak = peak.max(resident_kib());
            }
            assert_eq!(lines, rollouts, "one line per rollout");
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "export {round}: {lines} lines, {:.1} MiB in {seconds:.2} s ({:.0} lines/s); \
                 resident {:.1} MiB before, peak growth {:.1} MiB ({:.1}% of the export)",
                bytes as f64 / 1048576.0,
                lines as f64 / seconds,
                before as f64 / 1024.0,
                (peak - before) as f64 / 1024.0,
                (peak - before) as f64 * 1024.0 * 100.0 / bytes as f64,
            );
        }
        handle.stop(true).await;
        let _ = server.await;
    });
}
