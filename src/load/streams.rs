//! `rl-gym load streams`: many server-sent-event clients catching up on a big log while
//! a prober times `GET /healthz` and `GET /runs/{id}`: whether streams slow the
//! service for everyone else. The clients read `GET /events` from position 0 (or a
//! run's events) as fast as the service sends them; the prober runs on a thread of its
//! own, one request at a time, so its figures are the service's, not a busy client's.

use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use hyper::{Method, Uri};

use super::client::Client;
use super::{on_client_thread, quantile, Service, Target};

#[derive(Debug, Clone, Args)]
pub struct StreamsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Event-stream clients, each from position 0.
    #[arg(long, default_value_t = 500)]
    pub clients: usize,
    /// How long the prober times requests while the clients read.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Follow this run's events (`GET /runs/{id}/events`) instead of every event.
    #[arg(long)]
    pub run_events: bool,
}

pub async fn run(args: StreamsArgs) -> Result<(), String> {
    let service = Service::start(&args.target).await?;
    let client = Client::new(&service.base, service.token.clone())?;
    let report = drive(client, args).await;
    service.stop().await;
    println!("{}", report?);
    Ok(())
}

async fn drive(client: Client, args: StreamsArgs) -> Result<String, String> {
    let health = client.get("/healthz").await?;
    let events = health["events"].as_u64().unwrap_or(0);
    let runs = client.get("/runs?limit=1").await?;
    let run_id = runs["runs"][0]["run_id"]
        .as_str()
        .ok_or("the service has no run to probe (write a log first: rl-gym load write-log)")?
        .to_string();
    // The quiet figures first, then with the clients reading.
    let quiet = probe(&client, &run_id, Duration::from_secs(2)).await?;
    let client_for_readers = client.clone();
    let path = match args.run_events {
        true => format!("/runs/{run_id}/events"),
        false => "/events".to_string(),
    };
    let readers = tokio::spawn(on_client_thread(move || {
        read_streams(client_for_readers, path, args.clients, args.secs + 2)
    }));
    // Let the streams open and start catching up before timing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = probe(&client, &run_id, Duration::from_secs(args.secs)).await?;
    let read = readers.await.map_err(|e| e.to_string())??;
    let mut out = vec![
        format!("events_in_log: {events}"),
        format!("clients: {}", args.clients),
        format!(
            "bytes_read_by_clients: {} ({:.1} MB/s)",
            read.bytes,
            read.bytes as f64 / 1e6 / read.secs
        ),
        format!("clients_failed: {}", read.failed),
        format!(
            "probes_failed: {} quiet, {} with the streams",
            quiet.failed, busy.failed
        ),
    ];
    for (name, quiet, busy) in [
        ("healthz", &quiet.health, &busy.health),
        ("run_status", &quiet.run, &busy.run),
    ] {
        out.push(format!("{name}_quiet_ms: {}", summary(quiet)));
        out.push(format!("{name}_with_streams_ms: {}", summary(busy)));
    }
    Ok(out.join("\n"))
}

/// `p50 p99 max (n)` of latencies in milliseconds.
fn summary(latencies: &[f64]) -> String {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "p50 {:.2} p99 {:.2} max {:.2} (n {})",
        quantile(&sorted, 0.5),
        quantile(&sorted, 0.99),
        sorted.last().copied().unwrap_or(f64::NAN),
        sorted.len()
    )
}

struct Probed {
    health: Vec<f64>,
    run: Vec<f64>,
    /// Requests that failed (their connection closed).
    failed: usize,
}

/// Times `GET /healthz` and `GET /runs/{id}?rollouts=false` in turn, every 20 ms, from
/// a thread of its own.
async fn probe(client: &Client, run_id: &str, span: Duration) -> Result<Probed, String> {
    let client = client.clone();
    let run_path: Uri = format!("/runs/{run_id}?rollouts=false")
        .parse()
        .map_err(|e| format!("{e}"))?;
    on_client_thread(move || async move {
        let mut connection = client.connection().await?;
        let health_path = Uri::from_static("/healthz");
        let mut probed = Probed {
            health: Vec::new(),
            run: Vec::new(),
            failed: 0,
        };
        let until = Instant::now() + span;
        while Instant::now() < until {
            for (path, into) in [
                (&health_path, &mut probed.health),
                (&run_path, &mut probed.run),
            ] {
                let started = Instant::now();
                let sent = connection
                    .send(Method::GET, path, bytes::Bytes::new())
                    .await;
                into.push(started.elapsed().as_secs_f64() * 1e3);
                // A service too busy to read a request in time answers 408 and
                // closes: counted (its time is in the latencies), then a new one.
                if sent.is_err() {
                    probed.failed += 1;
                    connection = client.connection().await?;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(probed)
    })
    .await
}

struct Read {
    bytes: u64,
    failed: usize,
    secs: f64,
}

/// `clients` streams of `path`, each read and dropped for `secs`.
async fn read_streams(
    client: Client,
    path: String,
    clients: usize,
    secs: u64,
) -> Result<Read, String> {
    let started = Instant::now();
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let readers = (0..clients).map(|_| {
        let client = client.clone();
        let path = path.clone();
        async move {
            let Ok(response) = client.stream(&path).await else {
                return None;
            };
            let mut body = response.bytes_stream();
            let mut bytes = 0u64;
            while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(until, body.next()).await {
                bytes += chunk.len() as u64;
            }
            Some(bytes)
        }
    });
    let results = futures::future::join_all(readers).await;
    Ok(Read {
        bytes: results.iter().flatten().sum(),
        failed: results.iter().filter(|r| r.is_none()).count(),
        secs: started.elapsed().as_secs_f64(),
    })
}
