//! Sinks (logger, null, file_roll, http; kafka in its own module) and the batch-size check against the channel.

use std::collections::BTreeMap;

use super::{FLUME_SINK_BATCH, Keys, Mapper, Out, duration_ms, type_prefix};
use crate::agent::flume::Diagnostic;
use crate::agent::flume::catalog::Kind;
use crate::agent::flume::topology::{Agent, Component, Value};

impl Mapper<'_> {
    /// Flume's file_roll names files `<start ms>-<n>`, so two sinks could share a directory;
    /// tidegate's sinks need a directory or a `file_prefix` of their own: sinks that share a
    /// directory without a prefix get their name as the prefix (a warning says so).
    pub(super) fn separate_file_roll_sinks(&mut self, agent: &Agent, sinks: &mut toml::Table) {
        let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, t) in sinks.iter() {
            if t.get("type").and_then(toml::Value::as_str) == Some("file_roll")
                && t.get("file_prefix").is_none()
                && let Some(dir) = t.get("directory").and_then(toml::Value::as_str)
            {
                by_dir
                    .entry(dir.trim_end_matches('/').to_string())
                    .or_default()
                    .push(name.clone());
            }
        }
        for (dir, names) in by_dir.into_iter().filter(|(_, n)| n.len() > 1) {
            for name in names {
                if let Some(toml::Value::Table(t)) = sinks.get_mut(&name) {
                    t.insert("file_prefix".into(), name.clone().into());
                }
                let c = agent.sinks.iter().find(|c| c.name == name);
                let line = c.map_or(0, Component::line);
                self.lines.insert(format!("sinks.{name}.file_prefix"), line);
                self.warnings.push(Diagnostic::new(
                    &c.map_or_else(|| name.clone(), type_prefix),
                    Some(line),
                    format!("file_roll sinks share directory `{dir}`: files of `{name}` are named `{name}-...` to keep them apart"),
                ));
            }
        }
    }

    pub(super) fn check_batch(&mut self, batch: i64, channel: &str, at: &Value, what: &str) {
        if let Some(&tc) = self.transaction_capacity.get(channel)
            && batch > tc
        {
            self.error(
                at,
                format!(
                    "{what} {batch} is above the transactionCapacity {tc} of channel `{channel}`; \
                     Flume refuses this (FLUME-3107), and so does tidegate"
                ),
            );
        }
    }

    pub(super) fn sink(&mut self, c: &Component, out: &mut Out) -> bool {
        let mut keys = Keys::new(c);
        let Some(ty) = keys.get("type") else {
            return false;
        };
        let supported = self.support(Kind::Sink, &c.name, ty);
        let channel = keys.get("channel");
        let ch = channel.map_or(String::new(), |v| v.text.clone());
        if let Some(t) = supported {
            out.put("type", t, ty.line);
            if let Some(v) = channel {
                out.put("channel", v.text.clone(), v.line);
            }
        }
        let tc = self
            .transaction_capacity
            .get(&ch)
            .copied()
            .unwrap_or(FLUME_SINK_BATCH);
        match supported {
            Some("logger") => {
                out.put("batch_size", FLUME_SINK_BATCH.min(tc), ty.line);
                if let Some(v) = keys.get("maxBytesToLog")
                    && let Some(n) = self.non_negative(v)
                {
                    out.put("max_body_length", n, v.line);
                }
            }
            Some("null") => self.batch(&mut keys, "batchSize", &ch, out, ty),
            Some("file_roll") => self.file_roll(&mut keys, &ch, out, ty),
            Some("kafka") => self.kafka_sink(&mut keys, out, &ch, ty),
            Some(_) => {
                out.put("batch_size", FLUME_SINK_BATCH.min(tc), ty.line);
                self.http_sink(&mut keys, out, ty);
            }
            None => keys.use_all(),
        }
        self.leftovers(&keys, &format!("Flume's `{}` sink", ty.text));
        supported.is_some()
    }

    pub(super) fn batch(
        &mut self,
        keys: &mut Keys<'_>,
        key: &str,
        channel: &str,
        out: &mut Out,
        ty: &Value,
    ) {
        let (batch, at) = match keys.get(key) {
            Some(v) => (self.positive(v), v),
            None => (Some(FLUME_SINK_BATCH), ty),
        };
        if let Some(b) = batch {
            out.put("batch_size", b, at.line);
            self.check_batch(
                b,
                channel,
                at,
                if std::ptr::eq(at, ty) {
                    "the default batch size"
                } else {
                    key
                },
            );
        }
    }

    fn file_roll(&mut self, keys: &mut Keys<'_>, channel: &str, out: &mut Out, ty: &Value) {
        match keys.get("sink.directory") {
            Some(v) => out.put("directory", v.text.clone(), v.line),
            None => self.error(
                ty,
                "file_roll needs `sink.directory` (Flume refuses the sink without it)".into(),
            ),
        }
        let (secs, line) = match keys.get("sink.rollInterval") {
            Some(v) => (self.non_negative(v), v.line),
            None => (Some(30), ty.line),
        };
        if let Some(s) = secs {
            out.put("roll_interval", format!("{s}s"), line);
        }
        // Flume's file_roll never rolls by size.
        out.put("roll_size", 0, ty.line);
        let serializer = keys.get("sink.serializer");
        match serializer.map(|v| v.text.to_ascii_lowercase()) {
            None => out.put("serializer", "text", ty.line),
            Some(s)
                if s == "text"
                    || s == "org.apache.flume.serialization.bodytexteventserializer$builder" =>
            {
                out.put("serializer", "text", serializer.map_or(ty.line, |v| v.line));
            }
            Some(_) => {
                if let Some(v) = serializer {
                    self.error(v, format!("serializer `{}` is not supported: tidegate writes `text` (the body and a newline, Flume's TEXT) or `json` (one object with headers and body per line); choose one of them", v.text));
                }
            }
        }
        if let Some(v) = keys.get("sink.serializer.appendNewline")
            && self.boolean(v) == Some(false)
        {
            self.error(v, "appendNewline = false is not supported: the text serializer ends every event with a newline".into());
        }
        if let Some(v) = keys.get("sink.pathManager")
            && !v.text.eq_ignore_ascii_case("default")
        {
            self.error(
                v,
                format!(
                    "path manager `{}` is not supported: tidegate names files <prefix>-<time>-<n>",
                    v.text
                ),
            );
        }
        if let Some(v) = keys.get("sink.pathManager.prefix") {
            out.put("file_prefix", v.text.clone(), v.line);
        }
        if let Some(v) = keys.get("sink.pathManager.extension") {
            self.warn(
                v,
                "file names have no configurable extension in tidegate; ignored".into(),
            );
        }
        self.batch(keys, "sink.batchSize", channel, out, ty);
    }

    fn http_sink(&mut self, keys: &mut Keys<'_>, out: &mut Out, ty: &Value) {
        match keys.get("endpoint") {
            Some(v) => out.put("url", v.text.clone(), v.line),
            None => self.error(
                ty,
                "the http sink needs an `endpoint` (Flume refuses it without one)".into(),
            ),
        }
        out.put("format", "json", ty.line);
        self.warn(
            ty,
            "Flume's http sink POSTs each event body on its own; tidegate POSTs batches as Flume's JSON \
             (`[{\"headers\": ..., \"body\": ...}]`), which a Flume or tidegate http source accepts: check the receiver"
                .into(),
        );
        let connect = keys.get("connectTimeout");
        let request = keys.get("requestTimeout");
        let c = connect.map_or(Some(5000), |v| self.positive(v));
        let r = request.map_or(Some(5000), |v| self.positive(v));
        if let (Some(c), Some(r)) = (c, r) {
            out.put(
                "timeout",
                duration_ms(c + r),
                request.or(connect).map_or(ty.line, |v| v.line),
            );
        }
        for k in ["contentTypeHeader", "acceptHeader"] {
            if let Some(v) = keys.get(k) {
                self.warn(
                    v,
                    "ignored: the content type follows the format (application/json)".into(),
                );
            }
        }
        let mut flags: Vec<&Value> = ["defaultBackoff", "defaultRollback"]
            .into_iter()
            .filter_map(|k| keys.get(k))
            .collect();
        flags.extend(keys.with_prefix("backoff.").into_iter().map(|(_, v)| v));
        flags.extend(keys.with_prefix("rollback.").into_iter().map(|(_, v)| v));
        for v in flags {
            if self.boolean(v) == Some(false) {
                self.error(v, "tidegate always rolls back and backs off on a non-2xx response, so nothing is dropped; a code that commits without delivery cannot be imported".into());
            }
        }
        let mut metrics: Vec<&Value> = keys.get("defaultIncrementMetrics").into_iter().collect();
        metrics.extend(
            keys.with_prefix("incrementMetrics.")
                .into_iter()
                .map(|(_, v)| v),
        );
        for v in metrics {
            self.warn(v, "ignored: tidegate counts every failure".into());
        }
    }
}
