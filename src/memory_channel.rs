//! [`MemoryChannel`]: the same transactions, no durability. For comparison, and for users who
//! choose speed over surviving a crash.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::channel::{Channel, Transaction, TxnOps};
use crate::config::{
    DEFAULT_CAPACITY, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_EVENT_SIZE, DEFAULT_TRANSACTION_CAPACITY,
};
use crate::error::{Error, PutError, Result};
use crate::event::Event;
use crate::format::record::put_payload_len;
use crate::stats::{ChannelStats, Counters};

/// Options of a [`MemoryChannel`] (Flume's memory channel keys).
#[derive(Debug, Clone)]
pub struct MemoryChannelConfig {
    /// Most events held. Default 1,000,000.
    pub capacity: u64,
    /// Most bytes held. Default: no limit.
    pub capacity_bytes: Option<u64>,
    /// Most operations per transaction. Default 10,000.
    pub transaction_capacity: usize,
    /// How long a put waits for room. Default 3 s.
    pub keep_alive: Duration,
    /// Largest event. Default 32 MiB.
    pub max_event_size: u64,
}

impl Default for MemoryChannelConfig {
    fn default() -> Self {
        MemoryChannelConfig {
            capacity: DEFAULT_CAPACITY,
            capacity_bytes: None,
            transaction_capacity: DEFAULT_TRANSACTION_CAPACITY,
            keep_alive: DEFAULT_KEEP_ALIVE,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
        }
    }
}

/// An in-memory channel with the file channel's transaction semantics.
///
/// ```
/// use tidegate::{Event, MemoryChannel, MemoryChannelConfig};
/// let ch = MemoryChannel::new(MemoryChannelConfig::default());
/// let mut tx = ch.transaction();
/// tx.put(Event::new(b"x".to_vec())).unwrap();
/// tx.commit().unwrap();
/// let mut tx = ch.transaction();
/// assert_eq!(tx.take().unwrap().unwrap().body(), b"x");
/// tx.commit().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct MemoryChannel {
    inner: Arc<MemInner>,
}

