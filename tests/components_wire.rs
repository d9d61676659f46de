//! The batch formats of the HTTP source and sink: round trips (proptest) and strict decoding.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tidegate::Event;
use tidegate::agent::wire::{self, Format, WireError};
use tidegate::format::DecodeError;

fn event() -> impl Strategy<Value = Event> {
    (
        prop::collection::btree_map(".{0,8}", ".{0,12}", 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(headers, body): (BTreeMap<String, String>, Vec<u8>)| {
            Event::from_parts(headers, body)
        })
}

proptest! {
    #[test]
    fn binary_round_trips(events in prop::collection::vec(event(), 0..16)) {
        let bytes = wire::encode_binary(&events).expect("encode");
        prop_assert_eq!(wire::decode_binary(&bytes).expect("decode"), events.clone());
        // Every strict prefix is refused.
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            prop_assert!(wire::decode_binary(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn json_round_trips(events in prop::collection::vec(event(), 0..16)) {
        let bytes = wire::encode_json(&events);
        prop_assert_eq!(wire::decode_json(&bytes).expect("decode"), events.clone());
        prop_assert_eq!(Format::Json.decode(&Format::Json.encode(&events).expect("encode")).expect("decode"), events);
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = wire::decode_binary(&bytes);
        let _ = wire::decode_json(&bytes);
    }
}

/// Replaces the CRC after changing a batch's content.
fn fix_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - wire::CRC_LEN);
    let crc = tidegate::format::crc32(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn lying_lengths_are_refused_before_anything_is_reserved() {
    let bytes =
        wire::encode_binary(&[Event::new(b"abc".to_vec()).with_header("k", "v")]).expect("encode");
    for (at, field) in [
        (8, "event count"),
        (12, "header count"),
        (16, "body length"),
    ] {
        let mut b = bytes.clone();
        b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = wire::decode_binary(&fix_crc(b)).expect_err(field);
        assert!(
            matches!(
                &err,
                WireError::Binary {
                    source: DecodeError::Invalid { .. },
                    ..
                }
            ),
            "{field}: {err}"
        );
    }
}

#[test]
fn errors_name_the_offset_and_the_problem() {
    let bytes = wire::encode_binary(&[Event::new(b"abc".to_vec())]).expect("encode");
    let mut b = bytes.clone();
    b[4..6].copy_from_slice(&9u16.to_le_bytes());
    let err = wire::decode_binary(&b).expect_err("version");
    assert_eq!(
        err.to_string(),
        "malformed binary batch at byte 4: unsupported format version 9 (this build reads version 1)"
    );
    let mut b = bytes.clone();
    b.push(0);
    let err = wire::decode_binary(&b).expect_err("one byte more");
    assert!(
        matches!(
            &err,
            WireError::Binary {
                source: DecodeError::Checksum { .. },
                ..
            }
        ),
        "{err}"
    );
    let mut b = bytes.clone();
    b.insert(bytes.len() - wire::CRC_LEN, 0);
    let err = wire::decode_binary(&fix_crc(b)).expect_err("trailing byte");
    assert!(err.to_string().contains("trailing bytes"), "{err}");
    let err = wire::decode_json(b"[{\"body\": 1}]").expect_err("number body");
    assert!(err.to_string().contains("line 1 column"), "{err}");
}
