//! Sources by type name: checking their config at load, building them at start.
//!
//! A source's table holds the keys every source has (`type`, `channels`, `selector`,
//! `interceptors`, read by [`config`](super::config)) and its own keys, which its `<X>Config`
//! struct deserializes (unknown keys are errors). Types: `seq` and `stdin` (here); `exec`,
//! `http`, `nats`, `netcat`, `spooldir`, `syslog` and `taildir` (their own modules).

pub mod exec;
mod file_lines;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod nats;
pub mod netcat;
pub mod seq;
pub mod spooldir;
pub mod stdin;
pub mod syslog;
pub mod taildir;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::component::{ComponentError, DeliverError, Interceptor, Source, SourceContext};
use super::config::Checker;
use crate::Event;

/// Source type names this binary knows.
pub const SOURCE_TYPES: &[&str] = &[
    "exec",
    "http",
    #[cfg(feature = "kafka")]
    "kafka",
    "nats",
    "netcat",
    "seq",
    "spooldir",
    "stdin",
    "syslog",
    "taildir",
];

/// A source's type and its own (already checked) keys.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    kind: String,
    params: toml::Table,
    batch_size: Option<usize>,
}

impl SourceSpec {
    /// The type name (`seq`, `stdin`, `http`, `netcat`).
    pub fn type_name(&self) -> &str {
        &self.kind
    }
    /// Events per put transaction, for the types that have a fixed batch size.
    pub fn batch_size(&self) -> Option<usize> {
        self.batch_size
    }
}

/// One interceptor's table as written (checked at load).
pub type InterceptorSpec = super::interceptors::InterceptorConfig;

/// Checks a source's own keys; records problems under `prefix`.
pub(crate) fn parse_spec(
    ck: &mut Checker<'_>,
    prefix: &str,
    kind: &str,
    params: toml::Table,
) -> Option<SourceSpec> {
    let value = toml::Value::Table(params.clone());
    let batch_size = match kind {
        "exec" => Some(
            ck.parse::<exec::ExecSourceConfig>(prefix, value)?
                .batch_size,
        ),
        "http" => {
            ck.parse::<http::HttpSourceConfig>(prefix, value)?;
            None
        }
        #[cfg(feature = "kafka")]
        "kafka" => Some(
            ck.parse_checked(prefix, value, kafka::KafkaSourceConfig::check)?
                .batch_size,
        ),
        "nats" => Some(
            ck.parse_checked(prefix, value, nats::NatsSourceConfig::check)?
                .batch_size,
        ),
        "netcat" => {
            ck.parse::<netcat::NetcatSourceConfig>(prefix, value)?;
            None
        }
        "seq" => Some(ck.parse::<seq::SeqConfig>(prefix, value)?.batch_size),
        "stdin" => Some(ck.parse::<stdin::StdinConfig>(prefix, value)?.batch_size),
        "syslog" => Some(
            ck.parse::<syslog::SyslogSourceConfig>(prefix, value)?
                .batch_size,
        ),
        "taildir" => Some(
            ck.parse_checked(prefix, value, taildir::TaildirConfig::check)?
                .batch_size,
        ),
        "spooldir" => Some(
            ck.parse_checked(prefix, value, spooldir::SpooldirConfig::check)?
                .batch_size,
        ),
        other => {
            ck.error(
                format!("{prefix}.type"),
                format!(
                    "unknown source type {other:?} (known: {})",
                    SOURCE_TYPES.join(", ")
                ),
            );
            return None;
        }
    };
    if batch_size == Some(0) {
        ck.error(format!("{prefix}.batch_size"), "must be at least 1");
        return None;
    }
    Some(SourceSpec {
        kind: kind.to_string(),
        params,
        batch_size,
    })
}

fn params<T: DeserializeOwned>(spec: &SourceSpec) -> Result<T, ComponentError> {
    T::deserialize(toml::Value::Table(spec.params.clone()))
        .map_err(|e| ComponentError::Config(e.to_string()))
}

/// Builds a source from its checked spec.
pub fn build(name: &str, spec: &SourceSpec) -> Result<Box<dyn Source>, ComponentError> {
    match spec.kind.as_str() {
        "exec" => exec::build(name, params(spec)?),
        "http" => http::build(name, params(spec)?),
        "nats" => nats::build(name, params(spec)?),
        #[cfg(feature = "kafka")]
        "kafka" => kafka::build(name, params(spec)?),
        "netcat" => netcat::build(name, params(spec)?),
        "seq" => Ok(Box::new(seq::SeqSource::new(name, params(spec)?))),
        "stdin" => Ok(Box::new(stdin::StdinSource::new(name, params(spec)?))),
        "syslog" => syslog::build(name, params(spec)?),
        "taildir" => taildir::build(name, params(spec)?),
        "spooldir" => spooldir::build(name, params(spec)?),
        other => Err(ComponentError::Config(format!(
            "unknown source type {other:?}"
        ))),
    }
}

/// Checks a source's `interceptors` array.
pub(crate) fn parse_interceptors(
    ck: &mut Checker<'_>,
    key: &str,
    value: toml::Value,
) -> Option<Vec<InterceptorSpec>> {
    ck.parse(key, value)
}

