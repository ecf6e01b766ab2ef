//! Several `rl-gym serve` processes on one KurrentDB log (the fake node of
//! tests/kurrent, served by this test process over real gRPC): every node serves every
//! read, one node at a time drives a run (its lease), a killed node's runs are taken
//! over and finished by the others, and a command sent to any node is carried out by
//! the run's owner.

#[path = "kurrent/fake_server.rs"]
mod fake_server;
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use fake_server::{start_fake_kurrent, FakeKurrent};
use helpers::{
    assert_tool_then_answer_once, start_fake_model, wait_until_finished, Behaviour, FakeModel,
    ServerProcess,
};

/// The lease time of the nodes: short, so a takeover happens within the test.
const LEASE_SECS: u64 = 3;

/// The fake node on a runtime of its own: a starting `rl-gym serve` connects to it
/// while this test's thread waits for the child's first line.
fn fake_node() -> FakeKurrent {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            sender.send(start_fake_kurrent().await).unwrap();
            std::future::pending::<()>().await
        });
    });
    receiver.recv().unwrap()
}

struct Cluster {
    nodes: Vec<ServerProcess>,
    client: reqwest::Client,
    _fake: FakeKurrent,
    temp: tempfile::TempDir,
}

impl Cluster {
    /// Three nodes `n0`, `n1`, `n2`, each with its own data folder (sealed keys only;
    /// the events are on the shared node).
    fn start() -> Cluster {
        let fake = fake_node();
        let temp = tempfile::tempdir().unwrap();
        let config = temp.path().join("cluster.toml");
        std::fs::write(&config, format!("lease_secs = {LEASE_SECS}\n")).unwrap();
        let nodes = (0..3)
            .map(|i| {
                let name = format!("n{i}");
                ServerProcess::start_with(
                    &temp.path().join(&name),
                    &temp.path().join(format!("{name}.log")),
                    &[
                        "--store",
                        &fake.url,
                        "--node-id",
                        &name,
                        "--config",
                        config.to_str().unwrap(),
                    ],
                )
            })
            .collect();
        Cluster {
            nodes,
            client: helpers::http_client(),
            _fake: fake,
            temp,
        }
    }

    fn address(&self, node: usize) -> &str {
        &self.nodes[node].address
    }

    async fn launch(&self, node: usize, body: &Value) -> String {
        let response = self
            .client
            .post(format!("{}/runs", self.address(node)))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let launched: Value = response.json().await.unwrap();
        launched["run_id"].as_str().unwrap().to_string()
    }

