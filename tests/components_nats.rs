//! The `nats` sink and source against real JetStream servers: the shared one on 4222 (every
//! test uses its own stream and subjects) and, for the stop/restart case, a private
//! `nats-server` the test kills and restarts (same port, same store directory).

mod components_common;
mod nats_common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use components_common::{ChannelDeliver, FullDeliver, Running, bodies, drain};
use nats_common::{PrivateServer, SHARED, create_stream, read_stream, stream_len, unique};
use tidegate::agent::component::{Sink, SinkError};
use tidegate::agent::sinks::nats::{NatsSink, NatsSinkConfig};
use tidegate::agent::sources::nats::{NatsSourceConfig, build as build_source};
use tidegate::agent::units::HumanDuration;
use tidegate::{Event, MemoryChannel, MemoryChannelConfig};

const WAIT: Duration = Duration::from_secs(30);

fn sink_config(url: &str, subject: &str) -> NatsSinkConfig {
    NatsSinkConfig {
        url: url.into(),
        subject: subject.into(),
        subject_header: None,
        stream: None,
        create_stream: false,
        stream_subjects: None,
        timeout: HumanDuration(Duration::from_secs(5)),
        msg_id_header: None,
        credentials: None,
        token: None,
        user: None,
        password: None,
    }
}

fn source_config(stream: &str, consumer: &str, batch_size: usize) -> NatsSourceConfig {
    NatsSourceConfig {
        url: SHARED.into(),
        stream: stream.into(),
        consumer: consumer.into(),
        filter_subject: None,
        batch_size,
        batch_timeout: HumanDuration(Duration::from_millis(200)),
        ack_wait: HumanDuration(Duration::from_secs(30)),
        credentials: None,
        token: None,
        user: None,
        password: None,
    }
}

/// Polls `ok` (async) every 50 ms until it holds; fails after [`WAIT`].
async fn wait_for<F, Fut>(what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !ok().await {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn memory() -> Arc<MemoryChannel> {
    Arc::new(MemoryChannel::new(MemoryChannelConfig::default()))
}

/// Every event of a batch is in the stream, in order, with its headers, on its subject;
/// `subject_header` reroutes; with `msg_id_header`, delivering the same batch again (a retry
/// after a lost PubAck) adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_publishes_every_event_with_headers_and_acks_deduplicate_retries() {
    let stream = unique("SINK");
    let base = stream.to_lowercase();
    let mut cfg = sink_config(SHARED, &format!("{base}.app"));
    cfg.stream = Some(stream.clone());
    cfg.create_stream = true;
    cfg.stream_subjects = Some(vec![format!("{base}.>")]);
    cfg.subject_header = Some("to".into());
    cfg.msg_id_header = Some("id".into());
    let mut sink = NatsSink::new("n1", cfg).expect("sink");
    let batch: Vec<Event> = (0..20)
        .map(|i| {
            let e = Event::new(format!("ev-{i}"))
                .with_header("k", format!("v{i}"))
                .with_header("id", format!("id-{i}"));
            if i % 5 == 0 {
                e.with_header("to", format!("{base}.other"))
            } else {
                e
            }
        })
        .collect();
    let r = sink.deliver(&batch).await;
    assert!(r.is_ok(), "{r:?}");

    let js = nats_common::js(SHARED).await;
    let stored = read_stream(&js, &stream).await;
    let want: Vec<String> = (0..20).map(|i| format!("ev-{i}")).collect();
    let got: Vec<String> = stored.iter().map(|m| m.body.clone()).collect();
    assert_eq!(got, want, "every event, in order");
    for (i, m) in stored.iter().enumerate() {
        let sub = if i % 5 == 0 { "other" } else { "app" };
        assert_eq!(m.subject, format!("{base}.{sub}"), "subject of event {i}");
        for h in [
            ("k".to_string(), format!("v{i}")),
            ("id".to_string(), format!("id-{i}")),
            ("Nats-Msg-Id".to_string(), format!("id-{i}")),
        ] {
            assert!(
                m.headers.contains(&h),
                "event {i}: {h:?} in {:?}",
                m.headers
            );
        }
    }

    // The same batch again, as after a rollback: JetStream drops the duplicates and acks them.
    let r = sink.deliver(&batch).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        stream_len(&js, &stream).await,
        20,
        "retries were de-duplicated"
    );
    sink.stop().await.expect("stop");
}

