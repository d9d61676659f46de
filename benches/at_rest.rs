//! What encryption and compression of event data cost, as ratios measured in the same run:
//!
//! 1. `cpu`: nanoseconds per 512-byte event to seal (AES-256-GCM), open, compress (LZ4, zstd if
//!    built) and decompress, in memory: what the CPU pays, without the disk.
//! 2. `corpus`: the compression ratio on `benches/data/log_lines.txt` (realistic log lines, one
//!    event each): per event (`batch_compression` off) at several thresholds, and per PutBatch
//!    record of 100 events (`batch_compression` on, DESIGN.md §3.5: the real encoder, its
//!    framing, count and length prefixes included).
//! 3. `put`: put+commit, batch 100 x 512 B (bodies cut from the corpus), fsync = always, rounds
//!    interleaved: raw `pwrite`+`fdatasync` of the same bytes into a preallocated file, then the
//!    engine plain, encrypted, LZ4, LZ4 + encrypted, LZ4 in batches, LZ4 in batches + encrypted
//!    (and the same with zstd with the `zstd` feature). Each variant is reported as a ratio to `plain` and to `raw` of the same round.
//!    The same variants run with fsync = never too (the CPU cost without the disk's noise).
//!
//! Run with `cargo bench --bench at_rest` (add `--features zstd` for zstd). Knobs:
//! `TIDEGATE_AT_REST_ONLY` (`cpu`, `corpus` or `put`: run one section),
//! `TIDEGATE_AT_REST_ROUNDS` (default 15), `TIDEGATE_AT_REST_EVENTS` (events per variant per
//! round, default 30,000), `TIDEGATE_BENCH_DIR` (where the data goes).

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use common::{QuickProbe, RawFile, median_min_max};
use tidegate::at_rest::{Compression, EncryptionConfig, PayloadCodec, generate_key_file};
use tidegate::format::record;
use tidegate::{Event, FileChannel, FileChannelConfig, FsyncPolicy};

