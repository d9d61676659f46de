//! The `syslog` source: RFC 5424 and RFC 3164 messages over TCP or UDP (Flume's `syslogtcp`,
//! `multiport_syslogtcp` and `syslogudp` sources).
//!
//! Each message becomes one event; [`parse`] fills the headers (`Facility`, `Severity`,
//! `timestamp`, `host`, `app_name`, `procid`, `msgid`, `sd.<id>.<param>`) and the body (the MSG
//! part, or the whole message with `keep_fields = true`). A message that is neither RFC becomes
//! an event with header `flume.syslog.status = Invalid` and the whole text as its body; it is
//! not dropped.
//!
//! **TCP.** Frames are octet-counted (`LEN SP MSG`, RFC 6587) or newline-terminated; with
//! `framing = "auto"` each message decides: it is octet-counted when it starts with digits and
//! a space. A connection is served by one task that reads a chunk, cuts it into messages, and
//! delivers them (`deliver_or_retry`, at most `batch_size` per channel transaction) before it
//! reads more from that connection, so memory per connection is bounded (one read chunk, one
//! batch, one message of at most `max_message_size`) and a full channel stops the reading: the
//! kernel buffers fill and the sender blocks (back-pressure). A message over
//! `max_message_size` is skipped (octet-counted: exactly its frame; newline: up to the next
//! newline) and counted as rejected, logged with the peer address. At most
//! `max_connections` connections are served; more are closed at once (logged).
//!
//! **UDP.** One datagram is one message; datagrams that arrived together are delivered
//! together (up to `batch_size`). A datagram over `max_message_size` is dropped and counted as
//! rejected.
//!
//! **Delivery guarantee.** Syslog has no application-level acknowledgement (UDP has none at
//! all): a sender cannot know what the agent committed. What the source guarantees: a message
//! is counted as accepted only once its batch is committed to the channels; what was committed
//! survives a crash (with a file channel). Messages read from a socket but not yet committed when
//! the agent crashes are lost (on TCP that is at most one batch plus one read chunk per
//! connection, and the sender's kernel buffer); on a clean shutdown the source stops reading and
//! makes one last attempt to commit what it read, and logs how many it could not.

mod parse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

pub use self::parse::{Parsed, STATUS_HEADER, parse, rfc3339_ms};
use super::http::{accept_until, bind as bind_tcp};
use super::{Stopped, deliver_or_retry};
use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Source, SourceContext};
use crate::agent::units::ByteSize;

/// Bytes read from a TCP connection at a time.
const READ_CHUNK: usize = 16 << 10;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP (framed, see [`Framing`]).
    #[default]
    Tcp,
    /// UDP, one datagram per message.
    Udp,
}

/// How TCP messages are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Per message: octet-counted when it starts with digits and a space, else newline.
    #[default]
    Auto,
    /// `LEN SP MSG` (RFC 6587 3.4.1). Anything else is a framing error that ends the
    /// connection.
    OctetCounting,
    /// One message per line (`\n`, a `\r` before it removed).
    Newline,
}

/// One address or several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Binds {
    /// `"host:port"`.
    One(String),
    /// `["host:port", ...]`.
    Many(Vec<String>),
}

impl Binds {
    fn list(&self) -> Vec<String> {
        match self {
            Binds::One(a) => vec![a.clone()],
            Binds::Many(v) => v.clone(),
        }
    }
}

/// `[sources.NAME]` keys of a `syslog` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSourceConfig {
    /// `"tcp"` (default) or `"udp"`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Address(es) to listen on.
    pub bind: Binds,
    /// TCP framing. Default `auto`.
    #[serde(default)]
    pub framing: Framing,
    /// Largest message (bytes, without framing). Default 64KiB.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: ByteSize,
    /// Most messages per put transaction. Default 100.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The body is the whole message as received (true) or only its MSG part (false, default).
    #[serde(default)]
    pub keep_fields: bool,
    /// Most TCP connections served at once; more are closed at once. Default 256.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_message_size() -> ByteSize {
    ByteSize(64 << 10)
}
fn default_batch_size() -> usize {
    100
}
fn default_max_connections() -> usize {
    256
}