#[derive(Debug)]
struct MemInner {
    cfg: MemoryChannelConfig,
    state: Mutex<MemState>,
    not_empty: Condvar,
    not_full: Condvar,
    counters: Counters,
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct MemState {
    queue: VecDeque<Event>,
    reserved_events: u64,
    reserved_bytes: u64,
    inflight: u64,
    bytes: u64,
}

impl MemoryChannel {
    /// A new, empty channel.
    pub fn new(cfg: MemoryChannelConfig) -> Self {
        MemoryChannel {
            inner: Arc::new(MemInner {
                cfg,
                state: Mutex::new(MemState::default()),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                counters: Counters::default(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Begins a transaction.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(Box::new(MemTxn {
            ch: self.inner.clone(),
            puts: Vec::new(),
            taken: Vec::new(),
            ops: 0,
        }))
    }

    /// Counters and gauges.
    pub fn stats(&self) -> ChannelStats {
        let i = &self.inner;
        let st = i.state.lock();
        let c = &i.counters;
        ChannelStats {
            kind: "memory",
            size: st.queue.len() as u64,
            in_flight: st.inflight,
            capacity: i.cfg.capacity,
            capacity_bytes: i.cfg.capacity_bytes,
            bytes: st.bytes,
            fill_percent: st.reserved_events as f64 * 100.0 / i.cfg.capacity as f64,
            put_attempts: Counters::get(&c.put_attempts),
            put_successes: Counters::get(&c.put_successes),
            put_errors: Counters::get(&c.put_errors),
            take_attempts: Counters::get(&c.take_attempts),
            take_successes: Counters::get(&c.take_successes),
            take_errors: Counters::get(&c.take_errors),
            commits: Counters::get(&c.commits),
            rollbacks: Counters::get(&c.rollbacks),
            open: !i.closed.load(Ordering::Acquire),
            ..ChannelStats::default()
        }
    }
}

impl Channel for MemoryChannel {
    fn transaction(&self) -> Transaction {
        MemoryChannel::transaction(self)
    }
    fn stats(&self) -> ChannelStats {
        MemoryChannel::stats(self)
    }
    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }
    fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        let _st = self.inner.state.lock();
        self.inner.not_empty.notify_all();
        self.inner.not_full.notify_all();
        Ok(())
    }
}

struct MemTxn {
    ch: Arc<MemInner>,
    puts: Vec<(Event, u64)>,
    taken: Vec<(Event, u64)>,
    ops: usize,
}

impl MemTxn {
    fn check(&self) -> Result<()> {
        if self.ch.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.ops >= self.ch.cfg.transaction_capacity {
            return Err(Error::TransactionFull {
                capacity: self.ch.cfg.transaction_capacity,
            });
        }
        Ok(())
    }

    fn put_inner(&mut self, size: u64) -> Result<()> {
        self.check()?;
        if !self.taken.is_empty() {
            return Err(Error::MixedTransaction { has: "takes" });
        }
        if size > self.ch.cfg.max_event_size {
            return Err(Error::EventTooLarge {
                size,
                limit: self.ch.cfg.max_event_size,
            });
        }
        let ch = &self.ch;
        let deadline = Instant::now() + ch.cfg.keep_alive;
        let mut st = ch.state.lock();
        loop {
            let events_ok = st.reserved_events < ch.cfg.capacity;
            let bytes_ok = ch
                .cfg
                .capacity_bytes
                .is_none_or(|c| st.reserved_bytes + size <= c);
            if events_ok && bytes_ok {
                st.reserved_events += 1;
                st.reserved_bytes += size;
                return Ok(());
            }
            if ch.not_full.wait_until(&mut st, deadline).timed_out() {
                let limit = if events_ok {
                    format!("capacity_bytes {}", ch.cfg.capacity_bytes.unwrap_or(0))
                } else {
                    format!("capacity {} events", ch.cfg.capacity)
                };
                return Err(Error::ChannelFull {
                    limit,
                    waited: ch.cfg.keep_alive,
                });
            }
            if ch.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
        }
    }

    fn restore(&mut self) {
        if self.taken.is_empty() {
            return;
        }
        let mut st = self.ch.state.lock();
        st.inflight -= self.taken.len() as u64;
        for (ev, _) in self.taken.drain(..).rev() {
            st.queue.push_front(ev);
        }
        drop(st);
        self.ch.not_empty.notify_all();
    }

    fn release_puts(&mut self) {
        if self.puts.is_empty() {
            return;
        }
        let mut st = self.ch.state.lock();
        st.reserved_events -= self.puts.len() as u64;
        st.reserved_bytes -= self.puts.iter().map(|p| p.1).sum::<u64>();
        self.puts.clear();
        drop(st);
        self.ch.not_full.notify_all();
    }
}

impl TxnOps for MemTxn {
    fn put(&mut self, event: Event) -> std::result::Result<(), PutError> {
        Counters::add(&self.ch.counters.put_attempts, 1);
        let size = put_payload_len(&event);
        match self.put_inner(size) {
            Ok(()) => {
                self.puts.push((event, size));
                self.ops += 1;
                Ok(())
            }
            Err(error) => {
                Counters::add(&self.ch.counters.put_errors, 1);
                Err(PutError { error, event })
            }
        }
    }

    fn take(&mut self, max: usize, wait: Option<Duration>) -> Result<Vec<Event>> {
        Counters::add(&self.ch.counters.take_attempts, 1);
        self.check()?;
        if !self.puts.is_empty() {
            return Err(Error::MixedTransaction { has: "puts" });
        }
        let max = max.min(self.ch.cfg.transaction_capacity - self.ops);
        let ch = self.ch.clone();
        let mut st = ch.state.lock();
        if let Some(wait) = wait {
            let deadline = Instant::now() + wait;
            while st.queue.is_empty() && !ch.closed.load(Ordering::Acquire) {
                if ch.not_empty.wait_until(&mut st, deadline).timed_out() {
                    break;
                }
            }
        }
        let n = max.min(st.queue.len());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            if let Some(ev) = st.queue.pop_front() {
                let size = put_payload_len(&ev);
                self.taken.push((ev.clone(), size));
                out.push(ev);
            }
        }
        st.inflight += n as u64;
        self.ops += n;
        Ok(out)
    }

    fn commit(&mut self) -> Result<()> {
        let ch = self.ch.clone();
        if ch.closed.load(Ordering::Acquire) {
            self.restore();
            self.release_puts();
            return Err(Error::Closed);
        }
        let mut st = ch.state.lock();
        let puts = self.puts.len() as u64;
        for (ev, size) in self.puts.drain(..) {
            st.bytes += size;
            st.queue.push_back(ev);
        }
        let takes = self.taken.len() as u64;
        let taken_bytes: u64 = self.taken.drain(..).map(|t| t.1).sum();
        st.inflight -= takes;
        st.reserved_events -= takes;
        st.reserved_bytes -= taken_bytes;
        st.bytes -= taken_bytes;
        drop(st);
        if puts > 0 {
            ch.not_empty.notify_all();
        }
        if takes > 0 {
            ch.not_full.notify_all();
        }
        Counters::add(&ch.counters.put_successes, puts);
        Counters::add(&ch.counters.take_successes, takes);
        Counters::add(&ch.counters.commits, 1);
        Ok(())
    }

    fn rollback(&mut self) -> Result<()> {
        Counters::add(&self.ch.counters.rollbacks, 1);
        self.restore();
        self.release_puts();
        Ok(())
    }

    fn len(&self) -> usize {
        self.ops
    }
}
