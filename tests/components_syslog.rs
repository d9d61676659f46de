//! The `syslog` source over real TCP and UDP on 127.0.0.1, fed by util-linux `logger` and by
//! raw sockets, delivering into real channels.

mod components_common;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use components_common::{ChannelDeliver, FullDeliver, Running, bodies, drain};
use tidegate::agent::component::Deliver;
use tidegate::agent::sources::syslog::{STATUS_HEADER, SyslogSource, SyslogSourceConfig};
use tidegate::{Event, MemoryChannel, MemoryChannelConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

/// Starts a source from its TOML keys (without `bind`: it binds `127.0.0.1:0`, `binds` times).
fn start(keys: &str, binds: usize, output: Arc<dyn Deliver>) -> (Running, Vec<String>) {
    let bind: Vec<String> = (0..binds).map(|_| "\"127.0.0.1:0\"".to_string()).collect();
    let cfg: SyslogSourceConfig = toml::from_str(&format!("bind = [{}]\n{keys}", bind.join(",")))
        .unwrap_or_else(|e| panic!("config: {e}"));
    let mut source = SyslogSource::new("sl", cfg).expect("source");
    let addrs = source
        .bind()
        .expect("bind")
        .iter()
        .map(|a| a.to_string())
        .collect();
    (Running::start(Box::new(source), output), addrs)
}

fn memory() -> Arc<MemoryChannel> {
    Arc::new(MemoryChannel::new(MemoryChannelConfig::default()))
}

/// Drains the channel until it gave `n` events (bounded wait), then checks nothing more came.
async fn take(ch: &MemoryChannel, n: usize) -> Vec<Event> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "{n} events within {WAIT:?}; got {:?}",
            bodies(&got)
        );
        got.extend(drain(ch));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.len(), n, "exactly {n} events: {:?}", bodies(&got));
    got
}

fn header<'a>(e: &'a Event, k: &str) -> Option<&'a str> {
    e.headers().get(k).map(String::as_str)
}

