//! The agent config: loading, checking, and the resolved topology.
//!
//! [`load_config_file`] reads a TOML file; [`load_config_table`] takes an already-parsed table
//! (the Flume import produces one). Both collect *every* problem before failing, and each
//! [`ConfigError`] names the key path (`sinks.k1.batch_size`) and, when known, the line of the
//! file it came from. Unknown keys are errors.
//!
//! Checks beyond the types: every channel a source or sink names exists; a selector routes only
//! to the source's channels, and routes every event to at least one required channel (a
//! multiplexing selector has a non-empty `default`, a replicating one a non-optional channel);
//! a sink's `batch_size` is at most its channel's `transaction_capacity` (Flume's FLUME-3107 loop);
//! a sink belongs to at most one sink group;
//! two file channels never share a directory; each file channel's options pass
//! [`FileChannelConfig::validate`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::sinks::SinkSpec;
use super::sources::{InterceptorSpec, SourceSpec};
use super::units::{ByteSize, HumanDuration};
use crate::at_rest::{Compression, EncryptionConfig};
use crate::{FileChannelConfig, FsyncPolicy, MemoryChannelConfig, RecoveryMode};

/// Default `agent.shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `monitoring.unhealthy_after`.
pub const DEFAULT_UNHEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Default sink `batch_size`.
pub const DEFAULT_SINK_BATCH_SIZE: usize = 100;

/// One problem in a config: where (key path, file, line) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other origin) the config came from.
    pub file: String,
    /// The line of the key, 1-based, when known.
    pub line: Option<usize>,
    /// The key path, e.g. `sinks.k1.batch_size` (empty for the whole file).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a config table came from: a name for messages and the line of each key path.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The file name shown in errors.
    pub file: String,
    /// Line (1-based) of each key path (`sources.r1.channels`, `sources.r1.interceptors[0].type`).
    pub lines: BTreeMap<String, usize>,
}

impl Origin {
    /// An origin without line information.
    pub fn new(file: impl Into<String>) -> Self {
        Origin {
            file: file.into(),
            lines: BTreeMap::new(),
        }
    }

    /// The line of `key`, or of its nearest parent that has one. Array elements may be
    /// recorded as `a[0]` or as `a.0` (the Flume import's form).
    pub fn line_of(&self, key: &str) -> Option<usize> {
        let dotted = key.replace('[', ".").replace(']', "");
        let mut k = key;
        let mut d = dotted.as_str();
        loop {
            if let Some(l) = self.lines.get(k).or_else(|| self.lines.get(d)) {
                return Some(*l);
            }
            let cut = k.rfind(['.', '['])?;
            k = &k[..cut];
            d = &d[..d.rfind('.').unwrap_or(0)];
        }
    }
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSection {
    /// The agent's name (Flume's `-n`). Default `agent`.
    pub name: String,
    /// How long SIGTERM waits for the drain. Default 30 s.
    pub shutdown_timeout: Duration,
}

/// `[monitoring]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringConfig {
    /// Where the HTTP endpoints listen.
    pub bind: SocketAddr,
    /// How long a sink may fail with a backlog, or a source stall, before `/health` says 503.
    pub unhealthy_after: Duration,
}

/// A channel's options.
#[derive(Debug, Clone)]
pub enum ChannelKind {
    /// `type = "file"`.
    File(FileChannelConfig),
    /// `type = "memory"`.
    Memory(MemoryChannelConfig),
}

/// `[channels.NAME]`.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The channel's options.
    pub kind: ChannelKind,
    /// The table as written (a reload compares it to decide whether to reopen).
    pub raw: toml::Table,
}

impl ChannelConfig {
    /// Most operations per transaction.
    pub fn transaction_capacity(&self) -> usize {
        match &self.kind {
            ChannelKind::File(c) => c.transaction_capacity,
            ChannelKind::Memory(c) => c.transaction_capacity,
        }
    }
    /// "file" or "memory".
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            ChannelKind::File(_) => "file",
            ChannelKind::Memory(_) => "memory",
        }
    }
}

/// Which of a source's channels get an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorConfig {
    /// Every channel; failures on `optional` ones do not fail the put.
    Replicating {
        /// Channels whose failures are logged and counted but do not fail the put.
        optional: Vec<String>,
    },
    /// By the value of one header.
    Multiplexing {
        /// The header read.
        header: String,
        /// Header value -> required channels.
        mapping: BTreeMap<String, Vec<String>>,
        /// Channels for values not in `mapping` (and events without the header).
        default: Vec<String>,
        /// Header value -> optional channels.
        optional: BTreeMap<String, Vec<String>>,
    },
}

/// `[sources.NAME]`.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The type and its own options.
    pub spec: SourceSpec,
    /// The channels it writes to.
    pub channels: Vec<String>,
    /// How events are routed to `channels`.
    pub selector: SelectorConfig,
    /// Interceptors, in order.
    pub interceptors: Vec<InterceptorSpec>,
    /// The table as written.
    pub raw: toml::Table,
}

