//! A model-based (state-machine) test of the file channel.
//!
//! proptest generates sequences of operations (put, take, commit, rollback, drop, checkpoint,
//! clean reopen, crash reopen); each is applied both to a real `FileChannel` over tiny segments
//! (so rolls, spills and garbage collection happen constantly) and to a reference model: a
//! `VecDeque` of committed, not taken event ids plus the puts and takes of the one open
//! transaction. After every operation the channel must agree with the model: takes return the
//! model's head in FIFO order, rolled-back or dropped takes return to the head in their original
//! order, committed takes never come back, uncommitted puts never appear (also across reopens
//! and crashes, which lose the open transaction), and `stats()` counts what the model holds.
//! Each case ends by draining the channel and checking that disk usage follows the backlog.
//!
//! The model runs on the real file system (where a "crash" drops every handle without
//! `close()`, as a killed process does), and on `MemFs`, where `PowerLoss` keeps only the bytes
//! and directory entries that were synced, plus a torn 4 KiB tail, before reopening; the `MemFs`
//! run is repeated with encryption and LZ4 compression on.
//!
//! Each case runs 1 to 59 operations. `PROPTEST_CASES` overrides the number of cases (256 by
//! default, a few seconds in debug builds); `PROPTEST_RNG_SEED` fixes the generator. Failures
//! are shrunk, persisted in `tests/model.proptest-regressions` (commit that file) and replayed
//! first on later runs.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tidegate::at_rest::{Compression, EncryptionConfig, generate_key_file};
use tidegate::io::{Cut, FileSystem, MemFs, TornTail};
use tidegate::{Event, FileChannel, FileChannelConfig, Transaction};

/// Most events the channel holds: small, so `ChannelFull` is exercised too.
const CAPACITY: u64 = 48;
/// Most operations in one transaction: small, so `TransactionFull` is exercised too.
const TXN_CAPACITY: usize = 24;
/// Largest event accepted.
const MAX_EVENT_SIZE: u64 = 1024;
/// Segment files a drained, twice-checkpointed data directory may still hold (the active
/// segment, the preallocated spare, and some slack).
const MAX_SEGMENTS_WHEN_EMPTY: usize = 4;

/// How a put (take) operation finishes an open transaction that holds takes (puts), after
/// checking that the transaction refuses the other kind of operation.
#[derive(Debug, Clone, Copy)]
enum Finish {
    Commit,
    Rollback,
}

#[derive(Debug, Clone)]
enum Op {
    /// Put this many new events in the open put transaction (beginning one if needed).
    Put(usize, Finish),
    /// Put one event larger than `max_event_size`: refused, nothing changes.
    PutTooLarge,
    /// Take up to this many events in the open take transaction (beginning one if needed).
    Take(usize, Finish),
    Commit,
    Rollback,
    /// Drop the open transaction without finishing it.
    Drop,
    Checkpoint,
    /// `close()` and open again; the open transaction is dropped before or after the close.
    Reopen {
        drop_txn_first: bool,
    },
    /// Drop every handle without `close()` (no final checkpoint), then open again.
    CrashReopen,
    /// Power loss: on `MemFs`, keep only what was synced (with a torn 4 KiB tail of what was
    /// not) and open the image; on the real file system, the same as `CrashReopen`.
    PowerLoss,
}

fn finish_strategy() -> impl Strategy<Value = Finish> {
    prop_oneof![3 => Just(Finish::Commit), 1 => Just(Finish::Rollback)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        7 => (1usize..=10, finish_strategy()).prop_map(|(n, f)| Op::Put(n, f)),
        1 => Just(Op::PutTooLarge),
        4 => (1usize..=8, finish_strategy()).prop_map(|(n, f)| Op::Take(n, f)),
        5 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Drop),
        2 => Just(Op::Checkpoint),
        1 => any::<bool>().prop_map(|drop_txn_first| Op::Reopen { drop_txn_first }),
        1 => Just(Op::CrashReopen),
        1 => Just(Op::PowerLoss),
    ]
}

