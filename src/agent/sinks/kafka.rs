//! The `kafka` sink: produces each event as a Kafka record with rdkafka (librdkafka), the
//! client production Kafka users run.
//!
//! Each event becomes one record: the body is the value, the event's headers become record
//! headers, the `key_header` header (default `key`) is the record key (no header, no key), and
//! the record goes to `topic`, or to the topic named by the event's `topic_header` header when
//! that key is set and the event has it.
//!
//! # Delivery guarantee
//! The producer always runs with `acks = all` and `enable.idempotence = true` (a `properties`
//! entry that weakens either is a configuration error). [`Sink::deliver`] enqueues every event
//! of the batch, then awaits the delivery report of every one of them, and returns Ok only when
//! all of them are positive: only then does the runner commit its take from the channel. A
//! negative report, or none within `delivery_timeout` (librdkafka's `message.timeout.ms`), is an
//! error: the runner rolls the take back, backs off, marks `/health` failing, and retries the
//! whole batch. Records of the batch that did reach the broker are then sent again, so a retry
//! or a crash can duplicate records; none is lost, because nothing is committed before the
//! broker acknowledged it.
//!
//! While the broker is down, each attempt fails after `delivery_timeout`. After every failed
//! attempt the sink replaces its producer with a new one (a new producer id), so a broker that
//! comes back without the old producer's state (which would refuse the old id forever) is
//! written to again at the next retry, without restarting the agent. Idempotence thus
//! deduplicates librdkafka's own retries within one attempt; a retried batch may duplicate.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Sink, SinkError};
use crate::agent::units::HumanDuration;

/// How long to wait for room in librdkafka's queue before trying to enqueue again.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);
/// Extra time, past `delivery_timeout`, after which a delivery report that never came counts
/// as failed (librdkafka reports every message within `message.timeout.ms`; this is a guard).
const REPORT_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for in-flight records when the sink stops.
const STOP_FLUSH: Duration = Duration::from_secs(10);

/// The compression codecs a `kafka` sink may name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression (the default).
    #[default]
    None,
    /// gzip (zlib).
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard (only when librdkafka was built with it; this build is not).
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The `kafka` sink's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port[,host:port...]` of the brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// The topic records go to.
    pub topic: String,
    /// An event with this header goes to the topic it names instead of `topic`. Default: none
    /// (every event goes to `topic`).
    #[serde(default)]
    pub topic_header: Option<String>,
    /// The event header whose value is the record key (absent header: no key). Default `key`.
    #[serde(default = "default_key_header")]
    pub key_header: String,
    /// `none` (default), `gzip`, `snappy`, `lz4` or `zstd` (if librdkafka has it).
    #[serde(default)]
    pub compression: Compression,
    /// A record not acknowledged within this fails its batch (librdkafka's
    /// `message.timeout.ms`). Default 30 s.
    #[serde(default = "default_delivery_timeout")]
    pub delivery_timeout: HumanDuration,
    /// Passed to librdkafka as they are (e.g. `linger.ms`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_key_header() -> String {
    "key".to_string()
}

fn default_delivery_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl KafkaSinkConfig {
    /// Checks the keys (without creating a producer); on error, the key at fault (relative to
    /// the sink's table) and the problem.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, msg: &str| Err((key.to_string(), msg.to_string()));
        if self.bootstrap_servers.trim().is_empty() {
            return bad("bootstrap_servers", "must not be empty");
        }
        if self.topic.trim().is_empty() {
            return bad("topic", "must not be empty");
        }
        if self.topic_header.as_deref().is_some_and(str::is_empty) {
            return bad("topic_header", "must not be empty");
        }
        if self.key_header.is_empty() {
            return bad("key_header", "must not be empty");
        }
        let timeout_ms = self.delivery_timeout.0.as_millis();
        if timeout_ms == 0 || timeout_ms > i32::MAX as u128 {
            return bad(
                "delivery_timeout",
                &format!("must be between 1ms and {}ms", i32::MAX),
            );
        }
        check_properties(&self.properties).map_err(|msg| ("properties".to_string(), msg))?;
        // librdkafka checks every name and value (and which codecs it was built with).
        self.client_config()
            .create_native_config()
            .map(drop)
            .map_err(|e| librdkafka_error(&e))
    }

    /// The producer's librdkafka configuration.
    fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        for (k, v) in &self.properties {
            client.set(k, v);
        }
        client
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.codec", self.compression.as_str())
            .set(
                "message.timeout.ms",
                self.delivery_timeout.0.as_millis().to_string(),
            );
        client
    }
}

/// The key a librdkafka configuration error is about, and the error.
fn librdkafka_error(e: &rdkafka::error::KafkaError) -> (String, String) {
    let msg = e.to_string();
    let key = if msg.contains("compression") {
        "compression"
    } else {
        "properties"
    };
    (key.to_string(), format!("librdkafka refuses it: {msg}"))
}

