//! Live events over server-sent events: every event exactly once across reconnects,
//! the run's stream ending with the run, the service's stream filtered by type.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn a_runs_stream_delivers_every_event_once_across_a_reconnect_and_ends_with_the_run() {
    let model = start_fake_model(Behaviour::ToolThenAnswer { delay_ms: 150 }).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app
        .launch(&json!({
            "scenario_id": "hr", "task_ids": [task], "rollout_count": 3,
            "model_config": {"model": "m", "provider": "custom", "base_url": model.address}
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let path = format!("/runs/{run_id}/events");

    // Read a few events live, then drop the connection mid-run.
    let mut first = Sse::open(&app, &path, None).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(first.next_event().await.expect("the run is still going"));
    }
    drop(first);
    let status = app.run(run_id).await;
    assert_ne!(
        status["status"], "completed",
        "the reconnect happens mid-run"
    );

    // Resume after the last id seen: the rest arrives and the stream ends by itself.
    let last = seen.last().unwrap().id;
    let mut second = Sse::open(&app, &path, Some(last)).await;
    seen.extend(second.rest().await);

    let ids: Vec<u64> = seen.iter().map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in log order, none twice: {ids:?}"
    );
    assert_eq!(seen[0].event, "RunLaunched");
    for e in &seen {
        assert_eq!(e.data["event_type"], e.event.as_str());
        assert_eq!(e.data["position"], e.id);
    }
    let finished = seen
        .iter()
        .filter(|e| e.event == "RolloutCompleted")
        .count();
    assert_eq!(finished, 3, "the stream ends after the last rollout ends");
    assert_eq!(seen.last().unwrap().event, "RolloutCompleted");

    // Read again from the start once the run is over: exactly the same events.
    let replayed = Sse::open(&app, &path, None).await.rest().await;
    let replayed_ids: Vec<u64> = replayed.iter().map(|e| e.id).collect();
    assert_eq!(replayed_ids, ids);
    // And `?after=` resumes like the header does.
    let tail = Sse::open(&app, &format!("{path}?after={}", ids[5]), None)
        .await
        .rest()
        .await;
    assert_eq!(
        tail.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[6..].to_vec()
    );
    app.stop().await;
}

#[actix_web::test]
async fn streams_catching_up_in_batches_send_every_event_once_and_end_with_their_run() {
    // Two runs whose events interleave, each of them more than one batch of history.
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let a = app.launch(&builtin_run("oracle", &[&task], 40)).await;
    let b = app.launch(&builtin_run("oracle", &[&task], 40)).await;
    let a_id = a["run_id"].as_str().unwrap();
    let a = app.wait_until_finished(a_id).await;
    app.wait_until_finished(b["run_id"].as_str().unwrap()).await;
    let total = app
        .get("/healthz")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["events"]
        .as_u64()
        .unwrap();
    assert!(total > 600, "{total} events");

    // The service's stream from the start: every position once, in order.
    let mut all = Sse::open(&app, "/events", None).await;
    let mut ids = Vec::new();
    for _ in 0..total {
        ids.push(all.next_event().await.expect("an event").id);
    }
    assert_eq!(ids, (0..total).collect::<Vec<_>>());
    drop(all);

    // Streams waiting at the head for live events hold no turn of the catch-up lane
    // (at most half the cores' turns): one from the start still catches up at once,
    // not after their 15 s keep-alive.
    let waiting: Vec<Sse> = futures::future::join_all(
        (0..num_cpus()).map(|_| Sse::open(&app, "/events", Some(total - 1))),
    )
    .await;
    let started = std::time::Instant::now();
    let mut from_start = Sse::open(&app, "/events", None).await;
    for _ in 0..total {
        from_start.next_event().await.expect("an event");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "caught up in {:?} beside streams waiting at the head",
        started.elapsed()
    );
    drop((waiting, from_start));

    // A run's stream from the start: its events only, once each, ending by itself
    // after its last rollout, however the history was cut into batches.
    let events = Sse::open(&app, &format!("/runs/{a_id}/events"), None)
        .await
        .rest()
        .await;
    let run_ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert!(run_ids.windows(2).all(|w| w[0] < w[1]), "{run_ids:?}");
    let completed = events
        .iter()
        .filter(|e| e.event == "RolloutCompleted")
        .count();
    assert_eq!(completed, 40);
    let rollouts: BTreeSet<String> = a["rollout_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| format!("rollout-{}", id.as_str().unwrap()))
        .collect();
    assert!(events[1..]
        .iter()
        .all(|e| rollouts.contains(e.data["stream"].as_str().unwrap())));
    app.stop().await;
}

#[actix_web::test]
async fn the_service_stream_filters_by_type_and_two_runs_do_not_mix() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let a = app.launch(&builtin_run("oracle", &[&task], 2)).await;
    let b = app.launch(&builtin_run("noop", &[&task], 1)).await;
    let a = app.wait_until_finished(a["run_id"].as_str().unwrap()).await;
    app.wait_until_finished(b["run_id"].as_str().unwrap()).await;

    let mut completed = Sse::open(&app, "/events?types=RolloutCompleted,RunLaunched", None).await;
    let mut kinds = Vec::new();
    for _ in 0..5 {
        kinds.push(completed.next_event().await.unwrap());
    }
    let types: BTreeSet<&str> = kinds.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(types, BTreeSet::from(["RolloutCompleted", "RunLaunched"]));
    drop(completed);

    let a_events = Sse::open(
        &app,
        &format!("/runs/{}/events", a["run_id"].as_str().unwrap()),
        None,
    )
    .await
    .rest()
    .await;
    let a_rollouts: BTreeSet<String> = a["rollout_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| format!("rollout-{}", id.as_str().unwrap()))
        .collect();
    for e in &a_events[1..] {
        assert!(
            a_rollouts.contains(e.data["stream"].as_str().unwrap()),
            "{e:?}"
        );
    }

    for bad in [
        "/events?types=NoSuchEvent",
        "/events?after=minus-one",
        "/events?after=-1",
    ] {
        assert_eq!(
            app.get(bad).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    assert_eq!(
        app.get("/runs/run_nope/events").await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[actix_web::test]
async fn shutting_down_ends_open_streams_cleanly() {
    let app = spawn_app().await;
    let mut all = Sse::open(&app, "/events", None).await;
    app.stop().await;
    assert!(
        all.next_event().await.is_none(),
        "the stream ends, not breaks"
    );
}

fn num_cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}