const SIZE: usize = 512;
const BATCH: usize = 100;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn corpus() -> Vec<Vec<u8>> {
    let text =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/data/log_lines.txt"))
            .expect("reading benches/data/log_lines.txt");
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// 512-byte bodies cut from the corpus (lines joined with newlines), cycling through it.
fn bodies(lines: &[Vec<u8>], n: usize) -> Vec<Event> {
    let joined: Vec<u8> = lines.join(&b'\n');
    (0..n)
        .map(|i| {
            let start = (i * 389) % (joined.len() - SIZE);
            Event::new(joined[start..start + SIZE].to_vec())
        })
        .collect()
}

fn codecs() -> Vec<Compression> {
    let mut c = vec![Compression::Lz4];
    if Compression::Zstd.is_available() {
        c.push(Compression::Zstd);
    }
    c
}

/// Section 1: CPU per event, in memory.
fn cpu(events: &[Event], dir: &Path) {
    let key = dir.join("cpu.key");
    generate_key_file(&key).expect("key");
    let ring = std::sync::Arc::new(
        tidegate::at_rest::Keyring::load(&EncryptionConfig::new(1).key(1, &key)).expect("keyring"),
    );
    let aad = [5u8; 24];
    let reps = 20_000usize;
    let report = |label: &str, codec: &PayloadCodec| {
        let (mut out, mut scratch) = (Vec::with_capacity(SIZE * 2), Vec::new());
        let t = Instant::now();
        let mut stored = 0usize;
        for i in 0..reps {
            out.clear();
            let body = events[i % events.len()].body();
            let form = codec.write_payload(&mut out, &mut scratch, body.len(), |b| {
                b.extend_from_slice(body)
            });
            codec.seal(form, i as u64, &aad, &mut out).expect("seal");
            stored += out.len();
            black_box(&out);
        }
        let write_ns = t.elapsed().as_nanos() as f64 / reps as f64;
        let mut out = Vec::new();
        let body = events[0].body();
        let form = codec.write_payload(&mut out, &mut scratch, body.len(), |b| {
            b.extend_from_slice(body)
        });
        codec.seal(form, 7, &aad, &mut out).expect("seal");
        let t = Instant::now();
        for _ in 0..reps {
            let plain = codec
                .read_payload(form, &aad, &out, 1 << 20)
                .expect("read back");
            black_box(&plain);
        }
        let read_ns = t.elapsed().as_nanos() as f64 / reps as f64;
        println!(
            "  {label:<16} write {write_ns:>7.0} ns/event ({:.2} GB/s)  read {read_ns:>7.0} ns/event  stored {:.3} of plain",
            SIZE as f64 / write_ns,
            stored as f64 / (reps * SIZE) as f64
        );
    };
    println!(
        "cpu (512 B corpus bodies, in memory, {reps} events each; AES instructions in use: {}):",
        tidegate::at_rest::aes_hardware_accelerated()
    );
    report(
        "plain",
        &PayloadCodec::new(Compression::None, 0, None).expect("codec"),
    );
    report(
        "aes-256-gcm",
        &PayloadCodec::new(Compression::None, 0, Some(ring.clone())).expect("codec"),
    );
    for c in codecs() {
        report(c.name(), &PayloadCodec::new(c, 0, None).expect("codec"));
        report(
            &format!("{}+aes", c.name()),
            &PayloadCodec::new(c, 0, Some(ring.clone())).expect("codec"),
        );
    }
}

/// Section 2: compression ratio of the corpus, per event and per batch of 100 lines.
fn corpus_ratio(lines: &[Vec<u8>]) {
    let plain: usize = lines.iter().map(Vec::len).sum();
    let avg = plain as f64 / lines.len() as f64;
    println!(
        "corpus: {} lines, {plain} bytes, {avg:.0} B per line on average (stored = payload bytes after compression / before)",
        lines.len()
    );
    for c in codecs() {
        for threshold in [0u64, 128, 256] {
            let codec = PayloadCodec::new(c, threshold, None).expect("codec");
            let (mut out, mut scratch) = (Vec::new(), Vec::new());
            let mut stored = 0usize;
            let mut compressed = 0usize;
            for l in lines {
                out.clear();
                let form = codec
                    .write_payload(&mut out, &mut scratch, l.len(), |b| b.extend_from_slice(l));
                stored += out.len();
                compressed += usize::from(form.flags != 0);
            }
            println!(
                "  {:<5} per event, threshold {threshold:>3} B: stored {:.3} of plain; {compressed} of {} events compressed",
                c.name(),
                stored as f64 / plain as f64,
                lines.len()
            );
        }
        let codec = PayloadCodec::new(c, 0, None).expect("codec");
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let mut stored = 0usize;
        for chunk in lines.chunks(BATCH) {
            out.clear();
            let joined = chunk.join(&b'\n');
            codec.write_payload(&mut out, &mut scratch, joined.len(), |b| {
                b.extend_from_slice(&joined)
            });
            stored += out.len();
        }
        println!(
            "  {:<5} lines joined, {BATCH} per block:        stored {:.3} of plain",
            c.name(),
            stored as f64 / plain as f64
        );
        // The PutBatch record the channel writes (batch_compression): each line an event.
        let codec = PayloadCodec::new(c, 0, None)
            .expect("codec")
            .with_batching(true);
        let (mut stored, mut batches, mut cpu) = (0usize, 0usize, std::time::Duration::ZERO);
        let mut raw = Vec::new();
        for chunk in lines.chunks(BATCH) {
            raw.clear();
            let t = Instant::now();
            for l in chunk {
                record::write_batch_entry(&mut raw, &Event::new(l.clone()));
            }
            let mut buf = Vec::new();
            match record::encode_put_batch(&mut buf, 1, chunk.len() as u32, &raw, &codec) {
                Some(u) => {
                    stored += u.end - u.start - record::HEADER_LEN;
                    batches += 1;
                }
                None => stored += raw.len(),
            }
            cpu += t.elapsed();
        }
        println!(
            "  {:<5} PutBatch of {BATCH} events:          stored {:.3} of plain ({batches} batches; {:.0} ns per event to encode)",
            c.name(),
            stored as f64 / plain as f64,
            cpu.as_nanos() as f64 / lines.len() as f64
        );
    }
}

/// One engine variant of section 3.
struct Variant {
    name: String,
    compression: Compression,
    encrypt: bool,
    batch: bool,
}

fn variants() -> Vec<Variant> {
    let mut v = vec![
        Variant {
            name: "plain".into(),
            compression: Compression::None,
            encrypt: false,
            batch: false,
        },
        Variant {
            name: "aes".into(),
            compression: Compression::None,
            encrypt: true,
            batch: false,
        },
        Variant {
            name: "aes-batch".into(),
            compression: Compression::None,
            encrypt: true,
            batch: true,
        },
    ];
    for c in codecs() {
        for batch in [false, true] {
            let b = if batch { "-batch" } else { "" };
            v.push(Variant {
                name: format!("{}{b}", c.name()),
                compression: c,
                encrypt: false,
                batch,
            });
            v.push(Variant {
                name: format!("{}{b}+aes", c.name()),
                compression: c,
                encrypt: true,
                batch,
            });
        }
    }
    v
}

/// The channel configuration of a variant: the benchmarks' defaults plus compression above 0
/// bytes and, when encrypting, key 1 from `key`.
fn variant_config(dir: &Path, v: &Variant, key: &Path, fsync: FsyncPolicy) -> FileChannelConfig {
    let mut cfg = common::config(dir)
        .fsync(fsync)
        .compression(v.compression)
        .compression_threshold(0)
        .batch_compression(v.batch);
    if v.encrypt {
        cfg = cfg.encryption(EncryptionConfig::new(1).key(1, key));
    }
    cfg
}

fn put_rate(ch: &FileChannel, events: &[Event], n: u64) -> f64 {
    let t = Instant::now();
    let mut i = 0usize;
    let mut left = n;
    while left > 0 {
        let k = left.min(BATCH as u64);
        let mut tx = ch.transaction();
        for _ in 0..k {
            tx.put(events[i % events.len()].clone())
                .map_err(|e| e.error)
                .expect("put");
            i += 1;
        }
        tx.commit().expect("commit");
        left -= k;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let mode = common::mode();
    if mode == common::Mode::List {
        return;
    }
    let smoke = mode == common::Mode::Smoke;
    let (rounds, n) = if smoke {
        println!("smoke run (tiny sizes); measure with `cargo bench --bench at_rest`");
        (1, 1_000)
    } else {
        (
            env_u64("TIDEGATE_AT_REST_ROUNDS", 15).max(3),
            env_u64("TIDEGATE_AT_REST_EVENTS", 30_000) / BATCH as u64 * BATCH as u64,
        )
    };
    let root = common::bench_root();
    if !smoke {
        println!("before: {}", common::disk_regime(&root));
    }
    let lines = corpus();
    let events = bodies(&lines, 4096);
    let work = common::tempdir();
    let only = std::env::var("TIDEGATE_AT_REST_ONLY").unwrap_or_default();
    if only.is_empty() || only == "cpu" {
        cpu(&events, work.path());
    }
    if only.is_empty() || only == "corpus" {
        corpus_ratio(&lines);
    }
    if !(only.is_empty() || only == "put") {
        return;
    }

    let key = work.path().join("put.key");
    generate_key_file(&key).expect("key");
    let variants = variants();
    let mut raw = RawFile::create(&work.path().join("raw"), 256 << 20);
    let raw_bytes: Vec<u8> = events
        .iter()
        .take(BATCH)
        .flat_map(|e| e.body().to_vec())
        .collect();
    let mut probe = QuickProbe::new(work.path());
    // One channel per variant for the whole run (opened untimed, drained untimed after each
    // round), so segment creation stays out of the rounds and the disk's write budget is not
    // spent on zero-filling fresh segments.
    // The same variants with fsync = never: the CPU cost alone, measured the same way.
    let policies = [FsyncPolicy::Always, FsyncPolicy::Never];
    let dirs: Vec<_> = (0..variants.len() * 2).map(|_| common::tempdir()).collect();
    let channels: Vec<FileChannel> = policies
        .iter()
        .flat_map(|p| variants.iter().map(move |v| (p, v)))
        .zip(&dirs)
        .map(|((p, v), d)| common::open(variant_config(d.path(), v, &key, *p)))
        .collect();
    // rates[v][round]; raw is index 0.
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); channels.len() + 1];
    let mut regimes = Vec::new();
    for round in 0..=rounds {
        let p0 = probe.p50_us();
        let t = Instant::now();
        for _ in 0..n / BATCH as u64 {
            raw.write_sync(&raw_bytes);
        }
        let raw_rate = n as f64 / t.elapsed().as_secs_f64();
        let mut this = vec![raw_rate];
        for ch in &channels {
            this.push(put_rate(ch, &events, n));
            common::drain(ch, 1000);
        }
        let p1 = probe.p50_us();
        if round == 0 {
            continue; // warm-up, not recorded
        }
        regimes.push(format!(
            "{}/{}",
            QuickProbe::label(p0),
            QuickProbe::label(p1)
        ));
        for (i, r) in this.into_iter().enumerate() {
            rates[i].push(r);
        }
    }
    let mut ratios_out: Vec<(String, f64)> = Vec::new();
    for (v, ch) in variants.iter().cycle().zip(&channels) {
        let s = ch.stats();
        if s.compression_input_bytes > 0 {
            ratios_out.push((
                v.name.clone(),
                s.compression_output_bytes as f64 / s.compression_input_bytes as f64,
            ));
        }
        ch.close().expect("close");
    }
    println!(
        "put+commit, batch {BATCH} x {SIZE} B corpus bodies, fsync = always, {rounds} rounds of {n} events per variant (regimes before/after each round: {})",
        regimes.join(" ")
    );
    let (rm, rmin, rmax) = median_min_max(&rates[0]);
    println!("  raw (fsync)        {rm:>9.0} events/s [{rmin:.0}-{rmax:.0}]");
    for (k, policy) in ["always", "never"].iter().enumerate() {
        let base = 1 + k * variants.len();
        for (i, v) in variants.iter().enumerate() {
            let r = &rates[base + i];
            let vs_plain: Vec<f64> = r.iter().zip(&rates[base]).map(|(a, b)| a / b).collect();
            let vs_raw: Vec<f64> = r.iter().zip(&rates[0]).map(|(a, b)| a / b).collect();
            let (m, lo, hi) = median_min_max(r);
            let (pm, plo, phi) = median_min_max(&vs_plain);
            let (wm, wlo, whi) = median_min_max(&vs_raw);
            println!(
                "  {:<14} fsync={policy:<6} {m:>9.0} events/s [{lo:.0}-{hi:.0}]  vs plain {pm:.3} [{plo:.3}-{phi:.3}]  vs raw {wm:.3} [{wlo:.3}-{whi:.3}]",
                v.name
            );
        }
    }
    for (name, ratio) in ratios_out {
        println!("  {name}: stored/plain payload bytes (channel stats) {ratio:.3}");
    }
    if !smoke {
        println!("after: {}", common::disk_regime(&root));
    }
}
