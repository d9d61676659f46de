//! Helpers for the tests that run the `tidegate` agent binary: start it with its JSON log
//! collected, talk HTTP/1.1 to it on loopback, pick free ports, wait for conditions.
//!
//! Included with `#[path = "common/agent.rs"] mod agent;` by the agent tests only (it needs the
//! binary, so it stays out of `common/mod.rs`, which the library-only tests share).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tidegate");
/// The bound of every wait: generous, never a timing assertion.
pub const WAIT: Duration = Duration::from_secs(60);

/// xorshift64*: reproducible randomness from a printed seed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the environment variable `var` when set, else from the clock; prints
    /// `var=seed` so that a failing run can be repeated.
    pub fn from_env(var: &str) -> Rng {
        let seed: u64 = std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64 | 1)
                    .unwrap_or(1)
            });
        eprintln!("{var}={seed}");
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// An agent config for the kill -9 tests: monitoring on `mon`, a small file channel `c1` under
/// `data/`, the `sources` given (TOML tables writing to `c1`), and a file_roll sink `files`
/// writing the bodies, one per line, to `out/`.
pub fn file_channel_to_files(mon: u16, sources: &str) -> String {
    format!(
        r#"[agent]
shutdown_timeout = "30s"

[monitoring]
bind = "127.0.0.1:{mon}"

[channels.c1]
type = "file"
checkpoint_dir = "data/checkpoint"
data_dirs = ["data/log"]
transaction_capacity = 1000
minimum_required_space = "1MiB"
max_segment_size = "1MiB"
max_event_size = "64KiB"
checkpoint_interval = "1s"

{sources}

[sinks.files]
type = "file_roll"
channel = "c1"
batch_size = 50
directory = "out"
roll_interval = "1s"
serializer = "text"
"#
    )
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One HTTP/1.1 request on a fresh connection; returns the status and body, or None if the
/// connection failed (the agent is down or was killed mid-request).
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A GET that must get an answer; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path, "").unwrap_or_else(|| panic!("no answer from {addr}{path}"))
}

/// Polls `ok` every 20 ms until it holds; fails the test after [`WAIT`].
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running agent whose stderr (JSON log lines) is collected. Dropping it kills it.
pub struct Agent {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Set once stderr reached its end (the process is gone): no more lines will come.
    log_done: Arc<AtomicBool>,
}

impl Agent {
    /// Starts `tidegate agent --config config` in `dir`, stdin piped.
    pub fn start(config: &Path, dir: &Path) -> Agent {
        let mut child = Command::new(BIN)
            .args(["--log-format", "json", "agent", "--config"])
            .arg(config)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the agent");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let log_done = Arc::new(AtomicBool::new(false));
        let (sink, done) = (log.clone(), log_done.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
            done.store(true, Ordering::SeqCst);
        });
        Agent {
            child,
            log,
            log_done,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until a log line contains `needle`; returns that line. Fails at once if the
    /// process has ended without logging it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let ended = self.log_done.load(Ordering::SeqCst);
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                !ended && Instant::now() < deadline,
                "no log line with {needle:?} (within {WAIT:?}, or before the agent ended); log:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "agent did not exit within {WAIT:?}; log:\n{}",
                    self.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then asserts a clean exit (code 0).
    pub fn stop(&mut self) {
        self.signal("TERM");
        let code = self.wait_exit();
        assert_eq!(code, 0, "log:\n{}", self.lines().join("\n"));
    }

    /// Bodies the logger sink printed, in order.
    pub fn logged_bodies(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "event")
            .filter_map(|v| v["fields"]["body"].as_str().map(str::to_string))
            .collect()
    }

    /// The `addr` field of the first log line containing `needle` (`Some(..)` unwrapped).
    fn logged_addr(&self, needle: &str) -> String {
        let line = self.wait_for_log(needle);
        let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
        let addr = v["fields"]["addr"].as_str().expect("addr field");
        addr.strip_prefix("Some(")
            .and_then(|a| a.strip_suffix(')'))
            .unwrap_or(addr)
            .to_string()
    }

    /// The monitoring address the agent logged.
    pub fn monitoring_addr(&self) -> String {
        self.logged_addr("monitoring on http://")
    }

    /// The address the `http` source `name` listens on (as logged; bind it to port 0 so that
    /// no other test can take the port between picking and binding).
    pub fn http_source_addr(&self, name: &str) -> String {
        self.logged_addr(&format!(
            "\"message\":\"http source listening\",\"source\":\"{name}\""
        ))
    }

    /// Waits until `/ready` on the monitoring address answers 200; returns that address.
    pub fn wait_ready(&self) -> String {
        let addr = self.monitoring_addr();
        wait_until("the agent is ready", || {
            request(&addr, "GET", "/ready", "").is_some_and(|(s, _)| s == 200)
        });
        addr
    }

    /// `/metrics.json` as JSON (Null when it cannot be read).
    pub fn metrics(&self, addr: &str) -> serde_json::Value {
        request(addr, "GET", "/metrics.json", "")
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
            .unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
