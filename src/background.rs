//! The channel's background threads: the checkpointer and, under
//! [`FsyncPolicy::Interval`](crate::FsyncPolicy::Interval), the syncer.
//!
//! # The checkpointer
//! Every checkpoint of an open channel is written by one thread, `tidegate-checkpoint`: the
//! periodic ones (every `checkpoint_interval`) and those asked for with
//! [`FileChannel::checkpoint`](crate::FileChannel::checkpoint), which hands the request to the
//! thread and waits for its result. On Linux the thread runs at a lower CPU priority
//! ([`CHECKPOINTER_NICE`] above the process's), so that encoding and writing the checkpoint of a
//! long queue gives way to the threads that commit: on a 2-core machine a busy thread beside a
//! committer raised its p99 commit latency 2.4x (docs/benchmarks.md). The checkpoint's file is
//! written at `checkpoint_write_rate` (see [`Background::pause`]). The final checkpoint of
//! `close()` runs on the closing thread once this one has stopped, at full speed.
//!
//! A request made while the channel closes is answered with [`Error::Closed`]. If the thread
//! ever panicked (a bug), the channel is poisoned and waiting requests get the `Poisoned` error:
//! nobody waits forever for a thread that is gone.

use std::collections::VecDeque;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::checkpoint;
use crate::config::FsyncPolicy;
use crate::error::{Error, Result};
use crate::file_channel::Inner;
use crate::poison::Poison;

/// How much lower than the process's the checkpointer's CPU priority is (Linux `nice` steps;
/// capped at 19). At +10 a busy checkpointer gets about a tenth of a core that a committer also
/// wants.
pub(crate) const CHECKPOINTER_NICE: i32 = 10;

/// The background threads of one channel, and the requests waiting for the checkpointer.
#[derive(Debug, Default)]
pub(crate) struct Background {
    state: Mutex<State>,
    wake: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct State {
    /// Set by `close()` (or when the channel is dropped): the threads return.
    stop: bool,
    /// The checkpointer is gone after a panic: requests fail at once.
    dead: bool,
    /// Explicit checkpoints waiting for the checkpointer, oldest first.
    requests: VecDeque<SyncSender<Result<u64>>>,
}

impl Background {
    /// Starts the checkpointer, and the syncer when the fsync policy is `Interval`.
    pub(crate) fn start(inner: &Arc<Inner>) -> Result<()> {
        let bg = &inner.background;
        let (b, weak) = (bg.clone(), Arc::downgrade(inner));
        let poison = inner.poison.clone();
        let interval = inner.cfg.checkpoint_interval;
        let h = std::thread::Builder::new()
            .name("tidegate-checkpoint".into())
            .spawn(move || checkpointer(&b, &weak, &poison, interval))
            .map_err(|e| Error::io("starting checkpoint thread", &inner.cfg.checkpoint_dir, e))?;
        bg.threads.lock().push(h);
        if let FsyncPolicy::Interval(every) = inner.cfg.fsync {
            let (b, weak) = (bg.clone(), Arc::downgrade(inner));
            let h = std::thread::Builder::new()
                .name("tidegate-sync".into())
                .spawn(move || syncer(&b, &weak, every))
                .map_err(|e| Error::io("starting sync thread", &inner.cfg.checkpoint_dir, e))?;
            bg.threads.lock().push(h);
        }
        Ok(())
    }