/// No stream for the subject: the server answers `no responders`, and the batch is an error
/// (the runner rolls back). A configured stream that does not exist is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_without_a_stream_fails_the_batch() {
    let subject = format!("{}.nowhere", unique("nostream"));
    let mut sink = NatsSink::new("n1", sink_config(SHARED, &subject)).expect("sink");
    let r = sink.deliver(&[Event::new("x")]).await;
    assert!(
        r.is_err(),
        "published to a subject no stream captures: {r:?}"
    );

    let missing = unique("MISSING");
    let mut cfg = sink_config(SHARED, &subject);
    cfg.stream = Some(missing.clone());
    let mut sink = NatsSink::new("n1", cfg).expect("sink");
    let r = sink.deliver(&[Event::new("x")]).await;
    assert!(
        matches!(&r, Err(SinkError::Connection(m)) if m.contains(&missing)),
        "{r:?}"
    );
}

/// The server is killed (kill -9) between batches: every batch fails (no PubAck) while it is
/// down, and once it is back (same port and store) the retried batch goes through: every event
/// of every batch is in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_fails_while_the_server_is_down_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = PrivateServer::start(dir.path());
    let url = server.url();
    let stream = "RESTART".to_string();
    let mut cfg = sink_config(&url, "restart.events");
    cfg.stream = Some(stream.clone());
    cfg.create_stream = true;
    cfg.timeout = HumanDuration(Duration::from_secs(2));
    let mut sink = NatsSink::new("n1", cfg).expect("sink");
    let batch = |from: usize| -> Vec<Event> {
        (from..from + 10)
            .map(|i| Event::new(format!("ev-{i:03}")))
            .collect()
    };
    let r = sink.deliver(&batch(0)).await;
    assert!(r.is_ok(), "{r:?}");

    server.kill();
    for attempt in 0..2 {
        let r = sink.deliver(&batch(10)).await;
        assert!(
            r.is_err(),
            "attempt {attempt}: a batch was acknowledged with the server down"
        );
    }
    server.restart();
    // What the runner does: retry the rolled-back batch until it is delivered.
    let deadline = Instant::now() + WAIT;
    loop {
        match sink.deliver(&batch(10)).await {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no delivery after the restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let r = sink.deliver(&batch(20)).await;
    assert!(r.is_ok(), "{r:?}");

    let js = nats_common::js(&url).await;
    let stored = read_stream(&js, &stream).await;
    // The attempts made while the server was away failed; they must not be stored later
    // (queued in the client and sent on reconnection) on top of the retry that succeeded.
    // One extra copy is allowed: an attempt racing the disconnection.
    let copies = stored.iter().filter(|m| m.body == "ev-010").count();
    assert!(
        copies <= 2,
        "{copies} copies of ev-010: failed attempts were published after the server returned"
    );
    let got: BTreeSet<String> = stored.into_iter().map(|m| m.body).collect();
    let want: BTreeSet<String> = (0..30).map(|i| format!("ev-{i:03}")).collect();
    assert_eq!(
        got, want,
        "every event of every batch, once the server is back"
    );
}

/// Every message reaches the channel in stream order, with its headers and `subject`; once
/// committed, every message is acknowledged (the consumer has nothing pending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_delivers_every_message_and_acks_it_after_the_commit() {
    let stream = unique("SRC");
    let base = stream.to_lowercase();
    let js = nats_common::js(SHARED).await;
    create_stream(&js, &stream, &[&format!("{base}.>")]).await;
    let n = 250;
    for i in 0..n {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("k", format!("v{i}").as_str());
        js.publish_with_headers(
            format!("{base}.s{}", i % 3),
            headers,
            format!("m-{i}").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("puback");
    }
    let ch = memory();
    let source = build_source("r1", source_config(&stream, "c1", 40)).expect("source");
    let src = Running::start(source, Arc::new(ChannelDeliver(ch.clone())));
    let mut got = Vec::new();
    wait_for("every message in the channel", || {
        got.extend(drain(ch.as_ref()));
        let done = got.len() >= n;
        async move { done }
    })
    .await;
    let want: Vec<String> = (0..n).map(|i| format!("m-{i}")).collect();
    assert_eq!(bodies(&got), want, "every message once, in order");
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.headers().get("k"), Some(&format!("v{i}")), "event {i}");
        assert_eq!(
            e.headers().get("subject"),
            Some(&format!("{base}.s{}", i % 3)),
            "event {i}"
        );
    }
    let consumer_acked = || {
        let js = js.clone();
        let stream = stream.clone();
        async move {
            let mut c: jetstream::consumer::PullConsumer = js
                .get_stream(&stream)
                .await
                .expect("stream")
                .get_consumer("c1")
                .await
                .expect("consumer");
            let info = c.info().await.expect("info");
            info.ack_floor.stream_sequence == n as u64 && info.num_ack_pending == 0
        }
    };
    wait_for("every message acknowledged", consumer_acked).await;
    assert_eq!(src.counters.accepted.load(Relaxed), n as u64);
    src.stop().await;
}

