//! The in-memory state of a file channel: the queue of pointers, the takes in flight, the
//! capacity in use, and what a checkpoint snapshot needs to know about open transactions.
//!
//! Everything here is guarded by one mutex (`FileChannel`'s state lock). Lock order: a log's
//! append lock, then this one.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::ids::{LogPosition, RecordPtr, SegmentId};

/// Queue state.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    /// Committed events not taken, head first. 16 bytes per event.
    pub(crate) queue: VecDeque<RecordPtr>,
    /// Taken, not yet committed, by transaction id (ids grow with time, so this is roughly the
    /// order the transactions began).
    pub(crate) inflight: BTreeMap<u64, Vec<RecordPtr>>,
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

    pub(crate) fn add_live(&mut self, ptr: RecordPtr) {
        *self.live.entry(ptr.segment).or_insert(0) += 1;
    }

    pub(crate) fn remove_live(&mut self, ptr: RecordPtr) {
        if let Some(n) = self.live.get_mut(&ptr.segment) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.live.remove(&ptr.segment);
            }
        }
    }

    /// Puts the events taken by `txn` back at the head, in the order they were taken.
    pub(crate) fn restore_inflight(&mut self, txn: u64) -> usize {
        let Some(taken) = self.inflight.remove(&txn) else {
            return 0;
        };
        let n = taken.len();
        for ptr in taken.into_iter().rev() {
            self.queue.push_front(ptr);
        }
        n
    }

    /// The queue as a checkpoint records it: takes in flight first (as if rolled back), then the
    /// queue. Returns the list and how many in-flight entries lead it.
    pub(crate) fn snapshot_queue(&self) -> (Vec<RecordPtr>, u64) {
        let inflight = self.inflight_len();
        let mut out = Vec::with_capacity(inflight + self.queue.len());
        for taken in self.inflight.values() {
            out.extend_from_slice(taken);
        }
        out.extend(self.queue.iter().copied());
        (out, inflight as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_puts_takes_back_at_the_head_in_order() {
        let mut st = QueueState::default();
        st.queue
            .extend([RecordPtr::new(1, 100), RecordPtr::new(1, 200)]);
        st.inflight
            .insert(7, vec![RecordPtr::new(1, 10), RecordPtr::new(1, 20)]);
        assert_eq!(st.restore_inflight(7), 2);
        let order: Vec<u64> = st.queue.iter().map(|p| p.offset).collect();
        assert_eq!(order, vec![10, 20, 100, 200]);
        assert_eq!(st.restore_inflight(7), 0, "a second restore finds nothing");
    }

    #[test]
    fn snapshot_puts_inflight_first() {
        let mut st = QueueState::default();
        st.queue.push_back(RecordPtr::new(2, 64));
        st.inflight.insert(9, vec![RecordPtr::new(1, 64)]);
        st.inflight.insert(3, vec![RecordPtr::new(1, 32)]);
        let (q, inflight) = st.snapshot_queue();
        assert_eq!(inflight, 2);
        assert_eq!(
            q,
            vec![
                RecordPtr::new(1, 32),
                RecordPtr::new(1, 64),
                RecordPtr::new(2, 64)
            ]
        );
    }

    #[test]
    fn live_counts_drop_to_absent() {
        let mut st = QueueState::default();
        let p = RecordPtr::new(5, 64);
        st.add_live(p);
        st.add_live(p);
        st.remove_live(p);
        assert_eq!(st.live.get(&SegmentId(5)), Some(&1));
        st.remove_live(p);
        assert!(!st.live.contains_key(&SegmentId(5)));
    }
}
