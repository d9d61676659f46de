//! The `kafka` source: a consumer group member (rdkafka, librdkafka) reading `topics` (or the
//! topics matching `topics_regex`) into the channels, like Flume's KafkaSource.
//!
//! Records are gathered into a batch of at most `batch_size`, or fewer once `batch_duration`
//! has passed since the batch's first record, and the batch is handed to the channels in one
//! put transaction per channel. Each record becomes an event: the value is the body (an empty
//! body for a record without one), the record's headers become event headers (values that are
//! not UTF-8 are converted lossily), and the source adds, like Flume: `topic` (under
//! `topic_header`, when `set_topic_header`), `partition`, `offset`, `timestamp` (milliseconds,
//! when the record has one) and `key` (when the record has one, lossily as UTF-8).
//!
//! # Delivery guarantee
//! Offsets are never committed automatically (`enable.auto.commit = false`; a `properties`
//! entry that turns it on is a configuration error). After a batch was committed to the
//! channels (`deliver_or_retry` returned Ok: durably, for a file channel), the source commits
//! the batch's next offsets to the group coordinator, synchronously. So a record whose offset
//! is committed is in the channels. A crash (or `kill -9`), a shutdown while a batch waits for
//! room in the channels, a failed offset commit or a rebalance between the channel commit and
//! the offset commit leaves the offsets behind: the group's next member reads those records
//! again, and they reach the channels twice (at-least-once, never lost).
//!
//! A group with no committed offset starts at the earliest record (`auto.offset.reset =
//! earliest`; a `properties` entry may say otherwise). Memory: at most `batch_size` records are
//! held by the source; librdkafka's own prefetch is bounded by its `queued.max.messages.kbytes`
//! and each record by `fetch.max.bytes` / `message.max.bytes` (set them in `properties`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Deserialize;

use super::{Stopped, deliver_or_retry};
use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Source, SourceContext};
use crate::agent::units::HumanDuration;

/// Pause after a consumer error before reading again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The `kafka` source's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port...]` of the brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// The topics to read (this or `topics_regex`).
    #[serde(default)]
    pub topics: Vec<String>,
    /// Read every topic whose name matches this regular expression (instead of `topics`).
    #[serde(default)]
    pub topics_regex: Option<String>,
    /// The consumer group. Default `tidegate`.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Most records per put transaction. Default 1000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// A partial batch is delivered this long after its first record. Default 1 s.
    #[serde(default = "default_batch_duration")]
    pub batch_duration: HumanDuration,
    /// Add the record's topic as a header. Default true.
    #[serde(default = "yes")]
    pub set_topic_header: bool,
    /// The header the topic goes in. Default `topic`.
    #[serde(default = "default_topic_header")]
    pub topic_header: String,
    /// Passed to librdkafka as they are.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_group() -> String {
    "tidegate".to_string()
}
fn default_batch_size() -> usize {
    1000
}
fn default_batch_duration() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn yes() -> bool {
    true
}
fn default_topic_header() -> String {
    "topic".to_string()
}

impl KafkaSourceConfig {
    /// Checks the keys (without creating a consumer); returns what `subscribe` gets (the
    /// topic names, or one `^`-anchored pattern), or the key at fault (relative to the
    /// source's table) and the problem.
    pub fn check(&self) -> Result<Vec<String>, (String, String)> {
        let bad = |key: &str, msg: String| Err((key.to_string(), msg));
        if self.bootstrap_servers.trim().is_empty() {
            return bad("bootstrap_servers", "must not be empty".into());
        }
        let subscription = match (&self.topics_regex, self.topics.is_empty()) {
            (Some(_), false) => {
                return bad(
                    "topics_regex",
                    "set topics or topics_regex, not both".into(),
                );
            }
            (None, true) => {
                return bad(
                    "topics",
                    "must name at least one topic (or set topics_regex)".into(),
                );
            }
            (None, false) => {
                if let Some(t) = self.topics.iter().find(|t| t.trim().is_empty()) {
                    return bad("topics", format!("{t:?} is not a topic name"));
                }
                if let Some(t) = self.topics.iter().find(|t| t.starts_with('^')) {
                    return bad(
                        "topics",
                        format!("{t:?} starts with ^ (a pattern): use topics_regex"),
                    );
                }
                self.topics.clone()
            }
            (Some(re), true) => {
                if let Err(e) = regex::Regex::new(re) {
                    return bad("topics_regex", format!("{re:?}: {e}"));
                }
                // librdkafka treats a subscription that starts with `^` as a pattern.
                let anchored = if re.starts_with('^') {
                    re.clone()
                } else {
                    format!("^.*({re})")
                };
                vec![anchored]
            }
        };
        if self.group_id.trim().is_empty() {
            return bad("group_id", "must not be empty".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.batch_duration.0.is_zero() {
            return bad("batch_duration", "must be more than 0".into());
        }
        if self.set_topic_header && self.topic_header.is_empty() {
            return bad("topic_header", "must not be empty".into());
        }
        check_properties(&self.properties).map_err(|msg| ("properties".to_string(), msg))?;
        // librdkafka checks every name and value.
        if let Err(e) = self.client_config().create_native_config() {
            return bad("properties", format!("librdkafka refuses it: {e}"));
        }
        Ok(subscription)
    }

    /// The consumer's librdkafka configuration.
    fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("auto.offset.reset", "earliest");
        for (k, v) in &self.properties {
            client.set(k, v);
        }
        client
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false");
        client
    }
}

/// librdkafka properties that have a key of their own in the source's table.
const OWN_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("metadata.broker.list", "bootstrap_servers"),
    ("group.id", "group_id"),
];

