#![no_main]
//! Fuzz target `decode_batch`: the body is `tidegate_fuzz::decode_batch` (fuzz/src/lib.rs), which
//! tests/fuzz_corpus.rs also runs on every file of fuzz/corpus/decode_batch/.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tidegate_fuzz::decode_batch(data);
});
