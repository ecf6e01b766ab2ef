//! The log's integrity against operators and crashes (issue 21), through the real
//! binary: `rl-gym replay` writes nothing, one server per data directory, a log cut
//! short stops the start until the loss is accepted, and SIGKILLs at random points
//! during group commits lose no acknowledged event.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::helpers::*;

const TASK: &str = "hr__101_approve_leave_request";

/// Runs the binary to its exit and returns (exit code, stdout, stderr); a process
/// still running after `timeout` (a server that should have refused) fails the test.
fn run_to_exit(args: &[&str], timeout: Duration) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rl-gym"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`rl-gym {}` was still running: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn scenarios_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/scenarios")
        .to_str()
        .unwrap()
        .to_string()
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

/// The last segment of the log under `data`.
fn last_segment(data: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

/// Where a segment's records start: after the 24 bytes of a version 1 header, or the
/// 88 of a version 2 one (with its checkpoint slots). Read from the file, so that
/// these black-box tests also run against a build of either format.
fn header_len(bytes: &[u8]) -> usize {
    match u32::from_le_bytes(bytes[8..12].try_into().unwrap()) {
        1 => 24,
        _ => 24 + 2 * 32,
    }
}

/// Where each record of a segment starts, and where the last one ends (the zeros the
/// writer keeps ahead of the records follow).
fn record_starts(bytes: &[u8]) -> (Vec<u64>, u64) {
    let mut at = header_len(bytes);
    let mut starts = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 || at + 8 + len > bytes.len() {
            break;
        }
        starts.push(at as u64);
        at += 8 + len;
    }
    (starts, at as u64)
}

fn line_value(stdout: &str, key: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
        .parse()
        .unwrap()
}

/// Launches an oracle run on the server at `address` and waits for it to finish.
async fn finished_run(client: &reqwest::Client, address: &str, rollouts: u32) -> String {
    let launched = launch_at(client, address, &builtin_run("oracle", &[TASK], rollouts)).await;
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    let done = wait_until_finished(client, address, &run_id).await;
    assert_eq!(done["completed"], rollouts, "{done}");
    run_id
}

async fn healthy(client: &reqwest::Client, address: &str) {
    let health = get_json_at(client, address, "/healthz").await;
    assert_eq!(health["status"], "ok", "{health}");
}