/// While the channel refuses the batch, nothing is acknowledged; after a stop and a restart
/// with a channel that takes it, every message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_acks_nothing_the_channel_did_not_commit() {
    let stream = unique("FULL");
    let base = stream.to_lowercase();
    let js = nats_common::js(SHARED).await;
    create_stream(&js, &stream, &[&format!("{base}.>")]).await;
    let n = 10;
    for i in 0..n {
        js.publish(format!("{base}.x"), format!("m-{i}").into())
            .await
            .expect("publish")
            .await
            .expect("puback");
    }
    let info = || {
        let js = js.clone();
        let stream = stream.clone();
        async move {
            let mut c: jetstream::consumer::PullConsumer = js
                .get_stream(&stream)
                .await
                .expect("stream")
                .get_consumer("c1")
                .await
                .expect("consumer");
            c.info().await.expect("info").clone()
        }
    };
    let source = build_source("r1", source_config(&stream, "c1", 4)).expect("source");
    let src = Running::start(source, Arc::new(FullDeliver));
    wait_for("the source tries to deliver", || {
        let tried = src.counters.received.load(Relaxed) > 0;
        async move { tried }
    })
    .await;
    // Give the (broken) source time to ack what it must not, then look.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let i = info().await;
    assert_eq!(
        i.ack_floor.stream_sequence, 0,
        "a message was acknowledged although the channel never committed it: {i:?}"
    );
    assert!(
        i.num_ack_pending > 0,
        "the source holds fetched messages: {i:?}"
    );
    src.stop().await;

    let ch = memory();
    let source = build_source("r1", source_config(&stream, "c1", 4)).expect("source");
    let src = Running::start(source, Arc::new(ChannelDeliver(ch.clone())));
    let mut got = Vec::new();
    wait_for("every message after the restart", || {
        got.extend(drain(ch.as_ref()));
        let done = got.len() >= n;
        async move { done }
    })
    .await;
    let got: BTreeSet<String> = bodies(&got).into_iter().collect();
    let want: BTreeSet<String> = (0..n).map(|i| format!("m-{i}")).collect();
    assert_eq!(got, want);
    src.stop().await;
}

/// A source whose stream does not exist fails with an error naming the stream (the runtime
/// restarts it with back-off and `/health` reports it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_without_its_stream_fails_naming_it() {
    let stream = unique("NOPE");
    let source = build_source("r1", source_config(&stream, "c1", 4)).expect("source");
    let src = Running::start(source, Arc::new(ChannelDeliver(memory())));
    let r = tokio::time::timeout(WAIT, src.task)
        .await
        .expect("the source fails within the wait")
        .expect("task");
    assert!(
        matches!(&r, Err(e) if e.to_string().contains(&stream)),
        "{r:?}"
    );
}

/// The agent's config check names the key at fault, for the keys serde cannot check alone.
#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        r#"
[channels.c1]
type = "memory"

[sources.n2]
type = "nats"
channels = ["c1"]
url = "nats://127.0.0.1:4222"
stream = "EVENTS"
ack_wait = "0s"