/// `[sinks.NAME]`.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The type and its own options.
    pub spec: SinkSpec,
    /// The channel it drains.
    pub channel: String,
    /// Events per transaction. Default 100.
    pub batch_size: usize,
    /// The table as written.
    pub raw: toml::Table,
}

/// How a load-balancing group picks the next sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalanceSelector {
    /// In turn.
    RoundRobin,
    /// At random.
    Random,
}

/// A sink group's processor.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorConfig {
    /// The highest-priority healthy sink takes every batch; a failed sink is penalised.
    Failover {
        /// Sink -> priority (higher first; unlisted sinks get 0, ties in listing order).
        priorities: BTreeMap<String, i64>,
        /// Longest penalty. Default 30 s.
        max_penalty: Duration,
    },
    /// Batches spread over the sinks.
    LoadBalance {
        /// How the next sink is picked.
        selector: LoadBalanceSelector,
        /// Back off a failed sink (exponentially, up to `max_backoff`).
        backoff: bool,
        /// Longest back-off. Default 30 s.
        max_backoff: Duration,
    },
}

/// `[sink_groups.NAME]`.
#[derive(Debug, Clone)]
pub struct SinkGroupConfig {
    /// Member sinks, in the order listed.
    pub sinks: Vec<String>,
    /// How they share the work.
    pub processor: ProcessorConfig,
    /// The table as written.
    pub raw: toml::Table,
}

/// A loaded, checked agent config.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where it came from.
    pub origin: String,
    /// `[agent]`.
    pub agent: AgentSection,
    /// `[monitoring]`, if present.
    pub monitoring: Option<MonitoringConfig>,
    /// Channels by name.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Sinks by name.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Sink groups by name.
    pub sink_groups: BTreeMap<String, SinkGroupConfig>,
}

impl AgentConfig {
    /// The file channel options of channel `name`, for the offline tools (`verify`, `repair`,
    /// `inspect --config agent.toml --channel c1`).
    pub fn file_channel(&self, name: &str) -> Result<FileChannelConfig, String> {
        match self.channels.get(name).map(|c| &c.kind) {
            Some(ChannelKind::File(c)) => Ok(c.clone()),
            Some(ChannelKind::Memory(_)) => Err(format!(
                "channel {name} is a memory channel, not a file channel"
            )),
            None => Err(format!(
                "no channel {name} in {} (channels: {})",
                self.origin,
                self.channels.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The sink group a sink belongs to, if any.
    pub fn group_of(&self, sink: &str) -> Option<&str> {
        self.sink_groups
            .iter()
            .find(|(_, g)| g.sinks.iter().any(|s| s == sink))
            .map(|(n, _)| n.as_str())
    }

    /// The resolved topology, one line per component, for `tidegate validate`.
    pub fn topology(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "agent {} ({})", self.agent.name, self.origin);
        if let Some(m) = &self.monitoring {
            let _ = writeln!(s, "monitoring on http://{}", m.bind);
        }
        for (name, c) in &self.channels {
            match &c.kind {
                ChannelKind::File(f) => {
                    let _ = writeln!(
                        s,
                        "channel {name}: file, checkpoint {}, data {}, capacity {}, transaction_capacity {}, fsync {:?}{}",
                        f.checkpoint_dir.display(),
                        f.data_dirs
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        f.capacity,
                        f.transaction_capacity,
                        f.fsync,
                        at_rest_summary(f)
                    );
                }
                ChannelKind::Memory(m) => {
                    let _ = writeln!(
                        s,
                        "channel {name}: memory, capacity {}, transaction_capacity {}",
                        m.capacity, m.transaction_capacity
                    );
                }
            }
        }
        for (name, src) in &self.sources {
            let route = match &src.selector {
                SelectorConfig::Replicating { optional } if optional.is_empty() => {
                    "replicating".to_string()
                }
                SelectorConfig::Replicating { optional } => {
                    format!("replicating, optional {}", optional.join(", "))
                }
                SelectorConfig::Multiplexing { header, .. } => {
                    format!("multiplexing on header {header}")
                }
            };
            let _ = writeln!(
                s,
                "source {name} ({}) -> {} [{route}; {} interceptors]",
                src.spec.type_name(),
                src.channels.join(", "),
                src.interceptors.len()
            );
        }
        for (name, k) in &self.sinks {
            let group = self
                .group_of(name)
                .map(|g| format!(", group {g}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "sink {name} ({}) <- {} [batch_size {}{group}]",
                k.spec.type_name(),
                k.channel,
                k.batch_size
            );
        }
        for (name, g) in &self.sink_groups {
            let p = match &g.processor {
                ProcessorConfig::Failover { max_penalty, .. } => {
                    format!("failover, max_penalty {}", HumanDuration(*max_penalty))
                }
                ProcessorConfig::LoadBalance { selector, .. } => {
                    format!("load_balance, {selector:?}")
                }
            };
            let _ = writeln!(s, "sink group {name}: {} [{p}]", g.sinks.join(", "));
        }
        for w in self.warnings() {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }

    /// Things that load but are probably not meant: a channel no sink drains (it fills up and
    /// then refuses its sources), a channel no source writes to.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.channels.keys() {
            if !self.sinks.values().any(|k| &k.channel == name) {
                out.push(format!(
                    "channel {name} has no sink: its events stay until it is full, then its sources are refused"
                ));
            }
            if !self.sources.values().any(|src| src.channels.contains(name)) {
                out.push(format!("channel {name} has no source"));
            }
        }
        for (name, g) in &self.sink_groups {
            let chans: BTreeSet<&String> = g
                .sinks
                .iter()
                .filter_map(|k| self.sinks.get(k).map(|k| &k.channel))
                .collect();
            if chans.len() > 1 && matches!(g.processor, ProcessorConfig::Failover { .. }) {
                out.push(format!(
                    "the members of failover group {name} drain different channels ({}): only the active member's channel is drained",
                    chans.into_iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        out
    }
}

/// Reads and checks a TOML config file.
pub fn load_config_file(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read the config: {e}"),
        }])
    })?;
    let (table, origin) = parse_toml(&text, &file)?;
    load_config_table(table, origin)
}

/// Parses TOML text into a table and the line of every key.
pub fn parse_toml(text: &str, file: &str) -> Result<(toml::Table, Origin), ConfigErrors> {
    let line_at = |offset: usize| {
        let upto = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
        upto.iter().filter(|b| **b == b'\n').count() + 1
    };
    let spanned = toml::de::DeTable::parse(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line: e.span().map(|s| line_at(s.start)),
            key: String::new(),
            message: format!("not valid TOML: {}", e.message()),
        }])
    })?;
    let mut origin = Origin::new(file);
    fn walk(
        prefix: &str,
        v: &toml::de::DeValue<'_>,
        line_at: &dyn Fn(usize) -> usize,
        out: &mut BTreeMap<String, usize>,
    ) {
        match v {
            toml::de::DeValue::Table(t) => {
                for (k, v) in t {
                    let path = if prefix.is_empty() {
                        k.get_ref().to_string()
                    } else {
                        format!("{prefix}.{}", k.get_ref())
                    };
                    out.entry(path.clone())
                        .or_insert_with(|| line_at(k.span().start));
                    walk(&path, v.get_ref(), line_at, out);
                }
            }
            toml::de::DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    let path = format!("{prefix}[{i}]");
                    out.insert(path.clone(), line_at(v.span().start));
                    walk(&path, v.get_ref(), line_at, out);
                }
            }
            _ => {}
        }
    }
    for (k, v) in spanned.get_ref() {
        let path = k.get_ref().to_string();
        origin.lines.insert(path.clone(), line_at(k.span().start));
        walk(&path, v.get_ref(), &line_at, &mut origin.lines);
    }
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line: e.span().map(|s| line_at(s.start)),
            key: String::new(),
            message: format!("not valid TOML: {}", e.message()),
        }])
    })?;
    Ok((table, origin))
}