/// Builds a `syslog` source (binds when it runs).
pub fn build(name: &str, cfg: SyslogSourceConfig) -> Result<Box<dyn Source>, ComponentError> {
    Ok(Box::new(SyslogSource::new(name, cfg)?))
}

enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// The `syslog` source. [`SyslogSource::bind`] binds early (to learn the ports of
/// `127.0.0.1:0`); otherwise [`Source::run`] binds.
pub struct SyslogSource {
    name: String,
    cfg: SyslogSourceConfig,
    max: usize,
    bound: Vec<Bound>,
}

impl SyslogSource {
    /// Checks `cfg`.
    pub fn new(name: &str, cfg: SyslogSourceConfig) -> Result<Self, ComponentError> {
        let bad = |key: &str, what: &str| {
            Err(ComponentError::Config(format!(
                "source {name}: {key} {what}"
            )))
        };
        if cfg.bind.list().is_empty() {
            return bad("bind", "must name at least one address");
        }
        if cfg.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if cfg.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        let max = cfg.max_message_size.get();
        if max == 0 {
            return bad("max_message_size", "must be at least 1 byte");
        }
        if max > 1 << 30 {
            return bad("max_message_size", "must be at most 1GiB");
        }
        // A datagram holds at most 65535 bytes: a larger limit changes nothing.
        let max = match cfg.protocol {
            Protocol::Udp => max.min(MAX_DATAGRAM as u64),
            Protocol::Tcp => max,
        };
        Ok(SyslogSource {
            name: name.to_owned(),
            max: max as usize,
            cfg,
            bound: Vec::new(),
        })
    }

    /// Binds every address now and returns the bound addresses, in `bind` order.
    pub fn bind(&mut self) -> Result<Vec<SocketAddr>, ComponentError> {
        let mut bound = Vec::new();
        let mut addrs = Vec::new();
        for addr in self.cfg.bind.list() {
            let b = match self.cfg.protocol {
                Protocol::Tcp => Bound::Tcp(bind_tcp(&self.name, &addr)?),
                Protocol::Udp => {
                    let s = std::net::UdpSocket::bind(&addr).map_err(|e| {
                        ComponentError::Io(std::io::Error::new(
                            e.kind(),
                            format!("source {}: cannot bind UDP {addr}: {e}", self.name),
                        ))
                    })?;
                    s.set_nonblocking(true)?;
                    Bound::Udp(s)
                }
            };
            addrs.push(match &b {
                Bound::Tcp(l) => l.local_addr()?,
                Bound::Udp(s) => s.local_addr()?,
            });
            bound.push(b);
        }
        self.bound = bound;
        Ok(addrs)
    }
}

/// What every connection / socket task shares.
struct Shared {
    ctx: SourceContext,
    max: usize,
    batch_size: usize,
    keep_fields: bool,
    framing: Framing,
}

impl Shared {
    fn event(&self, msg: &[u8]) -> Event {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let p = parse(msg, self.keep_fields, now);
        Event::from_parts(p.headers, p.body)
    }

    /// Commits `events` (retrying while the channels refuse). At shutdown makes one last
    /// attempt and logs what could not be committed. Returns false when the source stops.
    async fn deliver(&self, events: Vec<Event>, peer: SocketAddr) -> bool {
        if events.is_empty() {
            return !self.ctx.shutdown.is_cancelled();
        }
        match deliver_or_retry(&self.ctx, events).await {
            Ok(()) => true,
            Err(Stopped::Shutdown(events)) => {
                let n = events.len();
                match self.ctx.output.deliver(events).await {
                    Ok(()) => {
                        let c = &self.ctx.counters;
                        c.accepted.fetch_add(n as u64, Ordering::Relaxed);
                        c.append_batches.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(source = %self.ctx.name, %peer, messages = n, error = %e,
                            "syslog source stopping: messages read but not committed are lost");
                    }
                }
                false
            }
        }
    }

