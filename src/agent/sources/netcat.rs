//! The `netcat` source: one event per line of a TCP connection (Flume's netcat source).
//!
//! Each line, without its `\n` (and a `\r` before it), becomes an event body. Lines that arrived
//! together are delivered together, up to [`MAX_BATCH`] per channel transaction; with
//! `ack_every_event = true` (the default) the source answers `OK\n` for each line once its batch
//! is committed, in line order. A line longer than `max_line_length` bytes is not delivered: the
//! source answers `FAILED: line exceeds max_line_length N\n` in its place (whatever
//! `ack_every_event` says), skips to the next newline, and keeps the connection. A batch the
//! channels refused is answered with `FAILED: <reason>\n` for each of its lines; the client may
//! send them again. Bytes after the last newline when the client closes its side are a last
//! line.
//!
//! On shutdown the source stops accepting and stops reading; a batch being delivered is
//! finished and answered first. Lines read but not yet delivered were never answered `OK`, so a
//! client that resends what was not acknowledged loses nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::http::{accept_until, bind};
use crate::Event;
use crate::agent::component::{
    BoxFuture, ComponentError, Source, SourceContext, SourceCounters, SourceOutput,
};

/// Most lines delivered in one channel transaction (keep the channels' `transaction_capacity`
/// at least this large; Flume's memory channel default is 100).
pub const MAX_BATCH: usize = 100;
/// Default `max_line_length` (Flume's `max-line-length`).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 512;
const READ_CHUNK: usize = 64 << 10;

/// The `netcat` source's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetcatSourceConfig {
    /// Address to listen on, `host:port`.
    pub bind: String,
    /// Longest line in bytes, not counting the line end. Default 512.
    #[serde(default = "default_max_line_length")]
    pub max_line_length: usize,
    /// Answer `OK` for every line once it is committed. Default true.
    #[serde(default = "yes")]
    pub ack_every_event: bool,
}

fn default_max_line_length() -> usize {
    DEFAULT_MAX_LINE_LENGTH
}
fn yes() -> bool {
    true
}

/// Builds a `netcat` source (binds when it runs).
pub fn build(name: &str, cfg: NetcatSourceConfig) -> Result<Box<dyn Source>, ComponentError> {
    Ok(Box::new(NetcatSource::new(name, cfg)?))
}

/// The `netcat` source. [`NetcatSource::bind`] binds early (to learn the port of
/// `127.0.0.1:0`); otherwise [`Source::run`] binds.
pub struct NetcatSource {
    name: String,
    cfg: NetcatSourceConfig,
    listener: Option<std::net::TcpListener>,
}

impl NetcatSource {
    /// Checks `cfg`.
    pub fn new(name: &str, cfg: NetcatSourceConfig) -> Result<Self, ComponentError> {
        if cfg.max_line_length == 0 {
            return Err(ComponentError::Config(format!(
                "source {name}: max_line_length must be at least 1"
            )));
        }
        Ok(NetcatSource {
            name: name.to_owned(),
            cfg,
            listener: None,
        })
    }

    /// Binds the listening socket now and returns its address.
    pub fn bind(&mut self) -> Result<SocketAddr, ComponentError> {
        let listener = bind(&self.name, &self.cfg.bind)?;
        let addr = listener.local_addr()?;
        self.listener = Some(listener);
        Ok(addr)
    }
}

struct Shared {
    output: SourceOutput,
    counters: Arc<SourceCounters>,
    max_line_length: usize,
    ack: bool,
}

impl Source for NetcatSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let this = *self;
            let listener = match this.listener {
                Some(l) => l,
                None => bind(&this.name, &this.cfg.bind)?,
            };
            let listener = TcpListener::from_std(listener)?;
            tracing::info!(source = %this.name, addr = ?listener.local_addr().ok(), "netcat source listening");
            let shared = Arc::new(Shared {
                output: ctx.output,
                counters: ctx.counters,
                max_line_length: this.cfg.max_line_length,
                ack: this.cfg.ack_every_event,
            });
            let shutdown = ctx.shutdown;
            accept_until(listener, &shutdown.clone(), "netcat", move |tcp, peer| {
                let (shared, shutdown) = (shared.clone(), shutdown.clone());
                async move {
                    if let Err(e) = connection(tcp, &shared, &shutdown).await {
                        tracing::debug!(%peer, error = %e, "netcat connection ended");
                    }
                }
            })
            .await;
            Ok(())
        })
    }
}

async fn connection(
    tcp: TcpStream,
    s: &Shared,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let (mut rd, mut wr) = tcp.into_split();
    let mut lines = LineSplitter::new(s.max_line_length);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            n = rd.read(&mut buf) => n?,
        };
        let items = match buf.get(..n) {
            Some(bytes) if n > 0 => lines.push(bytes),
            _ => lines.finish(),
        };
        answer(items, s, &mut wr).await?;
        if n == 0 {
            return wr.shutdown().await;
        }
    }
}

