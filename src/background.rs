//! The channel's background threads: the checkpointer and, under
//! [`FsyncPolicy::Interval`](crate::FsyncPolicy::Interval), the syncer.
//!
//! # The checkpointer
//! Every checkpoint of an open channel is written by one thread, `tidegate-checkpoint`: the
//! periodic ones (every `checkpoint_interval`) and those asked for with
//! [`FileChannel::checkpoint`](crate::FileChannel::checkpoint), which hands the request to the
//! thread and waits for its result. The bulk of a checkpoint's CPU work (copying and encoding the
//! queue, writing the file) runs on a short-lived thread at a lower CPU priority
//! ([`at_lower_priority`], [`CHECKPOINTER_NICE`] above the process's on Linux), so that it
//! gives way to the threads that commit: on a 2-core machine a busy thread beside a committer
//! raised its p99 commit latency 2.4x (docs/benchmarks.md). The steps that hold the channel's
//! locks or sync the log stay at normal priority, so a committer never waits for a
//! low-priority thread. The checkpoint's file is written at `checkpoint_write_rate` (see
//! [`Background::pause`]). The final checkpoint of `close()` runs on the closing thread once
//! this one has stopped, at full speed; so does the rest of a checkpoint that is being written
//! when the last [`FileChannel`](crate::FileChannel) handle is dropped ([`Background::abandon`]),
//! so that the directories are unlocked promptly.
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
    /// Every `FileChannel` handle is gone: a checkpoint being written finishes unpaced.
    abandoned: bool,
    /// The checkpointer is gone after a panic: requests fail at once.
    dead: bool,
    /// Explicit checkpoints waiting for the checkpointer, oldest first.
    requests: VecDeque<SyncSender<Result<u64>>>,
    /// Background threads holding the channel's state right now ([`Held`]).
    holding: u32,
}

/// A background thread's strong reference to the channel's state, counted in
/// [`State::holding`]. Dropping it drops the reference first (which may free the state, and
/// unlock the directories), then the count.
struct Held<'a> {
    bg: &'a Background,
    inner: Option<Arc<Inner>>,
}

impl Held<'_> {
    fn inner(&self) -> Option<&Arc<Inner>> {
        self.inner.as_ref()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.inner.take());
        self.bg.state.lock().holding -= 1;
        self.bg.wake.notify_all();
    }
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

    /// Waits `d`, or less if the threads are told to stop or every handle of the channel is
    /// gone. Returns false once either happened: a checkpoint paced by its write rate then
    /// finishes at full speed, so that neither `close()` nor a reopen waits for it.
    pub(crate) fn pause(&self, d: Duration) -> bool {
        let done = |st: &State| st.stop || st.abandoned;
        !done(&self.wait_until(Instant::now().checked_add(d), done))
    }

    /// Waits until `done` holds or `deadline` passes (`None`: no deadline, as when an interval
    /// is too long for an `Instant`), and returns the state, still locked.
    fn wait_until(
        &self,
        deadline: Option<Instant>,
        done: impl Fn(&State) -> bool,
    ) -> parking_lot::MutexGuard<'_, State> {
        let mut st = self.state.lock();
        while !done(&st) {
            match deadline {
                Some(deadline) => {
                    if self.wake.wait_until(&mut st, deadline).timed_out() {
                        break;
                    }
                }
                None => self.wake.wait(&mut st),
            }
        }
        st
    }

    /// Called when the last `FileChannel` handle is dropped: stops pacing, then waits until no
    /// background thread holds the channel's state, so that the state (and with it the
    /// directory locks) is freed before the drop returns, unless a transaction still holds it.
    /// (The threads stop when the state is freed.)
    pub(crate) fn abandon(&self) {
        let mut st = self.state.lock();
        st.abandoned = true;
        self.wake.notify_all();
        while st.holding > 0 {
            self.wake.wait(&mut st);
        }
    }

    /// The channel's state for a background thread's work, if it still exists. Counted while
    /// held (see [`Background::abandon`]).
    fn hold(&self, weak: &Weak<Inner>) -> Option<Held<'_>> {
        // Counted before the upgrade, so that `abandon` never misses a holder.
        self.state.lock().holding += 1;
        let held = Held {
            bg: self,
            inner: weak.upgrade(),
        };
        held.inner.is_some().then_some(held)
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

    /// Waits until `deadline`, a request or stop. `None` when stopping (waiting requests are
    /// answered `Closed`); `Some(None)` at the deadline; `Some(Some(tx))` for a request.
    fn next(&self, deadline: Option<Instant>) -> Option<Option<SyncSender<Result<u64>>>> {
        let mut st = self.wait_until(deadline, |st| st.stop || !st.requests.is_empty());
        if st.stop {
            st.fail_requests(|| Error::Closed);
            return None;
        }
        Some(st.requests.pop_front())
    }
}

