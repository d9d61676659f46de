//! Commit pins re-derived by a full replay (`add_pins`, no checkpoint to carry them):
//! a transaction whose Put is in segment 2 and Commit alone in segment 3, the process killed
//! (no checkpoint at close), reopened by a full replay, checkpointed twice (collection), then
//! both checkpoints lost: the next full replay must still find t1's Commit.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{cfg, drain, flip, put_range};
use tidegate::{Event, FileChannel};

fn split_cfg(root: &Path) -> tidegate::FileChannelConfig {
    cfg(root)
        .max_segment_size(4096)
        .max_event_size(4000)
        .checkpoint_on_close(false)
        .checkpoint_interval(Duration::from_secs(3600))
}

fn big(id: u64, size: usize) -> Event {
    let body = size - 8 - 9 - id.to_string().len();
    Event::new(vec![b'x'; body]).with_header("i", id.to_string())
}

#[test]
fn a_commit_pin_found_by_a_full_replay_keeps_a_split_transaction() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();
    {
        let ch = FileChannel::open(split_cfg(root)).expect("open");
        put_range(&ch, 0..1);
        let mut tx = ch.transaction();
        tx.put(big(1000, 3980)).expect("put t1");
        tx.commit().expect("commit t1");
        let mut tx = ch.transaction();
        let got = tx.take_batch(1, Duration::ZERO).expect("take e0");
        assert_eq!(got.len(), 1);
        tx.commit().expect("commit take");
        let mut tx = ch.transaction();
        tx.put(big(2000, 3900)).expect("put b1");
        tx.commit().expect("commit b1");
        drop(ch); // killed: no checkpoint
    }
    {
        let ch = FileChannel::open(split_cfg(root)).expect("reopen");
        assert!(ch.recovery_report().full_replay);
        ch.checkpoint().expect("checkpoint");
        ch.checkpoint().expect("checkpoint");
        drop(ch);
    }
    for c in common::checkpoints(&root.join("ckpt")) {
        flip(&c, 20, 0xFF);
    }
    let ch = FileChannel::open(split_cfg(root)).expect("full replay");
    assert!(ch.recovery_report().full_replay);
    assert_eq!(drain(&ch), vec![1000, 2000]);
}