/// Checks `properties` against what the source guarantees; the error names the key.
fn check_properties(props: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in props {
        if k == "enable.auto.commit" && !v.trim().eq_ignore_ascii_case("false") {
            return Err(format!(
                "properties.\"{k}\" = {v:?}: the kafka source commits offsets itself, only after the channel commit (auto commit could lose records)"
            ));
        }
        if let Some((_, own)) = OWN_KEYS.iter().find(|(p, _)| *p == k.as_str()) {
            return Err(format!(
                "properties.\"{k}\": set it with the source's `{own}` key instead"
            ));
        }
    }
    Ok(())
}

/// Builds a `kafka` source (it connects when it runs).
pub fn build(name: &str, cfg: KafkaSourceConfig) -> Result<Box<dyn Source>, ComponentError> {
    Ok(Box::new(KafkaSource::new(name, cfg)?))
}

/// The `kafka` source.
pub struct KafkaSource {
    name: String,
    cfg: KafkaSourceConfig,
    /// What `subscribe` gets: the topic names, or one `^`-anchored pattern.
    subscription: Vec<String>,
    client: ClientConfig,
}

impl KafkaSource {
    /// Checks `cfg`.
    pub fn new(name: &str, cfg: KafkaSourceConfig) -> Result<Self, ComponentError> {
        let subscription = cfg
            .check()
            .map_err(|(key, msg)| ComponentError::Config(format!("source {name}: {key}: {msg}")))?;
        let client = cfg.client_config();
        Ok(KafkaSource {
            name: name.to_string(),
            cfg,
            subscription,
            client,
        })
    }

    /// The event for one record.
    fn event(&self, m: &BorrowedMessage<'_>) -> Event {
        let mut headers = BTreeMap::new();
        if let Some(hs) = m.headers() {
            for h in hs.iter() {
                let value = h
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                headers.insert(h.key.to_string(), value);
            }
        }
        if self.cfg.set_topic_header {
            headers.insert(self.cfg.topic_header.clone(), m.topic().to_string());
        }
        headers.insert("partition".into(), m.partition().to_string());
        headers.insert("offset".into(), m.offset().to_string());
        if let Some(ts) = m.timestamp().to_millis() {
            headers.insert("timestamp".into(), ts.to_string());
        }
        if let Some(key) = m.key() {
            headers.insert("key".into(), String::from_utf8_lossy(key).into_owned());
        }
        Event::from_parts(headers, m.payload().unwrap_or_default().to_vec())
    }
}

/// The next offset to commit for each (topic, partition) of a batch.
type Positions = BTreeMap<(String, i32), i64>;

impl Source for KafkaSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let consumer: StreamConsumer = self.client.create().map_err(|e| {
                ComponentError::Other(format!("source {}: Kafka consumer: {e}", self.name))
            })?;
            let consumer = Arc::new(consumer);
            let topics: Vec<&str> = self.subscription.iter().map(String::as_str).collect();
            consumer.subscribe(&topics).map_err(|e| {
                ComponentError::Other(format!("source {}: subscribe {topics:?}: {e}", self.name))
            })?;
            tracing::info!(source = %self.name, topics = ?topics, group = %self.cfg.group_id, "kafka source subscribed");
            let result = self.consume(&ctx, &consumer).await;
            // Closing the consumer (leaving the group) blocks: off the async workers.
            let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
            result
        })
    }
}

