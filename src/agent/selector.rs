//! [`Router`]: the [`Deliver`] a source gets. Interceptors, then the channel selector, then one
//! transaction per channel.
//!
//! Every required channel's transaction receives all its puts before any commits, so a full or
//! failing channel refuses the batch before anything is visible anywhere. Commits then run one
//! channel after the other; if a later required channel's commit fails after an earlier one
//! committed, the source is told the batch failed and its client retries: the earlier channel
//! may then hold the batch twice (at-least-once, as in Flume). Optional channels are written
//! after the required ones commit; their failures are logged and counted, never returned.
//!
//! An event the selector routes to no required channel (a multiplexing value without mapping
//! and no `default`, a replicating selector whose channels are all optional) fails the whole
//! batch with [`DeliverError::NoChannel`] before anything is put: an acknowledgement always
//! means some required channel committed the event. The config check refuses such selectors at
//! load; this is the runtime guard. Client errors ([`DeliverError::is_client_error`]) are not
//! recorded as failures of the source's heartbeat: the agent is fine, the input was not.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::component::{BoxFuture, Deliver, DeliverError, Interceptor};
use super::config::SelectorConfig;
use super::monitoring::Heartbeat;
use crate::{Channel, Error, Event};

/// Routes a source's batches to its channels.
pub struct Router {
    source: String,
    channels: BTreeMap<String, Arc<dyn Channel>>,
    selector: SelectorConfig,
    interceptors: Vec<Box<dyn Interceptor>>,
    stopping: CancellationToken,
    heartbeat: Arc<Heartbeat>,
}

impl Router {
    /// A router for `source` over `channels` (its channels, by name). After `stopping` is
    /// cancelled every delivery fails with [`DeliverError::ShuttingDown`].
    pub fn new(
        source: &str,
        channels: BTreeMap<String, Arc<dyn Channel>>,
        selector: SelectorConfig,
        interceptors: Vec<Box<dyn Interceptor>>,
        stopping: CancellationToken,
        heartbeat: Arc<Heartbeat>,
    ) -> Self {
        Router {
            source: source.to_string(),
            channels,
            selector,
            interceptors,
            stopping,
            heartbeat,
        }
    }

    /// Splits a batch into (required, optional) events per channel, keeping order; fails if
    /// an event would go to no required channel.
    fn route(&self, events: Vec<Event>) -> Result<(Batches, Batches), DeliverError> {
        let mut required = Batches::new();
        let mut optional = Batches::new();
        match &self.selector {
            SelectorConfig::Replicating { optional: opt } => {
                if self.channels.keys().all(|c| opt.contains(c)) {
                    return Err(DeliverError::NoChannel {
                        detail: "every channel of the replicating selector is optional".into(),
                    });
                }
                for name in self.channels.keys() {
                    let target = if opt.contains(name) {
                        &mut optional
                    } else {
                        &mut required
                    };
                    target.insert(name.clone(), events.clone());
                }
            }
            SelectorConfig::Multiplexing {
                header,
                mapping,
                default,
                optional: opt,
            } => {
                for e in events {
                    let value = e.headers().get(header);
                    let req = value.and_then(|v| mapping.get(v)).unwrap_or(default);
                    if req.is_empty() {
                        return Err(DeliverError::NoChannel {
                            detail: match value {
                                Some(v) => format!(
                                    "header {header} = {v:?} has no mapping and the selector no default"
                                ),
                                None => format!(
                                    "the event has no header {header} and the selector no default"
                                ),
                            },
                        });
                    }
                    let empty = Vec::new();
                    let opt = value.and_then(|v| opt.get(v)).unwrap_or(&empty);
                    for c in req {
                        required.entry(c.clone()).or_default().push(e.clone());
                    }
                    for c in opt.iter().filter(|c| !req.contains(c)) {
                        optional.entry(c.clone()).or_default().push(e.clone());
                    }
                }
            }
        }
        Ok((required, optional))
    }
}

type Batches = BTreeMap<String, Vec<Event>>;

fn deliver_error(channel: &str, e: Error) -> DeliverError {
    let channel = channel.to_string();
    match e {
        Error::ChannelFull { .. } | Error::InsufficientSpace { .. } => {
            DeliverError::Full { channel }
        }
        Error::EventTooLarge { .. } | Error::TransactionFull { .. } => DeliverError::TooLarge {
            channel,
            detail: e.to_string(),
        },
        other => DeliverError::Channel {
            channel,
            source: other,
        },
    }
}