    async fn get(&self, node: usize, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.address(node)))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The run as `node` shows it, once its views have seen it and `until` holds.
    async fn run_when(&self, node: usize, run_id: &str, until: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, run) = self.get(node, &format!("/runs/{run_id}")).await;
            if status == 200 && until(&run) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "node {node}: run {run_id} never got there ({status}): {run}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The run as `node` shows it once finished, with all `rollouts` completed.
    async fn completed_on(&self, node: usize, run_id: &str, rollouts: usize) -> Value {
        let done = wait_until_finished(&self.client, self.address(node), run_id).await;
        assert_eq!(
            done["completed"],
            rollouts as u64,
            "{done}\n{}",
            self.logs()
        );
        done
    }

    /// The sum of a counter over the nodes still running.
    async fn counter(&self, nodes: &[usize], name: &str) -> f64 {
        let mut total = 0.0;
        for &node in nodes {
            let text = self
                .client
                .get(format!("{}/metrics", self.address(node)))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            total += text
                .lines()
                .filter(|line| line.starts_with(name))
                .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        total
    }

    /// The nodes' logs, for a failure's message.
    fn logs(&self) -> String {
        (0..3)
            .map(|i| {
                let path = self.temp.path().join(format!("n{i}.log"));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- n{i} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn first_task(cluster: &Cluster) -> String {
    let (_, tasks) = cluster.get(0, "/scenarios/hr/tasks").await;
    tasks["tasks"][0]["task_id"].as_str().unwrap().to_string()
}

fn slow_run(task: &str, rollouts: usize, model: &str) -> Value {
    json!({
        "scenario_id": "hr",
        "task_ids": [task],
        "rollout_count": rollouts,
        "model_config": {"model": "slow", "provider": "custom", "base_url": model}
    })
}

/// Three nodes, and a run of `rollouts` rollouts launched on n0 against a fake model
/// that answers each request in 300 ms (a tool call, then a final answer).
async fn cluster_with_slow_run(rollouts: usize) -> (FakeModel, Cluster, String) {
    let model = start_fake_model(Behaviour::ToolThenAnswer { delay_ms: 300 }).await;
    let cluster = Cluster::start();
    let task = first_task(&cluster).await;
    let run_id = cluster
        .launch(0, &slow_run(&task, rollouts, &model.address))
        .await;
    (model, cluster, run_id)
}

/// Waits until the fake model has had `count` requests.
async fn wait_for_requests(model: &FakeModel, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while model.requests.lock().len() < count {
        assert!(
            Instant::now() < deadline,
            "the model was never called enough"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn owner(run: &Value) -> Option<&str> {
    run["owner"]["node_id"].as_str()
}

/// The events of a run's lease stream on the shared node, as (type, data).
async fn lease_events(url: &str, run_id: &str) -> Vec<(String, Value)> {
    let client = kurrentdb::Client::new(url.parse().unwrap()).unwrap();
    let mut read = client
        .read_stream(format!("lease-{run_id}"), &Default::default())
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(resolved) = read.next().await.unwrap() {
        let event = resolved.event.unwrap();
        let data: Value = serde_json::from_slice(&event.data).unwrap();
        events.push((event.event_type.clone(), data));
    }
    events
}

/// The terms of a run's lease as (term, node), after checking that each term began
/// only once the one before had lapsed or been given up: no two nodes ever held the
/// run at once.
async fn lease_terms(url: &str, run_id: &str) -> Vec<(u64, String)> {
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let mut terms: Vec<(u64, String)> = Vec::new();
    let mut free_from = None;
    for (event_type, data) in lease_events(url, run_id).await {
        let term = data["term"].as_u64().unwrap();
        match event_type.as_str() {
            "RunLeaseAcquired" => {
                if let Some(free_from) = free_from {
                    assert!(
                        at(&data["acquired_at"]) >= free_from,
                        "overlapping terms: {data}"
                    );
                }
                assert_eq!(term, terms.len() as u64 + 1, "{data}");
                terms.push((term, data["node_id"].as_str().unwrap().to_string()));
                free_from = Some(at(&data["expires_at"]));
            }
            "RunLeaseRenewed" => {
                assert_eq!(Some(term), terms.last().map(|t| t.0), "{data}");
                free_from = Some(at(&data["expires_at"]));
            }
            "RunLeaseReleased" => free_from = Some(at(&data["released_at"])),
            other => panic!("unexpected {other} in the lease stream"),
        }
    }
    terms
}

#[actix_web::test]
async fn failover_a_killed_owners_rollouts_are_finished_by_the_survivors_with_no_step_repeated() {
    const ROLLOUTS: usize = 12;
    let (model, mut cluster, run_id) = cluster_with_slow_run(ROLLOUTS).await;

    // Every node serves the run; all of them name n0 as its owner.
    for node in 0..3 {
        let run = cluster
            .run_when(node, &run_id, |run| owner(run).is_some())
            .await;
        assert_eq!(owner(&run), Some("n0"), "node {node}: {run}");
        assert_eq!(run["total"], ROLLOUTS as u64);
    }

    // Kill the owner once every rollout has had its first answer and some their
    // second request: each is mid-run, with a step recorded.
    wait_for_requests(&model, ROLLOUTS + ROLLOUTS / 2).await;
    cluster.nodes[0].kill();

    let done = cluster.completed_on(1, &run_id, ROLLOUTS).await;
    // n0 held term 1; a survivor took term 2 only after it lapsed (and, on a loaded
    // machine, maybe another term after that, never overlapping).
    let terms = lease_terms(&cluster._fake.url, &run_id).await;
    assert_eq!(terms[0], (1, "n0".to_string()), "{terms:?}");
    assert!(
        terms.len() >= 2 && terms[1..].iter().all(|(_, node)| node != "n0"),
        "{terms:?}"
    );
    // Each rollout needs 2 model calls; at most the one in flight at the kill and
    // the one whose reply was not yet durable are asked again. Two survivors driving
    // the run at once would ask more.
    let requests = model.requests.lock().len();
    assert!(
        (2 * ROLLOUTS..=4 * ROLLOUTS).contains(&requests),
        "{requests} model requests for {ROLLOUTS} rollouts"
    );
    let survivor = cluster
        .run_when(2, &run_id, |run| run["completed"] == ROLLOUTS as u64)
        .await;
    assert_eq!(survivor["completed"], ROLLOUTS as u64);
    // A survivor took it (another may take it again if the first fell behind its
    // renewals on a loaded machine: the log keeps that from repeating a step).
    assert!(
        cluster
            .counter(&[1, 2], "rl_gym_lease_takeovers_total")
            .await
            >= 1.0
    );

    for rollout_id in done["rollout_ids"].as_array().unwrap() {
        let path = format!("/runs/{run_id}/rollouts/{}", rollout_id.as_str().unwrap());
        let (_, detail) = cluster.get(2, &path).await;
        assert_tool_then_answer_once(&detail);
    }
    // Once finished the lease is given up: the run has no owner.
    let released = cluster
        .run_when(1, &run_id, |run| owner(run).is_none())
        .await;
    assert_eq!(released["status"], "completed", "{released}");
}

#[actix_web::test]
async fn failover_a_cancel_sent_to_another_node_is_carried_out_by_the_owner() {
    let model = start_fake_model(Behaviour::answer_after(60_000)).await;
    let cluster = Cluster::start();
    let task = first_task(&cluster).await;
    let run_id = cluster.launch(1, &slow_run(&task, 4, &model.address)).await;
    cluster
        .run_when(2, &run_id, |run| owner(run) == Some("n1"))
        .await;
    // All four rollouts wait on their model call at n1.
    wait_for_requests(&model, 4).await;

    let response = cluster
        .client
        .post(format!("{}/runs/{run_id}/cancel", cluster.address(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["cancelled_rollouts"], 4, "{answer}");

    // n1 stops them at once (not after the model's minute), and n0 sees it.
    let cancelled = cluster
        .run_when(0, &run_id, |run| run["cancelled"] == 4)
        .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(model.requests.lock().len(), 4, "no rollout started again");
}

/// A node restarted with the same name takes its runs back at once (it held them).
#[actix_web::test]
async fn failover_a_node_started_again_under_its_name_resumes_its_runs() {
    let (model, mut cluster, run_id) = cluster_with_slow_run(3).await;
    // Only n0 is left: the run can only come back through it.
    cluster.nodes.truncate(1);
    wait_for_requests(&model, 3).await;
    cluster.nodes[0].kill();
    let config = cluster.temp.path().join("cluster.toml");
    let url = cluster._fake.url.clone();
    cluster.nodes[0] = ServerProcess::start_with(
        &cluster.temp.path().join("n0"),
        &cluster.temp.path().join("n0.log"),
        &[
            "--store",
            &url,
            "--node-id",
            "n0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    cluster.completed_on(0, &run_id, 3).await;
    // Taken back at once, in the same term: not after it lapsed, as another node would.
    assert_eq!(
        lease_terms(&cluster._fake.url, &run_id).await,
        [(1, "n0".to_string())]
    );
    assert!(cluster.counter(&[0], "rl_gym_lease_takeovers_total").await >= 1.0);
}

/// An owner frozen past its lease (a long pause, a partition) finds on waking that
/// the run went to another node: it stops driving it and records nothing more.
#[actix_web::test]
async fn failover_an_owner_frozen_past_its_lease_gives_the_run_up_and_records_nothing() {
    const ROLLOUTS: usize = 6;
    let (model, cluster, run_id) = cluster_with_slow_run(ROLLOUTS).await;
    wait_for_requests(&model, ROLLOUTS).await;
    let pid = cluster.nodes[0].child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    cluster.completed_on(1, &run_id, ROLLOUTS).await;
    unsafe { libc::kill(pid, libc::SIGCONT) };

    // Awake, n0 renews in vain, counts the lease lost and halts the run.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.counter(&[0], "rl_gym_leases_lost_total").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "n0 never noticed:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let terms = lease_terms(&cluster._fake.url, &run_id).await;
    assert!(terms.len() >= 2 && terms[0].1 == "n0", "{terms:?}");
    let (_, run) = cluster.get(2, &format!("/runs/{run_id}")).await;
    assert_eq!(
        run["completed"], ROLLOUTS as u64,
        "nothing failed or cancelled: {run}"
    );
    for rollout_id in run["rollout_ids"].as_array().unwrap() {
        let path = format!("/runs/{run_id}/rollouts/{}", rollout_id.as_str().unwrap());
        let (_, detail) = cluster.get(2, &path).await;
        assert_tool_then_answer_once(&detail);
    }
    // Per rollout: n0's first call, and on waking perhaps its second (sent while the
    // append of the first reply is in flight; the append is refused, so nothing of it
    // is recorded), then the survivor's two.
    let requests = model.requests.lock().len();
    assert!(requests <= 4 * ROLLOUTS, "{requests} model requests");
}

/// A node stopped with SIGTERM gives its runs up as it goes: another node takes them
/// in the next term, from the release, not from the lapse of the lease.
#[actix_web::test]
async fn failover_a_node_stopped_gracefully_hands_its_runs_over_with_a_release() {
    const ROLLOUTS: usize = 4;
    let (model, mut cluster, run_id) = cluster_with_slow_run(ROLLOUTS).await;
    wait_for_requests(&model, ROLLOUTS).await;
    assert!(cluster.nodes[0].terminate().success());
    cluster.completed_on(1, &run_id, ROLLOUTS).await;
    let events = lease_events(&cluster._fake.url, &run_id).await;
    let released = events.iter().position(|(kind, data)| {
        kind == "RunLeaseReleased" && data["term"] == 1 && data["node_id"] == "n0"
    });
    let taken = events
        .iter()
        .position(|(kind, data)| kind == "RunLeaseAcquired" && data["term"] == 2);
    assert!(
        matches!((released, taken), (Some(r), Some(t)) if r < t),
        "n0 released term 1 before term 2 was taken: {events:?}"
    );
    let terms = lease_terms(&cluster._fake.url, &run_id).await;
    assert_ne!(terms[1].1, "n0");
}
