//! The `nats` sink: publishes each event to NATS JetStream and lets the runner commit the take
//! only once the server acknowledged (PubAck) every event of the batch.
//!
//! **Model.** Every event of a batch is turned into a NATS message first (body = payload,
//! event headers = NATS headers, subject = `subject`, or the value of the event's
//! `subject_header` header when it has one); an event that cannot be one (a header name or value
//! NATS cannot carry, an empty or malformed subject) fails the whole batch with an error naming
//! the event and the header, before anything is published. Then all messages are published
//! (pipelined) and every PubAck is awaited, all within `timeout`. `deliver` returns Ok only when
//! every message has its PubAck; any error, a missing PubAck, or `no responders` (no stream
//! captures the subject) is an error, and the runner rolls the take back, backs off, marks
//! `/health` and retries: nothing is lost.
//!
//! **Duplicates.** A batch whose PubAcks were lost (the server went away after storing some
//! messages) is published again: at-least-once. With `msg_id_header = "id"`, an event carrying
//! that header is published with `Nats-Msg-Id` set to its value, so JetStream drops a retry of it
//! within the stream's duplicate window (2 minutes by default) and answers `duplicate`, which
//! counts as acknowledged. The sink never invents an id itself: only an id stored in the event
//! (for instance by the `uuid` interceptor upstream of the channel) is stable across a rollback
//! and a retry.
//!
//! **Connection.** The sink connects on its first batch (and again after a failed first
//! connection); once connected, the client reconnects by itself, forever, and logs each
//! disconnection and reconnection. While the client is not connected, a batch fails at once
//! without publishing anything (a publish would only be queued in the client and sent on
//! reconnection, on top of the runner's retry), and the runner backs off. A batch published
//! just before the connection broke fails after `timeout`. With `stream` set, the sink checks at connection time that the stream exists
//! (`create_stream = true`: creates it with `stream_subjects`, default `[subject]`, if missing).
//!
//! The connection helpers here ([`NatsAuth`], [`parse_servers`], [`connect`]) are shared with
//! the `nats` source.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage as Publish};
use async_nats::{HeaderMap, HeaderName, HeaderValue, ServerAddr};
use serde::Deserialize;

use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Sink, SinkError};
use crate::agent::units::HumanDuration;

/// The `nats` sink's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URL(s), comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The subject events are published to.
    pub subject: String,
    /// An event with this header is published to the header's value instead of `subject`.
    #[serde(default)]
    pub subject_header: Option<String>,
    /// The stream to check (or, with `create_stream`, create) at connection time.
    #[serde(default)]
    pub stream: Option<String>,
    /// Create `stream` if it is missing. Default false.
    #[serde(default)]
    pub create_stream: bool,
    /// Subjects of a created stream. Default `[subject]`.
    #[serde(default)]
    pub stream_subjects: Option<Vec<String>>,
    /// Longest wait for a batch's PubAcks (and for connecting). Default 10 s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// An event with this header is published with `Nats-Msg-Id` = its value (JetStream
    /// de-duplication of retries).
    #[serde(default)]
    pub msg_id_header: Option<String>,
    /// A `.creds` file (JWT + NKey seed).
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// A token.
    #[serde(default)]
    pub token: Option<String>,
    /// A user name (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// A password (with `user`).
    #[serde(default)]
    pub password: Option<String>,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// How a `nats` sink or source authenticates: the `credentials`, `token`, `user` and
/// `password` keys, at most one way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// No authentication.
    None,
    /// A `.creds` file.
    Credentials(PathBuf),
    /// A token.
    Token(String),
    /// User and password.
    UserPassword(String, String),
}

impl NatsAuth {
    /// Checks the four keys; the error names the key at fault.
    pub fn from_keys(
        credentials: Option<&PathBuf>,
        token: Option<&String>,
        user: Option<&String>,
        password: Option<&String>,
    ) -> Result<NatsAuth, (&'static str, String)> {
        let ways = usize::from(credentials.is_some())
            + usize::from(token.is_some())
            + usize::from(user.is_some() || password.is_some());
        if ways > 1 {
            let key = if token.is_some() { "token" } else { "user" };
            return Err((
                key,
                "give at most one of credentials, token, or user + password".into(),
            ));
        }
        Ok(match (credentials, token, user, password) {
            (Some(c), ..) => NatsAuth::Credentials(c.clone()),
            (_, Some(t), ..) => NatsAuth::Token(t.clone()),
            (_, _, Some(u), Some(p)) => NatsAuth::UserPassword(u.clone(), p.clone()),
            (_, _, Some(_), None) => return Err(("password", "user needs a password".into())),
            (_, _, None, Some(_)) => return Err(("user", "password needs a user".into())),
            _ => NatsAuth::None,
        })
    }
}

