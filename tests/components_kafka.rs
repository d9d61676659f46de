//! The `kafka` sink and source against a private Tansu broker (one per test, see
//! `kafka_common`), in-process: records are fetched back and compared, never counted by
//! offsets.

mod components_common;
mod kafka_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use components_common::{ChannelDeliver, FullDeliver, Running, bodies, drain};
use kafka_common::{Fetched, Record, Tansu, WAIT, fetch_until, produce};
use tidegate::agent::component::{Sink, SinkError};
use tidegate::agent::sinks::kafka::{Compression, KafkaSink, KafkaSinkConfig};
use tidegate::agent::sources::kafka::{KafkaSource, KafkaSourceConfig};
use tidegate::agent::units::HumanDuration;
use tidegate::{Channel, Event, MemoryChannel, MemoryChannelConfig};

fn sink_config(addr: &str, topic: &str) -> KafkaSinkConfig {
    KafkaSinkConfig {
        bootstrap_servers: addr.to_string(),
        topic: topic.to_string(),
        topic_header: None,
        key_header: "key".into(),
        compression: Compression::None,
        delivery_timeout: HumanDuration(Duration::from_secs(30)),
        properties: BTreeMap::from([("linger.ms".to_string(), "5".to_string())]),
    }
}

fn source_config(addr: &str, topic: &str, group: &str) -> KafkaSourceConfig {
    KafkaSourceConfig {
        bootstrap_servers: addr.to_string(),
        topics: vec![topic.to_string()],
        topics_regex: None,
        group_id: group.to_string(),
        batch_size: 10,
        batch_duration: HumanDuration(Duration::from_millis(200)),
        set_topic_header: true,
        topic_header: "topic".into(),
        // A member that left holds its partitions until its session ends, if the broker
        // misses the leave: keep that short.
        properties: BTreeMap::from([
            ("session.timeout.ms".to_string(), "6000".to_string()),
            ("heartbeat.interval.ms".to_string(), "1000".to_string()),
        ]),
    }
}

fn body_set(got: &[Fetched]) -> BTreeSet<String> {
    got.iter()
        .map(|f| String::from_utf8_lossy(&f.body).into_owned())
        .collect()
}

/// Every event arrives: on its topic (`topic_header` picks another), with its key and its
/// headers, compressed on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_round_trip_with_keys_headers_and_topic_header() {
    let broker = Tansu::start();
    broker.create_topic("events", 3);
    broker.create_topic("other", 1);
    let mut cfg = sink_config(&broker.addr(), "events");
    cfg.topic_header = Some("topic".into());
    cfg.compression = Compression::Lz4;
    let mut sink = KafkaSink::new("k1", cfg).expect("sink");
    let batch: Vec<Event> = (0..30)
        .map(|i| {
            let mut e = Event::new(format!("ev-{i}").into_bytes()).with_header("n", i.to_string());
            if i % 2 == 0 {
                e = e.with_header("key", format!("k{i}"));
            }
            if i % 5 == 0 {
                e = e.with_header("topic", "other");
            }
            e
        })
        .collect();
    let done = tokio::time::timeout(WAIT, sink.deliver(&batch)).await;
    assert!(matches!(done, Ok(Ok(()))), "{done:?}");

    let addr = broker.addr();
    let (events, other) = tokio::task::spawn_blocking(move || {
        let events = fetch_until(&addr, "events", 3, |g| body_set(g).len() >= 24);
        let other = fetch_until(&addr, "other", 1, |g| body_set(g).len() >= 6);
        (events, other)
    })
    .await
    .expect("fetch");
    for (i, e) in batch.iter().enumerate() {
        let (on, topic) = if i % 5 == 0 {
            (&other, "other")
        } else {
            (&events, "events")
        };
        let f = on
            .iter()
            .find(|f| f.body == e.body())
            .unwrap_or_else(|| panic!("ev-{i} not on topic {topic}"));
        assert_eq!(f.topic, topic);
        let want_key = (i % 2 == 0).then(|| format!("k{i}").into_bytes());
        assert_eq!(f.key, want_key, "key of ev-{i}");
        assert_eq!(f.headers, *e.headers(), "headers of ev-{i}");
    }
    assert_eq!(
        events.len() + other.len(),
        30,
        "no duplicates without failures"
    );
    sink.stop().await.expect("stop");
}