    fn reject(&self, peer: SocketAddr, what: &str) {
        self.ctx.counters.received.fetch_add(1, Ordering::Relaxed);
        self.ctx.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(source = %self.ctx.name, %peer, max_message_size = self.max, "syslog message rejected: {what}");
    }
}

impl Source for SyslogSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let mut this = *self;
            if this.bound.is_empty() {
                this.bind()?;
            }
            let shutdown = ctx.shutdown.clone();
            let shared = Arc::new(Shared {
                ctx,
                max: this.max,
                batch_size: this.cfg.batch_size,
                keep_fields: this.cfg.keep_fields,
                framing: this.cfg.framing,
            });
            let active = Arc::new(AtomicUsize::new(0));
            let mut tasks = JoinSet::new();
            for b in std::mem::take(&mut this.bound) {
                let shared = shared.clone();
                let name = this.name.clone();
                match b {
                    Bound::Tcp(l) => {
                        let listener = TcpListener::from_std(l)?;
                        tracing::info!(source = %name, addr = ?listener.local_addr().ok(), "syslog source listening (tcp)");
                        let (active, max_conn) = (active.clone(), this.cfg.max_connections);
                        let shutdown = shutdown.clone();
                        tasks.spawn(async move {
                            accept_until(listener, &shutdown, "syslog", move |tcp, peer| {
                                let shared = shared.clone();
                                let guard = ConnGuard::take(&active, max_conn);
                                async move {
                                    let Some(_guard) = guard else {
                                        tracing::warn!(source = %shared.ctx.name, %peer, max_connections = max_conn,
                                            "syslog connection refused: too many connections");
                                        return;
                                    };
                                    match connection(tcp, peer, &shared).await {
                                        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                                            tracing::warn!(source = %shared.ctx.name, %peer, error = %e, "syslog connection closed");
                                        }
                                        Err(e) => {
                                            tracing::info!(source = %shared.ctx.name, %peer, error = %e, "syslog connection ended");
                                        }
                                        Ok(()) => {}
                                    }
                                }
                            })
                            .await;
                        });
                    }
                    Bound::Udp(s) => {
                        let socket = UdpSocket::from_std(s)?;
                        tracing::info!(source = %name, addr = ?socket.local_addr().ok(), "syslog source listening (udp)");
                        tasks.spawn(async move { udp(socket, &shared).await });
                    }
                }
            }
            while tasks.join_next().await.is_some() {}
            Ok(())
        })
    }
}

/// Counts a served connection while alive.
struct ConnGuard(Arc<AtomicUsize>);

impl ConnGuard {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<ConnGuard> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnGuard(active.clone()))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one TCP connection: read a chunk, deliver its messages, read more.
async fn connection(tcp: TcpStream, peer: SocketAddr, s: &Shared) -> std::io::Result<()> {
    let mut rd = tcp;
    let mut framer = Framer::new(s.framing, s.max);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut batch = Vec::new();
    loop {
        // Wait for data only when nothing is pending; with a partial batch, take what is
        // already there and deliver when nothing more is.
        let n = if batch.is_empty() {
            tokio::select! {
                biased;
                () = s.ctx.shutdown.cancelled() => return Ok(()),
                n = rd.read(&mut buf) => n?,
            }
        } else {
            match rd.try_read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !s.deliver(std::mem::take(&mut batch), peer).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => {
                    s.deliver(std::mem::take(&mut batch), peer).await;
                    return Err(e);
                }
            }
        };
        let frames = match buf.get(..n) {
            Some(bytes) if n > 0 => framer.push(bytes),
            _ => framer.finish(),
        };
        for f in frames {
            match f {
                Frame::Message(m) => batch.push(s.event(&m)),
                Frame::TooLarge(len) => s.reject(
                    peer,
                    &match len {
                        Some(len) => {
                            format!("octet-counted frame of {len} bytes over max_message_size")
                        }
                        None => "line over max_message_size".to_string(),
                    },
                ),
                Frame::Truncated(len) => s.reject(
                    peer,
                    &format!("connection closed inside an octet-counted frame of {len} bytes"),
                ),
                Frame::Error(what) => {
                    s.deliver(std::mem::take(&mut batch), peer).await;
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("framing error at {what} (offsets from the connection's start)"),
                    ));
                }
            }
            if batch.len() >= s.batch_size && !s.deliver(std::mem::take(&mut batch), peer).await {
                return Ok(());
            }
        }
        if n == 0 {
            s.deliver(std::mem::take(&mut batch), peer).await;
            return Ok(());
        }
    }
}