/// What the model knows of the open transaction's kind. A put refused for lack of capacity, or a
/// take that found nothing, may or may not fix the kind of a fresh transaction; the model
/// accepts either until the next operation tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idle,
    Put,
    Take,
    /// Idle or Put.
    MaybePut,
    /// Idle or Take.
    MaybeTake,
}

#[derive(Debug)]
struct TxnModel {
    kind: Kind,
    puts: Vec<u64>,
    takes: Vec<u64>,
    ops: usize,
}

impl TxnModel {
    fn new() -> Self {
        TxnModel {
            kind: Kind::Idle,
            puts: Vec::new(),
            takes: Vec::new(),
            ops: 0,
        }
    }
}

/// The reference model.
#[derive(Debug, Default)]
struct Model {
    /// Committed events not taken by anyone, head first.
    queue: VecDeque<u64>,
    txn: Option<TxnModel>,
    next_id: u64,
}

impl Model {
    /// Events counted against `capacity`: queued, taken but not committed, put but not committed.
    fn reserved(&self) -> u64 {
        let open = self
            .txn
            .as_ref()
            .map_or(0, |t| t.puts.len() + t.takes.len());
        (self.queue.len() + open) as u64
    }

    /// Rollback, drop, or loss at a reopen/crash: puts vanish, takes return to the head in order.
    fn undo_txn(&mut self) {
        if let Some(t) = self.txn.take() {
            for id in t.takes.into_iter().rev() {
                self.queue.push_front(id);
            }
        }
    }

    fn commit_txn(&mut self) {
        if let Some(t) = self.txn.take() {
            self.queue.extend(t.puts);
        }
    }
}

fn body(id: u64) -> Vec<u8> {
    let mut b = format!("{id:010}:").into_bytes();
    let pad = (id * 7919 % 251) as usize;
    b.extend((0..pad).map(|k| b'a' + ((id as usize + k) % 26) as u8));
    b
}

fn event(id: u64) -> Event {
    Event::new(body(id)).with_header("id", id.to_string())
}

/// The id of an event, checking that its body and headers are intact.
fn id_of(e: &Event) -> u64 {
    let id: u64 = e
        .headers()
        .get("id")
        .and_then(|v| v.parse().ok())
        .expect("event has an id header");
    assert_eq!(e.body(), body(id).as_slice(), "body of event {id} damaged");
    assert_eq!(e.headers().len(), 1, "headers of event {id}");
    id
}

/// How the channel stores event data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtRest {
    /// As it is.
    Plain,
    /// Encrypted, and compressed event by event.
    PerEvent,
    /// Encrypted, and each put transaction's events compressed together (PutBatch records).
    Batched,
    /// Encrypted, not compressed: each put transaction's events sealed together (PutBatch
    /// records holding the raw block).
    SealedBatches,
}

fn config(root: &Path, mem: Option<&MemFs>, at_rest: AtRest) -> FileChannelConfig {
    let mut cfg = FileChannelConfig::new(
        root.join("ckpt"),
        vec![root.join("data1"), root.join("data2")],
    )
    .max_segment_size(4096)
    .max_event_size(MAX_EVENT_SIZE)
    .minimum_required_space(1 << 20)
    .keep_alive(Duration::from_millis(10))
    .capacity(CAPACITY)
    .transaction_capacity(TXN_CAPACITY);
    if at_rest != AtRest::Plain {
        // The key file lives on the real disk even when the channel runs on MemFs.
        let key = root.join("k1.key");
        if !key.exists() {
            generate_key_file(&key).expect("key file");
        }
        cfg = cfg
            .compression(if at_rest == AtRest::SealedBatches {
                Compression::None
            } else {
                Compression::Lz4
            })
            .compression_threshold(64)
            .encryption(EncryptionConfig::new(1).key(1, key))
            .batch_compression(at_rest != AtRest::PerEvent);
    }
    match mem {
        Some(fs) => cfg.file_system(Arc::new(fs.clone())),
        None => cfg,
    }
}

