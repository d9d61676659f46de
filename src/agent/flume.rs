//! Flume config import: a Flume agent's Java properties file becomes a tidegate agent config
//! (a `toml::Table` in the schema of `docs/configuration.md`).
//!
//! ```
//! let text = "a1.sources = r1\n\
//!             a1.channels = c1\n\
//!             a1.sinks = k1\n\
//!             a1.sources.r1.type = seq\n\
//!             a1.sources.r1.channels = c1\n\
//!             a1.channels.c1.type = memory\n\
//!             a1.sinks.k1.type = logger\n\
//!             a1.sinks.k1.channel = c1\n";
//! let import = tidegate::agent::flume::to_toml(text, "a1").unwrap();
//! assert_eq!(import.table["channels"]["c1"]["capacity"].as_integer(), Some(100)); // Flume's default
//! assert_eq!(import.lines["sinks.k1.channel"], 8);
//! ```
//!
//! The steps, each in its own module:
//! 1. [`properties`] reads the file as `java.util.Properties.load` does (separators,
//!    continuations, escapes, comments, CRLF), keeping each key's line; a key set twice keeps its
//!    last value and is reported.
//! 2. Values of the chosen agent are trimmed (an empty one is an error: Flume ignored the key)
//!    and their `${...}` references resolved ([`substitution`]).
//! 3. [`topology`] applies Flume's loader rules: whitespace-separated lists, components dropped
//!    for lacking a type or an active channel (reported as warnings, left out as Flume left them
//!    out), components configured but not listed (warnings).
//! 4. [`mapping`] turns each active component into its tidegate table, with Flume's keys, units
//!    and defaults ([`catalog`] says which types are supported). Every unsupported component is
//!    reported at once; an unknown or unsupported key is an error naming the key and line.
//!
//! docs/flume-migration.md is the user's guide to the mapping.

pub mod catalog;
pub mod mapping;
pub mod properties;
pub mod substitution;
pub mod topology;

use std::collections::BTreeMap;
use std::fmt;

use properties::Properties;
use topology::{Agent, RawAgent, Value};