/// librdkafka properties that have a key of their own in the sink's table.
const OWN_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("metadata.broker.list", "bootstrap_servers"),
    ("compression.codec", "compression"),
    ("compression.type", "compression"),
    ("message.timeout.ms", "delivery_timeout"),
    ("delivery.timeout.ms", "delivery_timeout"),
];

/// Checks `properties` against what the sink guarantees; the error names the key.
fn check_properties(props: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in props {
        let value = v.trim().to_ascii_lowercase();
        match k.as_str() {
            "acks" | "request.required.acks" if !matches!(value.as_str(), "all" | "-1") => {
                return Err(format!(
                    "properties.\"{k}\" = {v:?}: the kafka sink always uses acks = all (a weaker value could lose committed events)"
                ));
            }
            "enable.idempotence" if value != "true" => {
                return Err(format!(
                    "properties.\"{k}\" = {v:?}: the kafka sink always uses enable.idempotence = true"
                ));
            }
            "transactional.id" => {
                return Err(format!(
                    "properties.\"{k}\": transactions are not supported by the kafka sink"
                ));
            }
            _ => {}
        }
        if let Some((_, own)) = OWN_KEYS.iter().find(|(p, _)| *p == k.as_str()) {
            return Err(format!(
                "properties.\"{k}\": set it with the sink's `{own}` key instead"
            ));
        }
    }
    Ok(())
}

/// Builds a `kafka` sink.
pub fn build(name: &str, cfg: KafkaSinkConfig) -> Result<Box<dyn Sink>, ComponentError> {
    Ok(Box::new(KafkaSink::new(name, cfg)?))
}

/// The `kafka` sink.
pub struct KafkaSink {
    name: String,
    cfg: KafkaSinkConfig,
    client: ClientConfig,
    producer: FutureProducer,
}

impl KafkaSink {
    /// Checks `cfg` and creates the producer (it connects in the background).
    pub fn new(name: &str, cfg: KafkaSinkConfig) -> Result<Self, ComponentError> {
        let config_err = |msg: String| ComponentError::Config(format!("sink {name}: {msg}"));
        cfg.check()
            .map_err(|(key, msg)| config_err(format!("{key}: {msg}")))?;
        let client = cfg.client_config();
        let producer = create(&client).map_err(|e| {
            let (key, msg) = librdkafka_error(&e);
            config_err(format!("{key}: {msg}"))
        })?;
        Ok(KafkaSink {
            name: name.to_string(),
            cfg,
            client,
            producer,
        })
    }

    /// The topic an event goes to.
    fn topic_of<'e>(&'e self, event: &'e Event) -> &'e str {
        self.cfg
            .topic_header
            .as_ref()
            .and_then(|h| event.headers().get(h))
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.cfg.topic)
    }

    /// Enqueues `event`, waiting (up to `deadline`) while librdkafka's queue is full.
    async fn enqueue(
        &self,
        event: &Event,
        deadline: tokio::time::Instant,
    ) -> Result<DeliveryFuture, SinkError> {
        let headers = event.headers().iter().fold(
            OwnedHeaders::new_with_capacity(event.headers().len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            },
        );
        let mut record = FutureRecord::<[u8], [u8]>::to(self.topic_of(event))
            .payload(event.body())
            .headers(headers);
        if let Some(key) = event.headers().get(&self.cfg.key_header) {
            record = record.key(key.as_bytes());
        }
        loop {
            match self.producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((e, r))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                        && tokio::time::Instant::now() < deadline =>
                {
                    record = r;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((e, r))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) =>
                {
                    return Err(SinkError::Delivery(format!(
                        "an event of {} bytes (body and headers) for topic {:?} is larger than librdkafka's message.max.bytes (set with properties.\"message.max.bytes\"; the broker's own limit applies too): the batch cannot be delivered until the limit is raised or the event removed",
                        event.body().len()
                            + event
                                .headers()
                                .iter()
                                .map(|(k, v)| k.len() + v.len())
                                .sum::<usize>(),
                        r.topic
                    )));
                }
                Err((e, r)) => {
                    return Err(SinkError::Delivery(format!(
                        "cannot enqueue a record for topic {:?}: {e}",
                        r.topic
                    )));
                }
            }
        }
    }

    async fn send_batch(&self, batch: &[Event]) -> Result<(), SinkError> {
        let deadline = tokio::time::Instant::now() + self.cfg.delivery_timeout.0 + REPORT_GRACE;
        let mut reports = Vec::with_capacity(batch.len());
        let mut first_error = None;
        for event in batch {
            match self.enqueue(event, deadline).await {
                Ok(f) => reports.push(f),
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        // Every enqueued record's report is awaited, even after a failure, so that nothing of
        // this attempt is still in flight when the runner decides what to do with the batch.
        let mut failed = 0usize;
        for report in reports {
            let outcome = match tokio::time::timeout_at(deadline, report).await {
                Err(_) => Err(format!(
                    "no delivery report within {:?}",
                    self.cfg.delivery_timeout.0 + REPORT_GRACE
                )),
                Ok(Err(_canceled)) => Err("the producer dropped the record".to_string()),
                Ok(Ok(Err((e, _msg)))) => Err(e.to_string()),
                Ok(Ok(Ok(_delivery))) => Ok(()),
            };
            if let Err(e) = outcome {
                failed += 1;
                first_error.get_or_insert(SinkError::Delivery(e));
            }
        }
        match first_error {
            None => Ok(()),
            Some(SinkError::Delivery(msg)) if failed > 0 => Err(SinkError::Delivery(format!(
                "{failed} of {} records not acknowledged by {}: {msg}",
                batch.len(),
                self.cfg.bootstrap_servers
            ))),
            Some(e) => Err(e),
        }
    }

    /// Replaces the producer after a failed batch: a new producer gets a new producer id.
    ///
    /// A broker that lost its producer state (restarted with its storage, or a cluster that
    /// expired the id) answers the old producer's idempotent sends with UNKNOWN_PRODUCER_ID
    /// forever: librdkafka bumps the epoch locally and retries the same id (seen with Tansu).
    /// The batch is sent again as a whole anyway, so nothing of the old producer's session is
    /// needed; dropping it purges what it still held (every report was awaited, so normally
    /// nothing).
    async fn renew(&mut self) {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::warn!(sink = %self.name, ?code, %reason, "the Kafka producer failed fatally");
        }
        match create(&self.client) {
            Ok(p) => {
                let old = std::mem::replace(&mut self.producer, p);
                // Dropping a producer joins its thread and flushes: off the async workers.
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
                tracing::debug!(sink = %self.name, "new Kafka producer for the retry");
            }
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "cannot create a new Kafka producer; keeping the old one")
            }
        }
    }
}

