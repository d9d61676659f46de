//! File names in the channel's directories. Names that match none of these are ignored.
//!
//! - data directory: `segment-{id:010}.log`, and `segment-{id:010}.log.tmp` while one is being
//!   created (left over only by a crash; removed at open), and `segment-{id:010}.log.free` for
//!   a collected segment's file kept to be reused (recycled) as a new segment;
//! - checkpoint directory: `checkpoint-{generation:020}`, and `checkpoint.tmp` while one is
//!   being written;
//! - both: `.lock`, the exclusive lock file.

/// Name of segment `id`.
pub fn segment(id: u32) -> String {
    format!("segment-{id:010}.log")
}

/// Name of segment `id` while it is being created.
pub fn segment_tmp(id: u32) -> String {
    format!("segment-{id:010}.log.tmp")
}

/// Name of the collected segment `id`'s file while it waits to be reused.
pub fn segment_free(id: u32) -> String {
    format!("segment-{id:010}.log.free")
}

/// True for a collected segment's file kept for reuse.
pub fn is_segment_free(name: &str) -> bool {
    parse_segment_free(name).is_some()
}

/// The segment id in the name of a collected segment's file kept for reuse.
pub fn parse_segment_free(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".log.free")?;
    parse_digits(digits, 10)?.try_into().ok()
}

/// The segment id in a segment file name.
pub fn parse_segment(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".log")?;
    parse_digits(digits, 10)?.try_into().ok()
}

/// True for a leftover temporary segment.
pub fn is_segment_tmp(name: &str) -> bool {
    name.strip_prefix("segment-")
        .and_then(|n| n.strip_suffix(".log.tmp"))
        .is_some_and(|d| parse_digits(d, 10).is_some())
}

/// Name of checkpoint `generation`.
pub fn checkpoint(generation: u64) -> String {
    format!("checkpoint-{generation:020}")
}

/// Name of a checkpoint being written.
pub const CHECKPOINT_TMP: &str = "checkpoint.tmp";

/// The generation in a checkpoint file name.
pub fn parse_checkpoint(name: &str) -> Option<u64> {
    parse_digits(name.strip_prefix("checkpoint-")?, 20)
}

fn parse_digits(s: &str, width: usize) -> Option<u64> {
    if s.len() != width || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_segment(&segment(42)), Some(42));
        assert_eq!(parse_checkpoint(&checkpoint(7)), Some(7));
        assert!(is_segment_tmp(&segment_tmp(3)));
        assert!(is_segment_free(&segment_free(3)));
        assert!(!is_segment_free(&segment(3)) && !is_segment_free(&segment_tmp(3)));
        assert_eq!(parse_segment(&segment_free(3)), None);
        assert_eq!(parse_segment_free(&segment_free(3)), Some(3));
        assert_eq!(parse_segment("segment-42.log"), None);
        assert_eq!(parse_segment("notes.txt"), None);
        assert_eq!(parse_checkpoint("checkpoint.tmp"), None);
    }
}