/// Serves one UDP socket: a datagram, then those already waiting, delivered together.
async fn udp(socket: UdpSocket, s: &Shared) {
    // One byte more than the limit tells an over-long datagram from one of exactly the limit.
    let mut buf = vec![0u8; (s.max + 1).min(MAX_DATAGRAM + 1)];
    loop {
        let first = tokio::select! {
            biased;
            () = s.ctx.shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let mut batch = Vec::new();
        let mut last_peer = None;
        let mut next = Some(first);
        while let Some(r) = next.take() {
            match r {
                Ok((n, peer)) => {
                    last_peer = Some(peer);
                    if n > s.max {
                        s.reject(peer, "datagram over max_message_size");
                    } else {
                        batch.push(s.event(&buf[..n]));
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %s.ctx.name, error = %e, "syslog udp receive failed");
                    // Not a busy loop on a lasting error.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            if batch.len() < s.batch_size {
                match socket.try_recv_from(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    r => next = Some(r),
                }
            }
        }
        let peer = last_peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        if !s.deliver(batch, peer).await {
            return;
        }
    }
}

/// What the framer cut out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One message, without its framing.
    Message(Vec<u8>),
    /// A message over the limit was skipped: octet-counted (its length) or a line (None).
    TooLarge(Option<u64>),
    /// The stream ended inside an octet-counted frame of this length.
    Truncated(u64),
    /// The stream is not framed as configured (`octet_counting` only); reading must stop.
    Error(String),
}

#[derive(Debug)]
enum State {
    /// At a message boundary.
    Start,
    /// Reading the digits of an octet count.
    Digits(u64, usize),
    /// Reading `remaining` bytes of an octet-counted frame into `current`.
    Octet { len: u64, remaining: u64 },
    /// Skipping an over-long octet-counted frame.
    SkipOctet { remaining: u64 },
    /// Reading a line into `current`.
    Line,
    /// Skipping an over-long line up to its newline.
    SkipLine,
    /// After a framing error: nothing more is read.
    Failed,
}

/// Cuts a TCP byte stream into syslog messages, holding at most `max + 1` bytes (plus an
/// octet count's digits) of an unfinished message.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    max: usize,
    state: State,
    current: Vec<u8>,
    /// Bytes of the stream consumed by earlier pushes (for error offsets).
    pos: u64,
}

/// Longest octet count accepted (10 digits: more than any `max_message_size`).
const MAX_DIGITS: usize = 10;

impl Framer {
    /// A framer for messages of at most `max` bytes.
    pub fn new(framing: Framing, max: usize) -> Self {
        Framer {
            framing,
            max,
            state: State::Start,
            current: Vec::new(),
            pos: 0,
        }
    }

