//! File sources: Flume's `TAILDIR` -> `taildir`, `spooldir` -> `spooldir`.

use super::{Keys, Mapper, Out, duration_ms};
use crate::agent::flume::Diagnostic;
use crate::agent::flume::topology::Value;

/// Flume's default `positionFile`, under `$HOME`.
const FLUME_POSITION_FILE: &str = ".flume/taildir_position.json";

impl Mapper<'_> {
    /// Flume's TAILDIR source. A file group's path is a literal directory and a file-name
    /// regex that must match the whole name (Java's `PathMatcher("regex:...")`); it becomes
    /// `{ directory, regex = "^(?:...)$" }`.
    pub(super) fn taildir(
        &mut self,
        keys: &mut Keys<'_>,
        out: &mut Out,
        channels: &[String],
        ty: &Value,
    ) {
        let mut groups = Out::new(format!("{}.filegroups", out.path));
        match keys.get("filegroups") {
            Some(list) => {
                let names = self.list(list);
                let headers = keys.with_prefix("headers.");
                for name in names {
                    let Some(path) = keys.get(&format!("filegroups.{name}")) else {
                        self.error(list, format!("file group `{name}` has no path: set `filegroups.{name}` (Flume refuses the source without it)"));
                        continue;
                    };
                    let Some((dir, file)) = path.text.rsplit_once('/') else {
                        self.error(path, format!("`{}` is not an absolute path (Flume needs `/directory/file-regex`)", path.text));
                        continue;
                    };
                    if dir.is_empty() || !path.text.starts_with('/') {
                        self.error(path, format!("`{}` is not an absolute path (Flume needs `/directory/file-regex`)", path.text));
                        continue;
                    }
                    if file.is_empty() {
                        self.error(path, format!("`{}` ends with `/`: the part after the last `/` is the file-name regex", path.text));
                        continue;
                    }
                    self.java_regex(path);
                    let mut g = Out::new(format!("{}.{name}", groups.path));
                    g.put("directory", dir, path.line);
                    g.put("regex", format!("^(?:{file})$"), path.line);
                    let mut h = toml::Table::new();
                    let mut line = path.line;
                    for (rest, v) in &headers {
                        if let Some(key) = rest.strip_prefix(&format!("{name}.")) {
                            h.insert(key.to_string(), v.text.clone().into());
                            line = v.line;
                        }
                    }
                    if !h.is_empty() {
                        g.put("headers", toml::Value::Table(h), line);
                    }
                    groups.put_table(&name, g, path.line);
                }
                for (rest, v) in headers {
                    let group = rest.split('.').next().unwrap_or_default();
                    if !groups.table.contains_key(group) {
                        self.error(v, format!("`headers.{rest}` names file group `{group}`, which is not in `filegroups`"));
                    }
                }
                if !groups.table.is_empty() {
                    out.put_table("filegroups", groups, list.line);
                }
            }
            None => self.error(
                ty,
                "the source needs `filegroups` (Flume refuses it without them)".into(),
            ),
        }
        for (rest, v) in keys.with_prefix("filegroups.") {
            if !out
                .table
                .get("filegroups")
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key(rest))
            {
                self.warn(
                    v,
                    format!(
                        "file group `{rest}` is not listed in `filegroups`; ignored, as Flume does"
                    ),
                );
            }
        }
        match keys.get("positionFile") {
            Some(v) => out.put("position_file", v.text.clone(), v.line),
            None => match (self.opts.env)("HOME") {
                Some(home) => {
                    let file = format!("{}/{FLUME_POSITION_FILE}", home.trim_end_matches('/'));
                    self.warnings.push(Diagnostic::new(
                        &format!("{}.positionFile", ty.key.trim_end_matches(".type")),
                        Some(ty.line),
                        format!("not set: using Flume's default `{file}`"),
                    ));
                    out.put("position_file", file, ty.line);
                }
                None => self.error(ty, format!("the source sets no positionFile and HOME is not set for Flume's default ~/{FLUME_POSITION_FILE}")),
            },
        }
        self.source_batch(keys, out, channels, ty, 100);
        self.flag(keys, out, "skipToEnd", "skip_to_end");
        self.flag(keys, out, "fileHeader", "file_header");
        self.text(keys, out, "fileHeaderKey", "file_header_key");
        if let Some(v) = keys.get("byteOffsetHeader")
            && self.boolean(v) == Some(true)
        {
            self.error(v, "byteOffsetHeader is not supported: tidegate's taildir adds no byte-offset header (with `file_header` it adds the file's path)".into());
        }
        for (k, why) in [
            (
                "idleTimeout",
                "tidegate keeps every matching file open while it exists",
            ),
            (
                "writePosInterval",
                "tidegate writes the position file after every channel commit",
            ),
            (
                "maxBatchCount",
                "tidegate reads the files in turn, one batch each",
            ),
            (
                "backoffSleepIncrement",
                "tidegate polls at `poll_interval` (default 1 s) and is woken by file events",
            ),
            (
                "maxBackoffSleep",
                "tidegate polls at `poll_interval` (default 1 s) and is woken by file events",
            ),
            (
                "cachePatternMatching",
                "tidegate rescans the directories at every poll",
            ),
        ] {
            if let Some(v) = keys.get(k) {
                self.warn(v, format!("no effect: {why}"));
            }
        }
    }

    /// Flume's spooling directory source.
    pub(super) fn spooldir(
        &mut self,
        keys: &mut Keys<'_>,
        out: &mut Out,
        channels: &[String],
        ty: &Value,
    ) {
        match keys.get("spoolDir") {
            Some(v) => out.put("directory", v.text.clone(), v.line),
            None => self.error(
                ty,
                "the source needs `spoolDir` (Flume refuses it without one)".into(),
            ),
        }
        self.text(keys, out, "fileSuffix", "completed_suffix");
        if let Some(v) = keys.get("deletePolicy") {
            match v.text.to_ascii_lowercase().as_str() {
                p @ ("never" | "immediate") => out.put("delete_policy", p, v.line),
                _ => self.error(
                    v,
                    format!(
                        "`{}` is not a delete policy: `never` or `immediate`",
                        v.text
                    ),
                ),
            }
        }
        for (flume, ours) in [
            ("includePattern", "include_pattern"),
            ("ignorePattern", "ignore_pattern"),
        ] {
            if let Some(v) = keys.get(flume) {
                self.java_regex(v);
                out.put(ours, v.text.clone(), v.line);
            }
        }
        self.text(keys, out, "trackerDir", "tracker_dir");
        if let Some(v) = keys.get("trackingPolicy")
            && !v.text.eq_ignore_ascii_case("rename")
        {
            self.error(v, format!("trackingPolicy `{}` is not supported: tidegate marks a finished file by renaming it (`fileSuffix`) or deleting it (`deletePolicy = immediate`)", v.text));
        }
        if let Some(v) = keys.get("consumeOrder") {
            match v.text.to_ascii_lowercase().as_str() {
                o @ ("oldest" | "youngest" | "random") => out.put("consume_order", o, v.line),
                _ => self.error(
                    v,
                    format!(
                        "`{}` is not a consume order: `oldest`, `youngest` or `random`",
                        v.text
                    ),
                ),
            }
        }
        self.flag(keys, out, "recursiveDirectorySearch", "recursive");
        if let Some(v) = keys.get("pollDelay")
            && let Some(ms) = self.positive(v)
        {
            out.put("poll_delay", duration_ms(ms), v.line);
        }
        self.flag(keys, out, "fileHeader", "file_header");
        self.text(keys, out, "fileHeaderKey", "file_header_key");
        self.flag(keys, out, "basenameHeader", "basename_header");
        self.text(keys, out, "basenameHeaderKey", "basename_header_key");
        self.source_batch(keys, out, channels, ty, 100);
        self.utf8_only(keys, "inputCharset");
        if let Some(v) = keys.get("decodeErrorPolicy")
            && !v.text.eq_ignore_ascii_case("fail")
        {
            self.warn(v, format!("decodeErrorPolicy `{}` has no effect: tidegate keeps each line's bytes as they are (no decoding)", v.text));
        }
        let deserializer = keys.get("deserializer");
        let blob = match deserializer.map(|v| v.text.to_ascii_lowercase()) {
            None => false,
            Some(d)
                if d == "line"
                    || d == "org.apache.flume.serialization.linedeserializer$builder" =>
            {
                false
            }
            Some(d) if d.ends_with("blobdeserializer$builder") => true,
            Some(_) => {
                if let Some(v) = deserializer {
                    self.error(v, format!("deserializer `{}` is not supported: tidegate reads `LINE` (one event per line) or the BlobDeserializer (one event per file, `deserializer = \"whole_file\"`)", v.text));
                }
                false
            }
        };
        if let Some(v) = deserializer
            && blob
        {
            out.put("deserializer", "whole_file", v.line);
        }
        let (limit_key, other_key) = if blob {
            ("deserializer.maxBlobLength", "deserializer.maxLineLength")
        } else {
            ("deserializer.maxLineLength", "deserializer.maxBlobLength")
        };
        match keys.get(limit_key) {
            Some(v) => {
                if let Some(n) = self.positive(v) {
                    out.put("max_line_length", n, v.line);
                }
            }
            // Flume's BlobDeserializer default; LINE's 2048 is tidegate's default too.
            None if blob => out.put("max_line_length", 100_000_000, ty.line),
            None => {}
        }
        if let Some(v) = keys.get(other_key) {
            self.warn(v, "no effect with this deserializer".into());
        }
        self.utf8_only(keys, "deserializer.outputCharset");
        for k in ["maxBackoff", "bufferMaxLines", "bufferMaxLineLength"] {
            if let Some(v) = keys.get(k) {
                self.warn(v, "no effect in tidegate".into());
            }
        }
    }
}
