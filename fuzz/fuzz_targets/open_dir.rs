#![no_main]
//! Fuzz target `open_dir`: the body is `tidegate_fuzz::open_dir` (fuzz/src/lib.rs), which
//! tests/fuzz_corpus.rs also runs on every file of fuzz/corpus/open_dir/.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tidegate_fuzz::open_dir(data);
});
