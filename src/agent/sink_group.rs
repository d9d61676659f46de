//! Sink groups: which sink takes the next batch.
//!
//! - `failover`: the highest-priority sink that is not penalised takes every batch. A sink
//!   that fails is penalised for 1 s, doubling with each consecutive failure up to
//!   `max_penalty`, and the next sink is tried at once. A success clears the penalty.
//! - `load_balance`: the sinks take batches in turn (`round_robin`) or at random (`random`).
//!   A sink that fails is skipped for 1 s, doubling up to `max_backoff` (when `backoff` is on),
//!   and the next one is tried at once.
//!
//! A sink that is not in any group forms a unit of its own ([`Processor::Single`]).

use std::time::{Duration, Instant};

use super::config::{LoadBalanceSelector, ProcessorConfig};
use super::sink_runner::{SinkSlot, Status};

/// First penalty (failover) or back-off (load balance) of a failed sink, as in Flume.
pub const PENALTY_BASE: Duration = Duration::from_secs(1);

/// A group member and its penalty.
struct Member {
    slot: SinkSlot,
    priority: i64,
    failures: u32,
    until: Option<Instant>,
}

impl Member {
    fn available(&self, now: Instant) -> bool {
        self.until.is_none_or(|t| now >= t)
    }
    fn penalise(&mut self, max: Duration) {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
        let d = PENALTY_BASE.saturating_mul(factor).min(max);
        self.until = Some(Instant::now() + d);
    }
    fn clear(&mut self) {
        self.failures = 0;
        self.until = None;
    }
}

/// How a unit picks the sink for the next batch.
pub enum Processor {
    /// One sink.
    Single(SinkSlot),
    /// A sink group.
    Group {
        /// The group's name.
        name: String,
        /// Its members, in priority order for failover, listing order otherwise.
        members: Vec<MemberSlot>,
        /// The processor.
        config: ProcessorConfig,
        /// Where round robin starts next.
        next: usize,
    },
}

/// A group member (opaque).
pub struct MemberSlot(Member);

impl Processor {
    /// A group of `slots` (in listing order).
    pub fn group(name: &str, slots: Vec<SinkSlot>, config: ProcessorConfig) -> Self {
        let mut members: Vec<MemberSlot> = slots
            .into_iter()
            .map(|slot| {
                let priority = match &config {
                    ProcessorConfig::Failover { priorities, .. } => {
                        priorities.get(&slot.name).copied().unwrap_or(0)
                    }
                    ProcessorConfig::LoadBalance { .. } => 0,
                };
                MemberSlot(Member {
                    slot,
                    priority,
                    failures: 0,
                    until: None,
                })
            })
            .collect();
        if matches!(config, ProcessorConfig::Failover { .. }) {
            // Stable: equal priorities keep the listing order.
            members.sort_by_key(|m| std::cmp::Reverse(m.0.priority));
        }
        Processor::Group {
            name: name.to_string(),
            members,
            config,
            next: 0,
        }
    }

    /// Moves one batch through the chosen sink (trying others on failure, per the processor).
    pub async fn process(&mut self) -> Status {
        match self {
            Processor::Single(slot) => slot.process().await,
            Processor::Group {
                name,
                members,
                config,
                next,
            } => {
                let now = Instant::now();
                let order: Vec<usize> = match config {
                    ProcessorConfig::Failover { .. } => (0..members.len()).collect(),
                    ProcessorConfig::LoadBalance { selector, .. } => {
                        let mut o: Vec<usize> = (0..members.len()).collect();
                        match selector {
                            LoadBalanceSelector::RoundRobin => {
                                o.rotate_left(*next % members.len().max(1));
                                *next = next.wrapping_add(1);
                            }
                            LoadBalanceSelector::Random => fastrand::shuffle(&mut o),
                        }
                        o
                    }
                };
                let mut last_error = None;
                for i in order {
                    let m = &mut members[i].0;
                    if !m.available(now) {
                        continue;
                    }
                    match m.slot.process().await {
                        Status::Failed(e) => {
                            match config {
                                ProcessorConfig::Failover { max_penalty, .. } => {
                                    m.penalise(*max_penalty);
                                }
                                ProcessorConfig::LoadBalance {
                                    backoff: true,
                                    max_backoff,
                                    ..
                                } => m.penalise(*max_backoff),
                                ProcessorConfig::LoadBalance { .. } => {}
                            }
                            last_error = Some(format!("{}: {e}", m.slot.name));
                        }
                        ok => {
                            m.clear();
                            return ok;
                        }
                    }
                }
                Status::Failed(format!(
                    "sink group {name}: no sink could take the batch{}",
                    last_error
                        .map(|e| format!(" (last: {e})"))
                        .unwrap_or_default()
                ))
            }
        }
    }

    /// True when every member's channel is empty.
    pub fn channels_empty(&self) -> bool {
        match self {
            Processor::Single(s) => s.channel_empty(),
            Processor::Group { members, .. } => members.iter().all(|m| m.0.slot.channel_empty()),
        }
    }

