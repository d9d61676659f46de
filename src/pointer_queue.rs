//! The queue of record pointers, in chunks that a checkpoint snapshot shares instead of copying.
//!
//! A file channel's queue holds one 16-byte [`RecordPtr`] per committed event, a million or more.
//! A checkpoint needs a consistent copy of it, taken while the append locks and the state lock
//! are held (so that the copy, the log tails and the transactions being committed agree); copying
//! 16 MB there held every commit up for milliseconds (docs/benchmarks.md, checkpoint latency).
//!
//! Here the queue is a deque of chunks of at most [`CHUNK`] pointers, each behind an [`Arc`]. A
//! [`snapshot`](PointerQueue::snapshot) clones the `Arc`s, one per chunk (about 250 for a million
//! events), and the pointers are copied later, outside the locks, by
//! [`QueueSnapshot::extend_into`]. A chunk shared with a live snapshot is copied on its next
//! change (`Arc::make_mut`), which happens only at the two ends of the queue: at most two chunks
//! (64 KiB each) per snapshot, paid by the first commit or take that touches them.
//!
//! The order is that of a `VecDeque`: `push_back` appends, `push_front` and `drain_front` work at
//! the head, and iteration runs head to tail.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ids::RecordPtr;

/// Most pointers in one chunk (64 KiB of pointers).
pub(crate) const CHUNK: usize = 4096;

type Chunk = Arc<VecDeque<RecordPtr>>;

/// A FIFO of record pointers with O(chunks) snapshots. No chunk is ever empty.
#[derive(Debug, Default, Clone)]
pub(crate) struct PointerQueue {
    chunks: VecDeque<Chunk>,
    len: usize,
}

/// The queue as it was at [`PointerQueue::snapshot`]; unaffected by later changes.
#[derive(Debug)]
pub(crate) struct QueueSnapshot {
    chunks: Vec<Chunk>,
    len: usize,
}

impl QueueSnapshot {
    /// Pointers in the snapshot.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends the snapshot's pointers, head first, to `out`.
    pub(crate) fn extend_into(&self, out: &mut Vec<RecordPtr>) {
        out.reserve(self.len);
        for c in &self.chunks {
            let (a, b) = c.as_slices();
            out.extend_from_slice(a);
            out.extend_from_slice(b);
        }
    }
}

impl PointerQueue {
    /// Pointers queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The head.
    pub(crate) fn front(&self) -> Option<&RecordPtr> {
        self.chunks.front().and_then(|c| c.front())
    }

    /// The tail.
    pub(crate) fn back(&self) -> Option<&RecordPtr> {
        self.chunks.back().and_then(|c| c.back())
    }

    /// Appends at the tail.
    pub(crate) fn push_back(&mut self, ptr: RecordPtr) {
        match self.chunks.back_mut() {
            Some(c) if c.len() < CHUNK => Arc::make_mut(c).push_back(ptr),
            _ => {
                let mut c = VecDeque::with_capacity(CHUNK);
                c.push_back(ptr);
                self.chunks.push_back(Arc::new(c));
            }
        }
        self.len += 1;
    }

    /// Appends `ptrs` at the tail, in order: [`push_back`](Self::push_back) of each, a chunk at
    /// a time.
    pub(crate) fn extend_back(&mut self, mut ptrs: &[RecordPtr]) {
        while !ptrs.is_empty() {
            let c = match self.chunks.back_mut() {
                Some(c) if c.len() < CHUNK => Arc::make_mut(c),
                _ => {
                    self.chunks
                        .push_back(Arc::new(VecDeque::with_capacity(CHUNK)));
                    let Some(c) = self.chunks.back_mut() else {
                        return;
                    };
                    Arc::make_mut(c)
                }
            };
            let n = ptrs.len().min(CHUNK - c.len());
            c.extend(&ptrs[..n]);
            self.len += n;
            ptrs = &ptrs[n..];
        }
    }

