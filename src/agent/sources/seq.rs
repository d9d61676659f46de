//! `seq`: generates events whose bodies are "0", "1", "2", ... (for load tests and demos).

use serde::Deserialize;

use super::{Stopped, deliver_or_retry};
use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Source, SourceContext};

/// `[sources.NAME]` keys of a `seq` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqConfig {
    /// Events to generate; omitted = unbounded.
    #[serde(default)]
    pub count: Option<u64>,
    /// Events per put transaction. Default 100.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_batch() -> usize {
    100
}

/// The `seq` source.
#[derive(Debug)]
pub struct SeqSource {
    cfg: SeqConfig,
}

impl SeqSource {
    /// A `seq` source.
    pub fn new(_name: &str, cfg: SeqConfig) -> Self {
        SeqSource { cfg }
    }
}

impl Source for SeqSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let mut next = 0u64;
            let end = self.cfg.count.unwrap_or(u64::MAX);
            let batch = self.cfg.batch_size.max(1) as u64;
            while next < end && !ctx.shutdown.is_cancelled() {
                let n = (end - next).min(batch);
                let events = (next..next + n)
                    .map(|i| Event::new(i.to_string().into_bytes()))
                    .collect();
                match deliver_or_retry(&ctx, events).await {
                    Ok(()) => next += n,
                    Err(Stopped::Shutdown) => break,
                }
            }
            tracing::info!(source = %ctx.name, generated = next, "seq source done");
            Ok(())
        })
    }
}