    /// Stops every sink of the unit.
    pub async fn stop(&mut self) {
        match self {
            Processor::Single(s) => s.stop().await,
            Processor::Group { members, .. } => {
                for m in members {
                    m.0.slot.stop().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::agent::component::{BoxFuture, Sink, SinkError};
    use crate::{Channel, Event, MemoryChannel, MemoryChannelConfig};

    /// A sink that fails while `down` is set, and counts what it delivered.
    struct Switchable {
        down: Arc<AtomicBool>,
        got: Arc<AtomicU64>,
    }

    impl Sink for Switchable {
        fn deliver<'a>(&'a mut self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(SinkError::Connection("down".into()));
                }
                self.got.fetch_add(batch.len() as u64, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    struct Probe {
        down: Arc<AtomicBool>,
        got: Arc<AtomicU64>,
    }

    fn slot(name: &str, ch: &Arc<dyn Channel>) -> (SinkSlot, Probe) {
        let down = Arc::new(AtomicBool::new(false));
        let got = Arc::new(AtomicU64::new(0));
        let sink = Switchable {
            down: down.clone(),
            got: got.clone(),
        };
        (
            SinkSlot::new(name, Box::new(sink), ch.clone(), 10),
            Probe { down, got },
        )
    }

    fn filled(n: u64) -> Arc<dyn Channel> {
        let ch: Arc<dyn Channel> = Arc::new(MemoryChannel::new(MemoryChannelConfig::default()));
        let mut tx = ch.transaction();
        for i in 0..n {
            tx.put(Event::new(i.to_string().into_bytes()))
                .unwrap_or_else(|_| panic!("put"));
        }
        tx.commit().unwrap_or_else(|e| panic!("{e}"));
        ch
    }

    #[tokio::test]
    async fn failover_moves_to_the_backup_and_back_after_the_penalty() {
        let ch = filled(10_000);
        let (k1, p1) = slot("k1", &ch);
        let (k2, p2) = slot("k2", &ch);
        let cfg = ProcessorConfig::Failover {
            priorities: [("k1".to_string(), 10), ("k2".to_string(), 5)].into(),
            max_penalty: Duration::from_millis(50),
        };
        // Listed backup first: priorities decide, not the order.
        let mut g = Processor::group("g1", vec![k2, k1], cfg);
        assert!(matches!(g.process().await, Status::Delivered(10)));
        assert_eq!(
            (p1.got.load(Ordering::SeqCst), p2.got.load(Ordering::SeqCst)),
            (10, 0)
        );

        p1.down.store(true, Ordering::SeqCst);
        assert!(matches!(g.process().await, Status::Delivered(10)));
        assert_eq!(
            p2.got.load(Ordering::SeqCst),
            10,
            "the backup took the batch k1 failed"
        );
        // k1 is penalised: the next batch goes straight to k2.
        assert!(matches!(g.process().await, Status::Delivered(10)));
        assert_eq!(p2.got.load(Ordering::SeqCst), 20);

        p1.down.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while p1.got.load(Ordering::SeqCst) == 10 && Instant::now() < deadline {
            assert!(matches!(g.process().await, Status::Delivered(10)));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            p1.got.load(Ordering::SeqCst) > 10,
            "k1 got batches again after its penalty"
        );
        // Nothing lost: everything delivered once or still queued.
        let total = p1.got.load(Ordering::SeqCst) + p2.got.load(Ordering::SeqCst);
        assert_eq!(total + ch.stats().size, 10_000);
    }

    #[tokio::test]
    async fn failover_with_every_sink_down_fails_and_keeps_the_events() {
        let ch = filled(10);
        let (k1, p1) = slot("k1", &ch);
        let (k2, p2) = slot("k2", &ch);
        p1.down.store(true, Ordering::SeqCst);
        p2.down.store(true, Ordering::SeqCst);
        let cfg = ProcessorConfig::Failover {
            priorities: Default::default(),
            max_penalty: Duration::from_secs(30),
        };
        let mut g = Processor::group("g1", vec![k1, k2], cfg);
        assert!(matches!(g.process().await, Status::Failed(_)));
        assert_eq!(
            ch.stats().size,
            10,
            "a failed batch goes back to the channel"
        );
    }

    #[tokio::test]
    async fn round_robin_alternates_and_skips_a_failed_sink() {
        let ch = filled(100);
        let (k1, p1) = slot("k1", &ch);
        let (k2, p2) = slot("k2", &ch);
        let cfg = ProcessorConfig::LoadBalance {
            selector: LoadBalanceSelector::RoundRobin,
            backoff: true,
            max_backoff: Duration::from_secs(30),
        };
        let mut g = Processor::group("g1", vec![k1, k2], cfg);
        for _ in 0..4 {
            assert!(matches!(g.process().await, Status::Delivered(10)));
        }
        assert_eq!(
            (p1.got.load(Ordering::SeqCst), p2.got.load(Ordering::SeqCst)),
            (20, 20)
        );
        p2.down.store(true, Ordering::SeqCst);
        for _ in 0..4 {
            assert!(matches!(g.process().await, Status::Delivered(10)));
        }
        assert_eq!(
            (p1.got.load(Ordering::SeqCst), p2.got.load(Ordering::SeqCst)),
            (60, 20)
        );
        assert_eq!(ch.stats().size, 20, "nothing lost");
    }

    #[tokio::test]
    async fn random_selection_uses_every_sink() {
        let ch = filled(1000);
        let (k1, p1) = slot("k1", &ch);
        let (k2, p2) = slot("k2", &ch);
        let cfg = ProcessorConfig::LoadBalance {
            selector: LoadBalanceSelector::Random,
            backoff: false,
            max_backoff: Duration::from_secs(30),
        };
        let mut g = Processor::group("g1", vec![k1, k2], cfg);
        for _ in 0..100 {
            assert!(matches!(g.process().await, Status::Delivered(10)));
        }
        assert!(p1.got.load(Ordering::SeqCst) > 0 && p2.got.load(Ordering::SeqCst) > 0);
    }
}