/// A problem (or warning) found in a Flume file: the key, its line, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The Flume key (`a1.sinks.k1.type`), or the agent name for agent-wide problems.
    pub key: String,
    /// 1-based line in the properties file, when one key is to blame.
    pub line: Option<usize>,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic for `key` at `line`.
    pub fn new(key: &str, line: Option<usize>, message: String) -> Diagnostic {
        Diagnostic {
            key: key.to_string(),
            line: line.filter(|&l| l > 0),
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// A successful import.
#[derive(Debug, Clone)]
pub struct FlumeImport {
    /// The agent config, in tidegate's TOML schema.
    pub table: toml::Table,
    /// What the user should know: keys without effect, components Flume dropped (and which are
    /// left out here too), defaults filled in.
    pub warnings: Vec<Diagnostic>,
    /// Each produced key path (`channels.c1.capacity`, `sources.r1.interceptors[0].type`) -> the
    /// line of the properties file it came from.
    pub lines: BTreeMap<String, usize>,
}

/// A failed import: every error found (not just the first), and the warnings.
#[derive(Debug, Clone)]
pub struct FlumeErrors {
    /// The errors, in file order where they have a line.
    pub errors: Vec<Diagnostic>,
    /// Warnings found on the way.
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for FlumeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FlumeErrors {}

/// A lookup of environment variables.
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String>>;

/// Where `${...}` references are looked up.
pub struct ImportOptions {
    /// Environment variables (`${env:X}`, `${X}`, env config filters) and `HOME` (the file
    /// channel's default directories).
    pub env: EnvLookup,
    /// Java system properties for `${sys:X}` (what `flume-ng -DX=v` set).
    pub system_properties: BTreeMap<String, String>,
}

impl Default for ImportOptions {
    /// The process environment, no system properties.
    fn default() -> Self {
        ImportOptions {
            env: Box::new(|k| std::env::var(k).ok()),
            system_properties: BTreeMap::new(),
        }
    }
}

impl ImportOptions {
    /// Options whose environment is exactly `vars` (for tests and reproducible conversions).
    pub fn with_env(vars: BTreeMap<String, String>) -> Self {
        ImportOptions {
            env: Box::new(move |k| vars.get(k).cloned()),
            system_properties: BTreeMap::new(),
        }
    }
}

/// Converts agent `agent` of the Flume properties `text`, resolving `${...}` against the
/// process environment.
pub fn to_toml(text: &str, agent: &str) -> Result<FlumeImport, FlumeErrors> {
    to_toml_with(text, agent, &ImportOptions::default())
}

/// [`to_toml`] with explicit lookups.
pub fn to_toml_with(
    text: &str,
    agent: &str,
    opts: &ImportOptions,
) -> Result<FlumeImport, FlumeErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => {
            warnings.push(Diagnostic::new(
                "(file)",
                Some(1),
                "starts with a byte-order mark, removed (Java's reader makes it part of the first key)".to_string(),
            ));
            rest
        }
        None => text,
    };
    let props = match Properties::parse(text) {
        Ok(p) => p,
        Err(es) => {
            return Err(FlumeErrors {
                errors: es
                    .into_iter()
                    .map(|e| Diagnostic::new("(file)", Some(e.line), e.message))
                    .collect(),
                warnings,
            });
        }
    };
    let prefix = format!("{agent}.");
    let mut agents: Vec<&str> = Vec::new();
    for (key, p) in &props.entries {
        match key.split_once('.') {
            Some((a, _)) if !a.is_empty() => {
                if !agents.contains(&a) {
                    agents.push(a);
                }
            }
            _ => warnings.push(Diagnostic::new(
                key,
                Some(p.line),
                "has no agent prefix: Flume reports it and ignores it, and so does this import \
                 (it can still be referenced as `${...}`)"
                    .to_string(),
            )),
        }
    }
    if !agents.contains(&agent) {
        agents.sort_unstable();
        return Err(FlumeErrors {
            errors: vec![Diagnostic::new(
                agent,
                None,
                format!(
                    "no key starts with `{prefix}`; the agents in this file are: {}",
                    if agents.is_empty() {
                        "(none)".to_string()
                    } else {
                        agents.join(", ")
                    }
                ),
            )],
            warnings,
        });
    }
    let others: Vec<&str> = agents.iter().copied().filter(|a| *a != agent).collect();
    if !others.is_empty() {
        warnings.push(Diagnostic::new(
            agent,
            None,
            format!(
                "the file also defines agent(s) {}, not converted (give --name to pick one)",
                others.join(", ")
            ),
        ));
    }
    for d in &props.duplicates {
        if d.key.starts_with(&prefix) || !d.key.contains('.') {
            warnings.push(Diagnostic::new(
                &d.key,
                Some(d.kept_line),
                format!("is set more than once; the value of line {} is discarded (the last one wins, as in Flume)", d.overridden_line),
            ));
        }
    }

    // Config filters first: substitution needs them.
    let filters = config_filters(&props, agent, &mut errors);
    let file_lookup = |k: &str| props.entries.get(k).map(|p| p.value.clone());
    let lookup = substitution::Lookup {
        env: &*opts.env,
        system_properties: &opts.system_properties,
        file: &file_lookup,
        filters: &filters,
    };

    let mut raw = RawAgent::default();
    for (key, p) in props.entries.range(prefix.clone()..) {
        let Some(sub) = key.strip_prefix(&prefix) else {
            break;
        };
        if sub == "configfilters" || sub.starts_with("configfilters.") {
            continue;
        }
        let trimmed = p.value.trim();
        if trimmed.is_empty() {
            errors.push(Diagnostic::new(
                key,
                Some(p.line),
                "has an empty value (Flume rejects the key and goes on without it)".to_string(),
            ));
            continue;
        }
        let text = match substitution::resolve(trimmed, &lookup) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                errors.push(Diagnostic::new(key, Some(p.line), e));
                // Keep the raw text so that the rest of the component is still checked.
                trimmed.to_string()
            }
        };
        let value = Value {
            key: key.clone(),
            text,
            line: p.line,
        };
        if !raw.add(sub, value) {
            errors.push(Diagnostic::new(
                key,
                Some(p.line),
                format!(
                    "is not an agent key: Flume ignored it; keys are `{agent}.sources`, `{agent}.channels`, \
                     `{agent}.sinks`, `{agent}.sinkgroups` (lists) and `{agent}.<section>.NAME.KEY`"
                ),
            ));
        }
    }

    let topology = Agent::validate(agent, raw, &mut errors, &mut warnings);
    let mut mapper = mapping::Mapper::new(opts, &mut errors, &mut warnings);
    let (table, lines) = mapper.agent(&topology);

    warnings.sort_by_key(|w| w.line.unwrap_or(0));
    if errors.is_empty() {
        Ok(FlumeImport {
            table,
            warnings,
            lines,
        })
    } else {
        errors.sort_by_key(|e| e.line.unwrap_or(0));
        Err(FlumeErrors { errors, warnings })
    }
}

/// `AGENT.configfilters = f1 f2` and `AGENT.configfilters.f1.type = env`: name -> type.
fn config_filters(
    props: &Properties,
    agent: &str,
    errors: &mut Vec<Diagnostic>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let list_key = format!("{agent}.configfilters");
    let Some(list) = props.entries.get(&list_key) else {
        return out;
    };
    for name in list.value.split_whitespace() {
        let type_key = format!("{list_key}.{name}.type");
        match props.entries.get(&type_key) {
            Some(t) => {
                let t = t.value.trim().to_ascii_lowercase();
                let t = match t.as_str() {
                    "org.apache.flume.configfilter.environmentvariableconfigfilter" => {
                        "env".to_string()
                    }
                    _ => t,
                };
                out.insert(name.to_string(), t);
            }
            None => errors.push(Diagnostic::new(
                &type_key,
                Some(list.line),
                format!("config filter `{name}` is listed but has no type"),
            )),
        }
    }
    out
}
