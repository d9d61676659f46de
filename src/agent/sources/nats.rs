//! The `nats` source: reads a JetStream stream through a durable pull consumer and acknowledges
//! each message only after its event was committed to the channels.
//!
//! **Model.** At start the source connects, looks the stream up (it must exist) and binds the
//! durable pull consumer `consumer`, creating it if missing (explicit acks, `ack_wait`,
//! `filter_subject`, delivering from the start of the stream). An existing consumer whose ack
//! policy is not explicit is refused: the server would count its messages as handled on
//! delivery. It then pulls batches of up to `batch_size` messages, waiting up to
//! `batch_timeout` for a batch to fill. Each message becomes an event: the payload is the body,
//! NATS headers become event headers (the first value of a repeated header), and the `subject`
//! header holds the message's subject.
//!
//! **Acknowledgement.** A batch is handed to `deliver_or_retry`; only once it returned Ok (every
//! required channel committed) is each message acknowledged, with a double ack (the server
//! confirms it). While the channels refuse the batch (full) the source keeps the messages
//! alive with in-progress acks every half of the consumer's AckWait, so the server does not
//! redeliver them meanwhile (not while the connection is down: those would only queue in the
//! client, and a full queue would stall the source; the server may then redeliver the batch
//! after AckWait, a duplicate). An event the channels reject for itself (too large) is logged and counted as
//! rejected by `deliver_or_retry`, and its message is acknowledged like the others.
//!
//! **What a crash does.** Messages fetched but not acknowledged (the agent was killed before
//! or after the commit, or an ack was lost) are redelivered by the server after `ack_wait`:
//! duplicates are possible, loss is not. On shutdown, the messages of a batch that was not
//! committed are nak'ed so the server redelivers them at once.
//!
//! **Server down.** The source fails with an error when it cannot connect or when its
//! connection is lost; the runtime then restarts it with back-off, logs `source failed`, and
//! `/health` reports the source as failing once that lasts `unhealthy_after`. Messages are never
//! acknowledged while the connection is down, so none is lost.
//!
//! Memory: at most `batch_size` messages, each at most the server's `max_payload` (1 MiB by
//! default), are held at once.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::AckPolicy, consumer::pull};
use async_nats::{ServerAddr, connection::State};
use futures_util::StreamExt;
use serde::Deserialize;

use super::{Stopped, deliver_or_retry};
use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Source, SourceContext};
use crate::agent::sinks::nats::{NatsAuth, check_duration, connect, parse_servers};
use crate::agent::units::HumanDuration;

/// Longest wait for connecting and for the server's answer to a management request or a
/// double ack.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time a pull gets over `batch_timeout` before the source decides the connection is gone.
const PULL_GRACE: Duration = Duration::from_secs(5);

/// The `nats` source's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// Server URL(s), comma-separated.
    pub url: String,
    /// The stream to read (must exist).
    pub stream: String,
    /// The durable pull consumer's name (created if missing). Default `tidegate`.
    #[serde(default = "default_consumer")]
    pub consumer: String,
    /// Only messages whose subject matches (when the consumer is created).
    #[serde(default)]
    pub filter_subject: Option<String>,
    /// Most messages per channel transaction. Default 100.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest wait for a batch to fill. Default 1 s.
    #[serde(default = "default_batch_timeout")]
    pub batch_timeout: HumanDuration,
    /// The consumer's AckWait when it is created. Default 30 s.
    #[serde(default = "default_ack_wait")]
    pub ack_wait: HumanDuration,
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

fn default_consumer() -> String {
    "tidegate".into()
}
fn default_batch_size() -> usize {
    100
}
fn default_batch_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_ack_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl NatsSourceConfig {
    /// Checks the keys; the error names the key at fault.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        parse_servers(&self.url).map_err(|e| ("url", e))?;
        for (key, v) in [("stream", &self.stream), ("consumer", &self.consumer)] {
            if v.is_empty() || v.contains(['.', '*', '>', ' ']) || v.chars().any(char::is_control) {
                return Err((key, format!("{v:?} is not a valid name")));
            }
        }
        if let Some(f) = &self.filter_subject
            && (f.is_empty() || f.contains(char::is_whitespace))
        {
            return Err(("filter_subject", format!("{f:?} is not a subject")));
        }
        if self.batch_size == 0 {
            return Err(("batch_size", "must be at least 1".into()));
        }
        if self.batch_timeout.0 < Duration::from_millis(10) {
            return Err(("batch_timeout", "must be at least 10ms".into()));
        }
        if self.ack_wait.0 < Duration::from_secs(1) {
            return Err(("ack_wait", "must be at least 1s".into()));
        }
        check_duration("batch_timeout", self.batch_timeout.0)?;
        check_duration("ack_wait", self.ack_wait.0)?;
        NatsAuth::from_keys(
            self.credentials.as_ref(),
            self.token.as_ref(),
            self.user.as_ref(),
            self.password.as_ref(),
        )?;
        Ok(())
    }
}

