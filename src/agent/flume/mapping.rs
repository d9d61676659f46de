//! Flume components -> tidegate tables: keys, units and defaults.
//!
//! Each component's keys go through `Keys`, which remembers which keys the mapping read; a
//! key nobody read is an error (Flume ignored it silently: `rollInterval` without the `sink.`
//! prefix of file_roll, a misspelt `maxPenalty`), with a hint when a known key is close.
//! docs/flume-migration.md has the full table.

use std::collections::{BTreeMap, BTreeSet};

use super::catalog::{self, Kind, Support};
use super::topology::{Agent, Component, Value};
use super::{Diagnostic, ImportOptions};

/// Flume's cap on `maxFileSize` (offsets are 32-bit there).
pub const FLUME_MAX_FILE_SIZE: i64 = 1_623_195_647;
/// Flume's floor for `minimumRequiredSpace`.
pub const FLUME_MIN_REQUIRED_SPACE: i64 = 1 << 20;
/// Flume's default batch of the sinks that batch (null, file_roll).
pub const FLUME_SINK_BATCH: i64 = 100;

/// A component's keys, with a record of which ones the mapping read.
struct Keys<'c> {
    comp: &'c Component,
    used: BTreeSet<String>,
    tried: BTreeSet<String>,
}

impl<'c> Keys<'c> {
    fn new(comp: &'c Component) -> Self {
        Keys {
            comp,
            used: BTreeSet::new(),
            tried: BTreeSet::new(),
        }
    }
    fn get(&mut self, key: &str) -> Option<&'c Value> {
        self.tried.insert(key.to_string());
        let v = self.comp.keys.get(key)?;
        self.used.insert(key.to_string());
        Some(v)
    }
    /// Every key starting with `prefix`, as (rest, value).
    fn with_prefix(&mut self, prefix: &str) -> Vec<(&'c str, &'c Value)> {
        self.tried.insert(format!("{prefix}*"));
        let out: Vec<_> = self
            .comp
            .keys
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|rest| (rest, v)))
            .collect();
        for (rest, _) in &out {
            self.used.insert(format!("{prefix}{rest}"));
        }
        out
    }
    fn use_all(&mut self) {
        self.used.extend(self.comp.keys.keys().cloned());
    }
    fn unused(&self) -> Vec<(&'c str, &'c Value)> {
        self.comp
            .keys
            .iter()
            .filter(|(k, _)| !self.used.contains(*k))
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }
    /// A known key close to `key`, for the error message.
    fn hint(&self, key: &str) -> Option<String> {
        let lower = key.to_ascii_lowercase();
        self.tried
            .iter()
            .find(|t| {
                let tl = t.to_ascii_lowercase();
                tl == lower || tl.ends_with(&format!(".{lower}"))
            })
            .cloned()
    }
}

/// A table under construction, with the line of each key.
struct Out {
    path: String,
    table: toml::Table,
    lines: Vec<(String, usize)>,
}

impl Out {
    fn new(path: String) -> Self {
        Out {
            path,
            table: toml::Table::new(),
            lines: Vec::new(),
        }
    }
    fn put(&mut self, key: &str, value: impl Into<toml::Value>, line: usize) {
        self.table.insert(key.to_string(), value.into());
        self.lines.push((format!("{}.{key}", self.path), line));
    }
    fn put_table(&mut self, key: &str, sub: Out, line: usize) {
        self.lines.push((format!("{}.{key}", self.path), line));
        self.lines.extend(sub.lines);
        self.table
            .insert(key.to_string(), toml::Value::Table(sub.table));
    }
}

fn strings(items: &[String]) -> toml::Value {
    toml::Value::Array(
        items
            .iter()
            .map(|s| toml::Value::String(s.clone()))
            .collect(),
    )
}

/// A duration in milliseconds, written as the schema writes durations.
pub fn duration_ms(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Maps one component into its table; false when it produced none.
type MapFn<'a> = fn(&mut Mapper<'a>, &Component, &mut Out) -> bool;

/// Turns the active components of an agent into tidegate tables.
pub struct Mapper<'a> {
    opts: &'a ImportOptions,
    errors: &'a mut Vec<Diagnostic>,
    warnings: &'a mut Vec<Diagnostic>,
    lines: BTreeMap<String, usize>,
    unsupported: Vec<String>,
    transaction_capacity: BTreeMap<String, i64>,
    file_dirs: BTreeMap<String, String>,
}

impl<'a> Mapper<'a> {
    /// A mapper reporting into `errors` and `warnings`.
    pub fn new(
        opts: &'a ImportOptions,
        errors: &'a mut Vec<Diagnostic>,
        warnings: &'a mut Vec<Diagnostic>,
    ) -> Self {
        Mapper {
            opts,
            errors,
            warnings,
            lines: BTreeMap::new(),
            unsupported: Vec::new(),
            transaction_capacity: BTreeMap::new(),
            file_dirs: BTreeMap::new(),
        }
    }

    fn error(&mut self, v: &Value, message: String) {
        self.errors
            .push(Diagnostic::new(&v.key, Some(v.line), message));
    }
    fn warn(&mut self, v: &Value, message: String) {
        self.warnings
            .push(Diagnostic::new(&v.key, Some(v.line), message));
    }