/// Collects errors while a config is checked.
pub(crate) struct Checker<'o> {
    origin: &'o Origin,
    errors: Vec<ConfigError>,
}

impl<'o> Checker<'o> {
    fn new(origin: &'o Origin) -> Self {
        Checker {
            origin,
            errors: Vec::new(),
        }
    }

    /// Records a problem at `key`.
    pub(crate) fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        self.errors.push(ConfigError {
            file: self.origin.file.clone(),
            line: self.origin.line_of(&key),
            key,
            message: message.into(),
        });
    }

    /// Deserializes `value` (found at `key`) as a `T`, recording the problem (with the exact
    /// key path inside `value`) on failure.
    /// Parses `value` as [`parse`](Self::parse) does, then runs the component's own `check`;
    /// a failed check is reported under `key.<the key it names>`.
    pub(crate) fn parse_checked<T: DeserializeOwned, K: std::fmt::Display, W>(
        &mut self,
        key: &str,
        value: toml::Value,
        check: fn(&T) -> Result<W, (K, String)>,
    ) -> Option<T> {
        let cfg = self.parse::<T>(key, value)?;
        if let Err((k, msg)) = check(&cfg) {
            self.error(format!("{key}.{k}"), msg);
            return None;
        }
        Some(cfg)
    }

    pub(crate) fn parse<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: toml::Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let path = if inner == "." {
                    key.to_string()
                } else if inner.starts_with('[') {
                    format!("{key}{inner}")
                } else {
                    format!("{key}.{inner}")
                };
                let message = e.into_inner().message().to_string();
                self.error(path, message);
                None
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentToml {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    shutdown_timeout: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MonitoringToml {
    bind: String,
    #[serde(default)]
    unhealthy_after: Option<HumanDuration>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum FsyncToml {
    Always,
    Interval,
    Never,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RecoveryToml {
    Strict,
    Skip,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileChannelToml {
    checkpoint_dir: PathBuf,
    data_dirs: Vec<PathBuf>,
    capacity: Option<u64>,
    capacity_bytes: Option<ByteSize>,
    transaction_capacity: Option<usize>,
    keep_alive: Option<HumanDuration>,
    max_event_size: Option<ByteSize>,
    max_segment_size: Option<ByteSize>,
    recycle_segments: Option<u32>,
    minimum_required_space: Option<ByteSize>,
    checkpoint_interval: Option<HumanDuration>,
    checkpoint_on_close: Option<bool>,
    /// Bytes per second; 0 = no limit.
    checkpoint_write_rate: Option<ByteSize>,
    fsync: Option<FsyncToml>,
    fsync_interval: Option<HumanDuration>,
    recovery_mode: Option<RecoveryToml>,
    encryption: Option<EncryptionToml>,
    compression: Option<CompressionToml>,
    compression_threshold: Option<ByteSize>,
    batch_compression: Option<bool>,
}

/// The at-rest settings of a file channel for the topology (empty when both are off).
fn at_rest_summary(f: &FileChannelConfig) -> String {
    let mut out = String::new();
    if let Some(enc) = &f.encryption {
        let ids: Vec<String> = enc.keys().map(|(id, _)| id.to_string()).collect();
        out.push_str(&format!(
            ", encrypted with key {} (keys {})",
            enc.active_key(),
            ids.join(", ")
        ));
    }
    if f.compression != Compression::None {
        out.push_str(&format!(
            ", compression {} above {} bytes{}",
            f.compression.name(),
            f.compression_threshold,
            if f.batch_compression {
                " per transaction"
            } else {
                " per event"
            }
        ));
    }
    out
}

/// `encryption = { active_key = 2, keys = { 1 = "k1.key", 2 = "k2.key" } }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptionToml {
    active_key: u16,
    keys: BTreeMap<String, PathBuf>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum CompressionToml {
    None,
    Lz4,
    Zstd,
}

impl From<CompressionToml> for Compression {
    fn from(c: CompressionToml) -> Self {
        match c {
            CompressionToml::None => Compression::None,
            CompressionToml::Lz4 => Compression::Lz4,
            CompressionToml::Zstd => Compression::Zstd,
        }
    }
}

/// The key files of `encryption`, by numeric id; a key that is not a number from 1 to 65535 is
/// an error naming it.
fn encryption_config(
    ck: &mut Checker<'_>,
    prefix: &str,
    e: EncryptionToml,
) -> Option<EncryptionConfig> {
    let mut enc = EncryptionConfig::new(e.active_key);
    let mut ok = true;
    for (id, path) in e.keys {
        match id.parse::<u16>() {
            Ok(n) if n > 0 => enc = enc.key(n, path),
            _ => {
                ck.error(
                    format!("{prefix}.encryption.keys.{id}"),
                    format!("key ids are numbers from 1 to 65535, not {id:?}"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(enc)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryChannelToml {
    capacity: Option<u64>,
    capacity_bytes: Option<ByteSize>,
    transaction_capacity: Option<usize>,
    keep_alive: Option<HumanDuration>,
    max_event_size: Option<ByteSize>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum SelectorToml {
    Replicating {
        #[serde(default)]
        optional: Vec<String>,
    },
    Multiplexing {
        header: String,
        #[serde(default)]
        mapping: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        default: Vec<String>,
        #[serde(default)]
        optional: BTreeMap<String, Vec<String>>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ProcessorToml {
    Failover {
        #[serde(default)]
        priorities: BTreeMap<String, i64>,
        max_penalty: Option<HumanDuration>,
    },
    LoadBalance {
        selector: Option<LoadBalanceSelector>,
        backoff: Option<bool>,
        max_backoff: Option<HumanDuration>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkGroupToml {
    sinks: Vec<String>,
    processor: ProcessorToml,
}

/// Takes `key` out of a component table as a `T`.
fn take_key<T: DeserializeOwned>(
    ck: &mut Checker<'_>,
    table: &mut toml::Table,
    prefix: &str,
    key: &str,
    required: bool,
) -> Option<T> {
    match table.remove(key) {
        Some(v) => ck.parse(&format!("{prefix}.{key}"), v),
        None => {
            if required {
                ck.error(format!("{prefix}.{key}"), format!("`{key}` is required"));
            }
            None
        }
    }
}

fn section(ck: &mut Checker<'_>, root: &mut toml::Table, name: &str) -> toml::Table {
    match root.remove(name) {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            ck.error(name, format!("`{name}` must be a table"));
            toml::Table::new()
        }
    }
}

/// Each named table of a section like `[channels]`.
fn entries(ck: &mut Checker<'_>, sec: toml::Table, name: &str) -> Vec<(String, toml::Table)> {
    let mut out = Vec::new();
    for (k, v) in sec {
        match v {
            toml::Value::Table(t) => out.push((k, t)),
            _ => ck.error(format!("{name}.{k}"), "must be a table"),
        }
    }
    out
}

/// Checks a config table (from a TOML file, or from the Flume import).
pub fn load_config_table(
    mut table: toml::Table,
    origin: Origin,
) -> Result<AgentConfig, ConfigErrors> {
    let mut ck = Checker::new(&origin);
    let agent_t = section(&mut ck, &mut table, "agent");
    let monitoring_t = table.remove("monitoring");
    let channels_t = section(&mut ck, &mut table, "channels");
    let sources_t = section(&mut ck, &mut table, "sources");
    let sinks_t = section(&mut ck, &mut table, "sinks");
    let groups_t = section(&mut ck, &mut table, "sink_groups");
    for k in table.keys() {
        ck.error(
            k.clone(),
            "unknown key (expected agent, monitoring, channels, sources, sinks, sink_groups)",
        );
    }

    let agent = ck
        .parse::<AgentToml>("agent", toml::Value::Table(agent_t))
        .map(|a| AgentSection {
            name: a.name.unwrap_or_else(|| "agent".into()),
            shutdown_timeout: a
                .shutdown_timeout
                .map_or(DEFAULT_SHUTDOWN_TIMEOUT, HumanDuration::get),
        })
        .unwrap_or(AgentSection {
            name: "agent".into(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        });

    let monitoring = monitoring_t
        .and_then(|m| ck.parse::<MonitoringToml>("monitoring", m))
        .and_then(|m| match m.bind.parse::<SocketAddr>() {
            Ok(bind) => Some(MonitoringConfig {
                bind,
                unhealthy_after: m
                    .unhealthy_after
                    .map_or(DEFAULT_UNHEALTHY_AFTER, HumanDuration::get),
            }),
            Err(e) => {
                ck.error(
                    "monitoring.bind",
                    format!("{:?} is not an address like 127.0.0.1:41414 ({e})", m.bind),
                );
                None
            }
        });

    let channels = load_channels(&mut ck, channels_t);
    let sources = load_sources(&mut ck, sources_t, &channels);
    let sinks = load_sinks(&mut ck, sinks_t, &channels);
    let sink_groups = load_groups(&mut ck, groups_t, &sinks);

    if ck.errors.is_empty() {
        Ok(AgentConfig {
            origin: origin.file.clone(),
            agent,
            monitoring,
            channels,
            sources,
            sinks,
            sink_groups,
        })
    } else {
        let mut errors = ck.errors;
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(ConfigErrors(errors))
    }
}

fn load_channels(ck: &mut Checker<'_>, sec: toml::Table) -> BTreeMap<String, ChannelConfig> {
    let mut out = BTreeMap::new();
    let mut dirs: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (name, mut t) in entries(ck, sec, "channels") {
        let raw = t.clone();
        let prefix = format!("channels.{name}");
        let Some(kind) = take_key::<String>(ck, &mut t, &prefix, "type", true) else {
            continue;
        };
        let kind = match kind.as_str() {
            "file" => {
                let Some(f) = ck.parse::<FileChannelToml>(&prefix, toml::Value::Table(t)) else {
                    continue;
                };
                for d in std::iter::once(&f.checkpoint_dir).chain(&f.data_dirs) {
                    if let Some(other) = dirs.insert(d.clone(), name.clone()) {
                        ck.error(
                            format!("{prefix}.data_dirs"),
                            format!(
                                "directory {} is also used by channel {other}; each file channel needs its own directories",
                                d.display()
                            ),
                        );
                    }
                }
                let Some(cfg) = file_channel_config(ck, &prefix, f) else {
                    continue;
                };
                ChannelKind::File(cfg)
            }
            "memory" => {
                let Some(m) = ck.parse::<MemoryChannelToml>(&prefix, toml::Value::Table(t)) else {
                    continue;
                };
                let d = MemoryChannelConfig::default();
                let cfg = MemoryChannelConfig {
                    capacity: m.capacity.unwrap_or(d.capacity),
                    capacity_bytes: m.capacity_bytes.map(ByteSize::get),
                    transaction_capacity: m.transaction_capacity.unwrap_or(d.transaction_capacity),
                    keep_alive: m.keep_alive.map_or(d.keep_alive, HumanDuration::get),
                    max_event_size: m.max_event_size.map_or(d.max_event_size, ByteSize::get),
                };
                if cfg.capacity == 0 {
                    ck.error(format!("{prefix}.capacity"), "must be at least 1");
                }
                if cfg.transaction_capacity == 0 {
                    ck.error(
                        format!("{prefix}.transaction_capacity"),
                        "must be at least 1",
                    );
                }
                ChannelKind::Memory(cfg)
            }
            other => {
                ck.error(
                    format!("{prefix}.type"),
                    format!("unknown channel type {other:?} (known: file, memory)"),
                );
                continue;
            }
        };
        out.insert(name, ChannelConfig { kind, raw });
    }
    out
}

fn file_channel_config(
    ck: &mut Checker<'_>,
    prefix: &str,
    f: FileChannelToml,
) -> Option<FileChannelConfig> {
    let mut cfg = FileChannelConfig::new(f.checkpoint_dir, f.data_dirs);
    if let Some(v) = f.capacity {
        cfg = cfg.capacity(v);
    }
    cfg = cfg.capacity_bytes(f.capacity_bytes.map(ByteSize::get));
    if let Some(v) = f.transaction_capacity {
        cfg = cfg.transaction_capacity(v);
    }
    if let Some(v) = f.keep_alive {
        cfg = cfg.keep_alive(v.get());
    }
    if let Some(v) = f.max_event_size {
        cfg = cfg.max_event_size(v.get());
    }
    if let Some(v) = f.max_segment_size {
        cfg = cfg.max_segment_size(v.get());
    }
    if let Some(v) = f.recycle_segments {
        cfg = cfg.recycle_segments(v);
    }
    if let Some(v) = f.minimum_required_space {
        cfg = cfg.minimum_required_space(v.get());
    }
    if let Some(v) = f.checkpoint_interval {
        cfg = cfg.checkpoint_interval(v.get());
    }
    if let Some(v) = f.checkpoint_on_close {
        cfg = cfg.checkpoint_on_close(v);
    }
    if let Some(v) = f.checkpoint_write_rate {
        cfg = cfg.checkpoint_write_rate(Some(v.get()).filter(|r| *r > 0));
    }
    match (f.fsync, f.fsync_interval) {
        (Some(FsyncToml::Interval), i) => {
            cfg = cfg.fsync(FsyncPolicy::Interval(
                i.map_or(Duration::from_secs(1), HumanDuration::get),
            ));
        }
        (_, Some(_)) => ck.error(
            format!("{prefix}.fsync_interval"),
            "only meaningful with fsync = \"interval\"",
        ),
        (Some(FsyncToml::Never), None) => cfg = cfg.fsync(FsyncPolicy::Never),
        (Some(FsyncToml::Always) | None, None) => cfg = cfg.fsync(FsyncPolicy::Always),
    }
    if let Some(RecoveryToml::Skip) = f.recovery_mode {
        cfg = cfg.recovery_mode(RecoveryMode::Skip);
    }
    if let Some(e) = f.encryption {
        cfg = cfg.encryption(encryption_config(ck, prefix, e)?);
    }
    if let Some(c) = f.compression {
        cfg = cfg.compression(c.into());
    }
    if let Some(t) = f.compression_threshold {
        cfg = cfg.compression_threshold(t.get());
    }
    if let Some(b) = f.batch_compression {
        cfg = cfg.batch_compression(b);
    }
    match cfg.validate() {
        Ok(()) => Some(cfg),
        Err(crate::Error::Config { key, message }) => {
            ck.error(format!("{prefix}.{key}"), message);
            None
        }
        Err(e) => {
            ck.error(prefix, e.to_string());
            None
        }
    }
}

fn load_sources(
    ck: &mut Checker<'_>,
    sec: toml::Table,
    channels: &BTreeMap<String, ChannelConfig>,
) -> BTreeMap<String, SourceConfig> {
    let mut out = BTreeMap::new();
    for (name, mut t) in entries(ck, sec, "sources") {
        let raw = t.clone();
        let prefix = format!("sources.{name}");
        let kind = take_key::<String>(ck, &mut t, &prefix, "type", true);
        let chans = take_key::<Vec<String>>(ck, &mut t, &prefix, "channels", true);
        let selector = t.remove("selector");
        let interceptors = t.remove("interceptors");
        let Some(chans) = chans else { continue };
        if chans.is_empty() {
            ck.error(format!("{prefix}.channels"), "lists no channel");
        }
        for (i, c) in chans.iter().enumerate() {
            if !channels.contains_key(c) && !ck.names_missing(c) {
                ck.error(
                    format!("{prefix}.channels[{i}]"),
                    format!("no channel named {c:?} (define [channels.{c}])"),
                );
            }
            if chans[..i].contains(c) {
                ck.error(
                    format!("{prefix}.channels[{i}]"),
                    format!("{c:?} listed twice"),
                );
            }
        }
        let selector = match selector {
            None => Some(SelectorConfig::Replicating {
                optional: Vec::new(),
            }),
            Some(v) => ck
                .parse::<SelectorToml>(&format!("{prefix}.selector"), v)
                .map(|s| match s {
                    SelectorToml::Replicating { optional } => {
                        SelectorConfig::Replicating { optional }
                    }
                    SelectorToml::Multiplexing {
                        header,
                        mapping,
                        default,
                        optional,
                    } => SelectorConfig::Multiplexing {
                        header,
                        mapping,
                        default,
                        optional,
                    },
                }),
        };
        if let Some(sel) = &selector {
            let mut routed: Vec<(String, &String)> = Vec::new();
            match sel {
                SelectorConfig::Replicating { optional } => {
                    routed.extend(
                        optional
                            .iter()
                            .map(|c| ("selector.optional".to_string(), c)),
                    );
                    if !chans.is_empty() && chans.iter().all(|c| optional.contains(c)) {
                        ck.error(
                            format!("{prefix}.selector.optional"),
                            "every channel of the source is optional: a batch they all refuse would be stored nowhere; leave at least one channel required",
                        );
                    }
                }
                SelectorConfig::Multiplexing {
                    mapping,
                    default,
                    optional,
                    ..
                } => {
                    for (v, cs) in mapping {
                        routed.extend(cs.iter().map(|c| (format!("selector.mapping.{v}"), c)));
                    }
                    for (v, cs) in optional {
                        routed.extend(cs.iter().map(|c| (format!("selector.optional.{v}"), c)));
                    }
                    routed.extend(default.iter().map(|c| ("selector.default".to_string(), c)));
                    if default.is_empty() {
                        ck.error(
                            format!("{prefix}.selector.default"),
                            "a multiplexing selector needs a non-empty `default`: an event whose header value has no `mapping` (or that lacks the header) would go to no channel; name the channel(s) for every other value",
                        );
                    }
                }
            }
            for (key, c) in routed {
                if !chans.contains(c) {
                    ck.error(
                        format!("{prefix}.{key}"),
                        format!(
                            "channel {c:?} is not one of the source's channels ({})",
                            chans.join(", ")
                        ),
                    );
                }
            }
        }
        let interceptors = match interceptors {
            None => Some(Vec::new()),
            Some(v) => super::sources::parse_interceptors(ck, &format!("{prefix}.interceptors"), v),
        };
        let Some(kind) = kind else { continue };
        let spec = super::sources::parse_spec(ck, &prefix, &kind, t);
        if let Some(spec) = &spec
            && let Some(batch) = spec.batch_size()
        {
            for c in &chans {
                if let Some(ch) = channels.get(c)
                    && batch > ch.transaction_capacity()
                {
                    ck.error(
                        format!("{prefix}.batch_size"),
                        format!(
                            "{batch} is larger than channel {c}'s transaction_capacity of {}; every put would fail",
                            ch.transaction_capacity()
                        ),
                    );
                }
            }
        }
        if let (Some(spec), Some(selector), Some(interceptors)) = (spec, selector, interceptors) {
            out.insert(
                name,
                SourceConfig {
                    spec,
                    channels: chans,
                    selector,
                    interceptors,
                    raw,
                },
            );
        }
    }
    let stdin: Vec<&String> = out
        .iter()
        .filter(|(_, s)| s.spec.type_name() == "stdin")
        .map(|(n, _)| n)
        .collect();
    if let [_, rest @ ..] = stdin.as_slice() {
        for n in rest {
            ck.error(
                format!("sources.{n}.type"),
                format!("only one stdin source is possible (also: {})", stdin[0]),
            );
        }
    }
    out
}

impl Checker<'_> {
    /// True when a channel reference need not be reported again (its channel failed to load
    /// and was already reported).
    fn names_missing(&self, channel: &str) -> bool {
        let key = format!("channels.{channel}");
        self.errors
            .iter()
            .any(|e| e.key == key || e.key.starts_with(&format!("{key}.")))
    }
}

fn load_sinks(
    ck: &mut Checker<'_>,
    sec: toml::Table,
    channels: &BTreeMap<String, ChannelConfig>,
) -> BTreeMap<String, SinkConfig> {
    let mut out = BTreeMap::new();
    for (name, mut t) in entries(ck, sec, "sinks") {
        let raw = t.clone();
        let prefix = format!("sinks.{name}");
        let kind = take_key::<String>(ck, &mut t, &prefix, "type", true);
        let channel = take_key::<String>(ck, &mut t, &prefix, "channel", true);
        let explicit = t.contains_key("batch_size");
        let batch_size = if explicit {
            take_key::<usize>(ck, &mut t, &prefix, "batch_size", false)
        } else {
            Some(DEFAULT_SINK_BATCH_SIZE)
        };
        let default_note = if explicit { "" } else { " (the default)" };
        if batch_size == Some(0) {
            ck.error(format!("{prefix}.batch_size"), "must be at least 1");
        }
        if let Some(c) = &channel {
            match channels.get(c) {
                None if !ck.names_missing(c) => ck.error(
                    format!("{prefix}.channel"),
                    format!("no channel named {c:?} (define [channels.{c}])"),
                ),
                Some(ch) => {
                    if let Some(b) = batch_size
                        && b > ch.transaction_capacity()
                    {
                        ck.error(
                            format!("{prefix}.batch_size"),
                            format!(
                                "{b}{default_note} is larger than channel {c}'s transaction_capacity of {}: every take would fail and the sink would loop (FLUME-3107); lower batch_size or raise transaction_capacity",
                                ch.transaction_capacity()
                            ),
                        );
                    }
                }
                None => {}
            }
        }
        let Some(kind) = kind else { continue };
        let spec = super::sinks::parse_spec(ck, &prefix, &kind, t);
        if let (Some(spec), Some(channel), Some(batch_size)) = (spec, channel, batch_size) {
            out.insert(
                name,
                SinkConfig {
                    spec,
                    channel,
                    batch_size,
                    raw,
                },
            );
        }
    }
    out
}

fn load_groups(
    ck: &mut Checker<'_>,
    sec: toml::Table,
    sinks: &BTreeMap<String, SinkConfig>,
) -> BTreeMap<String, SinkGroupConfig> {
    let mut out = BTreeMap::new();
    let mut member_of: BTreeMap<String, String> = BTreeMap::new();
    for (name, t) in entries(ck, sec, "sink_groups") {
        let raw = t.clone();
        let prefix = format!("sink_groups.{name}");
        let Some(g) = ck.parse::<SinkGroupToml>(&prefix, toml::Value::Table(t)) else {
            continue;
        };
        if g.sinks.is_empty() {
            ck.error(format!("{prefix}.sinks"), "lists no sink");
        }
        let mut seen = BTreeSet::new();
        for (i, s) in g.sinks.iter().enumerate() {
            let key = format!("{prefix}.sinks[{i}]");
            if !seen.insert(s) {
                ck.error(key, format!("sink {s:?} listed twice"));
                continue;
            }
            if !sinks.contains_key(s)
                && !ck
                    .errors
                    .iter()
                    .any(|e| e.key.starts_with(&format!("sinks.{s}")))
            {
                ck.error(key.clone(), format!("no sink named {s:?}"));
            }
            if let Some(other) = member_of.insert(s.clone(), name.clone()) {
                ck.error(
                    key,
                    format!("sink {s:?} is already in sink group {other}; a sink belongs to one group at most"),
                );
            }
        }
        let processor = match g.processor {
            ProcessorToml::Failover {
                priorities,
                max_penalty,
            } => {
                for p in priorities.keys() {
                    if !g.sinks.contains(p) {
                        ck.error(
                            format!("{prefix}.processor.priorities.{p}"),
                            format!("{p:?} is not a sink of this group"),
                        );
                    }
                }
                ProcessorConfig::Failover {
                    priorities,
                    max_penalty: max_penalty.map_or(Duration::from_secs(30), HumanDuration::get),
                }
            }
            ProcessorToml::LoadBalance {
                selector,
                backoff,
                max_backoff,
            } => ProcessorConfig::LoadBalance {
                selector: selector.unwrap_or(LoadBalanceSelector::RoundRobin),
                backoff: backoff.unwrap_or(true),
                max_backoff: max_backoff.map_or(Duration::from_secs(30), HumanDuration::get),
            },
        };
        out.insert(
            name,
            SinkGroupConfig {
                sinks: g.sinks,
                processor,
                raw,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems loading `text` finds, as (key, line, message).
    fn problems(text: &str) -> Vec<(String, Option<usize>, String)> {
        let loaded = parse_toml(text, "agent.toml").and_then(|(t, o)| load_config_table(t, o));
        match loaded {
            Ok(_) => Vec::new(),
            Err(ConfigErrors(errors)) => errors
                .into_iter()
                .map(|e| (e.key, e.line, e.message))
                .collect(),
        }
    }

    const TWO_CHANNELS: &str = "[channels.c1]\ntype = \"memory\"\n[channels.c2]\ntype = \"memory\"\n[sources.r1]\ntype = \"stdin\"\nchannels = [\"c1\", \"c2\"]\n";

    #[test]
    fn a_selector_that_routes_an_event_to_no_required_channel_is_refused() {
        let mux = |rest: &str| {
            format!(
                "{TWO_CHANNELS}selector = {{ type = \"multiplexing\", header = \"h\", mapping = {{ a = [\"c1\"] }}{rest} }}\n"
            )
        };
        for text in [mux(""), mux(", default = []")] {
            let p = problems(&text);
            assert!(
                matches!(&p[..], [(key, Some(8), msg)] if key == "sources.r1.selector.default" && msg.contains("non-empty `default`")),
                "{text}\n{p:?}"
            );
        }
        assert_eq!(problems(&mux(", default = [\"c2\"]")), []);

        let rep = |optional: &str| {
            format!(
                "{TWO_CHANNELS}selector = {{ type = \"replicating\", optional = {optional} }}\n"
            )
        };
        let p = problems(&rep("[\"c2\", \"c1\"]"));
        assert!(
            matches!(&p[..], [(key, Some(8), msg)] if key == "sources.r1.selector.optional" && msg.contains("every channel of the source is optional")),
            "{p:?}"
        );
        assert_eq!(problems(&rep("[\"c2\"]")), []);
    }

    #[test]
    fn lines_are_found_for_keys_their_parents_and_either_array_form() {
        let mut o = Origin::new("f");
        o.lines.insert("sinks.k1".into(), 3);
        o.lines.insert("sources.r1.interceptors.0.type".into(), 9);
        o.lines.insert("sources.r1.channels[1]".into(), 7);
        assert_eq!(o.line_of("sinks.k1.batch_size"), Some(3));
        assert_eq!(o.line_of("sources.r1.interceptors[0].type"), Some(9));
        assert_eq!(o.line_of("sources.r1.channels[1]"), Some(7));
        assert_eq!(o.line_of("channels.c1"), None);
    }
}
