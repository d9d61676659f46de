//! Helpers of the NATS tests: a private `nats-server` (its own port and store dir, killed and
//! restarted by the test; the shared server on 4222 is never touched), unique names, and
//! reading a stream back message by message.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;

/// The shared server (never stopped by a test).
pub const SHARED: &str = "nats://127.0.0.1:4222";
const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A name no other test (or earlier run) uses: `prefix` + pid + time + counter.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{t}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A private JetStream server on its own port, storing in its own directory.
pub struct PrivateServer {
    pub port: u16,
    pub store: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl PrivateServer {
    /// Starts one on a free port storing under `dir`; waits until it accepts connections.
    pub fn start(dir: &Path) -> PrivateServer {
        Self::start_with(dir, &[])
    }

    /// The same, with extra `nats-server` arguments (`--auth TOKEN`, ...).
    pub fn start_with(dir: &Path, args: &[&str]) -> PrivateServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut s = PrivateServer {
            port,
            store: dir.join("nats-store"),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server: same port, same store (streams survive).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(NATS_SERVER)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server listens within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` of this (private) server, and waits until its port is closed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "nats-server gone within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn js(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    jetstream::new(client)
}

/// Creates stream `name` capturing `subjects`.
pub async fn create_stream(js: &jetstream::Context, name: &str, subjects: &[&str]) {
    js.create_stream(jetstream::stream::Config {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .expect("create stream");
}

/// One stored message: subject, headers (first value each), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Every message stream `name` holds, in sequence order (none if there is no such stream
/// yet).
pub async fn read_stream(js: &jetstream::Context, name: &str) -> Vec<Stored> {
    let Ok(mut stream) = js.get_stream(name).await else {
        return Vec::new();
    };
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        let mut headers: Vec<(String, String)> = m
            .headers
            .iter()
            .filter_map(|(k, v)| v.first().map(|v| (k.to_string(), v.as_str().to_string())))
            .collect();
        headers.sort();
        out.push(Stored {
            subject: m.subject.to_string(),
            headers,
            body: String::from_utf8_lossy(&m.payload).into_owned(),
        });
    }
    out
}

/// How many messages stream `name` holds.
pub async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
    let mut stream = js.get_stream(name).await.expect("get stream");
    stream.info().await.expect("stream info").state.messages
}
