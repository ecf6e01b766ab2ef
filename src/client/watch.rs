//! Following a run until it ends: the run's live event stream
//! (`GET /runs/{run_id}/events`, server-sent events) says when something happened, and
//! the counts are read from `GET /runs/{run_id}`, at most every [`REFRESH`], so what
//! is shown is always the server's view. A dropped stream is resumed after the last
//! event seen (`Last-Event-ID`).

use std::io::IsTerminal;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::http::Client;
use super::render;
use super::ClientError;

/// The states a run's rollouts are counted in, as (label, RunStatus field).
const STATES: [(&str, &str); 5] = [
    ("pending", "pending"),
    ("running", "in_progress"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
];
/// How stale the counts may be while events arrive.
const REFRESH: Duration = Duration::from_millis(250);
/// The server sends a comment after 15 s of silence; none for this long is a dead
/// connection.
const SILENCE: Duration = Duration::from_secs(45);
/// Failed attempts to reach the server, once watching, before giving up.
const RECONNECTS: u32 = 5;
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Watches `run_id` until every rollout has ended (or the run paused on its budget)
/// and returns its last status; `quiet` shows nothing (for `--json`).
pub async fn watch(client: &Client, run_id: &str, quiet: bool) -> Result<Value, ClientError> {
    let path = format!("/runs/{run_id}");
    // The first contact fails at once: a down server or an unknown run is not retried.
    let mut status = client.get(&path).await?;
    let mut display = Display::new(quiet, &status);
    let mut last_event_id = None;
    let mut failures = 0;
    while !finished(&status) {
        let followed = follow(
            client,
            run_id,
            &mut last_event_id,
            &mut status,
            &mut display,
        )
        .await;
        let refreshed = match followed {
            Ok(()) => client.get(&path).await,
            Err(error) => Err(error),
        };
        match refreshed {
            Ok(latest) => {
                failures = 0;
                status = latest;
                display.update(&status);
            }
            Err(ClientError::Unreachable { .. }) if failures < RECONNECTS => {
                failures += 1;
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
            Err(error) => return Err(error),
        }
    }
    display.finish();
    Ok(status)
}

/// Every rollout has ended and no more will be drawn (a continuous run's state says
/// so), or the run is paused (nothing runs until a resume).
pub fn finished(status: &Value) -> bool {
    let count = |field: &str| status[field].as_u64().unwrap_or(0);
    let drawing = status["feed"].is_object()
        && !["completed", "failed", "cancelled"]
            .iter()
            .any(|s| status["status"] == *s);
    status["paused"] == true
        || (!drawing && count("completed") + count("failed") + count("cancelled") >= count("total"))
}

/// Reads the run's event stream until the server ends it, refreshing the counts
/// as events arrive.
async fn follow(
    client: &Client,
    run_id: &str,
    last_event_id: &mut Option<u64>,
    status: &mut Value,
    display: &mut Display,
) -> Result<(), ClientError> {
    let mut request = client
        .request(Method::GET, &format!("/runs/{run_id}/events"))
        .header(reqwest::header::ACCEPT, "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = client.send(request).await?;
    let url = response.url().to_string();
    let mut ids = std::pin::pin!(event_ids(response.bytes_stream(), SILENCE));
    let mut refresh_at: Option<Instant> = None;
    loop {
        let next = tokio::select! {
            next = ids.next() => next,
            _ = tokio::time::sleep_until(refresh_at.unwrap_or_else(Instant::now)), if refresh_at.is_some() => {
                refresh_at = None;
                *status = client.get(&format!("/runs/{run_id}")).await?;
                display.update(status);
                // A paused run's stream stays open: it is not over.
                if status["paused"] == true {
                    return Ok(());
                }
                continue;
            }
        };
        let unreachable = |reason: String| ClientError::Unreachable {
            url: url.clone(),
            reason,
        };
        match next {
            None => return Ok(()),
            Some(Ok(id)) => {
                *last_event_id = Some(id);
                refresh_at.get_or_insert_with(|| Instant::now() + REFRESH);
            }
            Some(Err(Broken::Silent)) => {
                let secs = SILENCE.as_secs();
                return Err(unreachable(format!(
                    "the event stream was silent for {secs}s"
                )));
            }
            Some(Err(Broken::Transport(error))) => return Err(client.unreachable(&error)),
            Some(Err(Broken::Garbled(reason))) => return Err(unreachable(reason)),
        }
    }
}

/// Why an event stream stopped short.
#[derive(Debug)]
enum Broken<E> {
    /// Not a byte for the silence allowed (keep-alive comments count).
    Silent,
    Transport(E),
    /// Not UTF-8 or not server-sent events.
    Garbled(String),
}

/// The ids of the events of a server-sent event stream, read as the specification
/// says (a line ends with CRLF, LF or CR; comments and other fields are skipped).
fn event_ids<B, E>(
    bytes: impl Stream<Item = Result<B, E>>,
    silence: Duration,
) -> impl Stream<Item = Result<u64, Broken<E>>>
where
    B: AsRef<[u8]>,
{
    let timed = tokio_stream::StreamExt::timeout(bytes, silence).map(|item| match item {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(Broken::Transport(error)),
        Err(_) => Err(Broken::Silent),
    });
    timed.eventsource().filter_map(|event| {
        futures::future::ready(match event {
            Ok(event) => event.id.trim().parse().ok().map(Ok),
            Err(EventStreamError::Transport(broken)) => Some(Err(broken)),
            Err(EventStreamError::Utf8(e)) => Some(Err(Broken::Garbled(format!("not UTF-8: {e}")))),
            Err(EventStreamError::Parser(e)) => Some(Err(Broken::Garbled(format!(
                "not server-sent events: {e:?}"
            )))),
        })
    })
}

/// A progress bar per state on a terminal, a line per change otherwise.
struct Display {
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
    lines: bool,
    last: Vec<u64>,
}

impl Display {
    fn new(quiet: bool, status: &Value) -> Display {
        let terminal = !quiet && std::io::stdout().is_terminal();
        let bars = terminal.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let style =
                ProgressStyle::with_template("{prefix:>10} {bar:40.cyan/blue} {pos:>6}/{len}")
                    .expect("a valid template")
                    .progress_chars("█▉▊▋▌▍▎▏ ");
            let bars = STATES
                .iter()
                .map(|(label, _)| {
                    multi.add(
                        ProgressBar::new(0)
                            .with_style(style.clone())
                            .with_prefix(*label),
                    )
                })
                .collect();
            (multi, bars)
        });
        let mut display = Display {
            bars,
            lines: !quiet && !terminal,
            last: Vec::new(),
        };
        display.update(status);
        display
    }

    fn update(&mut self, status: &Value) {
        let total = status["total"].as_u64().unwrap_or(0);
        let counts: Vec<u64> = STATES
            .iter()
            .map(|(_, field)| status[*field].as_u64().unwrap_or(0))
            .collect();
        if counts == self.last {
            return;
        }
        if let Some((_, bars)) = &self.bars {
            for (bar, count) in bars.iter().zip(&counts) {
                bar.set_length(total);
                bar.set_position(*count);
            }
        }
        if self.lines {
            let parts: Vec<String> = STATES
                .iter()
                .zip(&counts)
                .map(|((label, _), count)| format!("{label} {count}"))
                .collect();
            println!("{} of {total}", parts.join(", "));
        }
        self.last = counts;
    }

    /// Leaves the bars on screen at their counts (`finish` would fill them).
    fn finish(&mut self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars {
                bar.abandon();
            }
        }
    }
}