    /// Asks the checkpointer for a checkpoint and waits for it. Returns the generation written.
    pub(crate) fn checkpoint(&self) -> Result<u64> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut st = self.state.lock();
            if st.stop {
                return Err(Error::Closed);
            }
            if st.dead {
                return Err(gone());
            }
            st.requests.push_back(tx);
        }
        self.wake.notify_all();
        rx.recv().unwrap_or_else(|_| Err(gone()))
    }

    /// Waits `d`, or less if the threads are told to stop. Returns false once they are: a
    /// checkpoint paced by its write rate then finishes at full speed, so that `close()` is not
    /// kept waiting.
    pub(crate) fn pause(&self, d: Duration) -> bool {
        let deadline = Instant::now().checked_add(d);
        let mut st = self.state.lock();
        while !st.stop {
            match deadline {
                Some(deadline) => {
                    if self.wake.wait_until(&mut st, deadline).timed_out() {
                        return !st.stop;
                    }
                }
                None => self.wake.wait(&mut st),
            }
        }
        false
    }

    /// Tells the threads to stop, without waiting for them.
    pub(crate) fn signal_stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_all();
    }

    /// Tells the threads to stop and waits until they have.
    pub(crate) fn stop(&self) {
        self.signal_stop();
        let handles: Vec<_> = self.threads.lock().drain(..).collect();
        for h in handles {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Waits until `deadline`, a request or stop. `None` when stopping; `Some(None)` at the
    /// deadline; `Some(Some(tx))` for a request.
    fn next(&self, deadline: Option<Instant>) -> Option<Option<SyncSender<Result<u64>>>> {
        let mut st = self.state.lock();
        loop {
            if st.stop {
                for tx in st.requests.drain(..) {
                    let _ = tx.send(Err(Error::Closed));
                }
                return None;
            }
            if let Some(tx) = st.requests.pop_front() {
                return Some(Some(tx));
            }
            let Some(deadline) = deadline else {
                self.wake.wait(&mut st);
                continue;
            };
            if self.wake.wait_until(&mut st, deadline).timed_out() && st.requests.is_empty() {
                return (!st.stop).then_some(None);
            }
        }
    }
}

/// The error of a request the checkpointer can no longer answer.
fn gone() -> Error {
    Error::Poisoned {
        cause: "the checkpoint thread stopped unexpectedly".into(),
    }
}

/// Fails the waiting requests and poisons the channel if the checkpointer unwinds.
struct PanicGuard<'a> {
    bg: &'a Background,
    poison: &'a Poison,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        self.poison.poison(&gone());
        let mut st = self.bg.state.lock();
        st.dead = true;
        for tx in st.requests.drain(..) {
            let _ = tx.send(Err(gone()));
        }
    }
}

/// The checkpointer's loop. It holds the channel (`Arc<Inner>`) only while it writes a
/// checkpoint, so that a channel dropped without `close()` is freed (its `Drop` signals stop).
fn checkpointer(bg: &Background, weak: &Weak<Inner>, poison: &Poison, interval: Duration) {
    let _guard = PanicGuard { bg, poison };
    lower_priority();
    let mut deadline = Instant::now().checked_add(interval);
    while let Some(request) = bg.next(deadline) {
        let Some(inner) = weak.upgrade() else {
            if let Some(tx) = request {
                let _ = tx.send(Err(Error::Closed));
            }
            return;
        };
        let result = checkpoint::run(&inner);
        drop(inner);
        match request {
            Some(tx) => {
                let _ = tx.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "background checkpoint failed");
                }
            }
        }
        deadline = Instant::now().checked_add(interval);
    }
}

fn syncer(bg: &Background, weak: &Weak<Inner>, every: Duration) {
    while bg.pause(every) {
        let Some(inner) = weak.upgrade() else { return };
        for log in &inner.logs {
            if let Err(e) = log.sync_all_appended() {
                tracing::error!(error = %e, "interval sync failed");
            }
        }
    }
}

/// Lowers the calling thread's CPU priority by [`CHECKPOINTER_NICE`] (Linux sets `nice` per
/// thread). Raising `nice` needs no privilege; a failure is logged and ignored.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = Some(rustix::thread::gettid());
        let result = rustix::process::getpriority_process(tid).and_then(|now| {
            rustix::process::setpriority_process(tid, (now + CHECKPOINTER_NICE).min(19))
        });
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not lower the checkpoint thread's priority");
        }
    }
}