/// Parses `url` (a comma-separated list of server URLs).
pub fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, String> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| ServerAddr::from_str(s).map_err(|e| format!("{s:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("no server URL".into());
    }
    Ok(servers)
}

/// Checks a NATS subject to publish to: not empty, no whitespace, no empty token, no wildcard.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("the subject is empty".into());
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("subject {subject:?} contains whitespace"));
    }
    if subject.split('.').any(str::is_empty) {
        return Err(format!("subject {subject:?} has an empty token"));
    }
    if subject.split('.').any(|t| t == "*" || t == ">") {
        return Err(format!(
            "subject {subject:?} has a wildcard (cannot publish to it)"
        ));
    }
    Ok(())
}

/// The longest duration key of a `nats` sink or source (`timeout`, `batch_timeout`,
/// `ack_wait`): longer ones would overflow the time arithmetic (a panic).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Checks that duration `key` is at most [`MAX_DURATION`].
pub fn check_duration(key: &'static str, d: Duration) -> Result<(), (&'static str, String)> {
    if d > MAX_DURATION {
        return Err((
            key,
            format!("must be at most {}", HumanDuration(MAX_DURATION)),
        ));
    }
    Ok(())
}

/// Connects to `servers`; `who` (`sink n1`) names the component in the connection-event logs.
/// Fails (does not retry) when no server answers within `timeout`; once connected, the client
/// reconnects by itself, forever.
pub async fn connect(
    who: &str,
    servers: &[ServerAddr],
    auth: &NatsAuth,
    timeout: Duration,
) -> Result<async_nats::Client, String> {
    let who_cb = who.to_owned();
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("tidegate {who}"))
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .max_reconnects(None)
        .event_callback(move |event| {
            let who = who_cb.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(component = %who, "NATS connection up")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(component = %who, "NATS connection lost; reconnecting")
                    }
                    other => tracing::warn!(component = %who, event = %other, "NATS event"),
                }
            }
        });
    opts = match auth {
        NatsAuth::None => opts,
        NatsAuth::Token(t) => opts.token(t.clone()),
        NatsAuth::UserPassword(u, p) => opts.user_and_password(u.clone(), p.clone()),
        NatsAuth::Credentials(path) => opts
            .credentials_file(path)
            .await
            .map_err(|e| format!("credentials {}: {e}", path.display()))?,
    };
    let addrs: Vec<ServerAddr> = servers.to_vec();
    match tokio::time::timeout(timeout + Duration::from_secs(1), opts.connect(addrs)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("cannot connect to NATS: {e}")),
        Err(_) => Err(format!("cannot connect to NATS within {timeout:?}")),
    }
}

impl NatsSinkConfig {
    /// Checks the keys; the error names the key at fault.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        parse_servers(&self.url).map_err(|e| ("url", e))?;
        check_subject(&self.subject).map_err(|e| ("subject", e))?;
        if self.create_stream && self.stream.is_none() {
            return Err(("stream", "create_stream = true needs a stream name".into()));
        }
        if self.stream_subjects.is_some() && !self.create_stream {
            return Err((
                "stream_subjects",
                "only used with create_stream = true".into(),
            ));
        }
        if let Some(s) = &self.stream
            && (s.is_empty() || s.contains(['.', '*', '>', ' ']))
        {
            return Err(("stream", format!("{s:?} is not a stream name")));
        }
        if self.stream_subjects.as_ref().is_some_and(Vec::is_empty) {
            return Err(("stream_subjects", "must not be empty".into()));
        }
        if self.timeout.0.is_zero() {
            return Err(("timeout", "must be more than 0".into()));
        }
        check_duration("timeout", self.timeout.0)?;
        for (key, v) in [
            ("subject_header", &self.subject_header),
            ("msg_id_header", &self.msg_id_header),
        ] {
            if v.as_deref() == Some("") {
                return Err((key, "must not be empty".into()));
            }
        }
        NatsAuth::from_keys(
            self.credentials.as_ref(),
            self.token.as_ref(),
            self.user.as_ref(),
            self.password.as_ref(),
        )?;
        Ok(())
    }
}

/// Builds a `nats` sink (it connects on its first batch).
pub fn build(name: &str, cfg: NatsSinkConfig) -> Result<Box<dyn Sink>, ComponentError> {
    Ok(Box::new(NatsSink::new(name, cfg)?))
}

/// The `nats` sink.
pub struct NatsSink {
    name: String,
    cfg: NatsSinkConfig,
    servers: Vec<ServerAddr>,
    auth: NatsAuth,
    js: Option<jetstream::Context>,
}

