//! The in-memory state of a file channel: the queue of pointers, the takes in flight, the
//! capacity in use, and what a checkpoint snapshot needs to know about open transactions.
//!
//! Everything here is guarded by one mutex (`FileChannel`'s state lock). Lock order: a log's
//! append lock, then this one.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::ids::{LogPosition, RecordPtr, SegmentId};
use crate::pointer_queue::{PointerQueue, QueueSnapshot};

/// Queue state.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    /// Committed events not taken, head first. 16 bytes per event, in shared chunks.
    pub(crate) queue: PointerQueue,
    /// Taken, not yet committed, by transaction id; each with the ticket of its take, so a
    /// checkpoint can list them in the exact order they were taken.
    inflight: HashMap<u64, Vec<(u64, RecordPtr)>>,
    /// Next take ticket.
    next_ticket: u64,
    /// Payload bytes of the events in `queue` and `inflight`.
    pub(crate) queued_bytes: u64,
    /// Events counted against `capacity`: queued, in flight, and put but not committed.
    pub(crate) reserved_events: u64,
    /// Bytes counted against `capacity_bytes`, likewise.
    pub(crate) reserved_bytes: u64,
    /// Transactions whose Commit record is appended but whose effect is not applied yet, with
    /// the directory index and the position of their first record (replay must read from there).
    pub(crate) committing: HashMap<u64, (usize, LogPosition)>,
    /// Open put transactions that have already written records, with a position at or before
    /// their first record, per directory index.
    pub(crate) open_spills: HashMap<u64, (usize, LogPosition)>,
    /// Queued plus in-flight events per segment: a segment at zero holds nothing anyone needs.
    pub(crate) live: HashMap<SegmentId, u64>,
    /// For a segment holding Put records whose Commit record lies in a later segment (a spilled
    /// or split transaction): those later segments. They are kept while the first one is live,
    /// so a full replay (no usable checkpoint) still finds the commits of queued events.
    commit_pins: HashMap<SegmentId, HashSet<SegmentId>>,
}

impl QueueState {
    /// Events queued (not counting takes in flight).
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Events taken and not yet committed.
    pub(crate) fn inflight_len(&self) -> usize {
        self.inflight.values().map(Vec::len).sum()
    }

    /// Counts `n` more queued events in `segment` (replay adds a run of pointers at once).
    pub(crate) fn add_live_n(&mut self, segment: SegmentId, n: u64) {
        if n > 0 {
            *self.live.entry(segment).or_insert(0) += n;
        }
    }

    pub(crate) fn remove_live(&mut self, ptr: RecordPtr) {
        if let Some(n) = self.live.get_mut(&ptr.segment) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.live.remove(&ptr.segment);
            }
        }
    }

    /// Notes that events put in `put_segment` were committed by a record in `commit_segment`.
    pub(crate) fn pin_commit(&mut self, put_segment: SegmentId, commit_segment: SegmentId) {
        if put_segment != commit_segment {
            self.commit_pins
                .entry(put_segment)
                .or_default()
                .insert(commit_segment);
        }
    }

    /// Segments that hold Commit records of events still queued in older segments.
    pub(crate) fn commit_pinned(&mut self) -> HashSet<SegmentId> {
        let live = &self.live;
        self.commit_pins
            .retain(|put_segment, _| live.contains_key(put_segment));
        self.commit_pins.values().flatten().copied().collect()
    }

    /// The commit pins of events still queued, as `(put_segment, commit_segment)` pairs, for a
    /// checkpoint (so that they outlive a restart).
    pub(crate) fn commit_pin_list(&self) -> Vec<(SegmentId, SegmentId)> {
        let mut out: Vec<(SegmentId, SegmentId)> = self
            .commit_pins
            .iter()
            .filter(|(put_segment, _)| self.live.contains_key(put_segment))
            .flat_map(|(p, cs)| cs.iter().map(move |c| (*p, *c)))
            .collect();
        out.sort_unstable();
        out
    }

    /// Forgets a deleted segment.
    pub(crate) fn forget_segment(&mut self, id: SegmentId) {
        self.commit_pins.remove(&id);
        self.live.remove(&id);
    }

    /// Moves up to `n` events from the head of the queue to `txn`'s takes.
    pub(crate) fn take_front(&mut self, txn: u64, n: usize) -> Vec<RecordPtr> {
        let n = n.min(self.queue.len());
        let ptrs = self.queue.drain_front(n);
        if !ptrs.is_empty() {
            let entry = self.inflight.entry(txn).or_default();
            for p in &ptrs {
                entry.push((self.next_ticket, *p));
                self.next_ticket += 1;
            }
        }
        ptrs
    }

    /// Forgets `txn`'s takes (they committed) and returns them.
    pub(crate) fn finish_takes(&mut self, txn: u64) -> Vec<RecordPtr> {
        self.inflight
            .remove(&txn)
            .map(|v| v.into_iter().map(|(_, p)| p).collect())
            .unwrap_or_default()
    }

    /// Puts the events taken by `txn` back at the head, in the order they were taken.
    pub(crate) fn restore_inflight(&mut self, txn: u64) -> usize {
        let taken = self.finish_takes(txn);
        let n = taken.len();
        for ptr in taken.into_iter().rev() {
            self.queue.push_front(ptr);
        }
        n
    }

    /// Puts the last `n` events taken by `txn` back at the head (a take that failed part-way).
    pub(crate) fn restore_last(&mut self, txn: u64, n: usize) {
        let Some(v) = self.inflight.get_mut(&txn) else {
            return;
        };
        let keep = v.len().saturating_sub(n);
        let back: Vec<(u64, RecordPtr)> = v.drain(keep..).collect();
        if v.is_empty() {
            self.inflight.remove(&txn);
        }
        for (_, ptr) in back.into_iter().rev() {
            self.queue.push_front(ptr);
        }
    }

    /// Moves `ptr` from near the head of the queue to `txn`'s takes (a damaged event the
    /// transaction keeps while the rest of its batch went back).
    pub(crate) fn take_specific(&mut self, txn: u64, ptr: RecordPtr) {
        if self.queue.remove_first(ptr) {
            self.inflight
                .entry(txn)
                .or_default()
                .push((self.next_ticket, ptr));
            self.next_ticket += 1;
        }
    }

    /// The queue as a checkpoint records it: takes in flight first (as if rolled back, in the
    /// order they were taken), then the queue. This runs under the state lock (and the append
    /// locks), so it only shares the queue's chunks; [`CheckpointQueue::into_vec`] copies the
    /// pointers after the locks are released.
    pub(crate) fn snapshot_queue(&self) -> CheckpointQueue {
        let mut taken: Vec<(u64, RecordPtr)> = self.inflight.values().flatten().copied().collect();
        taken.sort_unstable_by_key(|(ticket, _)| *ticket);
        CheckpointQueue {
            taken: taken.into_iter().map(|(_, p)| p).collect(),
            queue: self.queue.snapshot(),
        }
    }
}

