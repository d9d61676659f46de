//! Flume's Kafka source and sink -> tidegate's `kafka` source and sink (librdkafka).
//!
//! Both the 1.7+ keys (`kafka.bootstrap.servers`, `kafka.topic`, `kafka.producer.*`,
//! `kafka.consumer.*`) and the older ones (`brokerList`, `topic`, `requiredAcks`, `batchSize`,
//! `groupId`) are read. `kafka.producer.*` / `kafka.consumer.*` properties are handed to
//! librdkafka, which names most of them as the Java client does; the few Java-only ones are
//! translated or refused here, naming the key.

use super::{Keys, Mapper, Out, duration_ms, strings};
use crate::agent::flume::topology::Value;

/// Flume's Kafka sink topic when none is set.
const FLUME_DEFAULT_TOPIC: &str = "default-flume-topic";
/// Flume's Kafka source consumer group when none is set.
const FLUME_DEFAULT_GROUP: &str = "flume";

impl Mapper<'_> {
    /// Flume's KafkaSink.
    pub(super) fn kafka_sink(
        &mut self,
        keys: &mut Keys<'_>,
        out: &mut Out,
        channel: &str,
        ty: &Value,
    ) {
        self.bootstrap(keys, out, "brokerList", ty);
        match keys.get("kafka.topic").or_else(|| keys.get("topic")) {
            Some(v) => out.put("topic", v.text.clone(), v.line),
            None => {
                self.warn(
                    ty,
                    format!(
                        "no `kafka.topic`: using Flume's default topic `{FLUME_DEFAULT_TOPIC}`"
                    ),
                );
                out.put("topic", FLUME_DEFAULT_TOPIC, ty.line);
            }
        }
        let key = if keys.get("flumeBatchSize").is_some() {
            "flumeBatchSize"
        } else {
            "batchSize"
        };
        self.batch(keys, key, channel, out, ty);
        let allow = keys.get("allowTopicOverride");
        let over = allow.map_or(Some(true), |v| self.boolean(v));
        let header = keys.get("topicHeader");
        if over == Some(true) {
            let (name, line) =
                header.map_or(("topic".to_string(), ty.line), |v| (v.text.clone(), v.line));
            out.put("topic_header", name, line);
        } else if let Some(v) = header {
            self.warn(v, "no effect: allowTopicOverride is false".into());
        }
        self.flume_event_format(keys);
        for k in ["partitionIdHeader", "defaultPartitionId"] {
            if let Some(v) = keys.get(k) {
                self.error(v, format!("{k} is not supported: tidegate's kafka sink lets librdkafka choose the partition from the key (`key_header`, Flume's `key` header)"));
            }
        }
        if let Some(v) = keys.get("timestampHeader") {
            self.error(
                v,
                "timestampHeader is not supported: records get the time they are produced".into(),
            );
        }
        if let Some(v) = keys
            .get("kafka.producer.acks")
            .or_else(|| keys.get("requiredAcks"))
            && v.text != "all"
            && v.text != "-1"
        {
            self.warn(v, format!("acks `{}` is raised to `all`: tidegate's kafka sink always waits for every in-sync replica, with idempotence on, before it commits its take", v.text));
        }
        if let Some(v) = keys.get("kafka.producer.compression.type") {
            match v.text.to_ascii_lowercase().as_str() {
                c @ ("none" | "gzip" | "snappy" | "lz4" | "zstd") => {
                    out.put("compression", c, v.line)
                }
                _ => self.error(
                    v,
                    format!(
                        "`{}` is not a compression type: none, gzip, snappy, lz4 or zstd",
                        v.text
                    ),
                ),
            }
        }
        if let Some(v) = keys.get("kafka.producer.enable.idempotence")
            && self.boolean(v) == Some(false)
        {
            self.error(v, "tidegate's kafka sink always enables idempotence (no duplicates from its own retries); remove the key".into());
        }
        let props = keys.with_prefix("kafka.producer.");
        let (table, line) = self.kafka_properties(props, true, ty);
        if !table.is_empty() {
            out.put("properties", toml::Value::Table(table), line);
        }
    }

    /// Flume's KafkaSource.
    pub(super) fn kafka_source(
        &mut self,
        keys: &mut Keys<'_>,
        out: &mut Out,
        channels: &[String],
        ty: &Value,
    ) {
        if let Some(v) = keys.get("zookeeperConnect") {
            self.error(v, "tidegate's kafka source connects to the brokers, not to ZooKeeper: set `kafka.bootstrap.servers`".into());
        }
        self.bootstrap(keys, out, "", ty);
        let topics = keys.get("kafka.topics").or_else(|| keys.get("topic"));
        let regex = keys.get("kafka.topics.regex");
        match (topics, regex) {
            (_, Some(r)) => {
                self.java_regex(r);
                out.put("topics_regex", r.text.clone(), r.line);
                if let Some(t) = topics {
                    self.warn(t, "no effect: kafka.topics.regex is set, and Flume uses it instead".into());
                }
            }
            (Some(t), None) => {
                let names: Vec<String> = t.text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                if names.is_empty() {
                    self.error(t, "no topic named".into());
                }
                out.put("topics", strings(&names), t.line);
            }
            (None, None) => self.error(ty, "the source needs `kafka.topics` or `kafka.topics.regex` (Flume refuses it without)".into()),
        }
        match keys
            .get("kafka.consumer.group.id")
            .or_else(|| keys.get("groupId"))
        {
            Some(v) => out.put("group_id", v.text.clone(), v.line),
            // Written so that the group (and its committed offsets) stays Flume's.
            None => out.put("group_id", FLUME_DEFAULT_GROUP, ty.line),
        }
        self.source_batch(keys, out, channels, ty, 1000);
        if let Some(v) = keys.get("batchDurationMillis")
            && let Some(ms) = self.positive(v)
        {
            out.put("batch_duration", duration_ms(ms), v.line);
        }
        self.flag(keys, out, "setTopicHeader", "set_topic_header");
        self.text(keys, out, "topicHeader", "topic_header");
        self.flume_event_format(keys);
        for k in [
            "backoffSleepIncrement",
            "maxBackoffSleep",
            "migrateZookeeperOffsets",
        ] {
            if let Some(v) = keys.get(k) {
                self.warn(v, "no effect in tidegate".into());
            }
        }
        if let Some(v) = keys.get("kafka.consumer.enable.auto.commit")
            && self.boolean(v) == Some(true)
        {
            self.error(v, "tidegate's kafka source commits offsets only after the channel commit; automatic offset commits could lose records, remove the key".into());
        }
        let props = keys.with_prefix("kafka.consumer.");
        let (mut table, line) = self.kafka_properties(props, false, ty);
        if !table.contains_key("auto.offset.reset") {
            // The Kafka consumer's default, which Flume keeps: a new group starts at the end.
            table.insert("auto.offset.reset".into(), "latest".into());
            self.warn(ty, "auto.offset.reset = latest written (Flume's Kafka default): a new consumer group starts at the end of its topics; tidegate's own default is earliest".into());
        }
        out.put("properties", toml::Value::Table(table), line);
    }

    fn bootstrap(&mut self, keys: &mut Keys<'_>, out: &mut Out, legacy: &str, ty: &Value) {
        let v = keys.get("kafka.bootstrap.servers").or_else(|| {
            if legacy.is_empty() {
                None
            } else {
                keys.get(legacy)
            }
        });
        match v {
            Some(v) => out.put("bootstrap_servers", v.text.clone(), v.line),
            None => self.error(
                ty,
                "the component needs `kafka.bootstrap.servers` (Flume refuses it without)".into(),
            ),
        }
    }

    fn flume_event_format(&mut self, keys: &mut Keys<'_>) {
        if let Some(v) = keys.get("useFlumeEventFormat")
            && self.boolean(v) == Some(true)
        {
            self.error(v, "useFlumeEventFormat (Avro-wrapped events) is not supported: tidegate carries event headers as Kafka record headers".into());
        }
    }

    /// `kafka.producer.*` / `kafka.consumer.*` -> the `properties` table and the line of its
    /// last key, skipping the keys mapped elsewhere and translating or refusing the Java
    /// client's own.
    fn kafka_properties(
        &mut self,
        props: Vec<(&str, &Value)>,
        producer: bool,
        ty: &Value,
    ) -> (toml::Table, usize) {
        let mut table = toml::Table::new();
        let mut line = ty.line;
        for (k, v) in props {
            let handled: &[&str] = if producer {
                &["acks", "compression.type", "enable.idempotence"]
            } else {
                &["group.id", "enable.auto.commit"]
            };
            if handled.contains(&k) {
                continue;
            }
            let name = match k {
                "key.serializer" | "value.serializer" | "key.deserializer"
                | "value.deserializer" => {
                    self.warn(v, "no effect: tidegate sends and reads bytes".into());
                    continue;
                }
                "max.request.size" => "message.max.bytes",
                "buffer.memory" => {
                    self.warn(v, "no effect: librdkafka bounds its queue with `queue.buffering.max.kbytes` (set it under `properties` if needed)".into());
                    continue;
                }
                k if k.starts_with("ssl.keystore.") || k.starts_with("ssl.truststore.") => {
                    self.error(v, "Java keystores cannot be read: librdkafka takes PEM files (`ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location` under `properties`)".into());
                    continue;
                }
                "sasl.jaas.config" => {
                    self.error(v, "JAAS configuration is Java's: librdkafka takes `sasl.username` and `sasl.password` (under `properties`)".into());
                    continue;
                }
                k => k,
            };
            table.insert(name.to_string(), v.text.clone().into());
            line = v.line;
        }
        (table, line)
    }
}