impl NatsSink {
    /// Checks `cfg`.
    pub fn new(name: &str, cfg: NatsSinkConfig) -> Result<Self, ComponentError> {
        cfg.check()
            .map_err(|(key, e)| ComponentError::Config(format!("sink {name}: {key}: {e}")))?;
        let servers = parse_servers(&cfg.url)
            .map_err(|e| ComponentError::Config(format!("sink {name}: url: {e}")))?;
        let auth = NatsAuth::from_keys(
            cfg.credentials.as_ref(),
            cfg.token.as_ref(),
            cfg.user.as_ref(),
            cfg.password.as_ref(),
        )
        .map_err(|(key, e)| ComponentError::Config(format!("sink {name}: {key}: {e}")))?;
        Ok(NatsSink {
            name: name.to_owned(),
            cfg,
            servers,
            auth,
            js: None,
        })
    }

    /// The JetStream context, connecting (and checking or creating the stream) first if needed.
    async fn context(&mut self) -> Result<jetstream::Context, SinkError> {
        if let Some(js) = &self.js {
            return Ok(js.clone());
        }
        let timeout = self.cfg.timeout.0;
        let client = connect(
            &format!("sink {}", self.name),
            &self.servers,
            &self.auth,
            timeout,
        )
        .await
        .map_err(SinkError::Connection)?;
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client);
        if let Some(stream) = &self.cfg.stream {
            if self.cfg.create_stream {
                let subjects = self
                    .cfg
                    .stream_subjects
                    .clone()
                    .unwrap_or_else(|| vec![self.cfg.subject.clone()]);
                js.get_or_create_stream(jetstream::stream::Config {
                    name: stream.clone(),
                    subjects,
                    ..Default::default()
                })
                .await
                .map_err(|e| SinkError::Connection(format!("stream {stream}: {e}")))?;
            } else {
                js.get_stream(stream).await.map_err(|e| {
                    SinkError::Connection(format!("stream {stream}: {e} (create_stream is false)"))
                })?;
            }
        }
        tracing::info!(sink = %self.name, url = %self.cfg.url, "nats sink connected");
        self.js = Some(js.clone());
        Ok(js)
    }

    /// The subject and message of `event` (index `i` of the batch, for errors).
    fn message(&self, i: usize, event: &Event) -> Result<(String, Publish), SinkError> {
        let bad = |why: String| SinkError::Delivery(format!("event {i} of the batch: {why}"));
        let subject = match self
            .cfg
            .subject_header
            .as_ref()
            .and_then(|h| event.headers().get(h))
        {
            Some(s) => {
                check_subject(s).map_err(|e| {
                    bad(format!(
                        "header {:?}: {e}",
                        self.cfg.subject_header.as_deref().unwrap_or_default()
                    ))
                })?;
                s.clone()
            }
            None => self.cfg.subject.clone(),
        };
        let mut headers = HeaderMap::new();
        for (k, v) in event.headers() {
            if k.is_empty() {
                return Err(bad("an empty header name cannot be a NATS header".into()));
            }
            let name = HeaderName::from_str(k)
                .map_err(|e| bad(format!("header name {k:?} cannot be a NATS header: {e}")))?;
            let value = HeaderValue::from_str(v).map_err(|e| {
                bad(format!(
                    "the value of header {k:?} cannot be a NATS header value: {e}"
                ))
            })?;
            headers.insert(name, value);
        }
        let mut publish = Publish::build().payload(event.body().to_vec().into());
        if !event.headers().is_empty() {
            publish = publish.headers(headers);
        }
        if let Some(id) = self
            .cfg
            .msg_id_header
            .as_ref()
            .and_then(|h| event.headers().get(h))
        {
            HeaderValue::from_str(id).map_err(|e| bad(format!("message id {id:?}: {e}")))?;
            publish = publish.message_id(id.as_str());
        }
        Ok((subject, publish))
    }

    async fn publish(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        let messages = batch
            .iter()
            .enumerate()
            .map(|(i, e)| self.message(i, e))
            .collect::<Result<Vec<_>, _>>()?;
        let js = self.context().await?;
        // While the client reconnects, a publish is only queued in it (up to 2048 commands)
        // and sent when the server is back: on top of the retry of this batch, which the
        // runner makes after the timeout. Fail at once instead.
        if js.client().connection_state() != async_nats::connection::State::Connected {
            return Err(SinkError::Connection(format!(
                "not connected to NATS ({}); the client is reconnecting",
                self.cfg.url
            )));
        }
        let timeout = self.cfg.timeout.0;
        let n = messages.len();
        let all = async {
            let mut acks = Vec::with_capacity(n);
            for (i, (subject, msg)) in messages.into_iter().enumerate() {
                let ack = js
                    .send_publish(subject.clone(), msg)
                    .await
                    .map_err(|e| publish_error(i, &subject, &e))?;
                acks.push((subject, ack));
            }
            for (i, (subject, ack)) in acks.into_iter().enumerate() {
                ack.await.map_err(|e| {
                    SinkError::Delivery(format!(
                        "event {i} of the batch (subject {subject}): no PubAck: {e}"
                    ))
                })?;
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, all).await {
            Ok(r) => r,
            Err(_) => Err(SinkError::Connection(format!(
                "not every PubAck of a batch of {n} within {timeout:?} (timeout)"
            ))),
        }
    }
}