/// The run's outcome for people and for the exit code: Ok with a summary line when
/// no rollout failed or was cancelled, else the error naming what went wrong.
pub fn outcome(status: &Value) -> Result<String, ClientError> {
    let count = |field: &str| status[field].as_u64().unwrap_or(0);
    let summary = format!(
        "run {} {}: {} completed, {} failed, {} cancelled of {}",
        render::cell(&status["run_id"]),
        render::cell(&status["status"]),
        count("completed"),
        count("failed"),
        count("cancelled"),
        count("total"),
    );
    if status["paused"] == true {
        return Err(ClientError::RunUnsuccessful(format!(
            "{summary}\n  {}\n  resume it with POST /runs/{}/resume and a new budget",
            render::cell(&status["pause_reason"]),
            render::cell(&status["run_id"]),
        )));
    }
    if count("failed") == 0 && count("cancelled") == 0 {
        return Ok(summary);
    }
    let mut errors: Vec<String> = render::items(&status["rollouts"])
        .iter()
        .filter_map(|r| r["error"].as_str())
        .map(String::from)
        .collect();
    errors.dedup();
    let mut message = summary;
    for error in errors.iter().take(3) {
        message.push_str(&format!("\n  {error}"));
    }
    Err(ClientError::RunUnsuccessful(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn ids_of(chunks: &[&'static str]) -> Vec<u64> {
        let bytes = futures::stream::iter(chunks.iter().map(Ok::<_, std::convert::Infallible>));
        event_ids(bytes, SILENCE)
            .map(|id| id.expect("an id"))
            .collect()
            .await
    }

    #[tokio::test]
    async fn event_ids_are_read_whatever_ends_the_lines_and_wherever_the_chunks_split() {
        let lf = [
            "id: 41\nevent: RolloutStarted\ndata: {}\n\n",
            ": keep-alive\n\n",
        ];
        assert_eq!(ids_of(&lf).await, [41]);
        // A proxy may rewrite line ends; a chunk may end between CR and LF.
        let crlf = [
            "id: 42\r\ndata: {}\r",
            "\n\r\n: keep-alive\r\n\r\nid:43\r\n",
            "data: x\r\n\r\n",
        ];
        assert_eq!(ids_of(&crlf).await, [42, 43]);
        // A CR may be the start of a CRLF: an event ends once the next byte arrives.
        let cr = [
            "id: 44\rdata: {}\r\r",
            "id: 45\rdata: {}\r\r",
            ": keep-alive\r\r",
        ];
        assert_eq!(ids_of(&cr).await, [44, 45]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_silent_for_too_long_is_broken_and_keep_alives_keep_it_open() {
        let silent = futures::stream::pending::<Result<&[u8], std::convert::Infallible>>();
        let first = std::pin::pin!(event_ids(silent, SILENCE)).next().await;
        assert!(matches!(first, Some(Err(Broken::Silent))), "{first:?}");

        // Comments every 15 s for two minutes, then an event: no silence in between.
        let beats = futures::stream::unfold(0, |n| async move {
            tokio::time::sleep(Duration::from_secs(15)).await;
            let chunk: &[u8] = if n < 8 {
                b": keep-alive\n\n"
            } else {
                b"id: 7\ndata: {}\n\n"
            };
            (n <= 8).then_some((Ok::<_, std::convert::Infallible>(chunk), n + 1))
        });
        let ids: Vec<_> = event_ids(beats, SILENCE).collect().await;
        assert!(matches!(ids.as_slice(), [Ok(7)]), "{ids:?}");
    }

    #[test]
    fn a_run_with_a_failed_rollout_is_unsuccessful_and_names_the_error() {
        let done = json!({"run_id": "run_a", "status": "completed", "total": 2,
                          "completed": 2, "failed": 0, "cancelled": 0});
        assert!(finished(&done));
        assert_eq!(
            outcome(&done).unwrap(),
            "run run_a completed: 2 completed, 0 failed, 0 cancelled of 2"
        );
        let failed = json!({"run_id": "run_b", "status": "failed", "total": 2,
                            "completed": 1, "failed": 1, "cancelled": 0,
                            "rollouts": [{"error": null}, {"error": "model refused: 400"}]});
        let error = outcome(&failed).unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert!(
            error.to_string().ends_with("\n  model refused: 400"),
            "{error}"
        );
    }

    #[test]
    fn a_paused_run_ends_the_watch_unsuccessfully_with_its_reason() {
        let paused = json!({"run_id": "run_p", "status": "paused", "total": 3,
                            "completed": 1, "failed": 0, "cancelled": 0, "paused": true,
                            "pause_reason": "token budget spent: 330 of max_total_tokens 300"});
        assert!(finished(&paused));
        let error = outcome(&paused).unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert!(
            error.to_string().contains("max_total_tokens 300"),
            "{error}"
        );
    }

    #[test]
    fn a_continuous_run_between_groups_is_not_finished() {
        let between = json!({"run_id": "run_c", "status": "running", "total": 8,
                             "completed": 8, "failed": 0, "cancelled": 0, "paused": false,
                             "feed": {"groups_scheduled": 1}});
        assert!(!finished(&between));
        let over = json!({"run_id": "run_c", "status": "completed", "total": 16,
                          "completed": 16, "failed": 0, "cancelled": 0, "paused": false,
                          "feed": {"groups_scheduled": 2}});
        assert!(finished(&over));
    }
}
