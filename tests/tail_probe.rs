//! The open's read of the newest segment's rest after the log (`TailProbe` in src/replay.rs):
//! with a torn tail in that segment, the rest is read once (by the probe), not again for the
//! torn tail and again for "bytes beyond the end of the log".

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::observed::{FileOp, ObservedFs};
use common::{drain, ev, flip};
use tidegate::{FileChannel, FileChannelConfig};

const SEGMENT: u64 = 8 << 20;

fn config(root: &Path) -> FileChannelConfig {
    FileChannelConfig::new(root.join("ckpt"), vec![root.join("data")])
        .minimum_required_space(1 << 20)
        .max_segment_size(SEGMENT)
        .max_event_size(1 << 20)
        .checkpoint_on_close(false)
        .checkpoint_interval(Duration::from_secs(3600))
}

#[test]
fn a_torn_tail_in_the_newest_segment_reads_its_rest_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let ch = FileChannel::open(cfg.clone()).expect("open");
    for i in 0..20u64 {
        let mut tx = ch.transaction();
        tx.put(ev(i)).expect("put");
        tx.commit().expect("commit");
    }
    drop(ch);
    // Tear the last record of the newest segment (its last non-zero byte).
    let data = dir.path().join("data");
    let newest = std::fs::read_dir(&data)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| {
            p.file_stem().unwrap().to_string_lossy()["segment-".len()..]
                .parse::<u32>()
                .unwrap()
        })
        .expect("a segment");
    let bytes = std::fs::read(&newest).expect("read");
    let last = bytes.iter().rposition(|b| *b != 0).expect("a record") as u64;
    drop(bytes);
    flip(&newest, last, 0x80);

    // Bytes `read_exact_at` reads from each file.
    let read: Arc<Mutex<HashMap<PathBuf, u64>>> = Arc::default();
    let counts = read.clone();
    let fs = ObservedFs::new(move |path, op| {
        if let FileOp::Read { len, .. } = op {
            *counts
                .lock()
                .unwrap()
                .entry(path.to_path_buf())
                .or_default() += len;
        }
    });
    let ch = FileChannel::open(cfg.file_system(Arc::new(fs))).expect("reopen");
    let report = ch.recovery_report();
    assert_eq!(report.torn_tails, 1, "{report:?}");
    let torn_bytes = report.torn_bytes_truncated;
    assert_eq!(drain(&ch).len(), 19, "{torn_bytes}");
    drop(ch);
    // The scan's first chunk (1 MiB) and the probe's read of the rest (the segment's size):
    // not the rest again for the torn tail and again for the bytes beyond the log.
    let read = read.lock().unwrap().get(&newest).copied().unwrap_or(0);
    assert!(
        read < SEGMENT + (2 << 20),
        "{read} bytes read from a segment of {SEGMENT}"
    );
}
