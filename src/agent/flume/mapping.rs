//! Flume components -> tidegate tables: keys, units and defaults.
//!
//! Each component's keys go through `Keys`, which remembers which keys the mapping read; a
//! key nobody read is an error (Flume ignored it silently: `rollInterval` without the `sink.`
//! prefix of file_roll, a misspelt `maxPenalty`), with a hint when a known key is close.
//! One submodule per kind of component: `channels`, `sources` (with their selectors; the file
//! sources in `files`, exec and syslog in `exec_syslog`), `interceptors`, `sinks`, `sink_groups`,
//! and `kafka` (source and sink). docs/flume-migration.md has the full table.

mod channels;
mod exec_syslog;
mod files;
mod interceptors;
mod kafka;
mod sink_groups;
mod sinks;
mod sources;

use std::collections::{BTreeMap, BTreeSet};

use super::catalog::{self, Kind, Support};
use super::topology::{Agent, Component, Value};
use super::{Diagnostic, ImportOptions};

pub use interceptors::java_replacement;

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
                tl == lower
                    || tl.ends_with(&format!(".{lower}"))
                    || lower.ends_with(&format!(".{tl}"))
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

    /// Checks the type of a component; on anything but `Yes`, reports it and returns None.
    fn support(&mut self, kind: Kind, name: &str, ty: &Value) -> Option<&'static str> {
        match catalog::lookup(kind, &ty.text) {
            Support::Yes(t) => return Some(t),
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

    // ---- key copiers shared by the component mappings -------------------------------------

    /// A source's `batchSize` (or Flume's default), checked against each channel's
    /// `transactionCapacity`.
    fn source_batch(
        &mut self,
        keys: &mut Keys<'_>,
        out: &mut Out,
        channels: &[String],
        ty: &Value,
        default: i64,
    ) {
        let (batch, at) = match keys.get("batchSize") {
            Some(v) => (self.positive(v), v),
            None => (Some(default), ty),
        };
        if let Some(b) = batch {
            out.put("batch_size", b, at.line);
            for ch in channels {
                self.check_batch(
                    b,
                    ch,
                    at,
                    if std::ptr::eq(at, ty) {
                        "the default batchSize"
                    } else {
                        "batchSize"
                    },
                );
            }
        }
    }

    /// A boolean key copied under a new name.
    fn flag(&mut self, keys: &mut Keys<'_>, out: &mut Out, flume: &str, ours: &str) {
        if let Some(v) = keys.get(flume)
            && let Some(b) = self.boolean(v)
        {
            out.put(ours, b, v.line);
        }
    }

    /// A text key copied under a new name.
    fn text(&mut self, keys: &mut Keys<'_>, out: &mut Out, flume: &str, ours: &str) {
        if let Some(v) = keys.get(flume) {
            out.put(ours, v.text.clone(), v.line);
        }
    }

    /// A charset key: only UTF-8 is accepted.
    fn utf8_only(&mut self, keys: &mut Keys<'_>, key: &str) {
        if let Some(v) = keys.get(key) {
            self.utf8_value(v);
        }
    }

    /// A charset value: only UTF-8 is accepted.
    fn utf8_value(&mut self, v: &Value) {
        if !v.text.eq_ignore_ascii_case("utf-8") && !v.text.eq_ignore_ascii_case("utf8") {
            self.error(
                v,
                format!(
                    "charset `{}` is not supported: tidegate keeps bytes as they are (UTF-8 in, UTF-8 out)",
                    v.text
                ),
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
}

/// `a1.channels.c1` for a component whose type key is `a1.channels.c1.type`.
fn type_prefix(c: &Component) -> String {
    c.keys.get("type").map_or_else(
        || c.name.clone(),
        |t| t.key.trim_end_matches(".type").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms(30_000), "30s");
        assert_eq!(duration_ms(1500), "1500ms");
    }
}