fn publish_error(i: usize, subject: &str, e: &jetstream::context::PublishError) -> SinkError {
    use jetstream::context::PublishErrorKind as K;
    let msg = format!("event {i} of the batch (subject {subject}): {e}");
    match e.kind() {
        K::MaxPayloadExceeded
        | K::StreamNotFound
        | K::WrongLastMessageId
        | K::WrongLastSequence => SinkError::Delivery(msg),
        _ => SinkError::Connection(msg),
    }
}

impl Sink for NatsSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            self.publish(batch).await
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            if let Some(js) = self.js.take() {
                let client = js.client();
                let _ = tokio::time::timeout(self.cfg.timeout.0, client.flush()).await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Result<NatsSinkConfig, String> {
        let text = format!("url = \"nats://127.0.0.1:4222\"\nsubject = \"events.app\"\n{extra}");
        toml::from_str(&text).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_are_checked_and_the_error_names_the_key() {
        let ok = cfg("").unwrap_or_else(|e| panic!("{e}"));
        assert!(ok.check().is_ok());
        assert_eq!(ok.timeout.0, Duration::from_secs(10));
        let key_of = |extra: &str| {
            cfg(extra)
                .unwrap_or_else(|e| panic!("{e}"))
                .check()
                .err()
                .map(|(k, _)| k)
        };
        assert_eq!(key_of("create_stream = true"), Some("stream"));
        assert_eq!(
            key_of("stream_subjects = [\"a.>\"]"),
            Some("stream_subjects")
        );
        assert_eq!(key_of("stream = \"A.B\""), Some("stream"));
        assert_eq!(key_of("timeout = \"0s\""), Some("timeout"));
        assert_eq!(
            key_of("timeout = \"18446744073709551615s\""),
            Some("timeout"),
            "(overflowed `timeout + 1s` when connecting: a panic)"
        );
        assert_eq!(key_of("timeout = \"25h\""), Some("timeout"));
        assert_eq!(key_of("timeout = \"24h\""), None);
        assert_eq!(
            key_of("token = \"t\"\nuser = \"u\"\npassword = \"p\""),
            Some("token")
        );
        assert_eq!(key_of("user = \"u\""), Some("password"));
        assert_eq!(key_of("subject_header = \"\""), Some("subject_header"));
        assert!(
            cfg("subjekt = \"x\"").is_err_and(|e| e.contains("subjekt")),
            "unknown keys are errors"
        );
        let bad_url = NatsSinkConfig {
            url: "nats://a:1, ,".into(),
            ..ok.clone()
        };
        assert!(bad_url.check().is_ok(), "empty list items are skipped");
        let no_url = NatsSinkConfig {
            url: " , ".into(),
            ..ok.clone()
        };
        assert!(matches!(no_url.check(), Err(("url", _))));
        let wildcard = NatsSinkConfig {
            subject: "events.>".into(),
            ..ok
        };
        assert!(matches!(wildcard.check(), Err(("subject", _))));
    }

    #[test]
    fn events_that_cannot_be_messages_name_the_event_and_header() {
        let mut c = cfg("subject_header = \"to\"").unwrap_or_else(|e| panic!("{e}"));
        c.msg_id_header = Some("id".into());
        let sink = NatsSink::new("n1", c).unwrap_or_else(|e| panic!("{e}"));
        let good = Event::new(b"x".to_vec())
            .with_header("to", "other.subject")
            .with_header("id", "abc");
        let (subject, _) = sink.message(0, &good).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(subject, "other.subject");
        let (subject, _) = sink
            .message(0, &Event::new(b"x".to_vec()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(subject, "events.app");
        let bad_name = Event::new(b"x".to_vec()).with_header("a:b", "v");
        let err = sink.message(3, &bad_name).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("event 3") && e.contains("\"a:b\"")),
            "{err:?}"
        );
        let bad_value = Event::new(b"x".to_vec()).with_header("k", "a\r\nb");
        let err = sink.message(1, &bad_value).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("event 1") && e.contains("\"k\"")),
            "{err:?}"
        );
        let empty_name = Event::new(b"x".to_vec()).with_header("", "v");
        assert!(matches!(
            sink.message(2, &empty_name),
            Err(SinkError::Delivery(e)) if e.contains("event 2")
        ));
        let bad_subject = Event::new(b"x".to_vec()).with_header("to", "a b");
        assert!(matches!(
            sink.message(0, &bad_subject),
            Err(SinkError::Delivery(_))
        ));
    }
}