    /// Inserts at the head.
    pub(crate) fn push_front(&mut self, ptr: RecordPtr) {
        match self.chunks.front_mut() {
            Some(c) if c.len() < CHUNK => Arc::make_mut(c).push_front(ptr),
            _ => {
                let mut c = VecDeque::with_capacity(CHUNK);
                c.push_front(ptr);
                self.chunks.push_front(Arc::new(c));
            }
        }
        self.len += 1;
    }

    /// Removes up to `n` pointers from the head and returns them, head first.
    pub(crate) fn drain_front(&mut self, n: usize) -> Vec<RecordPtr> {
        let n = n.min(self.len);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(c) = self.chunks.front_mut() else {
                break;
            };
            let want = n - out.len();
            if c.len() <= want {
                // The whole chunk: no copy-on-write of a shared one.
                let (a, b) = c.as_slices();
                out.extend_from_slice(a);
                out.extend_from_slice(b);
                self.chunks.pop_front();
            } else {
                out.extend(Arc::make_mut(c).drain(..want));
            }
        }
        self.len -= out.len();
        out
    }

    /// Removes the first pointer equal to `ptr`; false when there is none.
    pub(crate) fn remove_first(&mut self, ptr: RecordPtr) -> bool {
        for ci in 0..self.chunks.len() {
            let Some(i) = self.chunks[ci].iter().position(|p| *p == ptr) else {
                continue;
            };
            if self.chunks[ci].len() == 1 {
                self.chunks.remove(ci);
            } else {
                Arc::make_mut(&mut self.chunks[ci]).remove(i);
            }
            self.len -= 1;
            return true;
        }
        false
    }

    /// Head to tail.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &RecordPtr> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The queue as it is now, sharing the chunks (O(chunks)).
    pub(crate) fn snapshot(&self) -> QueueSnapshot {
        QueueSnapshot {
            chunks: self.chunks.iter().cloned().collect(),
            len: self.len,
        }
    }
}

/// Builds a [`PointerQueue`] by appending at the tail, a chunk at a time: replay's bulk load of a
/// million pointers fills plain vectors and wraps each full one in its chunk, with no
/// copy-on-write check per pointer.
#[derive(Debug, Default)]
pub(crate) struct QueueBuilder {
    chunks: VecDeque<Chunk>,
    cur: Vec<RecordPtr>,
    len: usize,
}

impl QueueBuilder {
    /// Appends at the tail.
    #[inline]
    pub(crate) fn push(&mut self, ptr: RecordPtr) {
        if self.cur.capacity() == 0 {
            self.cur.reserve_exact(CHUNK);
        }
        self.cur.push(ptr);
        if self.cur.len() >= CHUNK {
            self.seal();
        }
    }

    fn seal(&mut self) {
        let full = std::mem::take(&mut self.cur);
        self.len += full.len();
        // `VecDeque::from(Vec)` takes the vector's buffer as it is (no copy).
        self.chunks.push_back(Arc::new(VecDeque::from(full)));
    }

    /// The queue, head first in the order of the pushes.
    pub(crate) fn finish(mut self) -> PointerQueue {
        if !self.cur.is_empty() {
            self.seal();
        }
        PointerQueue {
            chunks: self.chunks,
            len: self.len,
        }
    }
}

impl FromIterator<RecordPtr> for PointerQueue {
    fn from_iter<I: IntoIterator<Item = RecordPtr>>(iter: I) -> Self {
        let mut q = PointerQueue::default();
        for p in iter {
            q.push_back(p);
        }
        q
    }
}

impl Extend<RecordPtr> for PointerQueue {
    fn extend<I: IntoIterator<Item = RecordPtr>>(&mut self, iter: I) {
        for p in iter {
            self.push_back(p);
        }
    }
}

impl From<VecDeque<RecordPtr>> for PointerQueue {
    fn from(q: VecDeque<RecordPtr>) -> Self {
        q.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a PointerQueue {
    type Item = &'a RecordPtr;
    type IntoIter = Box<dyn Iterator<Item = &'a RecordPtr> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        PushBack,
        ExtendBack,
        PushFront,
        PopFront,
        Drain(usize),
        Remove(usize),
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => Just(Op::PushBack),
            3 => Just(Op::ExtendBack),
            2 => Just(Op::PushFront),
            3 => Just(Op::PopFront),
            2 => (0usize..3 * CHUNK).prop_map(Op::Drain),
            1 => (0usize..3 * CHUNK).prop_map(Op::Remove),
            1 => Just(Op::Snapshot),
        ]
    }