impl KafkaSource {
    async fn consume(
        &self,
        ctx: &SourceContext,
        consumer: &Arc<StreamConsumer>,
    ) -> Result<(), ComponentError> {
        loop {
            let first = tokio::select! {
                () = ctx.shutdown.cancelled() => return Ok(()),
                m = consumer.recv() => m,
            };
            let mut events = Vec::new();
            let mut positions = Positions::new();
            match first {
                Ok(m) => self.push(&m, &mut events, &mut positions),
                Err(e) => {
                    self.consumer_error(&e, ctx).await;
                    continue;
                }
            }
            let flush_at = tokio::time::Instant::now() + self.cfg.batch_duration.0;
            while events.len() < self.cfg.batch_size {
                tokio::select! {
                    () = ctx.shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep_until(flush_at) => break,
                    m = consumer.recv() => match m {
                        Ok(m) => self.push(&m, &mut events, &mut positions),
                        Err(e) => {
                            tracing::warn!(source = %self.name, error = %e, "kafka consumer error");
                            break;
                        }
                    },
                }
            }
            match deliver_or_retry(ctx, events).await {
                Ok(()) => self.commit(consumer, positions).await,
                // Not committed: the offsets stay behind, the group reads these again.
                Err(Stopped::Shutdown(_)) => return Ok(()),
            }
        }
    }

    fn push(&self, m: &BorrowedMessage<'_>, events: &mut Vec<Event>, positions: &mut Positions) {
        events.push(self.event(m));
        let next = m.offset().saturating_add(1);
        let slot = positions
            .entry((m.topic().to_string(), m.partition()))
            .or_insert(next);
        *slot = (*slot).max(next);
    }

    async fn consumer_error(&self, e: &rdkafka::error::KafkaError, ctx: &SourceContext) {
        tracing::warn!(source = %self.name, error = %e, retry_in = ?ERROR_PAUSE, "kafka consumer error");
        tokio::select! {
            () = ctx.shutdown.cancelled() => {}
            () = tokio::time::sleep(ERROR_PAUSE) => {}
        }
    }

    /// Commits the batch's offsets (synchronously, off the async workers). A failure is logged:
    /// the records will be read again (duplicates, not loss).
    async fn commit(&self, consumer: &Arc<StreamConsumer>, positions: Positions) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &positions {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(source = %self.name, %topic, partition, error = %e, "kafka source: bad offset");
            }
        }
        let consumer = consumer.clone();
        let done =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
        match done {
            Ok(Ok(())) => {
                tracing::debug!(source = %self.name, offsets = ?positions, "kafka offsets committed")
            }
            Ok(Err(e)) => {
                tracing::warn!(source = %self.name, error = %e, offsets = ?positions, "kafka offset commit failed; these records will be read again")
            }
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "kafka offset commit task failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KafkaSourceConfig {
        KafkaSourceConfig {
            bootstrap_servers: "127.0.0.1:1".into(),
            topics: vec!["events".into()],
            topics_regex: None,
            group_id: default_group(),
            batch_size: 10,
            batch_duration: default_batch_duration(),
            set_topic_header: true,
            topic_header: default_topic_header(),
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn auto_commit_is_refused_naming_the_key() {
        let mut cfg = config();
        cfg.properties
            .insert("enable.auto.commit".into(), "true".into());
        let e = KafkaSource::new("k2", cfg).err().expect("refused");
        assert!(
            e.to_string().contains("properties.\"enable.auto.commit\""),
            "{e}"
        );
        let mut cfg = config();
        cfg.properties.insert("group.id".into(), "g".into());
        let e = KafkaSource::new("k2", cfg).err().expect("refused");
        assert!(e.to_string().contains("`group_id`"), "{e}");
    }

    #[test]
    fn topics_xor_regex() {
        let mut cfg = config();
        cfg.topics_regex = Some("^logs-.*".into());
        let e = KafkaSource::new("k2", cfg).err().expect("both");
        assert!(e.to_string().contains("not both"), "{e}");
        let mut cfg = config();
        cfg.properties.insert("no.such.property".into(), "1".into());
        let e = KafkaSource::new("k2", cfg).err().expect("unknown property");
        assert!(e.to_string().contains("properties"), "{e}");
        let mut cfg = config();
        cfg.topics.clear();
        let e = KafkaSource::new("k2", cfg).err().expect("neither");
        assert!(e.to_string().contains("topics"), "{e}");
        let mut cfg = config();
        cfg.topics.clear();
        cfg.topics_regex = Some("logs-(".into());
        let e = KafkaSource::new("k2", cfg).err().expect("bad regex");
        assert!(e.to_string().contains("topics_regex"), "{e}");
        let mut cfg = config();
        cfg.topics.clear();
        cfg.topics_regex = Some("logs-.*".into());
        let s = KafkaSource::new("k2", cfg).expect("regex");
        assert_eq!(s.subscription, ["^.*(logs-.*)"]);
    }
}