fn segment_files(dir: &Path, mem: Option<&MemFs>) -> Vec<PathBuf> {
    if let Some(fs) = mem {
        let mut v: Vec<PathBuf> = fs
            .list_dir(dir)
            .expect("list data dir")
            .into_iter()
            .filter(|n| n.ends_with(".log"))
            .map(|n| dir.join(n))
            .collect();
        v.sort();
        return v;
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// The channel under test, its open transaction, and the model.
struct Harness {
    root: tempfile::TempDir,
    /// When set, the channel runs on this in-memory file system instead of `root`'s disk.
    mem: Option<MemFs>,
    /// Encryption and compression on.
    at_rest: AtRest,
    ch: Option<FileChannel>,
    tx: Option<Transaction>,
    model: Model,
    /// Operations applied so far, for failure messages.
    step: usize,
}

impl Harness {
    fn new(mem: Option<MemFs>, at_rest: AtRest) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let ch = FileChannel::open(config(root.path(), mem.as_ref(), at_rest))
            .expect("open a new channel");
        Harness {
            root,
            mem,
            at_rest,
            ch: Some(ch),
            tx: None,
            model: Model::default(),
            step: 0,
        }
    }

    fn ch(&self) -> &FileChannel {
        self.ch.as_ref().expect("channel is open")
    }

    /// The open transaction and its model, beginning both if needed.
    fn begin(&mut self) -> (&mut Transaction, &mut TxnModel) {
        if self.tx.is_none() {
            assert!(
                self.model.txn.is_none(),
                "model has a transaction the harness lacks"
            );
            self.tx = Some(self.ch().transaction());
            self.model.txn = Some(TxnModel::new());
        }
        let tx = self.tx.as_mut().expect("transaction");
        let m = self.model.txn.as_mut().expect("model transaction");
        (tx, m)
    }

    fn apply(&mut self, op: &Op) {
        self.step += 1;
        match op {
            Op::Put(n, finish) => {
                if matches!(self.kind(), Some(Kind::Take | Kind::MaybeTake)) {
                    self.put_one(); // refused: the transaction holds takes
                    self.finish_txn(*finish);
                }
                for _ in 0..*n {
                    if self.put_one() == Some("channel_full") {
                        break; // the rest would wait and fail the same way
                    }
                }
            }
            Op::PutTooLarge => self.put_too_large(),
            Op::Take(n, finish) => {
                if matches!(self.kind(), Some(Kind::Put | Kind::MaybePut)) {
                    self.take(1); // refused: the transaction holds puts
                    self.finish_txn(*finish);
                }
                self.take(*n);
            }
            Op::Commit => self.finish_txn(Finish::Commit),
            Op::Rollback => self.finish_txn(Finish::Rollback),
            Op::Drop => {
                drop(self.tx.take());
                self.model.undo_txn();
            }
            Op::Checkpoint => self.ch().checkpoint().expect("checkpoint"),
            Op::Reopen { drop_txn_first } => {
                if *drop_txn_first {
                    drop(self.tx.take());
                }
                self.ch().close().expect("close");
                // A transaction left open across close() can still be dropped.
                drop(self.tx.take());
                drop(self.ch.take());
                self.model.undo_txn();
                self.reopen();
            }
            Op::CrashReopen => {
                // No close(): no final checkpoint. Every handle goes, so the directory locks do.
                drop(self.tx.take());
                drop(self.ch.take());
                self.model.undo_txn();
                self.reopen();
            }
            Op::PowerLoss => {
                // The image is taken while the channel and its transaction are still live:
                // whatever they did not sync is lost (or torn), whatever they synced stays.
                // Commits returned only after their sync, so the model is unchanged but for the
                // open transaction.
                if let Some(fs) = &self.mem {
                    let image = fs.crash(TornTail::Page4096(Cut::Random(self.step as u64)));
                    drop(self.tx.take());
                    drop(self.ch.take());
                    self.mem = Some(image);
                } else {
                    drop(self.tx.take());
                    drop(self.ch.take());
                }
                self.model.undo_txn();
                self.reopen();
            }
        }
        self.check_stats();
    }

    fn kind(&self) -> Option<Kind> {
        self.model.txn.as_ref().map(|t| t.kind)
    }

    /// Commits or rolls back the open transaction (or an empty one).
    fn finish_txn(&mut self, how: Finish) {
        let tx = self.tx.take().unwrap_or_else(|| self.ch().transaction());
        match how {
            Finish::Commit => {
                tx.commit().expect("commit");
                self.model.commit_txn();
            }
            Finish::Rollback => {
                tx.rollback().expect("rollback");
                self.model.undo_txn();
            }
        }
    }

    fn reopen(&mut self) {
        let ch = FileChannel::open(config(self.root.path(), self.mem.as_ref(), self.at_rest))
            .expect("reopen");
        assert_eq!(
            ch.recovery_report().events_restored,
            self.model.queue.len() as u64,
            "events restored by replay: {:?}",
            ch.recovery_report()
        );
        self.ch = Some(ch);
    }

    /// Puts the next event; returns the error code of an expected failure.
    fn put_one(&mut self) -> Option<&'static str> {
        let id = self.model.next_id;
        self.model.next_id += 1;
        let reserved = self.model.reserved();
        let (tx, m) = self.begin();
        let result = tx.put(event(id));
        if m.kind == Kind::MaybeTake {
            match &result {
                Err(e) if e.error.error_code() == "mixed_transaction" => {
                    m.kind = Kind::Take;
                    return Some("mixed_transaction");
                }
                _ => m.kind = Kind::Idle,
            }
        }
        let expected_error = if m.kind == Kind::Take {
            Some("mixed_transaction")
        } else if m.ops >= TXN_CAPACITY {
            Some("transaction_full")
        } else if reserved >= CAPACITY {
            Some("channel_full")
        } else {
            None
        };
        match (result, expected_error) {
            (Ok(()), None) => {
                m.puts.push(id);
                m.ops += 1;
                m.kind = Kind::Put;
                None
            }
            (Err(e), Some(code)) => {
                assert_eq!(e.error.error_code(), code, "put of {id} failed with {e}");
                assert_eq!(e.event, event(id), "a failed put hands its event back");
                if code == "channel_full" && m.kind == Kind::Idle {
                    m.kind = Kind::MaybePut;
                }
                Some(code)
            }
            (Ok(()), Some(code)) => panic!("put of {id} succeeded; the model expected {code}"),
            (Err(e), None) => panic!("put of {id} failed: {e}"),
        }
    }

    fn put_too_large(&mut self) {
        let (tx, m) = self.begin();
        if !matches!(m.kind, Kind::Idle | Kind::Put) || m.ops >= TXN_CAPACITY {
            return; // another error would come first; covered by put_one
        }
        let big = Event::new(vec![b'x'; MAX_EVENT_SIZE as usize + 1]);
        let err = tx
            .put(big.clone())
            .expect_err("an oversized event is refused");
        assert_eq!(err.error.error_code(), "event_too_large", "{err}");
        assert_eq!(err.event, big, "the refused event is handed back");
    }

    fn take(&mut self, n: usize) {
        let queued = self.model.queue.len();
        let (tx, m) = self.begin();
        let result = if n == 1 {
            tx.take().map(|e| e.into_iter().collect::<Vec<_>>())
        } else {
            tx.take_batch(n, Duration::ZERO)
        };
        if m.kind == Kind::MaybePut {
            match &result {
                Err(e) if e.error_code() == "mixed_transaction" => {
                    m.kind = Kind::Put;
                    return;
                }
                _ => m.kind = Kind::Idle,
            }
        }
        let room = TXN_CAPACITY - m.ops;
        let expected_error = if m.kind == Kind::Put {
            Some("mixed_transaction")
        } else if room == 0 {
            Some("transaction_full")
        } else {
            None
        };
        let k = n.min(room).min(queued);
        match (result, expected_error) {
            (Ok(events), None) => {
                let got: Vec<u64> = events.iter().map(id_of).collect();
                let expected: Vec<u64> = self.model.queue.drain(..k).collect();
                assert_eq!(
                    got, expected,
                    "take({n}) at step {} must return the head of the queue",
                    self.step
                );
                let m = self.model.txn.as_mut().expect("model transaction");
                m.takes.extend(got);
                m.ops += k;
                m.kind = match (m.kind, k) {
                    (Kind::Idle, 0) => Kind::MaybeTake,
                    (kind, 0) => kind,
                    _ => Kind::Take,
                };
            }
            (Err(e), Some(code)) => assert_eq!(e.error_code(), code, "take failed with {e}"),
            (Ok(events), Some(code)) => {
                panic!(
                    "take returned {} events; the model expected {code}",
                    events.len()
                )
            }
            (Err(e), None) => panic!("take failed: {e}"),
        }
    }

    fn check_stats(&self) {
        let s = self.ch().stats();
        assert_eq!(
            s.size,
            self.model.queue.len() as u64,
            "stats().size after step {}: {:?}",
            self.step,
            self.model
        );
        let in_flight = self.model.txn.as_ref().map_or(0, |t| t.takes.len()) as u64;
        assert_eq!(
            s.in_flight, in_flight,
            "stats().in_flight after step {}",
            self.step
        );
        assert!(s.open, "channel reports closed");
        assert_eq!(s.poisoned, None, "channel poisoned");
    }

    /// Ends the case: rolls back the open transaction, takes everything (which must be exactly
    /// the model's queue), checks that two checkpoints shrink the log to a few segments per
    /// directory, and that a reopen finds the channel empty.
    fn finish(mut self) {
        drop(self.tx.take());
        self.model.undo_txn();
        self.check_stats();
        let mut drained = Vec::new();
        loop {
            let mut tx = self.ch().transaction();
            let events = tx.take_batch(TXN_CAPACITY, Duration::ZERO).expect("take");
            if events.is_empty() {
                tx.commit().expect("commit");
                break;
            }
            drained.extend(events.iter().map(id_of));
            tx.commit().expect("commit");
        }
        let expected: Vec<u64> = self.model.queue.drain(..).collect();
        assert_eq!(drained, expected, "draining must return the model's queue");
        self.check_stats();

        self.ch().checkpoint().expect("checkpoint");
        self.ch().checkpoint().expect("checkpoint");
        for d in ["data1", "data2"] {
            let segs = segment_files(&self.root.path().join(d), self.mem.as_ref());
            assert!(
                segs.len() <= MAX_SEGMENTS_WHEN_EMPTY,
                "{d} holds {} segments with the channel empty: {segs:?}",
                segs.len()
            );
        }

        self.ch().close().expect("close");
        drop(self.ch.take());
        self.reopen();
        let mut tx = self.ch().transaction();
        assert_eq!(tx.take().expect("take").map(|e| id_of(&e)), None);
        tx.commit().expect("commit");
        self.check_stats();
        self.ch().close().expect("close");
    }
}

fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn file_channel_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let mut h = Harness::new(None, AtRest::Plain);
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }

    /// The same model on `MemFs`, where `PowerLoss` really drops everything unsynced.
    #[test]
    fn file_channel_on_memfs_matches_the_model_across_power_losses(
        ops in prop::collection::vec(op_strategy(), 1..60)
    ) {
        let mut h = Harness::new(Some(MemFs::new()), AtRest::Plain);
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }

    /// The `MemFs` model with encryption and LZ4 compression on.
    #[test]
    fn encrypted_compressed_channel_on_memfs_matches_the_model_across_power_losses(
        ops in prop::collection::vec(op_strategy(), 1..60)
    ) {
        let mut h = Harness::new(Some(MemFs::new()), AtRest::PerEvent);
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }

    /// The `MemFs` model with encryption and per-transaction batch compression (PutBatch).
    #[test]
    fn batch_compressed_encrypted_channel_on_memfs_matches_the_model_across_power_losses(
        ops in prop::collection::vec(op_strategy(), 1..60)
    ) {
        let mut h = Harness::new(Some(MemFs::new()), AtRest::Batched);
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }

    /// The `MemFs` model with encryption only, each put transaction sealed as one PutBatch.
    #[test]
    fn sealed_batch_channel_on_memfs_matches_the_model_across_power_losses(
        ops in prop::collection::vec(op_strategy(), 1..60)
    ) {
        let mut h = Harness::new(Some(MemFs::new()), AtRest::SealedBatches);
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }
}