/// Builds a source's interceptor chain.
pub fn build_interceptors(
    specs: &[InterceptorSpec],
) -> Result<Vec<Box<dyn Interceptor>>, ComponentError> {
    specs
        .iter()
        .map(super::interceptors::build_interceptor)
        .collect()
}

/// Shortest and longest pause before a finite source retries a batch its channels refused.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Why [`deliver_or_retry`] gave up.
pub(crate) enum Stopped {
    /// The source is stopping; the batch (handed back) was not committed.
    Shutdown(Vec<Event>),
}

/// Hands `events` to the channels, retrying (with capped exponential back-off) while they are
/// full or failing, until they are committed or the agent stops. A batch refused for a client
/// error (an event too large, or routed to no channel; see
/// [`DeliverError::is_client_error`]) is delivered again one event at a time, so only the
/// events at fault are counted as rejected and logged; their neighbours are committed.
pub(crate) async fn deliver_or_retry(
    ctx: &SourceContext,
    events: Vec<Event>,
) -> Result<(), Stopped> {
    ctx.counters
        .received
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    let Some(events) = deliver_batch(ctx, events).await? else {
        return Ok(());
    };
    for (i, event) in events.iter().enumerate() {
        if let Err(Stopped::Shutdown(mut rest)) = deliver_batch(ctx, vec![event.clone()]).await {
            rest.extend_from_slice(&events[i + 1..]);
            return Err(Stopped::Shutdown(rest));
        }
    }
    Ok(())
}

/// One batch, retried while the channels are full or failing. `Ok(None)`: committed, or (a
/// single event) rejected for a client error. `Ok(Some(events))`: a batch of several events was
/// refused for a client error and is handed back to be split.
async fn deliver_batch(
    ctx: &SourceContext,
    events: Vec<Event>,
) -> Result<Option<Vec<Event>>, Stopped> {
    let n = events.len() as u64;
    let mut pause = RETRY_MIN;
    loop {
        if ctx.shutdown.is_cancelled() {
            return Err(Stopped::Shutdown(events));
        }
        match ctx.output.deliver(events.clone()).await {
            Ok(()) => {
                ctx.counters.accepted.fetch_add(n, Ordering::Relaxed);
                ctx.counters.append_batches.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
            Err(DeliverError::ShuttingDown) => return Err(Stopped::Shutdown(events)),
            Err(e) if e.is_client_error() => {
                if n > 1 {
                    tracing::info!(source = %ctx.name, error = %e, events = n, "batch refused; delivering its events one by one");
                    return Ok(Some(events));
                }
                ctx.counters.rejected.fetch_add(n, Ordering::Relaxed);
                tracing::error!(source = %ctx.name, error = %e, "event rejected");
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(source = %ctx.name, error = %e, retry_in = ?pause, "delivery failed; retrying");
                tokio::select! {
                    () = ctx.shutdown.cancelled() => return Err(Stopped::Shutdown(events)),
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::agent::component::{SourceCounters, SourceOutput};
    use crate::agent::config::SelectorConfig;
    use crate::agent::monitoring::Heartbeat;
    use crate::agent::selector::Router;
    use crate::{Channel, MemoryChannel, MemoryChannelConfig};

    /// One event over `max_event_size` is rejected alone: the batch is delivered again one
    /// event at a time, so its valid neighbours are committed (stdin and seq move past the
    /// batch once `deliver_or_retry` returns).
    #[tokio::test]
    async fn one_oversize_event_is_rejected_alone_and_its_neighbours_committed() {
        let ch: Arc<dyn Channel> = Arc::new(MemoryChannel::new(MemoryChannelConfig {
            max_event_size: 100,
            ..MemoryChannelConfig::default()
        }));
        let router = Router::new(
            "in",
            BTreeMap::from([("c1".to_string(), ch.clone())]),
            SelectorConfig::Replicating { optional: vec![] },
            Vec::new(),
            CancellationToken::new(),
            Arc::new(Heartbeat::default()),
        );
        let ctx = SourceContext {
            name: "in".into(),
            output: SourceOutput(Arc::new(router)),
            shutdown: CancellationToken::new(),
            counters: Arc::new(SourceCounters::default()),
        };
        let batch = vec![
            Event::new(b"good-1".to_vec()),
            Event::new(vec![b'x'; 1000]),
            Event::new(b"good-2".to_vec()),
        ];
        let res = deliver_or_retry(&ctx, batch).await;
        assert!(res.is_ok());
        let mut tx = ch.transaction();
        let got = tx
            .take_batch(10, Duration::ZERO)
            .unwrap_or_else(|e| panic!("{e}"));
        let bodies: Vec<&[u8]> = got.iter().map(|e| e.body()).collect();
        assert_eq!(
            bodies,
            [&b"good-1"[..], &b"good-2"[..]],
            "the valid events of a batch with one oversize event were dropped"
        );
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = &ctx.counters;
        assert_eq!(
            [
                count(&counters.received),
                count(&counters.accepted),
                count(&counters.rejected)
            ],
            [3, 2, 1],
            "received, accepted, rejected"
        );
    }
}
