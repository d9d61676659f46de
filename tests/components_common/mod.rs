//! Helpers of the component tests (tests/components_*.rs): a [`Deliver`] that puts into a real
//! channel, one that is always full, and a running source's handles.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tidegate::agent::component::{
    BoxFuture, ComponentError, Deliver, DeliverError, Source, SourceContext, SourceCounters,
    SourceOutput,
};
use tidegate::{Channel, Error, Event};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Puts a batch into one channel in one transaction, off the async workers: what the runtime
/// does for a source with one channel.
pub struct ChannelDeliver(pub Arc<dyn Channel>);

impl Deliver for ChannelDeliver {
    fn deliver(&self, events: Vec<Event>) -> BoxFuture<'_, Result<(), DeliverError>> {
        let ch = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let channel = "c1".to_string();
                let mut tx = ch.transaction();
                for e in events {
                    if let Err(e) = tx.put(e) {
                        return Err(match e.error {
                            Error::ChannelFull { .. } => DeliverError::Full { channel },
                            Error::EventTooLarge { .. } => DeliverError::TooLarge {
                                channel,
                                detail: e.error.to_string(),
                            },
                            source => DeliverError::Channel { channel, source },
                        });
                    }
                }
                tx.commit()
                    .map_err(|source| DeliverError::Channel { channel, source })
            })
            .await
            .expect("deliver task")
        })
    }
}

/// A channel that is always full.
pub struct FullDeliver;

impl Deliver for FullDeliver {
    fn deliver(&self, _events: Vec<Event>) -> BoxFuture<'_, Result<(), DeliverError>> {
        Box::pin(async {
            Err(DeliverError::Full {
                channel: "c1".into(),
            })
        })
    }
}

/// A source running on its own task.
pub struct Running {
    pub shutdown: CancellationToken,
    pub counters: Arc<SourceCounters>,
    pub task: JoinHandle<Result<(), ComponentError>>,
}

impl Running {
    /// Starts `source` delivering to `output`.
    pub fn start(source: Box<dyn Source>, output: Arc<dyn Deliver>) -> Running {
        let shutdown = CancellationToken::new();
        let counters = Arc::new(SourceCounters::default());
        let ctx = SourceContext {
            name: "r1".into(),
            output: SourceOutput(output),
            shutdown: shutdown.clone(),
            counters: counters.clone(),
        };
        let task = tokio::spawn(source.run(ctx));
        Running {
            shutdown,
            counters,
            task,
        }
    }

    /// Cancels and waits (bounded) for the source to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the source stops within 20 s")
            .expect("source task");
        assert!(result.is_ok(), "source failed: {result:?}");
    }
}

/// Takes everything the channel holds, in order.
pub fn drain(ch: &dyn Channel) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let mut tx = ch.transaction();
        let got = tx.take_batch(1000, Duration::ZERO).expect("take");
        tx.commit().expect("commit");
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// Bodies as strings.
pub fn bodies(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(e.body()).into_owned())
        .collect()
}