    /// The whole agent: `[agent]`, `[channels.*]`, `[sources.*]`, `[sinks.*]`, `[sink_groups.*]`.
    pub fn agent(&mut self, agent: &Agent) -> (toml::Table, BTreeMap<String, usize>) {
        let mut root = toml::Table::new();
        let mut head = toml::Table::new();
        head.insert("name".into(), agent.name.clone().into());
        root.insert("agent".into(), head.into());
        self.lines.insert("agent.name".into(), agent.line);

        let sections: [(&str, &[Component], MapFn<'a>); 4] = [
            ("channels", &agent.channels, Self::channel),
            ("sources", &agent.sources, Self::source),
            ("sinks", &agent.sinks, Self::sink),
            ("sink_groups", &agent.groups, Self::group),
        ];
        for (section, comps, map) in sections {
            let mut tables = toml::Table::new();
            for c in comps {
                let mut out = Out::new(format!("{section}.{}", c.name));
                if map(self, c, &mut out) {
                    self.lines.insert(out.path.clone(), c.line());
                    self.lines.extend(out.lines);
                    tables.insert(c.name.clone(), out.table.into());
                }
            }
            if !tables.is_empty() {
                root.insert(section.into(), tables.into());
            }
        }
        if let Some(toml::Value::Table(sinks)) = root.get_mut("sinks") {
            self.separate_file_roll_sinks(agent, sinks);
        }
        if !self.unsupported.is_empty() {
            self.errors.insert(
                0,
                Diagnostic::new(
                    &agent.name,
                    None,
                    format!(
                        "{} unsupported component(s), all listed here: {}",
                        self.unsupported.len(),
                        self.unsupported.join("; ")
                    ),
                ),
            );
        }
        (root, std::mem::take(&mut self.lines))
    }

    /// Flume's file_roll names files `<start ms>-<n>`, so two sinks could share a directory;
    /// tidegate's sinks need a directory or a `file_prefix` of their own: sinks that share a
    /// directory without a prefix get their name as the prefix (a warning says so).
    fn separate_file_roll_sinks(&mut self, agent: &Agent, sinks: &mut toml::Table) {
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

    /// Checks the type of a component; on anything but `Yes`, reports it and returns None.
    fn support(&mut self, kind: Kind, name: &str, ty: &Value) -> Option<&'static str> {
        match catalog::lookup(kind, &ty.text) {
            Support::Yes(t) => return Some(t),
            Support::Later => {
                self.error(
                    ty,
                    format!(
                        "{} type `{}` is not supported yet: tidegate gains tail-file, spool-directory, syslog, \
                         exec and Kafka adapters in a later release (issue 6)",
                        kind.noun(),
                        ty.text
                    ),
                );
            }
            Support::No(why) => {
                self.error(
                    ty,
                    format!("{} type `{}` is not supported: {why}", kind.noun(), ty.text),
                );
            }
        }
        self.unsupported.push(format!(
            "{} `{}` of type `{}` (line {})",
            kind.noun(),
            name,
            ty.text,
            ty.line
        ));
        None
    }

    /// Reports every key the mapping did not read.
    fn leftovers(&mut self, keys: &Keys<'_>, what: &str) {
        for (k, v) in keys.unused() {
            let hint = keys
                .hint(k)
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
            self.error(
                v,
                format!("`{k}` is not a key of {what} (Flume ignored it){hint}"),
            );
        }
    }

    // ---- value parsers: each reports a bad value and returns None --------------------------

    fn int(&mut self, v: &Value) -> Option<i64> {
        match v.text.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(v, format!("`{}` is not a whole number", v.text));
                None
            }
        }
    }
    fn non_negative(&mut self, v: &Value) -> Option<i64> {
        let n = self.int(v)?;
        if n < 0 {
            self.error(v, format!("{n} is negative"));
            return None;
        }
        Some(n)
    }
    fn positive(&mut self, v: &Value) -> Option<i64> {
        let n = self.int(v)?;
        if n <= 0 {
            self.error(v, format!("{n} must be at least 1"));
            return None;
        }
        Some(n)
    }
    fn boolean(&mut self, v: &Value) -> Option<bool> {
        if v.text.eq_ignore_ascii_case("true") {
            Some(true)
        } else if v.text.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            self.error(
                v,
                format!(
                    "`{}` is not `true` or `false` (Flume would have read it as false)",
                    v.text
                ),
            );
            None
        }
    }
    fn list(&mut self, v: &Value) -> Vec<String> {
        super::topology::split_list(v, self.errors, self.warnings)
    }

    // ---- channels ----------------------------------------------------------------------------

    fn channel(&mut self, c: &Component, out: &mut Out) -> bool {
        let mut keys = Keys::new(c);
        let Some(ty) = keys.get("type") else {
            return false;
        };
        let ok = match self.support(Kind::Channel, &c.name, ty) {
            Some("file") => {
                out.put("type", "file", ty.line);
                self.file_channel(c, &mut keys, out);
                true
            }
            Some(_) => {
                out.put("type", "memory", ty.line);
                self.memory_channel(c, &mut keys, out);
                true
            }
            None => {
                keys.use_all();
                false
            }
        };
        self.leftovers(&keys, &format!("Flume's `{}` channel", ty.text));
        ok
    }

    fn capacities(
        &mut self,
        c: &Component,
        keys: &mut Keys<'_>,
        out: &mut Out,
        defaults: (i64, i64),
        emit_defaults: bool,
    ) {
        let line = c.line();
        let cap = match keys.get("capacity") {
            Some(v) => self.positive(v).map(|n| (n, v.line)),
            None => Some((defaults.0, line)),
        };
        let tc = match keys.get("transactionCapacity") {
            Some(v) => self.positive(v).map(|n| (n, v.line)),
            None => Some((defaults.1, line)),
        };
        if let Some((n, l)) = cap
            && (emit_defaults || keys.comp.keys.contains_key("capacity"))
        {
            out.put("capacity", n, l);
        }
        if let Some((n, l)) = tc {
            if emit_defaults || keys.comp.keys.contains_key("transactionCapacity") {
                out.put("transaction_capacity", n, l);
            }
            self.transaction_capacity.insert(c.name.clone(), n);
            if let Some((cap, cap_line)) = cap
                && n > cap
            {
                let at = keys
                    .comp
                    .keys
                    .get("transactionCapacity")
                    .or_else(|| keys.comp.keys.get("capacity"))
                    .map_or(cap_line, |v| v.line);
                self.errors.push(Diagnostic::new(
                    &format!("{}.transactionCapacity", type_prefix(c)),
                    Some(at),
                    format!("transactionCapacity {n} is above the channel's capacity {cap} (Flume refuses this channel)"),
                ));
            }
        }
        if let Some(v) = keys.get("keep-alive")
            && let Some(s) = self.non_negative(v)
        {
            out.put("keep_alive", format!("{s}s"), v.line);
        }
    }

    fn memory_channel(&mut self, c: &Component, keys: &mut Keys<'_>, out: &mut Out) {
        // Flume's memory channel defaults (100, 100) are far below tidegate's: write them out.
        self.capacities(c, keys, out, (100, 100), true);
        if let Some(v) = keys.get("byteCapacity")
            && let Some(n) = self.positive(v)
        {
            out.put("capacity_bytes", n, v.line);
        }
        if let Some(v) = keys.get("byteCapacityBufferPercentage")
            && let Some(n) = self.non_negative(v)
            && n > 100
        {
            self.error(v, format!("{n} is not a percentage"));
        }
    }

    fn default_dir(&mut self, c: &Component, what: &str, flume_key: &str) -> Option<String> {
        match (self.opts.env)("HOME") {
            Some(home) => {
                let dir = format!("{}/.flume/file-channel/{what}", home.trim_end_matches('/'));
                self.warnings.push(Diagnostic::new(
                    &format!("{}.{flume_key}", type_prefix(c)),
                    Some(c.line()),
                    format!("not set: using Flume's default `{dir}`"),
                ));
                Some(dir)
            }
            None => {
                self.errors.push(Diagnostic::new(
                    &format!("{}.{flume_key}", type_prefix(c)),
                    Some(c.line()),
                    format!("file channel `{}` sets no {flume_key} and HOME is not set for Flume's default ~/.flume/file-channel/{what}", c.name),
                ));
                None
            }
        }
    }

    fn claim_dir(&mut self, dir: &str, c: &Component, line: usize) {
        let norm = dir.trim_end_matches('/').to_string();
        if let Some(other) = self.file_dirs.insert(norm.clone(), c.name.clone())
            && other != c.name
        {
            self.errors.push(Diagnostic::new(
                &type_prefix(c),
                Some(line),
                format!("directory `{norm}` is also used by file channel `{other}`; each file channel needs its own directories (Flume would fail to lock it)"),
            ));
        }
    }

    fn file_channel(&mut self, c: &Component, keys: &mut Keys<'_>, out: &mut Out) {
        let line = c.line();
        let checkpoint = match keys.get("checkpointDir") {
            Some(v) => Some((v.text.clone(), v.line)),
            None => self
                .default_dir(c, "checkpoint", "checkpointDir")
                .map(|d| (d, line)),
        };
        if let Some((dir, l)) = checkpoint {
            self.claim_dir(&dir, c, l);
            out.put("checkpoint_dir", dir, l);
        }
        let data = match keys.get("dataDirs") {
            Some(v) => {
                let dirs: Vec<String> = v
                    .text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if dirs.is_empty() {
                    self.error(v, "names no directory".into());
                }
                Some((dirs, v.line))
            }
            None => self
                .default_dir(c, "data", "dataDirs")
                .map(|d| (vec![d], line)),
        };
        if let Some((dirs, l)) = data {
            for d in &dirs {
                self.claim_dir(d, c, l);
            }
            out.put("data_dirs", strings(&dirs), l);
        }
        self.capacities(c, keys, out, (1_000_000, 10_000), false);
        if let Some(v) = keys.get("checkpointInterval")
            && let Some(ms) = self.int(v)
        {
            let ms = if ms <= 0 {
                self.warn(v, format!("{ms} ms is invalid; Flume uses its default 30000 ms instead, and so does this import"));
                30_000
            } else if ms < 1000 {
                self.warn(
                    v,
                    format!(
                        "{ms} ms is below Flume's and tidegate's floor of 1000 ms; using 1000 ms"
                    ),
                );
                1000
            } else {
                ms
            };
            out.put("checkpoint_interval", duration_ms(ms), v.line);
        }
        if let Some(v) = keys.get("maxFileSize")
            && let Some(n) = self.positive(v)
        {
            let n = if n > FLUME_MAX_FILE_SIZE {
                self.warn(v, format!("{n} is above Flume's cap of {FLUME_MAX_FILE_SIZE} bytes, which Flume applied silently; using the cap"));
                FLUME_MAX_FILE_SIZE
            } else {
                n
            };
            out.put("max_segment_size", n, v.line);
            // A segment must hold the largest event; Flume had no event size bound of its own.
            let overhead =
                (crate::format::segment_header::LEN + crate::format::record::HEADER_LEN) as i64;
            let default_event = crate::config::DEFAULT_MAX_EVENT_SIZE as i64;
            if n - overhead < default_event && n > overhead {
                out.put("max_event_size", n - overhead, v.line);
                self.warn(
                    v,
                    format!(
                        "segments of {n} bytes hold events of at most {} bytes (max_event_size lowered from its default of {default_event})",
                        n - overhead
                    ),
                );
            }
        }
        if let Some(v) = keys.get("minimumRequiredSpace")
            && let Some(n) = self.positive(v)
        {
            let n = if n < FLUME_MIN_REQUIRED_SPACE {
                self.warn(v, format!("{n} is below Flume's floor of 1 MiB, which Flume applied silently; using 1048576"));
                FLUME_MIN_REQUIRED_SPACE
            } else {
                n
            };
            out.put("minimum_required_space", n, v.line);
        }
        if let Some(v) = keys.get("checkpointOnClose")
            && let Some(b) = self.boolean(v)
        {
            out.put("checkpoint_on_close", b, v.line);
        }
        if let Some(v) = keys.get("useDualCheckpoints") {
            // tidegate always keeps the previous checkpoint as the backup.
            self.boolean(v);
        }
        if let Some(v) = keys.get("backupCheckpointDir") {
            self.warn(v, format!("`{}` is not used: tidegate always keeps the previous checkpoint as the backup, in checkpoint_dir", v.text));
        }
        let per_txn = keys.get("fsyncPerTransaction");
        let interval = keys.get("fsyncInterval");
        let per_txn_value = per_txn.and_then(|v| self.boolean(v));
        let secs = interval.and_then(|v| self.positive(v));
        match (per_txn_value, per_txn) {
            (Some(false), Some(p)) => {
                out.put("fsync", "interval", p.line);
                out.put(
                    "fsync_interval",
                    format!("{}s", secs.unwrap_or(5)),
                    interval.map_or(p.line, |v| v.line),
                );
            }
            _ => {
                if let Some(v) = interval {
                    self.warn(v, "has no effect unless fsyncPerTransaction = false (as in Flume); every commit is synced".into());
                }
            }
        }
        for key in [
            "use-fast-replay",
            "useLogReplayV1",
            "write-timeout",
            "checkpoint-timeout",
        ] {
            if let Some(v) = keys.get(key) {
                self.warn(v, format!("`{key}` has no effect in tidegate (replay never materialises events; waits are bounded by keep_alive)"));
            }
        }
        let enc = keys.with_prefix("encryption.");
        if let Some((_, first)) = enc.first() {
            let names: Vec<String> = enc.iter().map(|(k, _)| format!("encryption.{k}")).collect();
            self.error(
                first,
                format!(
                    "Flume's encryption keys ({}) use JCEKS keystores, which tidegate cannot read; export each key as a \
                     32-byte key file and configure `encryption = {{ active_key = \"k1\", keys = {{ k1 = \"/path/k1.key\" }} }}` \
                     on the channel (tidegate's encryption at rest, issue 7)",
                    names.join(", ")
                ),
            );
        }
    }

    // ---- sources -----------------------------------------------------------------------------

    fn source(&mut self, c: &Component, out: &mut Out) -> bool {
        let mut keys = Keys::new(c);
        let Some(ty) = keys.get("type") else {
            return false;
        };
        let supported = self.support(Kind::Source, &c.name, ty);
        if let Some(t) = supported {
            out.put("type", t, ty.line);
        }
        let channels: Vec<String> = match keys.get("channels") {
            Some(v) => {
                let names: Vec<String> = v.text.split_whitespace().map(String::from).collect();
                out.put("channels", strings(&names), v.line);
                names
            }
            None => Vec::new(),
        };
        self.selector(c, &channels, &mut keys, out);
        self.interceptors(c, &mut keys, out);
        match supported {
            Some("seq") => {
                if let Some(v) = keys.get("totalEvents")
                    && let Some(n) = self.positive(v)
                {
                    out.put("count", n, v.line);
                }
                let (batch, line) = match keys.get("batchSize") {
                    Some(v) => (self.positive(v), v.line),
                    None => (Some(1), ty.line),
                };
                if let Some(b) = batch {
                    out.put("batch_size", b, line);
                    for ch in &channels {
                        self.check_batch(
                            b,
                            ch,
                            keys.comp.keys.get("batchSize").unwrap_or(ty),
                            "batchSize",
                        );
                    }
                }
            }
            Some("netcat") => {
                self.bind(&mut keys, out, None, ty);
                if let Some(v) = keys.get("max-line-length")
                    && let Some(n) = self.positive(v)
                {
                    out.put("max_line_length", n, v.line);
                }
                if let Some(v) = keys.get("ack-every-event")
                    && let Some(b) = self.boolean(v)
                {
                    out.put("ack_every_event", b, v.line);
                }
                if let Some(v) = keys.get("encoding")
                    && !v.text.eq_ignore_ascii_case("utf-8")
                    && !v.text.eq_ignore_ascii_case("utf8")
                {
                    self.error(v, format!("encoding `{}` is not supported: tidegate keeps each line's bytes as they arrive (UTF-8 in, UTF-8 out)", v.text));
                }
            }
            Some(_) => self.http_source(&mut keys, out, ty),
            None => keys.use_all(),
        }
        self.leftovers(&keys, &format!("Flume's `{}` source", ty.text));
        supported.is_some()
    }

    fn bind(&mut self, keys: &mut Keys<'_>, out: &mut Out, default_host: Option<&str>, ty: &Value) {
        let host = keys.get("bind");
        let port = keys.get("port");
        let host_text = match (host, default_host) {
            (Some(h), _) => Some(h.text.clone()),
            (None, Some(d)) => Some(d.to_string()),
            (None, None) => {
                self.error(
                    ty,
                    "the source needs a `bind` address (Flume refuses it without one)".into(),
                );
                None
            }
        };
        let Some(port) = port else {
            self.error(
                ty,
                "the source needs a `port` (Flume refuses it without one)".into(),
            );
            return;
        };
        let Ok(p) = port.text.parse::<u16>() else {
            self.error(port, format!("`{}` is not a port number", port.text));
            return;
        };
        if let Some(h) = host_text {
            let addr = if h.contains(':') && !h.starts_with('[') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            };
            out.put("bind", addr, port.line);
        }
    }

    fn http_source(&mut self, keys: &mut Keys<'_>, out: &mut Out, ty: &Value) {
        self.bind(keys, out, Some("0.0.0.0"), ty);
        if let Some(v) = keys.get("handler")
            && !v
                .text
                .eq_ignore_ascii_case("org.apache.flume.source.http.JSONHandler")
        {
            self.error(v, format!("handler `{}` is not supported: the http source takes Flume's JSON format (JSONHandler) and tidegate's binary batches", v.text));
        }
        let ssl = ["ssl", "enableSSL"]
            .into_iter()
            .filter_map(|k| keys.get(k))
            .filter_map(|v| self.boolean(v).map(|b| (b, v)))
            .find(|(b, _)| *b);
        let ssl_keys = keys.with_prefix("keystore");
        let ssl_keys_more: Vec<_> = [
            "excludeProtocols",
            "includeProtocols",
            "excludeCipherSuites",
            "includeCipherSuites",
            "exclude-protocols",
            "include-protocols",
            "exclude-cipher-suites",
            "include-cipher-suites",
        ]
        .into_iter()
        .filter_map(|k| keys.get(k))
        .collect();
        match ssl {
            Some((_, v)) => self.error(
                v,
                "TLS with a Java keystore cannot be imported: tidegate reads PEM files; set \
                 `tls = { cert = \"cert.pem\", key = \"key.pem\" }` on the source (convert with `keytool -importkeystore` and `openssl pkcs12`)"
                    .into(),
            ),
            None => {
                for (_, v) in ssl_keys {
                    self.warn(v, "has no effect: TLS is not enabled".into());
                }
                for v in ssl_keys_more {
                    self.warn(v, "has no effect: TLS is not enabled".into());
                }
            }
        }
        for prefix in [
            "QueuedThreadPool.",
            "HttpConfiguration.",
            "SslContextFactory.",
            "ServerConnector.",
        ] {
            for (_, v) in keys.with_prefix(prefix) {
                self.warn(
                    v,
                    "Jetty tuning has no equivalent in tidegate and is ignored".into(),
                );
            }
        }
    }

    fn selector(&mut self, c: &Component, channels: &[String], keys: &mut Keys<'_>, out: &mut Out) {
        let ty = keys.get("selector.type");
        let kind = match ty {
            Some(t) => self.support(Kind::Selector, &c.name, t),
            None => Some("replicating"),
        };
        let line = ty.map_or(c.line(), |t| t.line);
        let mut sel = Out::new(format!("{}.selector", out.path));
        let check = |me: &mut Self, v: &Value| -> Vec<String> {
            let names = me.list(v);
            for n in &names {
                if !channels.contains(n) {
                    me.error(v, format!("channel `{n}` is not one of the source's active channels ({}); Flume fails to start the source", channels.join(" ")));
                }
            }
            names
        };
        match kind {
            Some("replicating") => {
                if let Some(v) = keys.get("selector.optional") {
                    let names = check(self, v);
                    sel.put("type", "replicating", line);
                    sel.put("optional", strings(&names), v.line);
                    out.put_table("selector", sel, line);
                }
            }
            Some(_) => {
                sel.put("type", "multiplexing", line);
                let header = keys.get("selector.header");
                sel.put(
                    "header",
                    header.map_or("flume.selector.header", |v| v.text.as_str()),
                    header.map_or(line, |v| v.line),
                );
                let mut mapping = Out::new(format!("{}.mapping", sel.path));
                for (value, v) in keys.with_prefix("selector.mapping.") {
                    if value == "default" {
                        self.warn(v, "maps the header VALUE `default`; the channels for unmatched events are `selector.default`".into());
                    }
                    let names = check(self, v);
                    mapping.put(value, strings(&names), v.line);
                }
                sel.put_table("mapping", mapping, line);
                if let Some(v) = keys.get("selector.default") {
                    let names = check(self, v);
                    sel.put("default", strings(&names), v.line);
                }
                let optional = keys.with_prefix("selector.optional.");
                if !optional.is_empty() {
                    let mut opt = Out::new(format!("{}.optional", sel.path));
                    for (value, v) in optional {
                        let names = check(self, v);
                        opt.put(value, strings(&names), v.line);
                    }
                    sel.put_table("optional", opt, line);
                }
                out.put_table("selector", sel, line);
            }
            None => {
                keys.with_prefix("selector.");
            }
        }
    }

    fn interceptors(&mut self, c: &Component, keys: &mut Keys<'_>, out: &mut Out) {
        let Some(list) = keys.get("interceptors") else {
            return;
        };
        let mut items = Vec::new();
        for (i, name) in self.list(list).into_iter().enumerate() {
            let p = format!("interceptors.{name}.");
            let mut it = Out::new(format!("{}.interceptors[{i}]", out.path));
            let Some(ty) = keys.get(&format!("{p}type")) else {
                self.error(
                    list,
                    format!(
                        "interceptor `{name}` has no `{p}type` (Flume fails to start the source)"
                    ),
                );
                keys.with_prefix(&p);
                continue;
            };
            let Some(t) = self.support(Kind::Interceptor, &format!("{}/{name}", c.name), ty) else {
                keys.with_prefix(&p);
                continue;
            };
            it.put("type", t, ty.line);
            let tl = ty.line;
            match t {
                "timestamp" => {
                    self.ic_string(
                        keys,
                        &p,
                        &mut it,
                        ("headerName", "header"),
                        Some("timestamp"),
                        tl,
                    );
                    self.ic_bool(
                        keys,
                        &p,
                        &mut it,
                        ("preserveExisting", "preserve_existing"),
                        false,
                        tl,
                    );
                }
                "host" => {
                    self.ic_string(
                        keys,
                        &p,
                        &mut it,
                        ("hostHeader", "header"),
                        Some("host"),
                        tl,
                    );
                    self.ic_bool(keys, &p, &mut it, ("useIP", "use_ip"), true, tl);
                    self.ic_bool(
                        keys,
                        &p,
                        &mut it,
                        ("preserveExisting", "preserve_existing"),
                        false,
                        tl,
                    );
                }
                "static" => {
                    self.ic_string(keys, &p, &mut it, ("key", "key"), Some("key"), tl);
                    self.ic_string(keys, &p, &mut it, ("value", "value"), Some("value"), tl);
                    self.ic_bool(
                        keys,
                        &p,
                        &mut it,
                        ("preserveExisting", "preserve_existing"),
                        true,
                        tl,
                    );
                }
                "uuid" => {
                    self.ic_string(keys, &p, &mut it, ("headerName", "header"), Some("id"), tl);
                    self.ic_bool(
                        keys,
                        &p,
                        &mut it,
                        ("preserveExisting", "preserve_existing"),
                        true,
                        tl,
                    );
                    self.ic_string(keys, &p, &mut it, ("prefix", "prefix"), Some(""), tl);
                }
                "regex_filter" => {
                    self.ic_string(keys, &p, &mut it, ("regex", "regex"), Some(".*"), tl);
                    self.ic_bool(keys, &p, &mut it, ("excludeEvents", "exclude"), false, tl);
                }
                "remove_header" => self.remove_header(&mut it, ty, &p, keys),
                "regex_extractor" => self.regex_extractor(&mut it, ty, &p, keys),
                _ => self.search_replace(&mut it, ty, &p, keys),
            }
            items.push((it, ty.line));
        }
        if !items.is_empty() {
            let mut arr = Vec::new();
            for (it, line) in items {
                self.lines.insert(it.path.clone(), line);
                self.lines.extend(it.lines);
                arr.push(toml::Value::Table(it.table));
            }
            out.lines
                .push((format!("{}.interceptors", out.path), list.line));
            out.table
                .insert("interceptors".into(), toml::Value::Array(arr));
        }
    }

    fn ic_string(
        &mut self,
        keys: &mut Keys<'_>,
        p: &str,
        it: &mut Out,
        (flume, ours): (&str, &str),
        default: Option<&str>,
        type_line: usize,
    ) {
        match keys.get(&format!("{p}{flume}")) {
            Some(v) => {
                if ours == "regex" {
                    self.java_regex(v);
                }
                it.put(ours, v.text.clone(), v.line);
            }
            None => {
                if let Some(d) = default {
                    it.put(ours, d, type_line);
                }
            }
        }
    }

    fn ic_bool(
        &mut self,
        keys: &mut Keys<'_>,
        p: &str,
        it: &mut Out,
        (flume, ours): (&str, &str),
        default: bool,
        type_line: usize,
    ) {
        match keys.get(&format!("{p}{flume}")) {
            Some(v) => {
                if let Some(b) = self.boolean(v) {
                    it.put(ours, b, v.line);
                }
            }
            None => it.put(ours, default, type_line),
        }
    }

    /// Java regex features tidegate's engine (the `regex` crate) lacks: an error naming them,
    /// at the Flume key, rather than a compile error later.
    fn java_regex(&mut self, v: &Value) {
        let mut found = Vec::new();
        for (needle, what) in [
            ("(?=", "lookahead `(?=`"),
            ("(?!", "negative lookahead `(?!`"),
            ("(?<=", "lookbehind `(?<=`"),
            ("(?<!", "negative lookbehind `(?<!`"),
            ("(?>", "atomic group `(?>`"),
            ("*+", "possessive `*+`"),
            ("++", "possessive `++`"),
            ("?+", "possessive `?+`"),
        ] {
            if v.text.contains(needle) {
                found.push(what.to_string());
            }
        }
        let b = v.text.as_bytes();
        if b.windows(2).enumerate().any(|(i, w)| {
            w[0] == b'\\'
                && (b'1'..=b'9').contains(&w[1])
                && b[..i].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 0
        }) {
            found.push("back-reference `\\N`".into());
        }
        if !found.is_empty() {
            self.error(
                v,
                format!(
                    "the regex uses {}, which Java has and tidegate's regex engine does not; rewrite it without",
                    found.join(", ")
                ),
            );
        }
    }

    fn search_replace(&mut self, it: &mut Out, ty: &Value, p: &str, keys: &mut Keys<'_>) {
        match keys.get(&format!("{p}searchPattern")) {
            Some(v) => {
                self.java_regex(v);
                it.put("search", v.text.clone(), v.line);
            }
            None => self.error(ty, format!("search_replace needs `{p}searchPattern`")),
        }
        let (rep, line) = keys
            .get(&format!("{p}replaceString"))
            .map_or((String::new(), ty.line), |v| (v.text.clone(), v.line));
        it.put("replace", java_replacement(&rep), line);
        if let Some(v) = keys.get(&format!("{p}charset"))
            && !v.text.eq_ignore_ascii_case("utf-8")
        {
            self.error(
                v,
                format!(
                    "charset `{}` is not supported: bodies are matched as UTF-8",
                    v.text
                ),
            );
        }
    }

    fn remove_header(&mut self, it: &mut Out, ty: &Value, p: &str, keys: &mut Keys<'_>) {
        let mut get = |k: &str| keys.get(&format!("{p}{k}"));
        let with_name = get("withName");
        let from_list = get("fromList");
        let separator = get("fromListSeparator");
        let matching = get("matching");
        if let Some(v) = separator {
            self.error(
                v,
                "a custom fromListSeparator is not supported: separate the names with commas"
                    .into(),
            );
        }
        let mut alternatives = Vec::new();
        if let Some(v) = with_name {
            if from_list.is_none() && matching.is_none() {
                it.put("name", v.text.clone(), v.line);
                return;
            }
            alternatives.push(regex_escape(&v.text));
        }
        if let Some(v) = from_list {
            alternatives.extend(
                v.text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(regex_escape),
            );
        }
        // Flume matches header names in full (`Matcher.matches`); tidegate's `matching` searches,
        // so the pattern is anchored.
        if let Some(m) = matching {
            self.java_regex(m);
            alternatives.push(m.text.clone());
        }
        let pattern = (!alternatives.is_empty()).then(|| {
            let parts: Vec<String> = alternatives.iter().map(|a| format!("(?:{a})")).collect();
            format!("^(?:{})$", parts.join("|"))
        });
        match pattern {
            Some(p) => {
                let line = matching
                    .or(from_list)
                    .or(with_name)
                    .map_or(ty.line, |v| v.line);
                it.put("matching", p, line);
            }
            None => self.error(
                ty,
                "remove_header needs `withName`, `fromList` or `matching`".into(),
            ),
        }
    }

    fn regex_extractor(&mut self, it: &mut Out, ty: &Value, p: &str, keys: &mut Keys<'_>) {
        match keys.get(&format!("{p}regex")) {
            Some(v) => {
                self.java_regex(v);
                it.put("regex", v.text.clone(), v.line);
            }
            None => self.error(ty, format!("regex_extractor needs `{p}regex`")),
        }
        let Some(list) = keys.get(&format!("{p}serializers")) else {
            self.error(
                ty,
                format!("regex_extractor needs `{p}serializers` (one per capture group)"),
            );
            return;
        };
        let mut headers = Vec::new();
        for s in self.list(list) {
            let sp = format!("{p}serializers.{s}.");
            match keys.get(&format!("{sp}name")) {
                Some(v) => headers.push(v.text.clone()),
                None => self.error(
                    list,
                    format!("serializer `{s}` needs `{sp}name` (the header)"),
                ),
            }
            if let Some(t) = keys.get(&format!("{sp}type"))
                && !t.text.eq_ignore_ascii_case(
                    "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer",
                )
            {
                let why = if t.text.eq_ignore_ascii_case(
                    "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer",
                ) {
                    "tidegate stores the matched text as it is; it does not parse dates into epoch milliseconds (drop the serializer type to keep the text)"
                } else {
                    "only the pass-through serializer (the matched text) is supported"
                };
                self.error(
                    t,
                    format!("serializer type `{}` is not supported: {why}", t.text),
                );
                keys.get(&format!("{sp}pattern"));
            }
        }
        it.put("headers", strings(&headers), list.line);
    }

    // ---- sinks -------------------------------------------------------------------------------

    fn check_batch(&mut self, batch: i64, channel: &str, at: &Value, what: &str) {
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

    fn sink(&mut self, c: &Component, out: &mut Out) -> bool {
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
            Some(_) => {
                out.put("batch_size", FLUME_SINK_BATCH.min(tc), ty.line);
                self.http_sink(&mut keys, out, ty);
            }
            None => keys.use_all(),
        }
        self.leftovers(&keys, &format!("Flume's `{}` sink", ty.text));
        supported.is_some()
    }

    fn batch(&mut self, keys: &mut Keys<'_>, key: &str, channel: &str, out: &mut Out, ty: &Value) {
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

    // ---- sink groups -------------------------------------------------------------------------

    fn group(&mut self, g: &Component, out: &mut Out) -> bool {
        let mut keys = Keys::new(g);
        let Some(sv) = keys.get("sinks") else {
            return false;
        };
        let sinks: Vec<String> = sv.text.split_whitespace().map(String::from).collect();
        let ty = keys.get("processor.type");
        let kind = match ty {
            Some(t) => self.support(Kind::Processor, &g.name, t),
            None => Some("default"),
        };
        let line = ty.map_or(sv.line, |v| v.line);
        let mut proc_ = Out::new(format!("{}.processor", out.path));
        let ok = match kind {
            Some("default") => {
                if sinks.len() > 1 {
                    self.error(sv, format!("the default sink processor drives exactly one sink, not {} (Flume refuses this group); use failover or load_balance", sinks.len()));
                } else {
                    self.warn(sv, format!("a group with the default processor and one sink has no effect; sink `{}` runs on its own", sinks.join("")));
                }
                false
            }
            Some("failover") => {
                proc_.put("type", "failover", line);
                let mut prio = Out::new(format!("{}.priorities", proc_.path));
                let given = keys.with_prefix("processor.priority.");
                let mut seen: BTreeMap<i64, String> = BTreeMap::new();
                let mut next = 0;
                for s in &sinks {
                    let p = match given.iter().find(|(k, _)| *k == s.as_str()) {
                        Some((_, v)) => self.int(v).map(|n| (n, *v)),
                        None => {
                            next -= 1;
                            self.warn(sv, format!("sink `{s}` has no processor.priority.{s}; Flume gives such sinks -1, -2, ... in an unspecified order; here it gets {next} (list order)"));
                            Some((next, sv))
                        }
                    };
                    if let Some((n, v)) = p {
                        if let Some(other) = seen.insert(n, s.clone()) {
                            self.error(v, format!("sinks `{other}` and `{s}` have the same priority {n}; Flume silently leaves the second out of the group (it never runs); give them distinct priorities"));
                        }
                        prio.put(s, n, v.line);
                    }
                }
                for (k, v) in &given {
                    if !sinks.iter().any(|s| s == k) {
                        self.warn(v, format!("`{k}` is not a sink of this group; ignored"));
                    }
                }
                proc_.put_table("priorities", prio, line);
                let (ms, l) = match keys.get("processor.maxpenalty") {
                    Some(v) => (self.positive(v), v.line),
                    None => (Some(30_000), line),
                };
                if let Some(ms) = ms {
                    proc_.put("max_penalty", duration_ms(ms), l);
                }
                true
            }
            Some(_) => {
                proc_.put("type", "load_balance", line);
                let sel = keys.get("processor.selector");
                match sel.map(|v| v.text.to_ascii_lowercase()) {
                    None => proc_.put("selector", "round_robin", line),
                    Some(s) if s == "round_robin" || s == "random" => {
                        proc_.put("selector", s, sel.map_or(line, |v| v.line));
                    }
                    Some(_) => {
                        if let Some(v) = sel {
                            self.error(
                                v,
                                format!(
                                    "selector `{}` is not supported: use round_robin or random",
                                    v.text
                                ),
                            );
                        }
                    }
                }
                let (backoff, l) = match keys.get("processor.backoff") {
                    Some(v) => (self.boolean(v), v.line),
                    None => (Some(false), line),
                };
                if let Some(b) = backoff {
                    proc_.put("backoff", b, l);
                }
                let (ms, l) = match keys.get("processor.selector.maxTimeOut") {
                    Some(v) => (self.positive(v), v.line),
                    None => (Some(30_000), line),
                };
                if let Some(ms) = ms {
                    proc_.put("max_backoff", duration_ms(ms), l);
                }
                true
            }
            None => {
                keys.use_all();
                false
            }
        };
        if ok {
            out.put("sinks", strings(&sinks), sv.line);
            out.put_table("processor", proc_, line);
        }
        self.leftovers(&keys, &format!("sink group `{}`", g.name));
        ok
    }
}

/// `a1.channels.c1` for a component whose type key is `a1.channels.c1.type`.
fn type_prefix(c: &Component) -> String {
    c.keys.get("type").map_or_else(
        || c.name.clone(),
        |t| t.key.trim_end_matches(".type").to_string(),
    )
}

/// Escapes regex metacharacters of a literal header name.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Java's `Matcher.replaceAll` replacement syntax -> the `regex` crate's: `$1` becomes `${1}`,
/// `\$` a literal `$$`, `\\` one backslash.
pub fn java_replacement(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push('$');
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_syntax() {
        assert_eq!(java_replacement("a$1b"), "a${1}b");
        assert_eq!(java_replacement("\\$5 \\\\"), "$$5 \\");
        assert_eq!(java_replacement("${name}"), "${name}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms(30_000), "30s");
        assert_eq!(duration_ms(1500), "1500ms");
    }
}
