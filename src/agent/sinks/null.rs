//! `null`: accepts every batch and drops it (the runner counts what it drained). For tests and
//! for measuring the channel.

use serde::Deserialize;

use crate::Event;
use crate::agent::component::{BoxFuture, Sink, SinkError};

/// `[sinks.NAME]` keys of a `null` sink: none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullConfig {}

/// The `null` sink.
#[derive(Debug)]
pub struct NullSink;

impl NullSink {
    /// A `null` sink.
    pub fn new(_name: &str, _cfg: NullConfig) -> Self {
        NullSink
    }
}

impl Sink for NullSink {
    fn deliver<'a>(&'a mut self, _batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}
