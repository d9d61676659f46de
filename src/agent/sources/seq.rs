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
                    Err(Stopped::Shutdown(_)) => break,
                }
            }
            tracing::info!(source = %ctx.name, generated = next, "seq source done");
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::agent::component::{SourceCounters, SourceOutput};
    use crate::agent::config::SelectorConfig;
    use crate::agent::monitoring::Heartbeat;
    use crate::agent::selector::Router;
    use crate::{Channel, MemoryChannel, MemoryChannelConfig};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_channel_slows_the_source_down_and_loses_nothing() {
        let ch: Arc<dyn Channel> = Arc::new(MemoryChannel::new(MemoryChannelConfig {
            capacity: 7,
            keep_alive: Duration::from_millis(5),
            ..MemoryChannelConfig::default()
        }));
        let heartbeat = Arc::new(Heartbeat::default());
        let router = Router::new(
            "r1",
            BTreeMap::from([("c1".to_string(), ch.clone())]),
            SelectorConfig::Replicating { optional: vec![] },
            Vec::new(),
            CancellationToken::new(),
            heartbeat.clone(),
        );
        let counters = Arc::new(SourceCounters::default());
        let ctx = SourceContext {
            name: "r1".into(),
            output: SourceOutput(Arc::new(router)),
            shutdown: CancellationToken::new(),
            counters: counters.clone(),
        };
        let src = Box::new(SeqSource::new(
            "r1",
            SeqConfig {
                count: Some(200),
                batch_size: 5,
            },
        ));
        let run = tokio::spawn(src.run(ctx));
        // A slow consumer: the channel is full most of the time.
        let drained = tokio::task::spawn_blocking(move || {
            let mut got = Vec::new();
            while got.len() < 200 {
                let mut tx = ch.transaction();
                let batch = tx.take_batch(3, Duration::from_secs(10)).expect("take");
                tx.commit().expect("commit");
                assert!(!batch.is_empty(), "the source stopped early");
                got.extend(
                    batch
                        .iter()
                        .map(|e| String::from_utf8_lossy(e.body()).into_owned()),
                );
            }
            got
        })
        .await
        .expect("drainer");
        assert!(matches!(run.await, Ok(Ok(()))));
        let want: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        assert_eq!(drained, want, "every event once, in order");
        assert_eq!(
            counters.accepted.load(std::sync::atomic::Ordering::Relaxed),
            200
        );
        assert_eq!(
            heartbeat.snapshot().consecutive_failures,
            0,
            "the last delivery succeeded"
        );
    }
}