/// Runs util-linux `logger` against `addr` with `args`, `stdin` as its input; asserts success.
async fn logger(addr: &str, args: &[&str], stdin: Option<&str>) {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut cmd = tokio::process::Command::new("logger");
    cmd.args(["--server", host, "--port", port])
        .args(args)
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run logger (util-linux)");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .await
            .expect("logger stdin");
    }
    drop(input);
    let st = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("logger ends")
        .expect("logger");
    assert!(st.success(), "logger {args:?}: {st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_tcp_rfc5424_rfc3164_and_octet_counting() {
    let ch = memory();
    let (src, addrs) = start("", 1, Arc::new(ChannelDeliver(ch.clone())));
    let addr = &addrs[0];
    logger(
        addr,
        &[
            "--tcp",
            "--rfc5424",
            "-t",
            "myapp",
            "--id=4242",
            "--msgid",
            "M1",
            "-p",
            "local3.err",
            "hello 5424",
        ],
        None,
    )
    .await;
    let got = take(&ch, 1).await;
    let e = &got[0];
    assert_eq!(e.body(), b"hello 5424");
    assert_eq!(header(e, "Facility"), Some("19"));
    assert_eq!(header(e, "Severity"), Some("3"));
    assert_eq!(header(e, "app_name"), Some("myapp"));
    assert_eq!(header(e, "procid"), Some("4242"));
    assert_eq!(header(e, "msgid"), Some("M1"));
    assert_eq!(header(e, "sd.timeQuality.tzKnown"), Some("1"));
    let host = header(e, "host").expect("host header");
    assert!(!host.is_empty());
    let ts: i64 = header(e, "timestamp")
        .expect("timestamp")
        .parse()
        .expect("ms");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert!(
        (now - ts).abs() < 3_600_000,
        "timestamp {ts} is about now ({now})"
    );
    assert_eq!(header(e, STATUS_HEADER), None);

    logger(
        addr,
        &[
            "--tcp",
            "--rfc3164",
            "-t",
            "old",
            "-p",
            "user.notice",
            "hello 3164",
        ],
        None,
    )
    .await;
    let got = take(&ch, 1).await;
    let e = &got[0];
    assert_eq!(e.body(), b"hello 3164");
    assert_eq!(
        [
            header(e, "Facility"),
            header(e, "Severity"),
            header(e, "app_name")
        ],
        [Some("1"), Some("5"), Some("old")]
    );
    assert!(header(e, "timestamp").is_some() && header(e, "host").is_some());

    logger(
        addr,
        &[
            "--tcp",
            "--octet-count",
            "--rfc5424",
            "--sd-id",
            "zoo@123",
            "--sd-param",
            "tiger=\"hungry\"",
            "counted",
        ],
        None,
    )
    .await;
    let got = take(&ch, 1).await;
    assert_eq!(got[0].body(), b"counted");
    assert_eq!(header(&got[0], "sd.zoo@123.tiger"), Some("hungry"));
    assert_eq!(src.counters.accepted.load(Relaxed), 3);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_udp_and_keep_fields() {
    let ch = memory();
    let (src, addrs) = start(
        "protocol = \"udp\"\nkeep_fields = true",
        1,
        Arc::new(ChannelDeliver(ch.clone())),
    );
    logger(
        &addrs[0],
        &["--udp", "--rfc5424", "-t", "u", "over udp"],
        None,
    )
    .await;
    let got = take(&ch, 1).await;
    let body = String::from_utf8_lossy(got[0].body()).into_owned();
    assert!(
        body.starts_with("<13>1 ") && body.ends_with(" over udp"),
        "keep_fields keeps the whole message: {body:?}"
    );
    assert_eq!(header(&got[0], "app_name"), Some("u"));
    src.stop().await;
}

/// 300 messages over one TCP connection (logger sends one per stdin line), both framings; all
/// arrive, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_over_one_connection_arrive_in_order() {
    let ch = memory();
    let (src, addrs) = start("batch_size = 7", 1, Arc::new(ChannelDeliver(ch.clone())));
    let lines: String = (0..300).map(|i| format!("msg-{i:04}\n")).collect();
    for extra in [&[][..], &["--octet-count"][..]] {
        let mut args = vec!["--tcp", "--rfc5424", "-t", "bulk"];
        args.extend_from_slice(extra);
        logger(&addrs[0], &args, Some(&lines)).await;
        let got = take(&ch, 300).await;
        let want: Vec<String> = (0..300).map(|i| format!("msg-{i:04}")).collect();
        assert_eq!(bodies(&got), want, "framing {extra:?}");
    }
    assert!(
        src.counters.append_batches.load(Relaxed) >= 600 / 7,
        "batches hold at most batch_size messages"
    );
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_framing_invalid_messages_and_several_ports() {
    let ch = memory();
    let (src, addrs) = start("", 2, Arc::new(ChannelDeliver(ch.clone())));
    assert_eq!(addrs.len(), 2);
    let mut tcp = TcpStream::connect(&addrs[1]).await.expect("connect");
    let counted = "<14>1 - h a - - - counted";
    let stream = format!(
        "{} {counted}<14>1 - h a - - - newline\r\njust some text\n12x not a count\n",
        counted.len()
    );
    tcp.write_all(stream.as_bytes()).await.expect("write");
    tcp.shutdown().await.expect("shutdown");
    let got = take(&ch, 4).await;
    assert_eq!(
        bodies(&got),
        ["counted", "newline", "just some text", "12x not a count"]
    );
    assert_eq!(header(&got[0], STATUS_HEADER), None);
    assert_eq!(header(&got[2], STATUS_HEADER), Some("Invalid"));
    assert_eq!(
        got[2].headers().len(),
        1,
        "an invalid message gets only the status"
    );
    // The first port serves too.
    let mut tcp = TcpStream::connect(&addrs[0]).await.expect("connect");
    tcp.write_all(b"<13>Nov 24 10:00:00 h t: first port\n")
        .await
        .expect("write");
    assert_eq!(bodies(&take(&ch, 1).await), ["first port"]);
    src.stop().await;
}

/// Over the limit: an octet-counted frame is skipped exactly, a line up to its newline, a
/// datagram dropped; each is counted as rejected and the messages around it arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_are_rejected_and_skipped() {
    let ch = memory();
    let (src, addrs) = start(
        "max_message_size = 40",
        1,
        Arc::new(ChannelDeliver(ch.clone())),
    );
    let mut tcp = TcpStream::connect(&addrs[0]).await.expect("connect");
    let big = format!("<13>1 - - - - - - {}", "x".repeat(60));
    let stream = format!(
        "{} {big}<13>1 - - - - - - a\n{big}\n<13>1 - - - - - - b\n",
        big.len()
    );
    tcp.write_all(stream.as_bytes()).await.expect("write");
    tcp.shutdown().await.expect("shutdown");
    assert_eq!(bodies(&take(&ch, 2).await), ["a", "b"]);
    assert_eq!(src.counters.rejected.load(Relaxed), 2);
    src.stop().await;

    let (src, addrs) = start(
        "protocol = \"udp\"\nmax_message_size = 40",
        1,
        Arc::new(ChannelDeliver(ch.clone())),
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.send_to(big.as_bytes(), &addrs[0]).expect("send");
    udp.send_to(b"<13>1 - - - - - - small", &addrs[0])
        .expect("send");
    assert_eq!(bodies(&take(&ch, 1).await), ["small"]);
    let deadline = Instant::now() + WAIT;
    while src.counters.rejected.load(Relaxed) < 1 {
        assert!(
            Instant::now() < deadline,
            "the big datagram is counted as rejected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    src.stop().await;
}

/// The channel refuses everything: the source reads at most one batch, then stops reading, so
/// the sender's writes block (its data waits in kernel buffers, not in the agent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_channel_pushes_back_on_the_tcp_sender() {
    let (src, addrs) = start("batch_size = 10", 1, Arc::new(FullDeliver));
    let addr = addrs[0].clone();
    let written = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut tcp = std::net::TcpStream::connect(&addr).expect("connect");
        tcp.set_write_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let line = format!("<13>1 - - - - - - {}\n", "y".repeat(1000));
        let chunk = line.repeat(64);
        let mut total = 0usize;
        // 64 MiB is far more than any kernel buffers; an unbounded reader takes it all.
        while total < 64 << 20 {
            match tcp.write(chunk.as_bytes()) {
                Ok(n) => total += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Some(total);
                }
                Err(e) => panic!("write: {e}"),
            }
        }
        None
    })
    .await
    .expect("writer");
    assert!(
        matches!(written, Some(n) if n < 64 << 20),
        "the sender's writes never blocked: the source buffers without bound ({written:?})"
    );
    assert!(
        src.counters.received.load(Relaxed) <= 10,
        "at most one batch was taken from the socket"
    );
    assert_eq!(src.counters.accepted.load(Relaxed), 0);
    src.stop().await;
}