/// The broker is killed: a batch fails within `delivery_timeout` (no hang) and is handed back;
/// the broker returns (same port, empty storage): the same sink, retrying like the runner,
/// delivers the batch, and every event of it is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_fails_while_the_broker_is_down_and_delivers_everything_when_it_returns() {
    let mut broker = Tansu::start();
    broker.create_topic("events", 2);
    let mut cfg = sink_config(&broker.addr(), "events");
    cfg.delivery_timeout = HumanDuration(Duration::from_secs(3));
    let mut sink = KafkaSink::new("k1", cfg).expect("sink");
    let first: Vec<Event> = (0..5).map(|i| Event::new(format!("a-{i}"))).collect();
    let done = tokio::time::timeout(WAIT, sink.deliver(&first)).await;
    assert!(matches!(done, Ok(Ok(()))), "{done:?}");

    broker.kill();
    let second: Vec<Event> = (0..20).map(|i| Event::new(format!("b-{i}"))).collect();
    let failed = tokio::time::timeout(WAIT, sink.deliver(&second)).await;
    assert!(
        matches!(failed, Ok(Err(SinkError::Delivery(_)))),
        "a batch sent while the broker is down must fail (not hang, not succeed): {failed:?}"
    );

    broker.restart();
    broker.create_topic("events", 2);
    // What the runner does: roll back, back off, send the whole batch again.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout(WAIT, sink.deliver(&second)).await {
            Ok(Ok(())) => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the sink did not recover after the broker returned: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let addr = broker.addr();
    let got = tokio::task::spawn_blocking(move || {
        fetch_until(&addr, "events", 2, |g| {
            (0..20).all(|i| body_set(g).contains(&format!("b-{i}")))
        })
    })
    .await
    .expect("fetch");
    let got = body_set(&got);
    for i in 0..20 {
        assert!(got.contains(&format!("b-{i}")), "b-{i} lost");
    }
    sink.stop().await.expect("stop");
}

fn memory_channel() -> Arc<dyn Channel> {
    Arc::new(MemoryChannel::new(MemoryChannelConfig::default()))
}

/// Takes from `ch` until `n` distinct bodies arrived; returns every event taken.
async fn collect(ch: &Arc<dyn Channel>, n: usize) -> Vec<Event> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        got.extend(drain(ch.as_ref()));
        if bodies(&got).into_iter().collect::<BTreeSet<_>>().len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} records reached the channel within {WAIT:?}: {:?}",
            got.len(),
            bodies(&got)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn records(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let key = (i % 2 == 0).then(|| format!("k{i}"));
            let headers = vec![("n".to_string(), i.to_string())];
            (key, headers, format!("{prefix}-{i}"))
        })
        .collect()
}

/// Every record reaches the channel with the headers Flume's KafkaSource sets and the record's
/// own headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_round_trip_with_flume_headers() {
    let broker = Tansu::start();
    broker.create_topic("events", 2);
    produce(&broker.addr(), "events", &records("r", 30)).await;

    let ch = memory_channel();
    let source =
        KafkaSource::new("k2", source_config(&broker.addr(), "events", "g1")).expect("source");
    let running = Running::start(Box::new(source), Arc::new(ChannelDeliver(ch.clone())));
    let got = collect(&ch, 30).await;
    running.stop().await;

    for i in 0..30 {
        let body = format!("r-{i}");
        let e = got
            .iter()
            .find(|e| e.body() == body.as_bytes())
            .unwrap_or_else(|| panic!("{body} missing"));
        let h = e.headers();
        assert_eq!(h.get("topic").map(String::as_str), Some("events"), "{h:?}");
        assert_eq!(h.get("n"), Some(&i.to_string()), "{h:?}");
        assert!(
            h.get("partition").is_some_and(|p| p == "0" || p == "1"),
            "{h:?}"
        );
        assert!(
            h.get("offset").is_some_and(|o| o.parse::<i64>().is_ok()),
            "{h:?}"
        );
        assert!(
            h.get("timestamp").is_some_and(|t| t.parse::<i64>().is_ok()),
            "{h:?}"
        );
        let key = (i % 2 == 0).then(|| format!("k{i}"));
        assert_eq!(h.get("key"), key.as_ref(), "{h:?}");
    }
}

/// Offsets are committed only after the channel commit: a source whose channel is full (its
/// batches never commit) is stopped, and the next member of the group gets every record; then
/// that member's commits hold: a third member gets only records produced after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_commits_offsets_only_after_the_channel_commit() {
    let broker = Tansu::start();
    broker.create_topic("events", 2);
    produce(&broker.addr(), "events", &records("old", 20)).await;

    // 1. The channel refuses everything: records are read, never committed.
    let source =
        KafkaSource::new("k2", source_config(&broker.addr(), "events", "g2")).expect("source");
    let blocked = Running::start(Box::new(source), Arc::new(FullDeliver));
    let counters = blocked.counters.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while counters.received.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the blocked source read nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    blocked.stop().await;

    // 2. The next member of the group starts where the group committed: at the beginning.
    let ch = memory_channel();
    let source =
        KafkaSource::new("k2", source_config(&broker.addr(), "events", "g2")).expect("source");
    let running = Running::start(Box::new(source), Arc::new(ChannelDeliver(ch.clone())));
    let got = collect(&ch, 20).await;
    let got: BTreeSet<String> = bodies(&got).into_iter().collect();
    for i in 0..20 {
        assert!(
            got.contains(&format!("old-{i}")),
            "old-{i} was skipped: its offset was committed before it reached a channel"
        );
    }
    running.stop().await;

    // 3. Its commits hold: a new member reads only what was produced since.
    produce(&broker.addr(), "events", &records("new", 5)).await;
    let ch = memory_channel();
    let source =
        KafkaSource::new("k2", source_config(&broker.addr(), "events", "g2")).expect("source");
    let running = Running::start(Box::new(source), Arc::new(ChannelDeliver(ch.clone())));
    let got = collect(&ch, 5).await;
    running.stop().await;
    let got = bodies(&got);
    assert!(
        got.iter().all(|b| b.starts_with("new-")),
        "committed records were read again by the next member: {got:?}"
    );
}

