//! The fake KurrentDB node (tests/kurrent/fake_server.rs) driven by the real `kurrentdb`
//! client: proof that it speaks the protocol as the client expects, before the
//! `eventstore` backend's conformance suite relies on it.

#[path = "kurrent/fake_server.rs"]
mod fake_server;

use std::time::Duration;

use fake_server::{start_fake_kurrent, FakeKurrent};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, Error, EventData,
    ReadAllOptions, ReadStreamOptions, RecordedEvent, StreamPosition, StreamState,
    SubscribeToAllOptions, SubscribeToStreamOptions, Subscription, SubscriptionEvent,
};
use uuid::Uuid;

fn client(fake: &FakeKurrent) -> Client {
    let settings: ClientSettings = fake.url.parse().expect("connection string");
    Client::new(settings).expect("client")
}

fn event_with_id(n: u32, id: Uuid) -> EventData {
    EventData::json(format!("Happened{n}"), &serde_json::json!({ "n": n }))
        .expect("json")
        .id(id)
}

fn event(n: u32) -> EventData {
    event_with_id(n, Uuid::new_v4())
}

fn events(n: u32) -> Vec<EventData> {
    (0..n).map(event).collect()
}

/// The event itself (no links are written here).
fn original(e: kurrentdb::ResolvedEvent) -> RecordedEvent {
    e.event.expect("an event")
}

fn state(expected: StreamState) -> AppendToStreamOptions {
    AppendToStreamOptions::default().stream_state(expected)
}

async fn read_stream(c: &Client, stream: &str, from: u64) -> kurrentdb::Result<Vec<RecordedEvent>> {
    let options = ReadStreamOptions::default().position(StreamPosition::Position(from));
    let mut read = c.read_stream(stream, &options).await?;
    let mut out = Vec::new();
    while let Some(e) = read.next().await? {
        out.push(original(e));
    }
    Ok(out)
}

/// `$all` from `from` on, without the node's own system events.
async fn read_all(c: &Client, from: StreamPosition<kurrentdb::Position>) -> Vec<RecordedEvent> {
    let mut read = c
        .read_all(&ReadAllOptions::default().position(from))
        .await
        .expect("read $all");
    let mut out = Vec::new();
    while let Some(e) = read.next().await.expect("next") {
        out.push(original(e));
    }
    out.retain(|e| !e.stream_id().starts_with('$'));
    out
}

