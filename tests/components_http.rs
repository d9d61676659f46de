//! The `http` source and sink over real sockets on 127.0.0.1, delivering into real channels.

mod components_common;

use std::sync::Arc;
use std::time::Duration;

use components_common::{ChannelDeliver, FullDeliver, Running, bodies, drain};
use tidegate::agent::component::{BoxFuture, Deliver, DeliverError, Sink, SinkError};
use tidegate::agent::sinks::http::{HttpSink, HttpSinkConfig};
use tidegate::agent::sources::http::{HttpSource, HttpSourceConfig, TlsConfig};
use tidegate::agent::units::{ByteSize, HumanDuration};
use tidegate::agent::wire::{self, Format};
use tidegate::{Event, FileChannel, FileChannelConfig, MemoryChannel, MemoryChannelConfig};
use tokio::sync::{Notify, mpsc};

fn source_cfg() -> HttpSourceConfig {
    HttpSourceConfig {
        bind: "127.0.0.1:0".into(),
        max_body_size: ByteSize(4096),
        auth_token: None,
        tls: None,
    }
}

/// Starts an http source on a free port; returns it running and its base URL.
fn start(cfg: HttpSourceConfig, output: Arc<dyn Deliver>) -> (Running, String) {
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let mut source = HttpSource::new("r1", cfg).expect("source");
    let addr = source.bind().expect("bind");
    let url = format!("{scheme}://localhost:{}/", addr.port());
    (Running::start(Box::new(source), output), url)
}

fn memory(capacity: u64) -> Arc<MemoryChannel> {
    Arc::new(MemoryChannel::new(MemoryChannelConfig {
        capacity,
        keep_alive: Duration::ZERO,
        ..MemoryChannelConfig::default()
    }))
}

