//! Token-exact turns (issue 23) in the log: how many bytes 1,000 tokens cost in a
//! `ModelCalled` event, durable appends per second of 4k-token turns, and how many
//! tokens per second the `format=tokens` export decodes and writes.
//!
//! Run: `cargo bench --bench tokens`. The byte figures are printed before the timings;
//! see `benches/README.md` for figures.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::Utc;
#[path = "support/writers.rs"]
mod writers;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rl_gym::domain::chat::Message;
use rl_gym::domain::events::{Event, ModelCalled, TurnTokens};
use rl_gym::domain::trace::{turn_tokens, TokenTrace};
use rl_gym::store::file::FileStore;
use rl_gym::store::{EventData, EventStore};
use uuid::Uuid;
use writers::{append_concurrently, runtime};

/// A turn: this many new prompt ids, and this many sampled ids with log-probabilities.
const PROMPT_IDS: usize = 256;
const SAMPLED_IDS: usize = 3_840;
const APPENDS_PER_ITER: u64 = 256;

/// Deterministic ids over a 150k vocabulary and log-probabilities mostly near 0.
fn sample(n: usize, seed: u64) -> (Vec<u32>, Vec<f32>) {
    let mut state = seed | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let ids = (0..n).map(|_| (next() % 151_936) as u32).collect();
    let logprobs = (0..n)
        .map(|_| -((next() % 1_000_000) as f32 / 1_000_000.0).powi(3) * 12.0)
        .collect();
    (ids, logprobs)
}

/// One turn's tokens after `before` (the previous prompt and completion).
fn turn(before: &[u32], seed: u64) -> (TurnTokens, Vec<u32>) {
    let (new, _) = sample(PROMPT_IDS, seed);
    let (sampled, logprobs) = sample(SAMPLED_IDS, seed + 1);
    let mut prompt = before.to_vec();
    prompt.extend(&new);
    let tokens = turn_tokens(
        before,
        &prompt,
        &sampled,
        Some(&logprobs),
        Some("stop".into()),
        Some("step-7".into()),
    )
    .expect("packs");
    prompt.extend(&sampled);
    (tokens, prompt)
}

fn model_called(tokens: Option<TurnTokens>) -> Event {
    Event::ModelCalled(ModelCalled {
        rollout_id: "rol_01a24f3546ef759aa7820358d8ae3073".into(),
        step: 3,
        model: "qwen2.5-7b-instruct".into(),
        message: Message::assistant(Some("I'll look the request up.".into()), vec![]),
        usage: None,
        logprobs: None,
        latency_ms: 950.0,
        called_at: Utc::now(),
        tokens: tokens.map(Box::new),
        policy_ordinal: 0,
    })
}

static TURN_EVENT: LazyLock<Vec<u8>> =
    LazyLock::new(|| model_called(Some(turn(&[], 7).0)).to_data());

fn turn_event() -> EventData {
    EventData {
        id: Uuid::new_v4(),
        event_type: "ModelCalled".into(),
        schema_version: 1,
        time: Utc::now(),
        data: TURN_EVENT.clone(),
    }
}

/// Bytes per 1,000 tokens, packed and (for comparison) as JSON arrays.
fn report_bytes() {
    let tokens = (PROMPT_IDS + SAMPLED_IDS) as f64;
    let without = model_called(None).to_data().len() as f64;
    let with = TURN_EVENT.len() as f64;
    let (ids, logprobs) = sample(SAMPLED_IDS, 8);
    let (prompt, _) = sample(PROMPT_IDS, 9);
    let json = serde_json::to_vec(&serde_json::json!({
        "prompt": prompt, "completion": ids, "logprobs": logprobs
    }))
    .expect("json")
    .len() as f64;
    eprintln!(
        "  a {}-token turn ({PROMPT_IDS} new prompt ids, {SAMPLED_IDS} sampled with log-probabilities): \
         ModelCalled {with:.0} bytes ({without:.0} without tokens): {:.0} bytes per 1,000 tokens \
         packed; as JSON arrays {:.0} bytes per 1,000",
        tokens as usize,
        (with - without) / tokens * 1000.0,
        json / tokens * 1000.0
    );
}

fn appends(c: &mut Criterion) {
    report_bytes();
    let rt = runtime();
    let mut group = c.benchmark_group("tokens_append_4k_turns");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(APPENDS_PER_ITER));
    for writers in [1u64, 8, 64] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = FileStore::open(dir.path()).expect("open");
        let store: Arc<dyn EventStore> = Arc::new(store);
        let counter = Arc::new(AtomicU64::new(0));
        group.bench_with_input(BenchmarkId::new("writers", writers), &writers, |b, &w| {
            append_concurrently(b, &rt, &store, &counter, (w, APPENDS_PER_ITER), turn_event);
        });
    }
    group.finish();
}

/// Decoding a 20-turn rollout's packed turns into its sequence, mask and
/// log-probabilities and writing them as the export's JSON arrays.
fn export(c: &mut Criterion) {
    let mut turns = Vec::new();
    let mut before = Vec::new();
    for i in 0..20 {
        let (tokens, next) = turn(&before, 100 + i * 2);
        turns.push(tokens);
        before = next;
    }
    let total = before.len() as u64;
    let mut group = c.benchmark_group("tokens_export");
    group.sample_size(20);
    group.throughput(Throughput::Elements(total));
    group.bench_function("rollout_20_turns", |b| {
        b.iter(|| {
            let trace = TokenTrace::rebuild(&turns).expect("decodes");
            let split = trace.first_prompt_len();
            let line = serde_json::to_string(&serde_json::json!({
                "prompt_ids": &trace.ids[..split],
                "response_ids": &trace.ids[split..],
                "loss_mask": &trace.mask[split..],
                "logprobs": &trace.logprobs[split..],
            }))
            .expect("json");
            std::hint::black_box(line.len())
        })
    });
    group.finish();
}

criterion_group!(benches, appends, export);
criterion_main!(benches);