[sinks.n1]
type = "nats"
channel = "c1"
url = "nats://127.0.0.1:4222"
subject = "events.app"
create_stream = true
"#,
    )
    .expect("write");
    let err = tidegate::agent::config::load_config_file(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("sources.n2.ack_wait"), "{err}");
    assert!(err.contains("sinks.n1.stream"), "{err}");

    std::fs::write(
        &path,
        "[channels.c1]\ntype = \"memory\"\n\n[sources.n2]\ntype = \"nats\"\nchannels = [\"c1\"]\nurl = \"nats://127.0.0.1:4222\"\nstream = \"EVENTS\"\n\n[sinks.n1]\ntype = \"nats\"\nchannel = \"c1\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"events.app\"\n",
    )
    .expect("write");
    let ok = tidegate::agent::config::load_config_file(&path);
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
}

/// The source's own key checks, one per key.
#[test]
fn source_keys_are_checked() {
    let ok = source_config("S", "c", 10);
    assert!(ok.check().is_ok());
    let key_of = |c: NatsSourceConfig| c.check().err().map(|(k, _)| k);
    assert_eq!(
        key_of(NatsSourceConfig {
            stream: "a.b".into(),
            ..ok.clone()
        }),
        Some("stream")
    );
    assert_eq!(
        key_of(NatsSourceConfig {
            consumer: String::new(),
            ..ok.clone()
        }),
        Some("consumer")
    );
    assert_eq!(
        key_of(NatsSourceConfig {
            batch_size: 0,
            ..ok.clone()
        }),
        Some("batch_size")
    );
    assert_eq!(
        key_of(NatsSourceConfig {
            url: "::".into(),
            ..ok.clone()
        }),
        Some("url")
    );
    assert_eq!(
        key_of(NatsSourceConfig {
            password: Some("p".into()),
            ..ok.clone()
        }),
        Some("user")
    );
    // Over a day: `batch_timeout + 5s` overflowed (a panic) near the largest duration.
    assert_eq!(
        key_of(NatsSourceConfig {
            batch_timeout: HumanDuration(Duration::from_secs(u64::MAX)),
            ..ok.clone()
        }),
        Some("batch_timeout")
    );
    assert_eq!(
        key_of(NatsSourceConfig {
            ack_wait: HumanDuration(Duration::from_secs(25 * 3600)),
            ..ok
        }),
        Some("ack_wait")
    );
    let parsed: Result<NatsSourceConfig, _> =
        toml::from_str("url = \"nats://x:1\"\nstream = \"S\"\nnope = 1");
    assert!(parsed.is_err_and(|e| e.to_string().contains("nope")));
    let parsed: NatsSourceConfig =
        toml::from_str("url = \"nats://x:1\"\nstream = \"S\"").expect("defaults");
    assert_eq!(
        (
            parsed.consumer.as_str(),
            parsed.batch_size,
            parsed.batch_timeout.0,
            parsed.ack_wait.0
        ),
        (
            "tidegate",
            100,
            Duration::from_secs(1),
            Duration::from_secs(30)
        )
    );
}

/// A created consumer with `filter_subject` delivers only the matching messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_filter_subject_selects_messages() {
    let stream = unique("FILTER");
    let base = stream.to_lowercase();
    let js = nats_common::js(SHARED).await;
    create_stream(&js, &stream, &[&format!("{base}.>")]).await;
    for i in 0..12 {
        js.publish(format!("{base}.s{}", i % 3), format!("m-{i}").into())
            .await
            .expect("publish")
            .await
            .expect("puback");
    }
    let ch = memory();
    let mut cfg = source_config(&stream, "f1", 5);
    cfg.filter_subject = Some(format!("{base}.s1"));
    let src = Running::start(
        build_source("r1", cfg).expect("source"),
        Arc::new(ChannelDeliver(ch.clone())),
    );
    let mut got = Vec::new();
    wait_for("the matching messages", || {
        got.extend(drain(ch.as_ref()));
        let done = got.len() >= 4;
        async move { done }
    })
    .await;
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    assert_eq!(bodies(&got), ["m-1", "m-4", "m-7", "m-10"]);
}