async fn post(url: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::new(format!("e{i}").into_bytes()).with_header("i", i.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_binary_batches_are_committed_before_the_200() {
    let ch = memory(100);
    let (src, url) = start(source_cfg(), Arc::new(ChannelDeliver(ch.clone())));

    let (status, _) = post(
        &url,
        "application/json",
        br#"[{"headers":{"h":"1"},"body":"one"},{"body":"two"}]"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let got = drain(ch.as_ref());
    assert_eq!(bodies(&got), ["one", "two"]);
    assert_eq!(got[0].headers().get("h").map(String::as_str), Some("1"));

    let batch = vec![
        Event::new(vec![0u8, 0xff, b'\n']).with_header("k", "v"),
        Event::new(Vec::new()),
    ];
    let (status, _) = post(
        &url,
        wire::BINARY_CONTENT_TYPE,
        wire::encode_binary(&batch).expect("encode"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(drain(ch.as_ref()), batch);

    let (status, _) = post(&url, "application/json", b"[]".to_vec()).await;
    assert_eq!(status, 200);
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(src.counters.accepted.load(Relaxed), 4);
    assert_eq!(src.counters.append_batches.load(Relaxed), 2);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_means_the_file_channel_has_it_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = FileChannelConfig::new(dir.path().join("ckpt"), vec![dir.path().join("data")])
        .minimum_required_space(1 << 20)
        .checkpoint_on_close(false);
    let ch = Arc::new(FileChannel::open(cfg.clone()).expect("open"));
    let (src, url) = start(source_cfg(), Arc::new(ChannelDeliver(ch.clone())));
    let (status, _) = post(&url, "application/json", wire::encode_json(&events(3))).await;
    assert_eq!(status, 200);
    src.stop().await;
    ch.close().expect("close");
    drop(ch);
    let ch = FileChannel::open(cfg).expect("reopen");
    assert_eq!(drain(&ch), events(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_commit_nothing() {
    let ch = memory(100);
    let (src, url) = start(source_cfg(), Arc::new(ChannelDeliver(ch.clone())));

    let (status, text) = post(
        &url,
        "application/json",
        br#"[{"body":"a"},{"body":3}]"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("malformed JSON batch"), "{text}");

    let mut bad = wire::encode_binary(&events(2)).expect("encode");
    bad[20] ^= 1;
    let (status, text) = post(&url, wire::BINARY_CONTENT_TYPE, bad).await;
    assert_eq!(status, 400);
    assert!(text.contains("checksum mismatch"), "{text}");

    let big = wire::encode_json(&[Event::new(vec![b'x'; 5000])]);
    let (status, text) = post(&url, "application/json", big).await;
    assert_eq!(status, 413);
    assert!(text.contains("max_body_size of 4096 bytes"), "{text}");

    let (status, _) = post(&url, "image/png", b"[]".to_vec()).await;
    assert_eq!(status, 415);

    assert!(drain(ch.as_ref()).is_empty(), "nothing was committed");
    src.stop().await;
}

/// Sends `request` on a raw connection and returns the status line of the answer.
async fn raw_status(url: &str, request: &[&[u8]]) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    for part in request {
        // The server may answer (and close) before the whole request is sent.
        if tcp.write_all(part).await.is_err() {
            break;
        }
    }
    let mut line = String::new();
    let mut reader = BufReader::new(tcp);
    tokio::time::timeout(Duration::from_secs(20), reader.read_line(&mut line))
        .await
        .expect("an answer within 20 s")
        .expect("read");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_oversized_and_stalled_bodies_are_refused() {
    let ch = memory(100);
    let mut source = HttpSource::new("r1", source_cfg())
        .expect("source")
        .body_idle_timeout(Duration::from_millis(300));
    let addr = source.bind().expect("bind");
    let url = format!("http://{addr}/");
    let src = Running::start(Box::new(source), Arc::new(ChannelDeliver(ch.clone())));

    // No Content-Length: chunks adding up to more than max_body_size (4096).
    let chunk = format!("800\r\n{}\r\n", "x".repeat(0x800));
    let head = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n";
    let status = raw_status(
        &url,
        &[head, chunk.as_bytes(), chunk.as_bytes(), chunk.as_bytes()],
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // A body that stops halfway.
    let head = b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n[{\"body\":";
    let status = raw_status(&url, &[head]).await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");

    assert!(drain(ch.as_ref()).is_empty());
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_channel_answers_503_with_retry_after_and_keeps_nothing_partial() {
    let (src, url) = start(source_cfg(), Arc::new(FullDeliver));
    let r = reqwest::Client::new()
        .post(&url)
        .body(wire::encode_json(&events(1)))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    src.stop().await;

    // A real channel with room for 2 of the 3 events: the whole batch is refused.
    let ch = memory(2);
    let (src, url) = start(source_cfg(), Arc::new(ChannelDeliver(ch.clone())));
    let (status, text) = post(&url, "application/json", wire::encode_json(&events(3))).await;
    assert_eq!(status, 503, "{text}");
    assert!(
        drain(ch.as_ref()).is_empty(),
        "a refused batch leaves nothing"
    );
    let (status, _) = post(&url, "application/json", wire::encode_json(&events(2))).await;
    assert_eq!(status, 200);
    assert_eq!(drain(ch.as_ref()), events(2));
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_transaction_capacity_or_max_event_size_is_413() {
    let ch = Arc::new(MemoryChannel::new(MemoryChannelConfig {
        transaction_capacity: 2,
        max_event_size: 100,
        ..MemoryChannelConfig::default()
    }));
    let (src, url) = start(source_cfg(), Arc::new(ChannelDeliver(ch.clone())));
    let (status, text) = post(&url, "application/json", wire::encode_json(&events(3))).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("transaction_capacity is 2"), "{text}");
    let big = [Event::new(vec![b'x'; 200])];
    let (status, text) = post(&url, "application/json", wire::encode_json(&big)).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_event_size"), "{text}");
    assert!(drain(ch.as_ref()).is_empty());
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required_when_set() {
    let ch = memory(100);
    let cfg = HttpSourceConfig {
        auth_token: Some("s3cret".into()),
        ..source_cfg()
    };
    let (src, url) = start(cfg, Arc::new(ChannelDeliver(ch.clone())));
    let client = reqwest::Client::new();
    for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
        let mut req = client.post(&url).body(wire::encode_json(&events(1)));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.expect("request");
        assert_eq!(r.status().as_u16(), 401, "{auth:?}");
    }
    assert!(drain(ch.as_ref()).is_empty());
    let r = client
        .post(&url)
        .bearer_auth("s3cret")
        .body(wire::encode_json(&events(1)))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(drain(ch.as_ref()), events(1));
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).expect("key");
    let cfg = HttpSourceConfig {
        tls: Some(TlsConfig {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        }),
        ..source_cfg()
    };
    let ch = memory(100);
    let (src, url) = start(cfg, Arc::new(ChannelDeliver(ch.clone())));

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let r = client
        .post(&url)
        .body(wire::encode_json(&events(2)))
        .send()
        .await
        .expect("https request");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(drain(ch.as_ref()), events(2));

    // Plain HTTP to the TLS port gets no answer, and a client that does not trust the
    // certificate refuses it.
    let plain = url.replace("https://", "http://");
    assert!(
        reqwest::Client::new()
            .post(&plain)
            .body("[]")
            .send()
            .await
            .is_err()
    );
    assert!(
        reqwest::Client::new()
            .post(&url)
            .body("[]")
            .send()
            .await
            .is_err()
    );
    assert!(drain(ch.as_ref()).is_empty());

    // A key file that is not a key is refused when the source is built, naming the key.
    std::fs::write(dir.path().join("bad.pem"), "not a key").expect("write");
    let bad = HttpSourceConfig {
        tls: Some(TlsConfig {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("bad.pem"),
        }),
        ..source_cfg()
    };
    let err = HttpSource::new("r1", bad).err().expect("refused");
    assert!(err.to_string().contains("tls.key"), "{err}");
    src.stop().await;
}

/// Holds every delivery until released, and says when one started.
struct GatedDeliver {
    inner: ChannelDeliver,
    started: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
}

impl Deliver for GatedDeliver {
    fn deliver(&self, events: Vec<Event>) -> BoxFuture<'_, Result<(), DeliverError>> {
        Box::pin(async move {
            let _ = self.started.send(());
            self.release.notified().await;
            self.inner.deliver(events).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_before_the_commit() {
    let ch = memory(100);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let deliver = GatedDeliver {
        inner: ChannelDeliver(ch.clone()),
        started: started_tx,
        release: release.clone(),
    };
    let (src, url) = start(source_cfg(), Arc::new(deliver));
    let request = tokio::spawn(post_owned(
        url.clone(),
        "application/json",
        wire::encode_json(&events(2)),
    ));
    started.recv().await.expect("delivery started");
    // However long the delivery takes, the client waits for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!request.is_finished(), "answered before the commit");
    assert!(drain(ch.as_ref()).is_empty());
    release.notify_one();
    let (status, _) = request.await.expect("request task");
    assert_eq!(status, 200);
    assert_eq!(drain(ch.as_ref()), events(2));
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight() {
    let ch = memory(100);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let deliver = GatedDeliver {
        inner: ChannelDeliver(ch.clone()),
        started: started_tx,
        release: release.clone(),
    };
    let (src, url) = start(source_cfg(), Arc::new(deliver));
    let request = tokio::spawn(post_owned(
        url.clone(),
        "application/json",
        wire::encode_json(&events(2)),
    ));
    started.recv().await.expect("delivery started");
    src.shutdown.cancel();
    release.notify_one();
    let (status, _) = request.await.expect("request task");
    assert_eq!(status, 200, "the request in flight is answered");
    assert_eq!(drain(ch.as_ref()), events(2));
    src.stop().await;
    assert!(
        reqwest::Client::new()
            .post(&url)
            .body("[]")
            .send()
            .await
            .is_err(),
        "the port is closed after shutdown"
    );
}

async fn post_owned(url: String, content_type: &'static str, body: Vec<u8>) -> (u16, String) {
    post(&url, content_type, body).await
}

fn sink(url: &str, format: Format) -> HttpSink {
    HttpSink::new(
        "k1",
        HttpSinkConfig {
            url: url.into(),
            format,
            timeout: HumanDuration(Duration::from_secs(5)),
            auth_token: None,
            headers: Default::default(),
            proxy: None,
        },
    )
    .expect("sink")
}

/// Takes a batch from `from` in a transaction, hands it to `sink`, commits on Ok and rolls
/// back on Err: the sink runner's loop, once.
async fn hop(from: &MemoryChannel, sink: &mut HttpSink) -> Result<usize, SinkError> {
    let mut tx = from.transaction();
    let batch = tx.take_batch(100, Duration::ZERO).expect("take");
    let n = batch.len();
    match sink.deliver(&batch).await {
        Ok(()) => {
            tx.commit().expect("commit");
            Ok(n)
        }
        Err(e) => {
            tx.rollback().expect("rollback");
            Err(e)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_to_http_sink_to_http_source() {
    let first = memory(100);
    let last = memory(100);
    let (src_a, url_a) = start(source_cfg(), Arc::new(ChannelDeliver(first.clone())));
    let (src_b, url_b) = start(source_cfg(), Arc::new(ChannelDeliver(last.clone())));

    let mut batch = events(3);
    batch.push(Event::new(vec![0xfe, 0xff]).with_header("bin", "yes"));
    let (status, _) = post(&url_a, "application/json", wire::encode_json(&batch)).await;
    assert_eq!(status, 200);

    for format in [Format::Json, Format::Binary] {
        let mut k = sink(&url_b, format);
        assert_eq!(hop(&first, &mut k).await.expect("hop"), 4);
        assert_eq!(drain(last.as_ref()), batch, "{format}");
        assert!(drain(first.as_ref()).is_empty());
        // Put them back for the other format.
        let (status, _) = post(&url_a, "application/json", wire::encode_json(&batch)).await;
        assert_eq!(status, 200);
    }

    // The far end refuses (full): the take is rolled back, nothing is lost.
    src_b.stop().await;
    let (full, url_full) = start(source_cfg(), Arc::new(FullDeliver));
    let mut k = sink(&url_full, Format::Binary);
    let err = hop(&first, &mut k).await.expect_err("503");
    assert!(
        matches!(&err, SinkError::Delivery(m) if m.contains("503")),
        "{err}"
    );
    assert_eq!(drain(first.as_ref()), batch, "rolled back, in order");
    full.stop().await;
    src_a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_errors_on_refused_connections_and_timeouts() {
    // Nothing listens on a port that was just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut k = sink(&format!("http://127.0.0.1:{port}/"), Format::Json);
    let err = k.deliver(&events(1)).await.expect_err("refused");
    assert!(
        matches!(&err, SinkError::Connection(m) if m.contains("cannot connect")),
        "{err}"
    );

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut k = HttpSink::new(
        "k1",
        HttpSinkConfig {
            url: format!("http://{addr}/"),
            format: Format::Json,
            timeout: HumanDuration(Duration::from_millis(300)),
            auth_token: None,
            headers: Default::default(),
            proxy: None,
        },
    )
    .expect("sink");
    let err = k.deliver(&events(1)).await.expect_err("timeout");
    assert!(
        matches!(&err, SinkError::Connection(m) if m.contains("no answer within")),
        "{err}"
    );
    holder.abort();

    // Bad configs name the key.
    let bad = |url: &str, headers: &[(&str, &str)]| {
        HttpSink::new(
            "k1",
            HttpSinkConfig {
                url: url.into(),
                format: Format::Json,
                timeout: HumanDuration(Duration::from_secs(1)),
                auth_token: None,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                proxy: None,
            },
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    assert!(bad("ftp://x/", &[]).contains("scheme"));
    assert!(bad("not a url", &[]).contains("url"));
    assert!(bad("http://x/", &[("bad name", "v")]).contains("headers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_does_not_follow_redirects() {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/",
            post(|| async { axum::response::Redirect::to("/elsewhere") }),
        )
        .route("/elsewhere", get(|| async { "fine" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut k = sink(&format!("http://{addr}/"), Format::Json);
    let err = k
        .deliver(&events(1))
        .await
        .expect_err("a 303 is not a delivery");
    assert!(
        matches!(&err, SinkError::Delivery(m) if m.contains("303")),
        "{err}"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_sends_its_token_and_headers() {
    let ch = memory(100);
    let cfg = HttpSourceConfig {
        auth_token: Some("t0k".into()),
        ..source_cfg()
    };
    let (src, url) = start(cfg, Arc::new(ChannelDeliver(ch.clone())));
    let mut without = sink(&url, Format::Json);
    let err = without.deliver(&events(1)).await.expect_err("401");
    assert!(
        matches!(&err, SinkError::Delivery(m) if m.contains("401")),
        "{err}"
    );
    let mut with = HttpSink::new(
        "k1",
        HttpSinkConfig {
            url: url.clone(),
            format: Format::Binary,
            timeout: HumanDuration(Duration::from_secs(5)),
            auth_token: Some("t0k".into()),
            headers: [("X-Env".to_string(), "prod".to_string())].into(),
            proxy: None,
        },
    )
    .expect("sink");
    with.deliver(&events(2)).await.expect("delivered");
    assert_eq!(drain(ch.as_ref()), events(2));
    src.stop().await;
}