/// The keys as the agent's TOML writes them: defaults, and every refused value named by its
/// key path when the config is loaded (before anything connects).
#[test]
fn config_keys_defaults_and_errors_name_the_key() {
    use tidegate::agent::config::{load_config_table, parse_toml};
    let sink: KafkaSinkConfig =
        toml::from_str("bootstrap_servers = \"b:9092\"\ntopic = \"t\"").expect("parse");
    assert_eq!(sink.key_header, "key");
    assert_eq!(sink.topic_header, None);
    assert_eq!(sink.compression, Compression::None);
    assert_eq!(sink.delivery_timeout.0, Duration::from_secs(30));
    let source: KafkaSourceConfig =
        toml::from_str("bootstrap_servers = \"b:9092\"\ntopics = [\"t\"]").expect("parse");
    assert_eq!(
        (
            source.group_id.as_str(),
            source.batch_size,
            source.batch_duration.0
        ),
        ("tidegate", 1000, Duration::from_secs(1))
    );
    assert!(source.set_topic_header && source.topic_header == "topic");

    let load = |extra_sink: &str, extra_source: &str| {
        let text = format!(
            "[channels.c1]\ntype = \"memory\"\n\n[sources.k2]\ntype = \"kafka\"\nchannels = [\"c1\"]\nbootstrap_servers = \"127.0.0.1:1\"\n{extra_source}\n\n[sinks.k1]\ntype = \"kafka\"\nchannel = \"c1\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopic = \"t\"\n{extra_sink}\n"
        );
        let (table, origin) = parse_toml(&text, "agent.toml").expect("toml");
        load_config_table(table, origin)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    assert!(
        matches!(load("", "topics = [\"t\"]"), Ok(())),
        "{:?}",
        load("", "topics = [\"t\"]")
    );
    for (sink, source, key) in [
        (
            "properties = { acks = \"1\" }",
            "topics = [\"t\"]",
            "sinks.k1.properties",
        ),
        (
            "properties = { \"enable.idempotence\" = \"false\" }",
            "topics = [\"t\"]",
            "sinks.k1.properties",
        ),
        (
            "compression = \"zstd\"",
            "topics = [\"t\"]",
            "sinks.k1.compression",
        ),
        (
            "compression = \"brotli\"",
            "topics = [\"t\"]",
            "sinks.k1.compression",
        ),
        (
            "",
            "topics = [\"t\"]\nproperties = { \"enable.auto.commit\" = \"true\" }",
            "sources.k2.properties",
        ),
        ("", "topics = []", "sources.k2.topics"),
        (
            "",
            "topics = [\"t\"]\ntopics_regex = \"^t\"",
            "sources.k2.topics_regex",
        ),
        (
            "",
            "topics = [\"t\"]\nproperties = { \"no.such.thing\" = \"1\" }",
            "sources.k2.properties",
        ),
    ] {
        let e = load(sink, source).expect_err(key);
        assert!(e.contains(key), "{key}: {e}");
    }
}

/// `topics_regex` (without a leading `^`: it matches anywhere in the name) reads every
/// matching topic and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_topics_regex_reads_every_matching_topic() {
    let broker = Tansu::start();
    for t in ["logs-a", "logs-b", "metrics"] {
        broker.create_topic(t, 1);
        produce(&broker.addr(), t, &records(t, 3)).await;
    }
    let mut cfg = source_config(&broker.addr(), "unused", "g3");
    cfg.topics.clear();
    cfg.topics_regex = Some("logs-.".into());
    let ch = memory_channel();
    let source = KafkaSource::new("k2", cfg).expect("source");
    let running = Running::start(Box::new(source), Arc::new(ChannelDeliver(ch.clone())));
    let got = collect(&ch, 6).await;
    running.stop().await;
    let got: BTreeSet<String> = bodies(&got).into_iter().collect();
    let want: BTreeSet<String> = ["logs-a", "logs-b"]
        .iter()
        .flat_map(|t| (0..3).map(move |i| format!("{t}-{i}")))
        .collect();
    assert_eq!(got, want, "only the topics matching the pattern");
}
