//! The `netcat` source over real TCP on 127.0.0.1, delivering into real channels.

mod components_common;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use components_common::{ChannelDeliver, FullDeliver, Running, bodies, drain};
use tidegate::agent::component::Deliver;
use tidegate::agent::sources::netcat::{NetcatSource, NetcatSourceConfig};
use tidegate::{MemoryChannel, MemoryChannelConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const WAIT: Duration = Duration::from_secs(20);

fn start(max_line_length: usize, ack: bool, output: Arc<dyn Deliver>) -> (Running, String) {
    let mut source = NetcatSource::new(
        "r2",
        NetcatSourceConfig {
            bind: "127.0.0.1:0".into(),
            max_line_length,
            ack_every_event: ack,
        },
    )
    .expect("source");
    let addr = source.bind().expect("bind").to_string();
    (Running::start(Box::new(source), output), addr)
}

fn memory() -> Arc<MemoryChannel> {
    Arc::new(MemoryChannel::new(MemoryChannelConfig::default()))
}

async fn connect(addr: &str) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
    let (rd, wr) = TcpStream::connect(addr)
        .await
        .expect("connect")
        .into_split();
    (BufReader::new(rd), wr)
}

async fn read_line(rd: &mut BufReader<OwnedReadHalf>) -> String {
    let mut line = String::new();
    tokio::time::timeout(WAIT, rd.read_line(&mut line))
        .await
        .expect("an answer within 20 s")
        .expect("read");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_is_an_event_acknowledged_after_commit() {
    let ch = memory();
    let (src, addr) = start(16, true, Arc::new(ChannelDeliver(ch.clone())));
    let (mut rd, mut wr) = connect(&addr).await;
    wr.write_all(b"one\r\ntwo\n\nthree\n").await.expect("write");
    for _ in 0..4 {
        assert_eq!(read_line(&mut rd).await, "OK\n");
    }
    // Each OK came after the commit, so the channel has all four now.
    assert_eq!(bodies(&drain(ch.as_ref())), ["one", "two", "", "three"]);

    // A last line without a newline, then the client closes its side.
    wr.write_all(b"last").await.expect("write");
    wr.shutdown().await.expect("shutdown");
    assert_eq!(read_line(&mut rd).await, "OK\n");
    assert_eq!(read_line(&mut rd).await, "", "the source closes after EOF");
    assert_eq!(bodies(&drain(ch.as_ref())), ["last"]);
    assert_eq!(src.counters.accepted.load(Relaxed), 5);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_lines_are_refused_and_the_connection_kept() {
    let ch = memory();
    let (src, addr) = start(4, true, Arc::new(ChannelDeliver(ch.clone())));
    let (mut rd, mut wr) = connect(&addr).await;
    wr.write_all(b"abcd\nabcde\nok\n").await.expect("write");
    assert_eq!(read_line(&mut rd).await, "OK\n");
    assert_eq!(
        read_line(&mut rd).await,
        "FAILED: line exceeds max_line_length 4\n"
    );
    assert_eq!(read_line(&mut rd).await, "OK\n");
    // A line much longer than a read, split over writes.
    wr.write_all(&vec![b'x'; 200_000]).await.expect("write");
    wr.write_all(b"\naft\n").await.expect("write");
    assert_eq!(
        read_line(&mut rd).await,
        "FAILED: line exceeds max_line_length 4\n"
    );
    assert_eq!(read_line(&mut rd).await, "OK\n");
    assert_eq!(bodies(&drain(ch.as_ref())), ["abcd", "ok", "aft"]);
    assert_eq!(src.counters.rejected.load(Relaxed), 2);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_lines_arrive_in_order_in_bounded_batches() {
    let ch = memory();
    let (src, addr) = start(64, true, Arc::new(ChannelDeliver(ch.clone())));
    let (mut rd, mut wr) = connect(&addr).await;
    let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    wr.write_all(text.as_bytes()).await.expect("write");
    for _ in 0..1000 {
        assert_eq!(read_line(&mut rd).await, "OK\n");
    }
    let got = bodies(&drain(ch.as_ref()));
    let want: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
    assert_eq!(got, want);
    let batches = src.counters.append_batches.load(Relaxed);
    assert!(
        batches >= 10,
        "at most 100 lines per batch, got {batches} batches"
    );
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_are_answered_failed_per_line() {
    let (src, addr) = start(64, true, Arc::new(FullDeliver));
    let (mut rd, mut wr) = connect(&addr).await;
    wr.write_all(b"a\nb\n").await.expect("write");
    for _ in 0..2 {
        assert_eq!(read_line(&mut rd).await, "FAILED: channel c1 is full\n");
    }
    assert_eq!(src.counters.rejected.load(Relaxed), 2);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_acks_nothing_is_answered() {
    let ch = memory();
    let (src, addr) = start(64, false, Arc::new(ChannelDeliver(ch.clone())));
    let (mut rd, mut wr) = connect(&addr).await;
    wr.write_all(b"a\nb\n").await.expect("write");
    wr.shutdown().await.expect("shutdown");
    assert_eq!(read_line(&mut rd).await, "", "no OK, then EOF");
    assert_eq!(bodies(&drain(ch.as_ref())), ["a", "b"]);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_the_port() {
    let ch = memory();
    let (src, addr) = start(64, true, Arc::new(ChannelDeliver(ch.clone())));
    let (mut rd, mut wr) = connect(&addr).await;
    wr.write_all(b"a\n").await.expect("write");
    assert_eq!(read_line(&mut rd).await, "OK\n");
    src.stop().await;
    assert_eq!(read_line(&mut rd).await, "", "the connection is closed");
    assert!(TcpStream::connect(&addr).await.is_err(), "nothing listens");
    assert_eq!(bodies(&drain(ch.as_ref())), ["a"]);
}