#[test]
fn replay_reports_a_torn_tail_and_changes_nothing_in_the_data_directory() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path();
    let dir = data.to_str().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = crate::helpers::http_client();
    let mut server = ServerProcess::start(data);
    let run_id = runtime.block_on(finished_run(&client, &server.address, 3));
    assert!(server.terminate().success());

    // A torn write: the first 30 bytes of a record where the next one would go.
    let segment = last_segment(data);
    let bytes = std::fs::read(&segment).unwrap();
    let (_, end) = record_starts(&bytes);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    let first = header_len(&bytes);
    file.write_all_at(&bytes[first..first + 30], end).unwrap();
    drop(file);
    let torn = snapshot(data);

    let (code, out, stderr) = run_to_exit(&["replay", "--data-dir", dir], Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    assert!(line_value(&out, "truncated_bytes") >= 30, "{out}");
    assert_eq!(line_value(&out, "rollouts"), 3, "{out}");
    assert!(snapshot(data) == torn, "replay wrote to the data directory");

    let scenarios = scenarios_dir();
    let (code, out, stderr) = run_to_exit(
        &[
            "replay",
            "--data-dir",
            dir,
            "--scenarios-dir",
            &scenarios,
            "--execute",
            &run_id,
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "{out}{stderr}");
    assert_eq!(line_value(&out, "diverged"), 0, "{out}");
    assert!(
        snapshot(data) == torn,
        "replay --execute wrote to the data directory"
    );

    // Only the server's own start cuts the tail.
    let server = ServerProcess::start(data);
    drop(server);
    let (code, out, stderr) = run_to_exit(&["replay", "--data-dir", dir], Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(line_value(&out, "truncated_bytes"), 0, "{out}");
}

#[test]
fn a_second_server_or_a_replay_on_a_data_directory_in_use_is_refused_naming_the_pid() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path();
    let dir = data.to_str().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = crate::helpers::http_client();
    let mut server = ServerProcess::start(data);
    let pid = format!("pid {}", server.child.id());
    let run_id = runtime.block_on(finished_run(&client, &server.address, 1));

    let scenarios = scenarios_dir();
    for args in [
        &["serve", "--bind", "127.0.0.1:0", "--data-dir", dir][..],
        &["replay", "--data-dir", dir][..],
        &[
            "replay",
            "--data-dir",
            dir,
            "--scenarios-dir",
            &scenarios,
            "--execute",
            &run_id,
        ][..],
    ] {
        let (code, _, stderr) = run_to_exit(args, Duration::from_secs(120));
        assert_ne!(code, 0, "{args:?}: {stderr}");
        assert!(stderr.contains(&pid), "{args:?} names the holder: {stderr}");
        assert!(
            stderr.contains(dir),
            "{args:?} names the directory: {stderr}"
        );
    }
    // The first server was not disturbed.
    runtime.block_on(healthy(&client, &server.address));

    assert!(server.terminate().success());
    let (code, out, stderr) = run_to_exit(&["replay", "--data-dir", dir], Duration::from_secs(120));
    assert_eq!(code, 0, "free again: {stderr}");
    assert_eq!(line_value(&out, "runs"), 1, "{out}");
}

#[test]
fn a_log_cut_short_on_a_record_boundary_stops_the_start_until_the_loss_is_accepted() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let dir = data.to_str().unwrap();
    let log = temp.path().join("server.log");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = crate::helpers::http_client();
    let mut server = ServerProcess::start(&data);
    runtime.block_on(async {
        finished_run(&client, &server.address, 10).await;
        finished_run(&client, &server.address, 10).await;
    });
    assert!(server.terminate().success());

    // Cut on a record boundary half-way: no torn record is left to notice.
    let segment = last_segment(&data);
    let bytes = std::fs::read(&segment).unwrap();
    let (starts, end) = record_starts(&bytes);
    assert!(starts.len() > 100, "{} records", starts.len());
    let boundary = starts[starts.len() / 2];
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(boundary).unwrap();
    drop(file);
    let cut = snapshot(&data.join("log"));

    let serve = ["serve", "--bind", "127.0.0.1:0", "--data-dir", dir];
    let (code, _, stderr) = run_to_exit(&serve, Duration::from_secs(120));
    assert_ne!(code, 0, "the start must be refused: {stderr}");
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(stderr.contains(name), "names the file: {stderr}");
    assert!(
        stderr.contains(&format!("offset {boundary}")),
        "names the offset: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{} bytes", end - boundary)),
        "says how many bytes are missing: {stderr}"
    );
    assert!(stderr.contains("--accept-data-loss"), "{stderr}");
    // (The refused server did take the lock: `LOCK` names it now.)
    assert!(
        snapshot(&data.join("log")) == cut,
        "a refused start changes nothing in the log"
    );
    let (code, _, stderr) = run_to_exit(&["replay", "--data-dir", dir], Duration::from_secs(120));
    assert_ne!(code, 0, "replay reports it too");
    assert!(stderr.contains(&format!("offset {boundary}")), "{stderr}");

    let server = ServerProcess::start_with(&data, &log, &["--accept-data-loss"]);
    runtime.block_on(healthy(&client, &server.address));
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("ACKNOWLEDGED EVENTS ARE MISSING"),
        "a loud warning: {logs}"
    );
    drop(server);
    // Accepted once: the next start is a plain one.
    let server = ServerProcess::start(&data);
    runtime.block_on(healthy(&client, &server.address));
}

/// A tiny deterministic generator for the kill delays (the seed is printed).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// What the client was told: runs whose launch got a 2xx, and the view of every
/// rollout read back as completed, by run and rollout id.
#[derive(Default, Clone)]
struct Acknowledged {
    runs: Vec<String>,
    completed: BTreeMap<(String, String), Value>,
    /// Launches not acknowledged, by what they got (to tell a kill from a refusal).
    refused: BTreeMap<String, usize>,
}

/// Everything acknowledged is in the restarted server's views, unchanged.
async fn assert_kept(client: &reqwest::Client, address: &str, acked: &Acknowledged) {
    for run_id in &acked.runs {
        let response = client
            .get(format!("{address}/runs/{run_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "acknowledged run {run_id} is lost");
        let run: Value = response.json().await.unwrap();
        for rollout in run["rollouts"].as_array().unwrap() {
            let key = (
                run_id.clone(),
                rollout["rollout_id"].as_str().unwrap().to_string(),
            );
            if let Some(before) = acked.completed.get(&key) {
                assert_eq!(rollout, before, "a completed rollout changed");
            }
        }
    }
    let held: usize = acked.completed.len();
    let mut found = 0;
    for run_id in &acked.runs {
        let run = get_json_at(client, address, &format!("/runs/{run_id}")).await;
        found += run["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                acked.completed.contains_key(&(
                    run_id.clone(),
                    r["rollout_id"].as_str().unwrap().to_string(),
                ))
            })
            .count();
    }
    assert_eq!(found, held, "every completed rollout is still there");
}

