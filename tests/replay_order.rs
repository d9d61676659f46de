//! Queue order after a full replay (and a replay from a checkpoint) when put
//! transactions spill interleaved runs into one directory's log, across segments and across
//! two directories, with a taken-and-rolled-back batch at the head.

mod common;

use std::time::Duration;

use common::{cfg, drain, ev, id_of};
use proptest::prelude::*;
use tidegate::{Event, FileChannel};

fn big(i: u64) -> Event {
    let mut e = ev(i);
    e.body_mut().resize(3000 + (i as usize * 7919) % 2000, b'x');
    e
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn interleaved_spilled_transactions_replay_in_commit_order(
        two_dirs in any::<bool>(),
        // Which of three open transactions each put goes to, then the commit order.
        puts in proptest::collection::vec(0usize..3, 1..60),
        order in Just([0usize, 1, 2]).prop_shuffle(),
        checkpoint_after in proptest::option::of(0usize..3),
        rollback_take in 0usize..5,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = if two_dirs {
            tidegate::FileChannelConfig::new(
                dir.path().join("ckpt"),
                vec![dir.path().join("d1"), dir.path().join("d2")],
            )
            .minimum_required_space(1 << 20)
            .max_segment_size(64 << 10)
            .max_event_size(8 << 10)
        } else {
            cfg(dir.path())
        };
        let c = base
            .checkpoint_on_close(false)
            .checkpoint_interval(Duration::from_secs(3600));
        let mut expected: Vec<u64> = Vec::new();
        {
            let ch = FileChannel::open(c.clone()).expect("open");
            let mut txns: Vec<_> = (0..3).map(|_| ch.transaction()).collect();
            let mut ids: Vec<Vec<u64>> = vec![Vec::new(); 3];
            for (i, t) in puts.iter().enumerate() {
                txns[*t].put(big(i as u64)).expect("put");
                ids[*t].push(i as u64);
            }
            let mut txns: Vec<Option<_>> = txns.into_iter().map(Some).collect();
            for (k, t) in order.iter().enumerate() {
                txns[*t].take().expect("open txn").commit().expect("commit");
                expected.extend(&ids[*t]);
                if checkpoint_after == Some(k) {
                    ch.checkpoint().expect("checkpoint");
                }
            }
            // Take a few and roll back: they stay at the head.
            let mut tx = ch.transaction();
            let got = tx.take_batch(rollback_take, Duration::ZERO).expect("take");
            prop_assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), expected[..got.len()].to_vec());
            tx.rollback().expect("rollback");
            drop(ch); // no close: no checkpoint on the way out
        }
        let ch = FileChannel::open(c).expect("reopen");
        prop_assert_eq!(drain(&ch), expected);
    }
}