/// Puts each batch in a transaction of its channel, then commits them all. Blocking.
fn put_all(
    channels: &BTreeMap<String, Arc<dyn Channel>>,
    batches: Batches,
) -> Result<(), DeliverError> {
    let mut txs = Vec::with_capacity(batches.len());
    for (name, events) in batches {
        let Some(ch) = channels.get(&name) else {
            return Err(DeliverError::Channel {
                channel: name,
                source: Error::Closed,
            });
        };
        let mut tx = ch.transaction();
        for e in events {
            tx.put(e).map_err(|pe| deliver_error(&name, pe.error))?;
        }
        txs.push((name, tx));
    }
    for (name, tx) in txs {
        tx.commit().map_err(|e| deliver_error(&name, e))?;
    }
    Ok(())
}

impl Deliver for Router {
    fn deliver(&self, events: Vec<Event>) -> BoxFuture<'_, Result<(), DeliverError>> {
        Box::pin(async move {
            if self.stopping.is_cancelled() {
                return Err(DeliverError::ShuttingDown);
            }
            let events = self
                .interceptors
                .iter()
                .fold(events, |evs, i| i.intercept(evs));
            if events.is_empty() {
                return Ok(());
            }
            let channels = self.channels.clone();
            let source = self.source.clone();
            let routed = self.route(events);
            let result = tokio::task::spawn_blocking(move || {
                let (required, optional) = routed?;
                put_all(&channels, required)?;
                for (name, batch) in optional {
                    let mut one = Batches::new();
                    one.insert(name.clone(), batch);
                    if let Err(e) = put_all(&channels, one) {
                        tracing::warn!(source = %source, channel = %name, error = %e, "optional channel refused a batch");
                    }
                }
                Ok(())
            })
            .await
            .unwrap_or(Err(DeliverError::ShuttingDown));
            match &result {
                Ok(()) => self.heartbeat.success(),
                Err(e) if e.is_client_error() => {}
                Err(e) => self.heartbeat.failure(e),
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryChannel, MemoryChannelConfig};
    use std::time::Duration;

    fn mem(capacity: u64) -> Arc<dyn Channel> {
        Arc::new(MemoryChannel::new(MemoryChannelConfig {
            capacity,
            keep_alive: Duration::from_millis(10),
            ..MemoryChannelConfig::default()
        }))
    }

    fn drain(ch: &Arc<dyn Channel>) -> Vec<String> {
        let mut tx = ch.transaction();
        let got = tx.take_batch(1000, Duration::ZERO).unwrap_or_default();
        let _ = tx.commit();
        got.iter()
            .map(|e| String::from_utf8_lossy(e.body()).into_owned())
            .collect()
    }

    fn router(chans: &[(&str, Arc<dyn Channel>)], selector: SelectorConfig) -> Router {
        Router::new(
            "r1",
            chans
                .iter()
                .map(|(n, c)| (n.to_string(), c.clone()))
                .collect(),
            selector,
            Vec::new(),
            CancellationToken::new(),
            Arc::new(Heartbeat::default()),
        )
    }

    fn ev(body: &str, region: &str) -> Event {
        Event::new(body.as_bytes().to_vec()).with_header("region", region)
    }

    #[tokio::test]
    async fn a_full_required_channel_refuses_the_batch_and_commits_nothing_anywhere() {
        let (a, b) = (mem(100), mem(2));
        let r = router(
            &[("a", a.clone()), ("b", b.clone())],
            SelectorConfig::Replicating { optional: vec![] },
        );
        let batch = vec![ev("1", "x"), ev("2", "x"), ev("3", "x")];
        let res = r.deliver(batch).await;
        assert!(
            matches!(res, Err(DeliverError::Full { ref channel }) if channel == "b"),
            "{res:?}"
        );
        assert!(drain(&a).is_empty(), "a committed part of a refused batch");
        assert!(drain(&b).is_empty());
    }

    #[tokio::test]
    async fn an_optional_full_channel_does_not_fail_the_put() {
        let (a, b) = (mem(100), mem(2));
        let r = router(
            &[("a", a.clone()), ("b", b.clone())],
            SelectorConfig::Replicating {
                optional: vec!["b".into()],
            },
        );
        let res = r
            .deliver(vec![ev("1", "x"), ev("2", "x"), ev("3", "x")])
            .await;
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(drain(&a), ["1", "2", "3"]);
        assert!(drain(&b).is_empty());
    }

    #[tokio::test]
    async fn multiplexing_routes_by_header_with_default() {
        let (eu, us, other) = (mem(100), mem(100), mem(100));
        let r = router(
            &[
                ("eu", eu.clone()),
                ("us", us.clone()),
                ("other", other.clone()),
            ],
            SelectorConfig::Multiplexing {
                header: "region".into(),
                mapping: [
                    ("eu".to_string(), vec!["eu".to_string()]),
                    ("us".to_string(), vec!["us".to_string()]),
                ]
                .into(),
                default: vec!["other".into()],
                optional: BTreeMap::new(),
            },
        );
        let batch = vec![
            ev("1", "eu"),
            ev("2", "us"),
            ev("3", "ap"),
            ev("4", "eu"),
            Event::new(b"5".to_vec()),
        ];
        assert!(r.deliver(batch).await.is_ok());
        assert_eq!(drain(&eu), ["1", "4"]);
        assert_eq!(drain(&us), ["2"]);
        assert_eq!(drain(&other), ["3", "5"]);
    }

    /// A multiplexing selector with `mapping` but no `default` (the config check refuses it;
    /// this is the runtime guard) refuses an event whose header value is unmapped instead of
    /// acknowledging it and storing it nowhere; the whole batch is refused, nothing is put.
    #[tokio::test]
    async fn an_unmapped_event_without_default_refuses_the_batch() {
        let eu = mem(100);
        let r = router(
            &[("eu", eu.clone())],
            SelectorConfig::Multiplexing {
                header: "region".into(),
                mapping: [("eu".to_string(), vec!["eu".to_string()])].into(),
                default: vec![],
                optional: BTreeMap::new(),
            },
        );
        let res = r.deliver(vec![ev("kept", "eu"), ev("lost", "us")]).await;
        let stored = drain(&eu);
        assert!(
            matches!(&res, Err(DeliverError::NoChannel { detail }) if detail.contains("\"us\"")),
            "the batch was acknowledged ({res:?}) but no channel holds all of it"
        );
        assert!(
            stored.is_empty(),
            "a refused batch was committed: {stored:?}"
        );
    }

    /// A replicating selector whose every channel is optional (refused at load; this is the
    /// runtime guard) refuses the batch rather than acknowledge what every channel refused.
    #[tokio::test]
    async fn a_replicating_selector_with_only_optional_channels_refuses_the_batch() {
        let a = mem(1);
        let r = router(
            &[("a", a.clone())],
            SelectorConfig::Replicating {
                optional: vec!["a".into()],
            },
        );
        let res = r.deliver(vec![ev("1", "x"), ev("2", "x")]).await;
        let stored = drain(&a);
        assert!(
            matches!(res, Err(DeliverError::NoChannel { .. })),
            "acknowledged ({res:?}) but the channel holds only {stored:?}"
        );
    }

    /// A client's oversize event (answered 413) is not a failure of the source: `/health` must
    /// not report it stalled when nothing is wrong with the agent. A full channel still is.
    #[tokio::test]
    async fn a_client_error_does_not_mark_the_source_failing() {
        let a: Arc<dyn Channel> = Arc::new(MemoryChannel::new(MemoryChannelConfig {
            max_event_size: 10,
            capacity: 1,
            ..MemoryChannelConfig::default()
        }));
        let hb = Arc::new(Heartbeat::default());
        let r = Router::new(
            "r1",
            [("a".to_string(), a)].into(),
            SelectorConfig::Replicating { optional: vec![] },
            Vec::new(),
            CancellationToken::new(),
            hb.clone(),
        );
        let res = r.deliver(vec![Event::new(vec![b'x'; 100])]).await;
        assert!(matches!(res, Err(DeliverError::TooLarge { .. })), "{res:?}");
        let snap = hb.snapshot();
        assert!(
            snap.failing_for.is_none(),
            "a rejected client batch counts as a source failure: {snap:?}"
        );
        let res = r
            .deliver(vec![Event::new(b"1".to_vec()), Event::new(b"2".to_vec())])
            .await;
        assert!(matches!(res, Err(DeliverError::Full { .. })), "{res:?}");
        assert!(
            hb.snapshot().failing_for.is_some(),
            "a full channel is not recorded as a failure"
        );
    }

    #[tokio::test]
    async fn a_stopping_router_refuses() {
        let a = mem(10);
        let r = router(
            &[("a", a.clone())],
            SelectorConfig::Replicating { optional: vec![] },
        );
        r.stopping.cancel();
        assert!(matches!(
            r.deliver(vec![ev("1", "x")]).await,
            Err(DeliverError::ShuttingDown)
        ));
        assert!(drain(&a).is_empty());
    }
}