#[test]
fn sigkills_at_random_points_of_group_commits_lose_no_acknowledged_event() {
    const LAUNCHES: usize = 24;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash points seed: {seed}");
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let started = Instant::now();
    let mut kills = 0;
    while kills < 12 && started.elapsed() < Duration::from_secs(40) {
        let mut server = ServerProcess::start(data);
        let address = server.address.clone();
        let so_far = acked.lock().clone();
        runtime.block_on(assert_kept(&client, &address, &so_far));
        // From mid-launch (their RunLaunched appends) to mid-rollouts.
        let delay = Duration::from_millis(next(&mut seed) % 300);
        let acknowledged_before = so_far.runs.len();
        // Launches at once (their appends share group commits), a reader of what
        // completes, and a SIGKILL after `delay`, wherever the writer then is.
        let (launches, reader) = runtime.block_on(async {
            let launches: Vec<_> = (0..LAUNCHES)
                .map(|_| {
                    let (client, address, acked) = (client.clone(), address.clone(), acked.clone());
                    tokio::spawn(async move {
                        let mut body = builtin_run("oracle", &[TASK], 3);
                        body["max_parallel"] = json!(3);
                        let response = match client
                            .post(format!("{address}/runs"))
                            .json(&body)
                            .send()
                            .await
                        {
                            Ok(response) => response,
                            Err(e) => {
                                let what = if e.is_connect() {
                                    "no connection"
                                } else {
                                    "cut off"
                                };
                                *acked.lock().refused.entry(what.into()).or_default() += 1;
                                return;
                            }
                        };
                        if !response.status().is_success() {
                            let status = response.status().to_string();
                            let body = response.text().await.unwrap_or_default();
                            let what =
                                format!("{status} {}", body.chars().take(120).collect::<String>());
                            *acked.lock().refused.entry(what).or_default() += 1;
                            return;
                        }
                        if let Ok(launched) = response.json::<Value>().await {
                            let run_id = launched["run_id"].as_str().unwrap().to_string();
                            acked.lock().runs.push(run_id);
                        }
                    })
                })
                .collect();
            let reader = {
                let (client, address, acked) = (client.clone(), address.clone(), acked.clone());
                tokio::spawn(async move {
                    loop {
                        let runs = acked.lock().runs.clone();
                        for run_id in runs {
                            let Ok(response) =
                                client.get(format!("{address}/runs/{run_id}")).send().await
                            else {
                                return;
                            };
                            let Ok(run) = response.json::<Value>().await else {
                                return;
                            };
                            let mut acked = acked.lock();
                            for rollout in run["rollouts"].as_array().into_iter().flatten() {
                                if rollout["status"] == "completed" {
                                    let id = rollout["rollout_id"].as_str().unwrap().to_string();
                                    acked
                                        .completed
                                        .insert((run_id.clone(), id), rollout.clone());
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            };
            // On a slow machine no launch may be answered within any fixed delay:
            // the delay runs from the first answer (or from 30 s without one).
            let deadline = Instant::now() + Duration::from_secs(30);
            while acked.lock().runs.len() == acknowledged_before && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(delay).await;
            (launches, reader)
        });
        server.kill();
        kills += 1;
        // The reader has nothing to stop it when no launch was acknowledged yet.
        reader.abort();
        runtime.block_on(async {
            for launch in launches {
                let _ = launch.await;
            }
            let _ = reader.await;
        });
    }
    assert!(kills >= 3, "only {kills} kills in the time allowed");

    // The last restart: everything acknowledged is there, and every run finishes.
    let server = ServerProcess::start(data);
    let acked = acked.lock().clone();
    assert!(
        !acked.runs.is_empty(),
        "no launch was acknowledged: {:?}",
        acked.refused
    );
    runtime.block_on(async {
        assert_kept(&client, &server.address, &acked).await;
        for run_id in &acked.runs {
            let done = wait_until_finished(&client, &server.address, run_id).await;
            assert_eq!(done["completed"], 3, "{done}");
        }
    });
    eprintln!(
        "{kills} kills, {} acknowledged runs, {} rollouts read back as completed, not acknowledged: {:?}",
        acked.runs.len(),
        acked.completed.len(),
        acked.refused
    );
}