/// Builds a `nats` source (it connects when it runs).
pub fn build(name: &str, cfg: NatsSourceConfig) -> Result<Box<dyn Source>, ComponentError> {
    let config_err =
        |(key, e): (&str, String)| ComponentError::Config(format!("source {name}: {key}: {e}"));
    cfg.check().map_err(config_err)?;
    let servers = parse_servers(&cfg.url).map_err(|e| config_err(("url", e)))?;
    let auth = NatsAuth::from_keys(
        cfg.credentials.as_ref(),
        cfg.token.as_ref(),
        cfg.user.as_ref(),
        cfg.password.as_ref(),
    )
    .map_err(config_err)?;
    Ok(Box::new(NatsSource {
        name: name.to_owned(),
        cfg,
        servers,
        auth,
    }))
}

/// The `nats` source.
pub struct NatsSource {
    name: String,
    cfg: NatsSourceConfig,
    servers: Vec<ServerAddr>,
    auth: NatsAuth,
}

fn other(e: impl std::fmt::Display) -> ComponentError {
    ComponentError::Other(e.to_string())
}

impl Source for NatsSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let this = *self;
            this.run_connected(&ctx).await
        })
    }
}

impl NatsSource {
    /// Connects and binds the consumer, then pulls until stopped or the connection is lost.
    async fn run_connected(&self, ctx: &SourceContext) -> Result<(), ComponentError> {
        let name = &self.name;
        let setup = async {
            let client = connect(
                &format!("source {name}"),
                &self.servers,
                &self.auth,
                REQUEST_TIMEOUT,
            )
            .await
            .map_err(other)?;
            let consumer = self.bind(&client).await?;
            Ok::<_, ComponentError>((client, consumer))
        };
        let (client, consumer) = tokio::select! {
            () = ctx.shutdown.cancelled() => return Ok(()),
            r = setup => r?,
        };
        // The consumer's own AckWait (an existing consumer keeps its own).
        let ack_wait = match consumer.cached_info().config.ack_wait {
            d if d.is_zero() => self.cfg.ack_wait.0,
            d => d,
        };
        let progress_every = (ack_wait / 2).max(Duration::from_millis(100));
        loop {
            if client.connection_state() != State::Connected {
                return Err(other(format!(
                    "lost the connection to NATS ({})",
                    self.cfg.url
                )));
            }
            // A pull cut short by the shutdown drops its messages unacknowledged: the server
            // redelivers them after ack_wait.
            let messages = tokio::select! {
                () = ctx.shutdown.cancelled() => return Ok(()),
                m = self.pull(&consumer) => m?,
            };
            if messages.is_empty() {
                continue;
            }
            let events = messages.iter().map(to_event).collect::<Vec<_>>();
            match self
                .deliver(ctx, &client, events, &messages, progress_every)
                .await
            {
                Ok(()) => self.ack(&messages).await,
                Err(Stopped::Shutdown(_)) => {
                    // Not committed: ask for redelivery now rather than after ack_wait. Bounded:
                    // with the server away a publish waits for room in the client's command
                    // queue, for ever once it is full (the server then redelivers after
                    // ack_wait anyway).
                    if client.connection_state() == State::Connected {
                        let nak = async {
                            for m in &messages {
                                let _ = m.ack_with(AckKind::Nak(None)).await;
                            }
                            let _ = client.flush().await;
                        };
                        let _ = tokio::time::timeout(REQUEST_TIMEOUT, nak).await;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Looks the stream up and binds (or creates) the durable pull consumer.
    async fn bind(
        &self,
        client: &async_nats::Client,
    ) -> Result<jetstream::consumer::PullConsumer, ComponentError> {
        let name = &self.name;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        let stream_name = &self.cfg.stream;
        let stream = js
            .get_stream(stream_name)
            .await
            .map_err(|e| other(format!("stream {stream_name}: {e}")))?;
        let consumer_name = &self.cfg.consumer;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                consumer_name,
                pull::Config {
                    durable_name: Some(consumer_name.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.cfg.ack_wait.0,
                    filter_subject: self.cfg.filter_subject.clone().unwrap_or_default(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                other(format!(
                    "consumer {consumer_name} on stream {stream_name}: {e}"
                ))
            })?;
        let info = consumer.cached_info();
        if info.config.ack_policy != AckPolicy::Explicit {
            return Err(ComponentError::Config(format!(
                "source {name}: consumer {consumer_name} exists with ack policy {:?}; \
                 the source needs explicit acks (delete the consumer or name another)",
                info.config.ack_policy
            )));
        }
        let want_filter = self.cfg.filter_subject.clone().unwrap_or_default();
        if info.config.filter_subject != want_filter {
            tracing::warn!(source = %name, consumer = %consumer_name,
                existing = %info.config.filter_subject, configured = %want_filter,
                "the existing consumer keeps its own filter_subject");
        }
        tracing::info!(source = %name, stream = %stream_name, consumer = %consumer_name,
            pending = info.num_pending, "nats source connected");
        Ok(consumer)
    }

    /// One pull: up to `batch_size` messages, waiting at most `batch_timeout` for them.
    async fn pull(
        &self,
        consumer: &jetstream::consumer::PullConsumer,
    ) -> Result<Vec<jetstream::Message>, ComponentError> {
        let batch_timeout = self.cfg.batch_timeout.0;
        let pull = async {
            let mut batch = consumer
                .batch()
                .max_messages(self.cfg.batch_size)
                .expires(batch_timeout)
                .messages()
                .await
                .map_err(|e| other(format!("pull from consumer {}: {e}", self.cfg.consumer)))?;
            let mut out = Vec::new();
            while let Some(m) = batch.next().await {
                match m {
                    Ok(m) => out.push(m),
                    Err(e) if out.is_empty() => {
                        return Err(other(format!(
                            "pull from consumer {}: {e}",
                            self.cfg.consumer
                        )));
                    }
                    // Deliver what arrived; the next pull reports the problem again.
                    Err(e) => {
                        tracing::warn!(source = %self.name, error = %e, "pull ended early");
                        break;
                    }
                }
                if out.len() >= self.cfg.batch_size {
                    break;
                }
            }
            Ok(out)
        };
        match tokio::time::timeout(batch_timeout + PULL_GRACE, pull).await {
            Ok(r) => r,
            Err(_) => Err(other(format!(
                "no answer to a pull within {:?}: the connection to NATS is lost?",
                batch_timeout + PULL_GRACE
            ))),
        }
    }

    /// `deliver_or_retry`, sending in-progress acks `every` (half the consumer's AckWait) while
    /// it waits, so the server does not redeliver the batch meanwhile.
    ///
    /// While the connection is down no in-progress ack is sent: a publish then only queues in
    /// the client's bounded command queue, and once that is full it waits for the server, which
    /// would stall the delivery (and the shutdown) for as long as the server is away. A round of
    /// in-progress acks is also cut off after `every` (at most [`REQUEST_TIMEOUT`]).
    async fn deliver(
        &self,
        ctx: &SourceContext,
        client: &async_nats::Client,
        events: Vec<Event>,
        messages: &[jetstream::Message],
        every: Duration,
    ) -> Result<(), Stopped> {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let deliver = deliver_or_retry(ctx, events);
        tokio::pin!(deliver);
        loop {
            tokio::select! {
                r = &mut deliver => return r,
                _ = tick.tick() => {
                    if client.connection_state() != State::Connected {
                        tracing::debug!(source = %self.name, "delivery still running; no in-progress acks while disconnected");
                        continue;
                    }
                    tracing::debug!(source = %self.name, messages = messages.len(), "delivery still running; in-progress acks");
                    let progress = async {
                        for m in messages {
                            if let Err(e) = m.ack_with(AckKind::Progress).await {
                                tracing::warn!(source = %self.name, error = %e, "in-progress ack failed");
                                break;
                            }
                        }
                    };
                    if tokio::time::timeout(every.min(REQUEST_TIMEOUT), progress).await.is_err() {
                        tracing::warn!(source = %self.name, "in-progress acks not sent within {:?}; the server may redeliver the batch (a duplicate)", every.min(REQUEST_TIMEOUT));
                    }
                }
            }
        }
    }

    /// Acknowledges committed messages (double acks, all at once). A failed ack only means the
    /// server redelivers that message after `ack_wait` (a duplicate).
    async fn ack(&self, messages: &[jetstream::Message]) {
        let acks = futures_util::future::join_all(messages.iter().map(|m| m.double_ack()));
        match tokio::time::timeout(REQUEST_TIMEOUT, acks).await {
            Ok(results) => {
                let failed = results.iter().filter(|r| r.is_err()).count();
                if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                    tracing::warn!(source = %self.name, failed, error = %e,
                        "acks failed; the server redelivers those messages after ack_wait");
                }
            }
            Err(_) => tracing::warn!(source = %self.name, messages = messages.len(),
                "acks not confirmed within {REQUEST_TIMEOUT:?}; unconfirmed messages may be redelivered"),
        }
    }
}

/// A message as an event: payload, headers (first value of each), and `subject`.
fn to_event(m: &jetstream::Message) -> Event {
    let mut event = Event::new(m.payload.to_vec());
    if let Some(headers) = &m.headers {
        for (k, values) in headers.iter() {
            if let Some(v) = values.first() {
                event
                    .headers_mut()
                    .insert(k.to_string(), v.as_str().to_owned());
            }
        }
    }
    event
        .headers_mut()
        .insert("subject".to_owned(), m.subject.as_str().to_owned());
    event
}
