//! Memory held per queued event: a process puts 10,000,000 small events (16-byte bodies) and
//! reads `VmRSS` (and `RssAnon`, `RssFile`, `VmHWM`) from `/proc/self/status` before and after;
//! then it closes the channel (writing a checkpoint) and measures a fresh process that reopens
//! it.
//!
//! Run with `cargo bench --bench memory`. Knobs: `TIDEGATE_MEMORY_EVENTS` (default
//! 10,000,000), `TIDEGATE_MEMORY_BODY` (default 16 bytes), `TIDEGATE_BENCH_DIR`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::proc_status_kib;
use tidegate::FileChannel;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Mem {
    rss: u64,
    anon: u64,
    file: u64,
    hwm: u64,
}

fn mem() -> Mem {
    Mem {
        rss: proc_status_kib("VmRSS"),
        anon: proc_status_kib("RssAnon"),
        file: proc_status_kib("RssFile"),
        hwm: proc_status_kib("VmHWM"),
    }
}

fn show(label: &str, m: &Mem) {
    println!(
        "{label}: VmRSS {} KiB (RssAnon {} KiB, RssFile {} KiB), VmHWM {} KiB",
        m.rss, m.anon, m.file, m.hwm
    );
}

fn per_event(label: &str, a: &Mem, b: &Mem, n: u64) {
    let f = |x: u64, y: u64| (y as f64 - x as f64) * 1024.0 / n as f64;
    println!(
        "{label}: {:.1} bytes per queued event (VmRSS), {:.1} (RssAnon), {:.1} (RssFile), peak {:.1} (VmHWM)",
        f(a.rss, b.rss),
        f(a.anon, b.anon),
        f(a.file, b.file),
        f(a.hwm, b.hwm)
    );
}

fn config(dir: &Path) -> tidegate::FileChannelConfig {
    common::config(dir).checkpoint_interval(Duration::from_secs(3600))
}

/// The child: reopen the channel in `dir` and report memory before and after.
fn reopen(dir: &Path, n: u64) {
    let before = mem();
    let t = Instant::now();
    let ch = FileChannel::open(config(dir).checkpoint_on_close(false)).expect("reopen");
    let took = t.elapsed();
    let after = mem();
    let rep = ch.recovery_report();
    println!(
        "reopen: {} events restored in {:.2} s (checkpoint generation {:?}, full replay {})",
        rep.events_restored,
        took.as_secs_f64(),
        rep.checkpoint_generation,
        rep.full_replay
    );
    assert_eq!(rep.events_restored, n);
    show("reopen, before open", &before);
    show("reopen, after open", &after);
    per_event("after reopen", &before, &after, n);
    ch.close().expect("close");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let body = env_u64("TIDEGATE_MEMORY_BODY", 16) as usize;
    if let Some(i) = args.iter().position(|a| a == "--reopen") {
        let dir = args.get(i + 1).expect("--reopen DIR");
        let n = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .expect("--reopen DIR EVENTS");
        reopen(Path::new(dir), n);
        return;
    }
    let n = match common::mode() {
        common::Mode::List => return,
        common::Mode::Smoke => {
            println!("smoke run (tiny sizes); measure with `cargo bench --bench memory`");
            10_000
        }
        common::Mode::Bench => env_u64("TIDEGATE_MEMORY_EVENTS", 10_000_000),
    };

    let dir = common::tempdir();
    let ch = common::open(config(dir.path()));
    let ev = common::event(body);
    let before = mem();
    show("after open, before puts", &before);
    let t = Instant::now();
    common::put_n(&ch, &ev, n, 10_000);
    let took = t.elapsed();
    let after = mem();
    let st = ch.stats();
    assert_eq!(st.size, n);
    println!(
        "put {n} x {body} B in {:.1} s ({:.0} events/s, batch 10,000), {} segments",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        st.segments
    );
    show("after puts", &after);
    per_event("queued", &before, &after, n);

    let t = Instant::now();
    ch.checkpoint().expect("checkpoint");
    let ck = mem();
    println!(
        "checkpoint of {n} events took {:.2} s",
        t.elapsed().as_secs_f64()
    );
    show("after a checkpoint", &ck);
    per_event("checkpoint peak", &before, &ck, n);

    ch.close().expect("close");
    drop(ch);
    let me = std::env::current_exe().expect("current exe");
    let status = std::process::Command::new(me)
        .arg("--reopen")
        .arg(dir.path())
        .arg(n.to_string())
        .status()
        .expect("running the reopen child");
    assert!(status.success(), "the reopen child failed");
}