/// `max_connections = 1`: a second connection is closed at once; once the first ends, a new
/// one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed() {
    let ch = memory();
    let (src, addrs) = start(
        "max_connections = 1",
        1,
        Arc::new(ChannelDeliver(ch.clone())),
    );
    let mut first = TcpStream::connect(&addrs[0]).await.expect("connect");
    first
        .write_all(b"<13>1 - - - - - - one\n")
        .await
        .expect("write");
    assert_eq!(bodies(&take(&ch, 1).await), ["one"]);
    let mut second = TcpStream::connect(&addrs[0]).await.expect("connect");
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(WAIT, second.read(&mut buf))
        .await
        .expect("the second connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    drop(first);
    // Once the first connection is gone, a new one is served (retry: the close may take a
    // moment to be noticed).
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "a new connection is served");
        let mut third = TcpStream::connect(&addrs[0]).await.expect("connect");
        let _ = third.write_all(b"<13>1 - - - - - - three\n").await;
        let _ = third.shutdown().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = drain(ch.as_ref());
        if !got.is_empty() {
            assert!(
                bodies(&got).iter().all(|b| b == "three"),
                "{:?}",
                bodies(&got)
            );
            break;
        }
    }
    src.stop().await;
}

#[test]
fn bad_keys_are_named() {
    let bad = |keys: &str| {
        let cfg: SyslogSourceConfig =
            toml::from_str(&format!("bind = \"127.0.0.1:0\"\n{keys}")).expect("config");
        match SyslogSource::new("sl", cfg) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{keys} accepted"),
        }
    };
    assert!(bad("batch_size = 0").contains("batch_size"));
    assert!(bad("max_connections = 0").contains("max_connections"));
    assert!(bad("max_message_size = 0").contains("max_message_size"));
    assert!(bad("max_message_size = \"2GiB\"").contains("max_message_size"));
    let unknown = toml::from_str::<SyslogSourceConfig>("bind = \"x\"\nport = 1");
    assert!(matches!(unknown, Err(e) if e.to_string().contains("port")));
}