impl State {
    /// Answers every waiting request with `error()`.
    fn fail_requests(&mut self, error: impl Fn() -> Error) {
        for tx in self.requests.drain(..) {
            let _ = tx.send(Err(error()));
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
        st.fail_requests(gone);
    }
}

/// The checkpointer's loop. It holds the channel (`Arc<Inner>`) only while it writes a
/// checkpoint, so that a channel dropped without `close()` is freed (its `Drop` signals stop).
fn checkpointer(bg: &Background, weak: &Weak<Inner>, poison: &Poison, interval: Duration) {
    let _guard = PanicGuard { bg, poison };
    let mut deadline = Instant::now().checked_add(interval);
    while let Some(request) = bg.next(deadline) {
        let held = bg.hold(weak);
        let Some(inner) = held.as_ref().and_then(Held::inner) else {
            if let Some(tx) = request {
                let _ = tx.send(Err(Error::Closed));
            }
            return;
        };
        let result = checkpoint::run(inner);
        drop(held);
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

/// The interval syncer. It goes on while any transaction holds the channel (not only while
/// handles exist): a commit acknowledged under `FsyncPolicy::Interval` is synced within the
/// interval.
fn syncer(bg: &Background, weak: &Weak<Inner>, every: Duration) {
    loop {
        let stopped = bg
            .wait_until(Instant::now().checked_add(every), |st| st.stop)
            .stop;
        if stopped {
            return;
        }
        let held = bg.hold(weak);
        let Some(inner) = held.as_ref().and_then(Held::inner) else {
            return;
        };
        for log in &inner.logs {
            if let Err(e) = log.sync_all_appended() {
                tracing::error!(error = %e, "interval sync failed");
            }
        }
    }
}

/// Runs `work` on a new thread whose CPU priority is [`CHECKPOINTER_NICE`] steps lower (Linux
/// sets `nice` per thread; raising it needs no privilege, and a thread cannot lower it again
/// without privilege, hence a thread per call), and waits for it. If no thread can be started,
/// `work` runs on the calling thread. A panic in `work` is resumed here.
pub(crate) fn at_lower_priority<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let mut work = Some(work);
    let spawned = std::thread::scope(|s| {
        let job = &mut work;
        let handle = std::thread::Builder::new()
            .name("tidegate-ckpt-write".into())
            .spawn_scoped(s, move || {
                lower_priority();
                job.take().map(|f| f())
            });
        match handle {
            Ok(h) => h
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => {
                tracing::debug!(error = %e, "no thread for the checkpoint write; writing it here");
                None
            }
        }
    });
    match (spawned, work) {
        (Some(out), _) => out,
        (None, Some(f)) => f(),
        (None, None) => unreachable!("the work ran and returned nothing"),
    }
}

/// Lowers the calling thread's CPU priority by [`CHECKPOINTER_NICE`]. A failure is logged and
/// ignored.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = Some(rustix::thread::gettid());
        let result = rustix::process::getpriority_process(tid).and_then(|now| {
            rustix::process::setpriority_process(tid, (now + CHECKPOINTER_NICE).min(19))
        });
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not lower the checkpoint writer's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn pacing_stops_at_once_when_the_channel_closes_or_is_dropped() {
        // If `pause` ignored either flag, these would wait an hour.
        let bg = Background::default();
        bg.signal_stop();
        assert!(!bg.pause(HOUR));
        let bg = Background::default();
        bg.abandon();
        assert!(!bg.pause(HOUR));
    }

    #[test]
    fn the_syncer_outlives_the_handles_but_not_the_channel() {
        let bg = Background::default();
        bg.abandon();
        // Not stopped: the wait runs to its end.
        let soon = Instant::now().checked_add(Duration::from_millis(1));
        assert!(!bg.wait_until(soon, |st| st.stop).stop);
        bg.signal_stop();
        assert!(
            bg.wait_until(Instant::now().checked_add(HOUR), |st| st.stop)
                .stop
        );
    }

    #[test]
    fn a_panic_in_lower_priority_work_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| at_lower_priority(|| panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(at_lower_priority(|| 7), 7);
    }
}