/// A checkpoint's view of the queue: the takes in flight, in take order, then the queue.
#[derive(Debug)]
pub(crate) struct CheckpointQueue {
    taken: Vec<RecordPtr>,
    queue: QueueSnapshot,
}

impl CheckpointQueue {
    /// Takes in flight (they lead the list).
    pub(crate) fn inflight(&self) -> u64 {
        self.taken.len() as u64
    }

    /// The whole list, head first.
    pub(crate) fn into_vec(self) -> Vec<RecordPtr> {
        let mut out = Vec::with_capacity(self.taken.len() + self.queue.len());
        out.extend_from_slice(&self.taken);
        self.queue.extend_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_of(offsets: &[u64]) -> QueueState {
        let mut st = QueueState::default();
        st.queue
            .extend(offsets.iter().map(|o| RecordPtr::new(1, *o)));
        st
    }

    fn offsets(q: &[RecordPtr]) -> Vec<u64> {
        q.iter().map(|p| p.offset).collect()
    }

    #[test]
    fn restore_puts_takes_back_at_the_head_in_order() {
        let mut st = queue_of(&[10, 20, 100, 200]);
        assert_eq!(offsets(&st.take_front(7, 2)), vec![10, 20]);
        assert_eq!(st.restore_inflight(7), 2);
        assert_eq!(
            offsets(&st.queue.iter().copied().collect::<Vec<_>>()),
            vec![10, 20, 100, 200]
        );
        assert_eq!(st.restore_inflight(7), 0, "a second restore finds nothing");
    }

    #[test]
    fn snapshot_lists_inflight_takes_in_take_order() {
        let mut st = queue_of(&[0, 1, 2, 3, 4]);
        // A younger transaction takes first: order follows the takes, not transaction ids.
        st.take_front(9, 1);
        st.take_front(3, 2);
        st.take_front(9, 1);
        let snap = st.snapshot_queue();
        assert_eq!(snap.inflight(), 4);
        // Changes after the snapshot do not show in it.
        st.restore_inflight(9);
        st.queue.push_back(RecordPtr::new(1, 5));
        assert_eq!(offsets(&snap.into_vec()), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn restore_last_returns_only_the_failed_batch() {
        let mut st = queue_of(&[0, 1, 2, 3]);
        st.take_front(1, 1);
        st.take_front(1, 2);
        st.restore_last(1, 2);
        assert_eq!(
            offsets(&st.queue.iter().copied().collect::<Vec<_>>()),
            vec![1, 2, 3]
        );
        assert_eq!(offsets(&st.finish_takes(1)), vec![0]);
    }

    #[test]
    fn live_counts_drop_to_absent() {
        let mut st = QueueState::default();
        let p = RecordPtr::new(5, 64);
        st.add_live_n(p.segment, 1);
        st.add_live_n(p.segment, 1);
        st.add_live_n(p.segment, 0);
        st.remove_live(p);
        assert_eq!(st.live.get(&SegmentId(5)), Some(&1));
        st.remove_live(p);
        assert!(!st.live.contains_key(&SegmentId(5)));
    }
}