    fn contents(q: &PointerQueue) -> Vec<RecordPtr> {
        q.iter().copied().collect()
    }

    #[test]
    fn builder_fills_whole_chunks_in_push_order() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let mut b = QueueBuilder::default();
            for i in 0..n {
                b.push(RecordPtr::new(1, i as u64));
            }
            let mut q = b.finish();
            assert_eq!(q.len(), n);
            assert!(q.chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
            assert_eq!(q.chunks.len(), n.div_ceil(CHUNK));
            let want: Vec<RecordPtr> = (0..n).map(|i| RecordPtr::new(1, i as u64)).collect();
            assert_eq!(contents(&q), want);
            // The built queue works as any other: pushes at both ends, drains.
            q.push_back(RecordPtr::new(2, 0));
            q.push_front(RecordPtr::new(0, 0));
            assert_eq!(q.len(), n + 2);
            assert_eq!(q.front(), Some(&RecordPtr::new(0, 0)));
            assert_eq!(q.back(), Some(&RecordPtr::new(2, 0)));
            assert_eq!(q.drain_front(n + 2).len(), n + 2);
            assert!(q.is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The chunked queue behaves as a `VecDeque`, and every snapshot keeps the contents it
        /// had when it was taken, whatever happens to the queue afterwards.
        #[test]
        fn behaves_as_a_deque_and_snapshots_stay_frozen(
            ops in proptest::collection::vec((op(), 1usize..1500), 1..60)
        ) {
            let mut q = PointerQueue::default();
            let mut model: VecDeque<RecordPtr> = VecDeque::new();
            let mut next = 0u64;
            let mut snaps: Vec<(QueueSnapshot, Vec<RecordPtr>)> = Vec::new();
            for (op, repeat) in ops {
                match op {
                    Op::PushBack | Op::PushFront => {
                        for _ in 0..repeat {
                            let p = RecordPtr::new(1, next);
                            next += 1;
                            if matches!(op, Op::PushBack) {
                                q.push_back(p);
                                model.push_back(p);
                            } else {
                                q.push_front(p);
                                model.push_front(p);
                            }
                        }
                    }
                    Op::ExtendBack => {
                        let ptrs: Vec<RecordPtr> =
                            (next..next + repeat as u64).map(|i| RecordPtr::new(1, i)).collect();
                        next += repeat as u64;
                        q.extend_back(&ptrs);
                        model.extend(ptrs);
                    }
                    Op::PopFront => {
                        for _ in 0..repeat {
                            prop_assert_eq!(q.drain_front(1).first().copied(), model.pop_front());
                        }
                    }
                    Op::Drain(n) => {
                        let want: Vec<RecordPtr> = model.drain(..n.min(model.len())).collect();
                        prop_assert_eq!(q.drain_front(n), want);
                    }
                    Op::Remove(i) => {
                        let target = model.get(i).copied().unwrap_or(RecordPtr::new(9, 0));
                        let found = model.iter().position(|p| *p == target);
                        if let Some(at) = found {
                            model.remove(at);
                        }
                        prop_assert_eq!(q.remove_first(target), found.is_some());
                    }
                    Op::Snapshot => snaps.push((q.snapshot(), model.iter().copied().collect())),
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.is_empty(), model.is_empty());
                prop_assert_eq!(q.front(), model.front());
                prop_assert_eq!(q.back(), model.back());
                prop_assert!(q.chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
            }
            prop_assert_eq!(contents(&q), model.iter().copied().collect::<Vec<_>>());
            for (snap, want) in &snaps {
                let mut got = Vec::new();
                snap.extend_into(&mut got);
                prop_assert_eq!(snap.len(), want.len());
                prop_assert_eq!(&got, want);
            }
        }
    }
}
