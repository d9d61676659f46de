//! Sinks by type name: checking their config at load, building them at start.
//!
//! A sink's table holds the keys every sink has (`type`, `channel`, `batch_size`, read by
//! [`config`](super::config)) and its own keys, which its `<X>Config` struct deserializes
//! (unknown keys are errors). Types: `logger` and `null` (here); `file_roll` and `http`
//! (their own modules).

pub mod file_roll;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod logger;
pub mod nats;
pub mod null;

use serde::de::DeserializeOwned;

use super::component::{ComponentError, Sink};
use super::config::Checker;

/// Sink type names this binary knows.
pub const SINK_TYPES: &[&str] = &[
    "file_roll",
    "http",
    #[cfg(feature = "kafka")]
    "kafka",
    "logger",
    "nats",
    "null",
];

/// A sink's type and its own (already checked) keys.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    kind: String,
    params: toml::Table,
}

impl SinkSpec {
    /// The type name.
    pub fn type_name(&self) -> &str {
        &self.kind
    }
}

/// Checks a sink's own keys; records problems under `prefix`.
pub(crate) fn parse_spec(
    ck: &mut Checker<'_>,
    prefix: &str,
    kind: &str,
    params: toml::Table,
) -> Option<SinkSpec> {
    let value = toml::Value::Table(params.clone());
    match kind {
        "file_roll" => {
            ck.parse::<file_roll::FileRollSinkConfig>(prefix, value)?;
        }
        "http" => {
            ck.parse::<http::HttpSinkConfig>(prefix, value)?;
        }
        #[cfg(feature = "kafka")]
        "kafka" => {
            ck.parse_checked(prefix, value, kafka::KafkaSinkConfig::check)?;
        }
        "logger" => {
            ck.parse::<logger::LoggerConfig>(prefix, value)?;
        }
        "nats" => {
            ck.parse_checked(prefix, value, nats::NatsSinkConfig::check)?;
        }
        "null" => {
            ck.parse::<null::NullConfig>(prefix, value)?;
        }
        other => {
            ck.error(
                format!("{prefix}.type"),
                format!(
                    "unknown sink type {other:?} (known: {})",
                    SINK_TYPES.join(", ")
                ),
            );
            return None;
        }
    }
    Some(SinkSpec {
        kind: kind.to_string(),
        params,
    })
}

fn params<T: DeserializeOwned>(spec: &SinkSpec) -> Result<T, ComponentError> {
    T::deserialize(toml::Value::Table(spec.params.clone()))
        .map_err(|e| ComponentError::Config(e.to_string()))
}

/// Builds a sink from its checked spec.
pub fn build(name: &str, spec: &SinkSpec) -> Result<Box<dyn Sink>, ComponentError> {
    match spec.kind.as_str() {
        "file_roll" => file_roll::build(name, params(spec)?),
        "http" => http::build(name, params(spec)?),
        #[cfg(feature = "kafka")]
        "kafka" => kafka::build(name, params(spec)?),
        "logger" => Ok(Box::new(logger::LoggerSink::new(name, params(spec)?))),
        "nats" => nats::build(name, params(spec)?),
        "null" => Ok(Box::new(null::NullSink::new(name, params(spec)?))),
        other => Err(ComponentError::Config(format!(
            "unknown sink type {other:?}"
        ))),
    }
}
