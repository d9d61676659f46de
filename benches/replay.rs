//! Reopen time with many queued events (default 1,000,000 x 512 B), with a checkpoint and
//! without one (full replay), interleaved with a raw sequential read of the same log bytes.
//!
//! Run with `cargo bench --bench replay`. Knobs: `TIDEGATE_REPLAY_EVENTS` (default 1,000,000),
//! `TIDEGATE_REPLAY_ROUNDS` (default 7), `TIDEGATE_BENCH_DIR`, and for profilers
//! `TIDEGATE_REPLAY_ONLY=full` or `=checkpoint`: build that fixture alone and time only its
//! open (one untimed warm-up, then the rounds), no raw read and no regime probes, so that a
//! `perf record` or `valgrind --tool=callgrind` of the program is mostly that open.
//! The page cache is warm (the fixture was just written), as it is after a process restart;
//! after a reboot the first reopen also reads the log from the disk.

mod common;

use std::time::{Duration, Instant};

use common::{ReplayFixture, median_min_max};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of the calling thread. Replay runs on the thread that opens the channel, so on a
/// shared machine this is what the open costs, whatever else is waiting for the cores.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Wall time of the open (as the fixture reports it) and CPU time of the open and close.
fn cpu_of(f: impl FnOnce() -> Duration) -> (Duration, Duration) {
    let c = thread_cpu();
    let wall = f();
    (wall, thread_cpu() - c)
}

fn ms(d: f64) -> String {
    format!("{:.1} ms", d * 1e3)
}

fn main() {
    let mode = common::mode();
    if mode == common::Mode::List {
        return;
    }
    let smoke = mode == common::Mode::Smoke;
    let (n, rounds) = if smoke {
        println!("smoke run (tiny sizes); measure with `cargo bench --bench replay`");
        (2_000, 1)
    } else {
        (
            env_u64("TIDEGATE_REPLAY_EVENTS", 1_000_000),
            env_u64("TIDEGATE_REPLAY_ROUNDS", 7).max(1),
        )
    };
    if let Some(only) = std::env::var("TIDEGATE_REPLAY_ONLY")
        .ok()
        .filter(|_| !smoke)
    {
        only_one(&only, n, rounds);
        return;
    }
    let root = common::bench_root();
    let regime = |when: &str| {
        if !smoke {
            println!("{when}: {}", common::disk_regime(&root));
        }
    };
    regime("before");

    let t = Instant::now();
    let with_ckpt = ReplayFixture::build(n, 512, true);
    println!(
        "built {n} x 512 B with a checkpoint in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let without = ReplayFixture::build(n, 512, false);
    println!(
        "built {n} x 512 B without a checkpoint in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let log_bytes = without.log_bytes();
    println!(
        "log: {log_bytes} bytes of records; segments: {} each",
        common::segment_files(&without.dir.path().join("data"))
    );

    // One untimed pass of each warms the page cache and the allocator alike.
    with_ckpt.time_open();
    without.time_open();
    without.raw_read(log_bytes);

    let (mut ck, mut full, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ck_cpu, mut full_cpu, mut raw_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (a, a_cpu) = cpu_of(|| with_ckpt.time_open());
        let (b, b_cpu) = cpu_of(|| without.time_open());
        let (c, c_cpu) = cpu_of(|| without.raw_read(log_bytes));
        println!(
            "round {r}: open with checkpoint {} (cpu {}), full replay {} (cpu {}), raw read {} (cpu {})",
            ms(a.as_secs_f64()),
            ms(a_cpu.as_secs_f64()),
            ms(b.as_secs_f64()),
            ms(b_cpu.as_secs_f64()),
            ms(c.as_secs_f64()),
            ms(c_cpu.as_secs_f64()),
        );
        ck.push(a.as_secs_f64());
        full.push(b.as_secs_f64());
        raw.push(c.as_secs_f64());
        ck_cpu.push(a_cpu.as_secs_f64());
        full_cpu.push(b_cpu.as_secs_f64());
        raw_cpu.push(c_cpu.as_secs_f64());
    }
    regime("after");
    println!(
        "== summary: {n} queued x 512 B, median [min-max] over {rounds} interleaved rounds =="
    );
    for (name, xs, base) in [
        ("open with checkpoint", &ck, &raw),
        ("open, full replay", &full, &raw),
        ("raw sequential read of the log", &raw, &raw),
        ("CPU: open with checkpoint (and close)", &ck_cpu, &raw_cpu),
        ("CPU: open, full replay (and close)", &full_cpu, &raw_cpu),
        ("CPU: raw sequential read", &raw_cpu, &raw_cpu),
    ] {
        let (m, lo, hi) = median_min_max(xs);
        let ratios: Vec<f64> = xs.iter().zip(base).map(|(x, r)| x / r).collect();
        let (rm, rlo, rhi) = median_min_max(&ratios);
        println!(
            "{name}: {} [{}-{}], {:.2} M events/s, time / raw read = {rm:.2} [{rlo:.2}-{rhi:.2}]",
            ms(m),
            ms(lo),
            ms(hi),
            n as f64 / m / 1e6
        );
    }
}

/// `TIDEGATE_REPLAY_ONLY`: one fixture, one kind of open, for profilers.
fn only_one(only: &str, n: u64, rounds: u64) {
    let checkpoint = match only {
        "full" => false,
        "checkpoint" => true,
        other => panic!("TIDEGATE_REPLAY_ONLY={other}: expected `full` or `checkpoint`"),
    };
    let fixture = ReplayFixture::build(n, 512, checkpoint);
    fixture.time_open();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let (w, c) = cpu_of(|| fixture.time_open());
        println!(
            "round {r}: open ({only}) {} (cpu {})",
            ms(w.as_secs_f64()),
            ms(c.as_secs_f64())
        );
        wall.push(w.as_secs_f64());
        cpu.push(c.as_secs_f64());
    }
    let (m, lo, hi) = median_min_max(&wall);
    let (cm, clo, chi) = median_min_max(&cpu);
    println!(
        "open ({only}), {n} x 512 B, {rounds} rounds: {} [{}-{}], CPU {} [{}-{}]",
        ms(m),
        ms(lo),
        ms(hi),
        ms(cm),
        ms(clo),
        ms(chi)
    );
}
