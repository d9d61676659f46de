//! `logger`: writes each event to the log at `info` (Flume's LoggerSink): its headers and the
//! first `max_body_length` bytes of its body, as text with other bytes escaped.

use serde::Deserialize;

use crate::Event;
use crate::agent::component::{BoxFuture, Sink, SinkError};

/// `[sinks.NAME]` keys of a `logger` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggerConfig {
    /// Bytes of the body shown (Flume's `maxBytesToLog`). Default 16.
    #[serde(default = "default_max_body")]
    pub max_body_length: usize,
}

fn default_max_body() -> usize {
    16
}

/// The `logger` sink.
#[derive(Debug)]
pub struct LoggerSink {
    name: String,
    cfg: LoggerConfig,
}

impl LoggerSink {
    /// A `logger` sink.
    pub fn new(name: &str, cfg: LoggerConfig) -> Self {
        LoggerSink {
            name: name.to_string(),
            cfg,
        }
    }
}

/// The first `max` bytes of `body`, printable ASCII as is, anything else escaped.
pub fn shown_body(body: &[u8], max: usize) -> String {
    let shown = &body[..body.len().min(max)];
    let mut s: String = shown.escape_ascii().to_string();
    if body.len() > max {
        s.push_str(&format!("... ({} bytes)", body.len()));
    }
    s
}

impl Sink for LoggerSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            for e in batch {
                tracing::info!(
                    sink = %self.name,
                    headers = ?e.headers(),
                    body = %shown_body(e.body(), self.cfg.max_body_length),
                    "event"
                );
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::shown_body;

    #[test]
    fn bodies_are_cut_and_escaped() {
        assert_eq!(shown_body(b"hello", 16), "hello");
        assert_eq!(shown_body(b"hello world", 5), "hello... (11 bytes)");
        assert_eq!(shown_body(b"a\nb\xff", 16), "a\\nb\\xff");
    }
}