    /// Feeds `bytes`; returns the frames they completed.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        let (pos, len) = (self.pos, bytes.len());
        self.pos += len as u64;
        // The stream offset of the first byte of `rest`.
        let at = |rest: &[u8]| pos + (len - rest.len()) as u64;
        while let Some((&b, rest)) = bytes.split_first() {
            match self.state {
                State::Failed => return out,
                State::Start => {
                    bytes = rest;
                    match b {
                        b'\n' | b'\r' => {}
                        b'0'..=b'9' if self.framing != Framing::Newline => {
                            self.current.clear();
                            self.current.push(b);
                            self.state = State::Digits(u64::from(b - b'0'), 1);
                        }
                        _ if self.framing == Framing::OctetCounting => {
                            self.state = State::Failed;
                            out.push(Frame::Error(format!(
                                "byte {}: expected an octet count, found {b:#04x}",
                                at(bytes) - 1
                            )));
                        }
                        _ => {
                            self.state = State::Line;
                            self.current.clear();
                            self.current.push(b);
                        }
                    }
                }
                State::Digits(n, k) => match b {
                    b'0'..=b'9' if k < MAX_DIGITS => {
                        bytes = rest;
                        self.current.push(b);
                        self.state = State::Digits(n * 10 + u64::from(b - b'0'), k + 1);
                    }
                    b' ' => {
                        bytes = rest;
                        self.current.clear();
                        self.state = if n == 0 {
                            State::Start
                        } else if n > self.max as u64 {
                            out.push(Frame::TooLarge(Some(n)));
                            State::SkipOctet { remaining: n }
                        } else {
                            State::Octet {
                                len: n,
                                remaining: n,
                            }
                        };
                    }
                    _ if self.framing == Framing::OctetCounting => {
                        self.state = State::Failed;
                        out.push(Frame::Error(format!(
                            "byte {}: octet count followed by {b:#04x} instead of a space",
                            at(bytes)
                        )));
                    }
                    // Auto: not an octet count after all; the digits (in `current`) start a
                    // line, and this byte is read as part of it.
                    _ => self.state = State::Line,
                },
                State::Octet { len, remaining } => {
                    let take = (remaining as usize).min(bytes.len());
                    self.current.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    let remaining = remaining - take as u64;
                    if remaining == 0 {
                        out.push(Frame::Message(std::mem::take(&mut self.current)));
                        self.state = State::Start;
                    } else {
                        self.state = State::Octet { len, remaining };
                    }
                }
                State::SkipOctet { remaining } => {
                    let take = (remaining.min(bytes.len() as u64)) as usize;
                    bytes = &bytes[take..];
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::Start
                    } else {
                        State::SkipOctet { remaining }
                    };
                }
                State::Line | State::SkipLine => {
                    bytes = self.line(bytes, &mut out);
                }
            }
        }
        out
    }

    /// Line states: takes `bytes` up to a newline; returns what follows it.
    fn line<'a>(&mut self, bytes: &'a [u8], out: &mut Vec<Frame>) -> &'a [u8] {
        let (line, rest, ended) = match bytes.iter().position(|&b| b == b'\n') {
            Some(i) => (&bytes[..i], &bytes[i + 1..], true),
            None => (bytes, &bytes[bytes.len()..], false),
        };
        if matches!(self.state, State::Line) {
            // One byte more than the limit may be the `\r` of a `\r\n`.
            if self.current.len() + line.len() > self.max + 1 {
                self.current.clear();
                self.state = State::SkipLine;
            } else {
                self.current.extend_from_slice(line);
            }
        }
        if ended {
            self.end_line(out);
        }
        rest
    }

    fn end_line(&mut self, out: &mut Vec<Frame>) {
        let state = std::mem::replace(&mut self.state, State::Start);
        if matches!(state, State::SkipLine) {
            out.push(Frame::TooLarge(None));
            return;
        }
        let mut line = std::mem::take(&mut self.current);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > self.max {
            out.push(Frame::TooLarge(None));
        } else if !line.is_empty() {
            out.push(Frame::Message(line));
        }
    }

    /// The end of the stream: an unfinished line is a last message.
    pub fn finish(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        match std::mem::replace(&mut self.state, State::Start) {
            State::Line | State::SkipLine => {
                self.state = State::Line;
                self.end_line(&mut out);
            }
            State::Digits(..) if self.framing == Framing::Auto => {
                self.state = State::Line;
                self.end_line(&mut out);
            }
            State::Octet { len, .. } => out.push(Frame::Truncated(len)),
            State::SkipOctet { .. } | State::Digits(..) | State::Start | State::Failed => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn msg(s: &str) -> Frame {
        Frame::Message(s.as_bytes().to_vec())
    }

    #[test]
    fn auto_framing_decides_per_message() {
        let mut f = Framer::new(Framing::Auto, 20);
        assert_eq!(
            f.push(b"5 hello<13>line one\n3 abc12x not a count\r\n"),
            [
                msg("hello"),
                msg("<13>line one"),
                msg("abc"),
                msg("12x not a count")
            ]
        );
        assert_eq!(f.push(b"4 ab"), []);
        assert_eq!(f.push(b"cd"), [msg("abcd")]);
        assert_eq!(f.push(b"123x\n"), [msg("123x")]);
        assert_eq!(f.push(b"tail"), []);
        assert_eq!(f.finish(), [msg("tail")]);
    }

    #[test]
    fn oversize_frames_are_skipped_exactly() {
        let mut f = Framer::new(Framing::Auto, 4);
        assert_eq!(
            f.push(b"10 0123456789"),
            [Frame::TooLarge(Some(10))],
            "skips exactly the frame"
        );
        assert_eq!(f.push(b"2 ok"), [msg("ok")]);
        assert_eq!(
            f.push(b"<1>toolong\nabcd\r\n"),
            [Frame::TooLarge(None), msg("abcd")]
        );
        assert_eq!(f.push(b"6 abc"), [Frame::TooLarge(Some(6))]);
        assert_eq!(f.push(b"def1 x"), [msg("x")]);
        assert_eq!(f.push(b"3 ab"), []);
        assert_eq!(f.finish(), [Frame::Truncated(3)]);
    }

    #[test]
    fn strict_framings() {
        let mut f = Framer::new(Framing::OctetCounting, 100);
        assert_eq!(f.push(b"2 ab\n3 cde"), [msg("ab"), msg("cde")]);
        let got = f.push(b"<13>x 2 ab");
        assert!(matches!(got.as_slice(), [Frame::Error(_)]), "{got:?}");
        assert_eq!(f.push(b"2 ab"), [], "nothing after a framing error");
        let mut f = Framer::new(Framing::Newline, 100);
        assert_eq!(f.push(b"5 hello\n"), [msg("5 hello")]);
    }

    /// A framing error names the offset of the offending byte in the connection's stream, not
    /// the end of the read chunk it came in.
    #[test]
    fn framing_errors_name_the_offset_of_the_bad_byte() {
        let mut f = Framer::new(Framing::OctetCounting, 100);
        assert_eq!(f.push(b"2 ab3 c"), [msg("ab")]);
        let got = f.push(b"de<13>x and much more that is read in the same chunk");
        assert!(
            matches!(got.as_slice(), [Frame::Message(_), Frame::Error(e)] if e.contains("byte 9:")),
            "{got:?}"
        );
        let mut f = Framer::new(Framing::OctetCounting, 100);
        let got = f.push(b"2 ab12x more bytes");
        assert!(
            matches!(got.as_slice(), [Frame::Message(_), Frame::Error(e)] if e.contains("byte 6:")),
            "{got:?}"
        );
    }

    /// The frames of `input` read in one piece.
    fn whole(input: &[u8], framing: Framing, max: usize) -> Vec<Frame> {
        let mut f = Framer::new(framing, max);
        let mut out = f.push(input);
        out.extend(f.finish());
        out
    }

    proptest! {
        #[test]
        fn any_split_of_the_stream_gives_the_same_frames(
            input in prop::collection::vec(prop::sample::select(b"12 ab<\r\n".to_vec()), 0..200),
            cuts in prop::collection::vec(0usize..200, 0..8),
            max in 1usize..8,
            framing in prop::sample::select(vec![Framing::Auto, Framing::OctetCounting, Framing::Newline]),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut f = Framer::new(framing, max);
            let mut got = Vec::new();
            let mut from = 0;
            for to in cuts {
                got.extend(f.push(&input[from..to]));
                prop_assert!(f.current.len() <= max + 1 + MAX_DIGITS, "bounded");
                from = to;
            }
            got.extend(f.finish());
            prop_assert_eq!(got, whole(&input, framing, max));
        }
    }
}