/// Delivers the lines of `items` in batches and writes the answers, in line order.
async fn answer(
    items: Vec<Line>,
    s: &Shared,
    wr: &mut (impl AsyncWriteExt + Unpin),
) -> std::io::Result<()> {
    let mut batch = Vec::new();
    let mut reply = String::new();
    let mut items = items.into_iter().peekable();
    while let Some(item) = items.next() {
        s.counters.received.fetch_add(1, Ordering::Relaxed);
        match item {
            Line::Body(body) => batch.push(Event::new(body)),
            Line::TooLong => {
                s.counters.rejected.fetch_add(1, Ordering::Relaxed);
                reply.push_str(&format!(
                    "FAILED: line exceeds max_line_length {}\n",
                    s.max_line_length
                ));
            }
        }
        let next_too_long = matches!(items.peek(), Some(Line::TooLong) | None);
        if !batch.is_empty() && (batch.len() == MAX_BATCH || next_too_long) {
            let n = batch.len();
            match s.output.deliver(std::mem::take(&mut batch)).await {
                Ok(()) => {
                    s.counters.accepted.fetch_add(n as u64, Ordering::Relaxed);
                    s.counters.append_batches.fetch_add(1, Ordering::Relaxed);
                    if s.ack {
                        reply.push_str(&"OK\n".repeat(n));
                    }
                }
                Err(e) => {
                    s.counters.rejected.fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!(error = %e, lines = n, "netcat source: batch refused");
                    reply.push_str(&format!("FAILED: {e}\n").repeat(n));
                }
            }
        }
        if !reply.is_empty() && batch.is_empty() {
            wr.write_all(reply.as_bytes()).await?;
            reply.clear();
        }
    }
    wr.flush().await
}

/// One line as the splitter found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line's bytes, without `\n` or `\r\n`.
    Body(Vec<u8>),
    /// A line longer than the limit (its bytes were dropped).
    TooLong,
}

/// Splits a byte stream into lines, holding at most `max + 1` bytes of an unfinished line.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    current: Vec<u8>,
    discarding: bool,
}

impl LineSplitter {
    /// Lines of at most `max` bytes (not counting the line end).
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max,
            current: Vec::new(),
            discarding: false,
        }
    }

    /// Feeds `bytes`; returns the lines they completed.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (chunk, rest, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (line, rest) = bytes.split_at(i);
                    (line, rest.get(1..).unwrap_or_default(), true)
                }
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if !self.discarding {
                // One byte more than the limit may be the `\r` of a `\r\n`.
                let room = (self.max + 1).saturating_sub(self.current.len());
                if chunk.len() > room {
                    self.discarding = true;
                    self.current.clear();
                } else {
                    self.current.extend_from_slice(chunk);
                }
            }
            if ended {
                out.extend(self.end_line());
            }
        }
        out
    }

    /// The end of the stream: an unfinished line is a last line.
    pub fn finish(&mut self) -> Vec<Line> {
        if self.current.is_empty() && !self.discarding {
            return Vec::new();
        }
        self.end_line().into_iter().collect()
    }

    fn end_line(&mut self) -> Option<Line> {
        if std::mem::take(&mut self.discarding) {
            return Some(Line::TooLong);
        }
        let mut line = std::mem::take(&mut self.current);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(if line.len() > self.max {
            Line::TooLong
        } else {
            Line::Body(line)
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The lines of `input` read in one piece, the obvious way.
    fn reference(input: &[u8], max: usize) -> Vec<Line> {
        let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        let last = parts.pop().unwrap_or_default();
        if !last.is_empty() {
            parts.push(last);
        }
        parts
            .into_iter()
            .map(|l| {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                if l.len() > max {
                    Line::TooLong
                } else {
                    Line::Body(l.to_vec())
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn any_split_of_the_stream_gives_the_same_lines(
            input in prop::collection::vec(prop::sample::select(b"ab\r\n".to_vec()), 0..200),
            cuts in prop::collection::vec(0usize..200, 0..8),
            max in 0usize..6,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut s = LineSplitter::new(max);
            let mut got = Vec::new();
            let mut from = 0;
            for to in cuts {
                got.extend(s.push(&input[from..to]));
                prop_assert!(s.current.len() <= max + 1, "holds at most max + 1 bytes");
                from = to;
            }
            got.extend(s.finish());
            prop_assert_eq!(got, reference(&input, max));
        }
    }

    fn body(s: &str) -> Line {
        Line::Body(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_lines_across_reads_and_strips_crlf() {
        let mut s = LineSplitter::new(5);
        assert_eq!(s.push(b"ab"), []);
        assert_eq!(
            s.push(b"c\r\nde\n\nxy"),
            [body("abc"), body("de"), body("")]
        );
        assert_eq!(s.finish(), [body("xy")]);
        assert_eq!(s.finish(), []);
    }

    #[test]
    fn over_long_lines_are_dropped_up_to_the_next_newline() {
        let mut s = LineSplitter::new(3);
        assert_eq!(
            s.push(b"abc\r\nabcd\nok\n"),
            [body("abc"), Line::TooLong, body("ok")]
        );
        assert_eq!(s.push(b"xxxxxxxx"), []);
        assert_eq!(s.current.len(), 0, "an over-long line is not kept");
        assert_eq!(s.push(b"xxx\nz\n"), [Line::TooLong, body("z")]);
        assert_eq!(s.push(b"abc\r"), []);
        assert_eq!(s.push(b"\n"), [body("abc")]);
        assert_eq!(s.push(b"abcd"), []);
        assert_eq!(s.finish(), [Line::TooLong]);
    }
}