/// While the channels refuse a batch, the source keeps its messages alive with in-progress
/// acks: past the consumer's AckWait, another puller on the same consumer gets none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_keeps_a_refused_batch_from_being_redelivered() {
    use futures_util::StreamExt;
    let stream = unique("PROGRESS");
    let base = stream.to_lowercase();
    let js = nats_common::js(SHARED).await;
    create_stream(&js, &stream, &[&format!("{base}.>")]).await;
    for i in 0..4 {
        js.publish(format!("{base}.x"), format!("m-{i}").into())
            .await
            .expect("publish")
            .await
            .expect("puback");
    }
    let mut cfg = source_config(&stream, "p1", 4);
    cfg.ack_wait = HumanDuration(Duration::from_secs(1));
    let src = Running::start(
        build_source("r1", cfg).expect("source"),
        Arc::new(FullDeliver),
    );
    wait_for("the source holds the batch", || {
        let held = src.counters.received.load(Relaxed) >= 4;
        async move { held }
    })
    .await;
    // Well past AckWait (1 s): without in-progress acks the server would redeliver the batch.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(&stream)
        .await
        .expect("stream")
        .get_consumer("p1")
        .await
        .expect("consumer");
    let mut batch = consumer
        .batch()
        .max_messages(4)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("pull");
    let mut stolen = Vec::new();
    while let Some(Ok(m)) = batch.next().await {
        stolen.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    assert!(
        stolen.is_empty(),
        "the server redelivered a batch the source still holds: {stolen:?}"
    );
    src.stop().await;
}

/// `token` and `user` + `password` reach the server: right ones deliver, wrong ones fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_authenticates_with_token_or_user_and_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_server = PrivateServer::start_with(&dir.path().join("t"), &["--auth", "s3cret"]);
    let user_server =
        PrivateServer::start_with(&dir.path().join("u"), &["--user", "ann", "--pass", "pw"]);
    let attempt = |url: String, auth: fn(&mut NatsSinkConfig)| async move {
        let mut cfg = sink_config(&url, "auth.events");
        cfg.stream = Some("AUTH".into());
        cfg.create_stream = true;
        cfg.timeout = HumanDuration(Duration::from_secs(2));
        auth(&mut cfg);
        let mut sink = NatsSink::new("n1", cfg).expect("sink");
        sink.deliver(&[Event::new("x")]).await
    };
    let r = attempt(token_server.url(), |c| c.token = Some("s3cret".into())).await;
    assert!(r.is_ok(), "{r:?}");
    let r = attempt(token_server.url(), |c| c.token = Some("wrong".into())).await;
    assert!(matches!(r, Err(SinkError::Connection(_))), "{r:?}");
    let r = attempt(user_server.url(), |c| {
        c.user = Some("ann".into());
        c.password = Some("pw".into());
    })
    .await;
    assert!(r.is_ok(), "{r:?}");
    let r = attempt(user_server.url(), |c| {
        c.user = Some("ann".into());
        c.password = Some("nope".into());
    })
    .await;
    assert!(matches!(r, Err(SinkError::Connection(_))), "{r:?}");
}

/// The server goes away while the channels refuse a batch: the source's in-progress acks
/// (and, at shutdown, its naks) cannot reach the server and pile up in the client's bounded
/// command queue (2048). Once that queue is full a publish waits for ever; the source must not
/// wait with it: it still stops when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_stops_while_the_server_is_down_and_the_channel_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = PrivateServer::start(dir.path());
    let url = server.url();
    let n = 400;
    {
        let js = nats_common::js(&url).await;
        create_stream(&js, "HELD", &["held.in"]).await;
        let mut acks = Vec::new();
        for i in 0..n {
            acks.push(
                js.publish("held.in", format!("m-{i:03}").into())
                    .await
                    .expect("publish"),
            );
        }
        for a in acks {
            a.await.expect("puback");
        }
    }
    let mut cfg = source_config("HELD", "held", n);
    cfg.url = url.clone();
    // In-progress acks every 500 ms, one per held message.
    cfg.ack_wait = HumanDuration(Duration::from_secs(1));
    let src = Running::start(
        build_source("r1", cfg).expect("source"),
        Arc::new(FullDeliver),
    );
    wait_for("the source holds a batch", || {
        let held = src.counters.received.load(Relaxed) >= 100;
        async move { held }
    })
    .await;
    server.kill();
    // Enough in-progress ack rounds to fill the client's command queue several times over.
    tokio::time::sleep(Duration::from_secs(6)).await;
    // `stop` fails unless the source returns within 20 s.
    src.stop().await;
}