fn assert_wrong(result: kurrentdb::Result<kurrentdb::WriteResult>, want: CurrentRevision) {
    match result {
        Err(Error::WrongExpectedVersion { current, .. }) => assert_eq!(current, want),
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
}

/// The next event of a subscription, skipping system events, failing on a stall.
async fn next_event(sub: &mut Subscription) -> RecordedEvent {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("subscription stalled")
            .expect("next");
        let e = original(e);
        if !e.stream_id().starts_with('$') {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrent_fake_append_and_read_back() {
    let fake = start_fake_kurrent().await;
    let c = client(&fake);
    // The client asks for the node's features first; the fake answers as a 24.10 node
    // without batch append, so appends use the classic `Append` call.
    let info = c.server_info().await.expect("server features");
    assert_eq!(info.version().major(), 24);

    let ids = [Uuid::new_v4(), Uuid::new_v4()];
    let batch = vec![event_with_id(0, ids[0]), event_with_id(1, ids[1])];
    let written = c
        .append_to_stream("run-a", &state(StreamState::NoStream), batch)
        .await
        .expect("append");
    assert_eq!(written.next_expected_version, 1);

    let back = read_stream(&c, "run-a", 0).await.expect("read");
    assert_eq!(back.len(), 2);
    for (i, e) in back.iter().enumerate() {
        assert_eq!(e.id, ids[i]);
        assert_eq!(e.revision, i as u64);
        assert_eq!(e.stream_id(), "run-a");
        assert_eq!(e.event_type, format!("Happened{i}"));
        assert!(e.is_json);
        let data: serde_json::Value = serde_json::from_slice(&e.data).expect("data");
        assert_eq!(data, serde_json::json!({ "n": i }));
        assert!((chrono::Utc::now() - e.created).num_seconds().abs() < 60);
    }
    assert_eq!(back[1].position, written.position);

    let tail = read_stream(&c, "run-a", 1).await.expect("read tail");
    assert_eq!(tail.iter().map(|e| e.revision).collect::<Vec<_>>(), [1]);
    assert!(read_stream(&c, "run-a", 2)
        .await
        .expect("past end")
        .is_empty());
    assert!(matches!(
        read_stream(&c, "nope", 0).await,
        Err(Error::ResourceNotFound)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrent_fake_expected_revision_conflicts() {
    let fake = start_fake_kurrent().await;
    let c = client(&fake);
    let append = |expected, n| {
        let c = c.clone();
        async move { c.append_to_stream("s", &state(expected), events(n)).await }
    };
    assert_wrong(
        append(StreamState::StreamExists, 1).await,
        CurrentRevision::NoStream,
    );
    assert_wrong(
        append(StreamState::StreamRevision(0), 1).await,
        CurrentRevision::NoStream,
    );
    append(StreamState::NoStream, 1).await.expect("no stream");
    assert_wrong(
        append(StreamState::NoStream, 1).await,
        CurrentRevision::Current(0),
    );
    append(StreamState::StreamExists, 1).await.expect("exists");
    assert_wrong(
        append(StreamState::StreamRevision(0), 1).await,
        CurrentRevision::Current(1),
    );
    assert_wrong(
        append(StreamState::StreamRevision(5), 1).await,
        CurrentRevision::Current(1),
    );
    let exact = append(StreamState::StreamRevision(1), 2)
        .await
        .expect("exact");
    assert_eq!(exact.next_expected_version, 3);
    append(StreamState::Any, 1).await.expect("any");
    // Refusals wrote nothing.
    assert_eq!(read_stream(&c, "s", 0).await.expect("read").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrent_fake_retried_append_is_not_written_twice() {
    let fake = start_fake_kurrent().await;
    let c = client(&fake);
    let batch = events(3);
    let first = c
        .append_to_stream("a", &state(StreamState::NoStream), batch.clone())
        .await
        .expect("first");
    c.append_to_stream("b", &state(StreamState::Any), events(1))
        .await
        .expect("b");
    c.append_to_stream("a", &state(StreamState::Any), events(1))
        .await
        .expect("a again");

    // As the server decides: the same ids with the original expectation, or with one
    // that checks ids (any, stream exists), are the original write.
    for expected in [
        StreamState::NoStream,
        StreamState::Any,
        StreamState::StreamExists,
    ] {
        let again = c
            .append_to_stream("a", &state(expected), batch.clone())
            .await
            .expect("retry");
        assert_eq!(again.next_expected_version, first.next_expected_version);
        assert_eq!(again.position, first.position);
    }
    // An exact revision the ids do not follow is a conflict, not a retry.
    assert_wrong(
        c.append_to_stream("a", &state(StreamState::StreamRevision(0)), batch.clone())
            .await,
        CurrentRevision::Current(3),
    );
    // Ids written only in part: refused.
    let mixed = vec![batch[1].clone(), event(9)];
    assert_wrong(
        c.append_to_stream("a", &state(StreamState::Any), mixed)
            .await,
        CurrentRevision::Current(3),
    );
    // The same ids in another stream are other events.
    let other = c
        .append_to_stream("c", &state(StreamState::Any), batch.clone())
        .await
        .expect("other stream");
    assert_eq!(other.next_expected_version, 2);

    let a = read_stream(&c, "a", 0).await.expect("read");
    assert_eq!(a.len(), 4);
    assert_eq!(read_all(&c, StreamPosition::Start).await.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrent_fake_read_all_in_commit_order() {
    let fake = start_fake_kurrent().await;
    let c = client(&fake);
    for (stream, n) in [("x", 2), ("y", 1), ("x", 1), ("z", 2)] {
        c.append_to_stream(stream, &state(StreamState::Any), events(n))
            .await
            .expect("append");
    }
    // A fresh node's `$all` starts with its own system events.
    let mut everything = c
        .read_all(&ReadAllOptions::default().position(StreamPosition::Start))
        .await
        .expect("read");
    let first = everything.next().await.expect("next").expect("an event");
    assert!(first.get_original_event().stream_id().starts_with('$'));

    let all = read_all(&c, StreamPosition::Start).await;
    let order: Vec<(&str, u64)> = all.iter().map(|e| (e.stream_id(), e.revision)).collect();
    assert_eq!(
        order,
        [("x", 0), ("x", 1), ("y", 0), ("x", 2), ("z", 0), ("z", 1)]
    );
    assert!(all
        .windows(2)
        .all(|w| w[0].position.commit < w[1].position.commit));
    // Reading from an event's position includes it.
    let from = read_all(&c, StreamPosition::Position(all[3].position)).await;
    assert_eq!(from.len(), 3);
    assert_eq!(from[0].id, all[3].id);
    let limited = c
        .read_all(
            &ReadAllOptions::default()
                .position(StreamPosition::Position(all[1].position))
                .max_count(2),
        )
        .await
        .expect("read");
    let mut limited = limited;
    let mut n = 0;
    while limited.next().await.expect("next").is_some() {
        n += 1;
    }
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrent_fake_subscription_to_all_catches_up_then_follows() {
    let fake = start_fake_kurrent().await;
    let c = client(&fake);
    for i in 0..3 {
        c.append_to_stream(format!("s{i}"), &state(StreamState::Any), events(1))
            .await
            .expect("history");
    }
    let mut sub = c
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::Start))
        .await;
    let confirmed = sub.next_subscription_event().await.expect("first message");
    assert!(matches!(confirmed, SubscriptionEvent::Confirmed(_)));
    let mut past = Vec::new();
    let mut caught_up = false;
    while !caught_up {
        match sub.next_subscription_event().await.expect("message") {
            SubscriptionEvent::EventAppeared(e) => past.push(original(e)),
            SubscriptionEvent::CaughtUp(_) => caught_up = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    past.retain(|e| !e.stream_id().starts_with('$'));
    let streams: Vec<&str> = past.iter().map(|e| e.stream_id()).collect();
    assert_eq!(streams, ["s0", "s1", "s2"]);

    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 3..6 {
                c.append_to_stream(format!("s{i}"), &state(StreamState::Any), events(2))
                    .await
                    .expect("live");
            }
        })
    };
    let mut last = past[2].position;
    for i in 3..6 {
        for revision in 0..2 {
            let e = next_event(&mut sub).await;
            assert_eq!(
                (e.stream_id(), e.revision),
                (format!("s{i}").as_str(), revision)
            );
            assert!(e.position.commit > last.commit);
            last = e.position;
        }
    }
    writer.await.expect("writer");

    // From a position: the events after it.
    let mut from = c
        .subscribe_to_all(
            &SubscribeToAllOptions::default().position(StreamPosition::Position(past[0].position)),
        )
        .await;
    assert_eq!(next_event(&mut from).await.id, past[1].id);
    // From the end: only what comes next.
    let mut end = c
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::End))
        .await;
    // Nothing before it: confirmed, then caught up at once. (The client's `next` is not
    // cancel-safe, a timeout around it would drop the subscription, so no idle check.)
    assert!(matches!(
        end.next_subscription_event().await.expect("confirmation"),
        SubscriptionEvent::Confirmed(_)
    ));
    assert!(matches!(
        end.next_subscription_event().await.expect("caught up"),
        SubscriptionEvent::CaughtUp(_)
    ));
    c.append_to_stream("late", &state(StreamState::Any), events(1))
        .await
        .expect("late");
    assert_eq!(next_event(&mut end).await.stream_id(), "late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrent_fake_subscription_to_stream() {
    let fake = start_fake_kurrent().await;
    let c = client(&fake);
    c.append_to_stream("mine", &state(StreamState::NoStream), events(2))
        .await
        .expect("history");
    c.append_to_stream("other", &state(StreamState::Any), events(1))
        .await
        .expect("other");
    let mut sub = c
        .subscribe_to_stream(
            "mine",
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Position(0)),
        )
        .await;
    assert_eq!(next_event(&mut sub).await.revision, 1);
    c.append_to_stream("other", &state(StreamState::Any), events(1))
        .await
        .expect("other");
    c.append_to_stream("mine", &state(StreamState::Any), events(1))
        .await
        .expect("live");
    let e = next_event(&mut sub).await;
    assert_eq!((e.stream_id(), e.revision), ("mine", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrent_fake_stops_on_drop() {
    let fake = start_fake_kurrent().await;
    let addr = fake.addr;
    drop(fake);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrent_fake_large_batches_reach_a_slow_subscriber_in_order() {
    let fake = start_fake_kurrent().await;
    let c = client(&fake);
    let mut sub = c
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::Start))
        .await;
    // Written before the subscriber reads anything: it falls far behind.
    for chunk in 0..10 {
        c.append_to_stream(
            format!("big{chunk}"),
            &state(StreamState::Any),
            events(1000),
        )
        .await
        .expect("append");
    }
    let mut last = 0;
    for n in 0..10_000u32 {
        let e = next_event(&mut sub).await;
        assert_eq!(e.stream_id(), format!("big{}", n / 1000));
        assert_eq!(e.revision, u64::from(n % 1000));
        assert!(e.position.commit > last);
        last = e.position.commit;
    }
}