fn create(client: &ClientConfig) -> Result<FutureProducer, rdkafka::error::KafkaError> {
    client.create()
}

impl Sink for KafkaSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            let result = self.send_batch(batch).await;
            if result.is_err() {
                self.renew().await;
            }
            result
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let producer = self.producer.clone();
            // Every batch was awaited before its commit, so this only waits for records of a
            // failed attempt; it blocks, hence off the async workers.
            let flushed = tokio::task::spawn_blocking(move || producer.flush(STOP_FLUSH)).await;
            if let Ok(Err(e)) = flushed {
                tracing::debug!(sink = %self.name, error = %e, "kafka sink: flush at stop");
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(k: &str, v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(k.to_string(), v.to_string())])
    }

    #[test]
    fn weaker_acks_or_idempotence_are_refused_naming_the_key() {
        for (k, v) in [
            ("acks", "1"),
            ("acks", "0"),
            ("request.required.acks", "1"),
            ("enable.idempotence", "false"),
        ] {
            let e = check_properties(&props(k, v)).expect_err(k);
            assert!(e.contains(&format!("properties.\"{k}\"")), "{e}");
        }
        assert!(check_properties(&props("acks", "all")).is_ok());
        assert!(check_properties(&props("acks", "-1")).is_ok());
        assert!(check_properties(&props("enable.idempotence", "true")).is_ok());
        assert!(check_properties(&props("linger.ms", "5")).is_ok());
        let e = check_properties(&props("compression.type", "gzip")).expect_err("own key");
        assert!(e.contains("`compression`"), "{e}");
    }

    fn config(compression: Compression) -> KafkaSinkConfig {
        KafkaSinkConfig {
            bootstrap_servers: "127.0.0.1:1".into(),
            topic: "t".into(),
            topic_header: None,
            key_header: "key".into(),
            compression,
            delivery_timeout: HumanDuration(Duration::from_secs(1)),
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn codecs_this_build_lacks_are_refused_naming_the_key() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
        ] {
            assert!(KafkaSink::new("k1", config(c)).is_ok(), "{c:?}");
        }
        let e = KafkaSink::new("k1", config(Compression::Zstd))
            .err()
            .expect("this build has no zstd");
        assert!(e.to_string().contains("compression"), "{e}");
    }

    /// An event over `message.max.bytes` fails its batch at once, with an error naming the
    /// limit and the key that sets it (the take is rolled back: nothing is lost).
    #[test]
    fn an_event_over_message_max_bytes_fails_naming_the_limit() {
        let mut cfg = config(Compression::None);
        cfg.properties
            .insert("message.max.bytes".into(), "1000".into());
        let mut sink = KafkaSink::new("k1", cfg).expect("sink");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let batch = [Event::new(vec![b'x'; 5000])];
        let e = rt.block_on(sink.deliver(&batch)).expect_err("too large");
        assert!(
            matches!(&e, SinkError::Delivery(m) if m.contains("message.max.bytes") && m.contains("5000 bytes")),
            "{e}"
        );
    }

    #[test]
    fn topic_header_selects_the_topic() {
        let mut cfg = config(Compression::None);
        cfg.topic_header = Some("topic".into());
        let sink = KafkaSink::new("k1", cfg).expect("sink");
        let plain = Event::new(b"x".to_vec());
        let routed = Event::new(b"x".to_vec()).with_header("topic", "other");
        assert_eq!(sink.topic_of(&plain), "t");
        assert_eq!(sink.topic_of(&routed), "other");
    }
}
