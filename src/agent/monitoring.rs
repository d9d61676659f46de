//! Heartbeats, counters and the monitoring endpoints.
//!
//! Every component has a [`Heartbeat`] (state, last success, consecutive failures); the
//! runtime keeps them, with the channels and the counters, in the [`Registry`] that the HTTP
//! endpoints read:
//!
//! - `GET /metrics`: Prometheus text format (names in the table below).
//! - `GET /metrics.json`: Flume's JSON shape, `{"CHANNEL.c1": {"ChannelSize": "0", ...},
//!   "SOURCE.r1": {...}, "SINK.k1": {...}}`, every value a string.
//! - `GET /health`: 200 `{"status":"ok"}`, or 503 with `{"status":"unhealthy","reasons":[...]}`
//!   when a channel is poisoned, a sink has failed for longer than `unhealthy_after` while its
//!   channel holds events, a source has failed to deliver for longer than that, or a component
//!   is not running (yet).
//! - `GET /ready`: 503 until every channel has finished replay, and whenever a channel is not
//!   open (a reload is reopening it, or it did not reopen), else 200.
//!
//! | Flume name | Prometheus metric (label `channel`) |
//! |---|---|
//! | ChannelSize | `tidegate_channel_size` (gauge) |
//! | ChannelCapacity | `tidegate_channel_capacity` (gauge) |
//! | ChannelFillPercentage | `tidegate_channel_fill_percentage` (gauge) |
//! | EventPutAttemptCount | `tidegate_channel_event_put_attempts_total` |
//! | EventPutSuccessCount | `tidegate_channel_event_put_successes_total` |
//! | EventPutErrorCount | `tidegate_channel_event_put_errors_total` |
//! | EventTakeAttemptCount | `tidegate_channel_event_take_attempts_total` |
//! | EventTakeSuccessCount | `tidegate_channel_event_take_successes_total` |
//! | EventTakeErrorCount | `tidegate_channel_event_take_errors_total` |
//! | CheckpointWriteErrorCount | `tidegate_channel_checkpoint_write_errors_total` |
//! | Open | `tidegate_channel_open` (gauge, 0 or 1) |
//! | Unhealthy | `tidegate_channel_unhealthy` (gauge, 0 or 1; 1 = poisoned) |
//!
//! Sources (label `source`): `tidegate_source_events_received_total` (EventReceivedCount),
//! `tidegate_source_events_accepted_total` (EventAcceptedCount),
//! `tidegate_source_events_rejected_total` (EventRejectedCount),
//! `tidegate_source_append_batches_total` (AppendBatchAcceptedCount). Sinks (label `sink`):
//! `tidegate_sink_batches_complete_total` (BatchCompleteCount),
//! `tidegate_sink_batches_underflow_total` (BatchUnderflowCount),
//! `tidegate_sink_batches_empty_total` (BatchEmptyCount),
//! `tidegate_sink_event_drain_attempts_total` (EventDrainAttemptCount),
//! `tidegate_sink_event_drain_successes_total` (EventDrainSuccessCount),
//! `tidegate_sink_delivery_failures_total` (EventWriteFail),
//! `tidegate_sink_connection_failures_total` (ConnectionFailedCount). Every component:
//! `tidegate_component_consecutive_failures` (gauge, labels `kind`, `name`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};

use super::component::SourceCounters;
use crate::Channel;

/// What a component is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentState {
    /// Being built or waiting for its channels.
    Starting,
    /// Working (its last attempt, if any, succeeded).
    Running,
    /// Its last attempt failed; it retries.
    Failing,
    /// A finite source that reached its end.
    Finished,
    /// Stopped.
    Stopped,
}

impl ComponentState {
    fn as_str(self) -> &'static str {
        match self {
            ComponentState::Starting => "starting",
            ComponentState::Running => "running",
            ComponentState::Failing => "failing",
            ComponentState::Finished => "finished",
            ComponentState::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
struct Beat {
    state: ComponentState,
    last_success: Option<SystemTime>,
    consecutive_failures: u64,
    failing_since: Option<Instant>,
    last_error: Option<String>,
}

fn not_running(kind: &str, name: &str, hb: &HeartbeatSnapshot) -> String {
    match &hb.last_error {
        Some(e) => format!("{kind} {name} is {}: {e}", hb.state.as_str()),
        None => format!("{kind} {name} is {}", hb.state.as_str()),
    }
}

/// A component's heartbeat: state, last success, consecutive failures.
#[derive(Debug)]
pub struct Heartbeat(Mutex<Beat>);

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat(Mutex::new(Beat {
            state: ComponentState::Starting,
            last_success: None,
            consecutive_failures: 0,
            failing_since: None,
            last_error: None,
        }))
    }
}

/// A copy of a heartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatSnapshot {
    /// State.
    pub state: ComponentState,
    /// When it last succeeded.
    pub last_success: Option<SystemTime>,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// How long it has been failing.
    pub failing_for: Option<Duration>,
    /// The last failure.
    pub last_error: Option<String>,
}

impl Heartbeat {
    /// Records a success (the component is running).
    pub fn success(&self) {
        let mut b = self.0.lock();
        b.state = ComponentState::Running;
        b.last_success = Some(SystemTime::now());
        b.consecutive_failures = 0;
        b.failing_since = None;
    }
    /// Records a failure.
    pub fn failure(&self, error: impl ToString) {
        let mut b = self.0.lock();
        b.state = ComponentState::Failing;
        b.consecutive_failures += 1;
        b.failing_since.get_or_insert_with(Instant::now);
        b.last_error = Some(error.to_string());
    }
    /// Sets the state without counting anything (a failure streak lasts until the next success).
    pub fn set_state(&self, state: ComponentState) {
        self.0.lock().state = state;
    }
    /// A copy.
    pub fn snapshot(&self) -> HeartbeatSnapshot {
        let b = self.0.lock();
        HeartbeatSnapshot {
            state: b.state,
            last_success: b.last_success,
            consecutive_failures: b.consecutive_failures,
            failing_for: b.failing_since.map(|t| t.elapsed()),
            last_error: b.last_error.clone(),
        }
    }
}

/// A sink's counters (Flume's sink counter names, in snake_case).
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Batches of exactly `batch_size` events delivered.
    pub batch_complete: AtomicU64,
    /// Batches of fewer events delivered.
    pub batch_underflow: AtomicU64,
    /// Takes that found the channel empty.
    pub batch_empty: AtomicU64,
    /// Events handed to the sink.
    pub event_drain_attempt: AtomicU64,
    /// Events delivered and committed.
    pub event_drain_success: AtomicU64,
    /// Batches the sink failed to deliver (rolled back, retried).
    pub delivery_failures: AtomicU64,
    /// Of those, failures to reach downstream.
    pub connection_failures: AtomicU64,
}

/// A source as the registry sees it.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    /// Its type name.
    pub kind: String,
    /// Its counters.
    pub counters: Arc<SourceCounters>,
    /// Its heartbeat.
    pub heartbeat: Arc<Heartbeat>,
}

/// A sink as the registry sees it.
#[derive(Debug, Clone)]
pub struct SinkEntry {
    /// Its type name.
    pub kind: String,
    /// The channel it drains.
    pub channel: String,
    /// The sink group it belongs to, if any.
    pub group: Option<String>,
    /// Its counters.
    pub counters: Arc<SinkCounters>,
    /// Its heartbeat.
    pub heartbeat: Arc<Heartbeat>,
}

/// A channel as the registry sees it: `None` while it replays.
#[derive(Clone)]
pub struct ChannelEntry {
    /// "file" or "memory".
    pub kind: &'static str,
    /// The open channel, once replay finished.
    pub channel: Option<Arc<dyn Channel>>,
    /// Why it did not open, if it failed.
    pub error: Option<String>,
}

/// Everything the endpoints report; the runtime keeps it current.
pub struct Registry {
    /// Channels by name.
    pub channels: RwLock<BTreeMap<String, ChannelEntry>>,
    /// Sources by name.
    pub sources: RwLock<BTreeMap<String, SourceEntry>>,
    /// Sinks by name.
    pub sinks: RwLock<BTreeMap<String, SinkEntry>>,
    /// The first opening of the channels has finished (set once at start). Readiness also
    /// needs every channel to be open now: see [`Registry::is_ready`].
    pub started: AtomicBool,
    /// How long a failure may last before `/health` reports it.
    pub unhealthy_after: Duration,
}

impl Registry {
    /// An empty registry.
    pub fn new(unhealthy_after: Duration) -> Self {
        Registry {
            channels: RwLock::new(BTreeMap::new()),
            sources: RwLock::new(BTreeMap::new()),
            sinks: RwLock::new(BTreeMap::new()),
            started: AtomicBool::new(false),
            unhealthy_after,
        }
    }

    /// Ready: the channels were opened at start and every channel is open now (none replaying,
    /// none that a reload closed and could not reopen).
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Relaxed)
            && self.channels.read().values().all(|c| c.channel.is_some())
    }

    /// Why the agent is unhealthy; empty when it is healthy.
    pub fn health_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let channels = self.channels.read();
        let mut backlog = BTreeMap::new();
        for (name, c) in channels.iter() {
            match &c.channel {
                None => match &c.error {
                    Some(e) => out.push(format!("channel {name} did not open: {e}")),
                    None => out.push(format!("channel {name} is replaying")),
                },
                Some(ch) => {
                    let s = ch.stats();
                    if let Some(p) = &s.poisoned {
                        out.push(format!("channel {name} is poisoned: {p}"));
                    }
                    backlog.insert(name.clone(), s.size + s.in_flight);
                }
            }
        }
        let sinks = self.sinks.read();
        let failing_long = |k: &SinkEntry| {
            k.heartbeat
                .snapshot()
                .failing_for
                .is_some_and(|d| d >= self.unhealthy_after)
        };
        for (name, k) in sinks.iter() {
            let hb = k.heartbeat.snapshot();
            let queued = backlog.get(&k.channel).copied().unwrap_or(0);
            // A group member that fails while another member delivers is covered by the group.
            let group_down = k.group.as_ref().is_none_or(|g| {
                sinks
                    .values()
                    .filter(|o| o.group.as_ref() == Some(g))
                    .all(failing_long)
            });
            if let Some(d) = hb.failing_for
                && d >= self.unhealthy_after
                && queued > 0
                && group_down
            {
                out.push(format!(
                    "sink {name} has failed for {:.0}s ({} attempts) with {queued} events waiting in channel {}: {}",
                    d.as_secs_f64(),
                    hb.consecutive_failures,
                    k.channel,
                    hb.last_error.as_deref().unwrap_or_default()
                ));
            }
            if hb.state == ComponentState::Starting || hb.state == ComponentState::Stopped {
                out.push(not_running("sink", name, &hb));
            }
        }
        drop(sinks);
        for (name, s) in self.sources.read().iter() {
            let hb = s.heartbeat.snapshot();
            if let Some(d) = hb.failing_for
                && d >= self.unhealthy_after
            {
                out.push(format!(
                    "source {name} is stalled: failing for {:.0}s ({} attempts): {}",
                    d.as_secs_f64(),
                    hb.consecutive_failures,
                    hb.last_error.as_deref().unwrap_or_default()
                ));
            }
            if hb.state == ComponentState::Starting || hb.state == ComponentState::Stopped {
                out.push(not_running("source", name, &hb));
            }
        }
        out
    }

    /// `/metrics`: Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut m = Metrics::default();
        for (name, c) in self.channels.read().iter() {
            let Some(ch) = &c.channel else { continue };
            let s = ch.stats();
            let l = [("channel", name.as_str())];
            m.gauge(
                "tidegate_channel_size",
                "Events queued (Flume ChannelSize).",
                &l,
                s.size as f64,
            );
            m.gauge(
                "tidegate_channel_capacity",
                "Capacity in events (Flume ChannelCapacity).",
                &l,
                s.capacity as f64,
            );
            m.gauge(
                "tidegate_channel_fill_percentage",
                "Share of the capacity in use, 0 to 100 (Flume ChannelFillPercentage).",
                &l,
                s.fill_percent,
            );
            m.counter(
                "tidegate_channel_event_put_attempts_total",
                "Put calls (Flume EventPutAttemptCount).",
                &l,
                s.put_attempts,
            );
            m.counter(
                "tidegate_channel_event_put_successes_total",
                "Events whose put committed (Flume EventPutSuccessCount).",
                &l,
                s.put_successes,
            );
            m.counter(
                "tidegate_channel_event_put_errors_total",
                "Failed puts (Flume EventPutErrorCount).",
                &l,
                s.put_errors,
            );
            m.counter(
                "tidegate_channel_event_take_attempts_total",
                "Take calls (Flume EventTakeAttemptCount).",
                &l,
                s.take_attempts,
            );
            m.counter(
                "tidegate_channel_event_take_successes_total",
                "Events whose take committed (Flume EventTakeSuccessCount).",
                &l,
                s.take_successes,
            );
            m.counter(
                "tidegate_channel_event_take_errors_total",
                "Failed takes (Flume EventTakeErrorCount).",
                &l,
                s.take_errors,
            );
            m.counter(
                "tidegate_channel_checkpoint_write_errors_total",
                "Failed checkpoints (Flume CheckpointWriteErrorCount).",
                &l,
                s.checkpoint_write_errors,
            );
            m.gauge(
                "tidegate_channel_open",
                "1 while the channel is open (Flume Open).",
                &l,
                f64::from(u8::from(s.open)),
            );
            m.gauge(
                "tidegate_channel_unhealthy",
                "1 when the channel is poisoned (Flume Unhealthy).",
                &l,
                f64::from(u8::from(s.poisoned.is_some())),
            );
        }
        let mut beats = Vec::new();
        for (name, s) in self.sources.read().iter() {
            let l = [("source", name.as_str())];
            let c = &s.counters;
            m.counter(
                "tidegate_source_events_received_total",
                "Events received (Flume EventReceivedCount).",
                &l,
                c.received.load(Ordering::Relaxed),
            );
            m.counter(
                "tidegate_source_events_accepted_total",
                "Events committed to the channels (Flume EventAcceptedCount).",
                &l,
                c.accepted.load(Ordering::Relaxed),
            );
            m.counter(
                "tidegate_source_events_rejected_total",
                "Events refused (Flume EventRejectedCount).",
                &l,
                c.rejected.load(Ordering::Relaxed),
            );
            m.counter(
                "tidegate_source_append_batches_total",
                "Batches committed (Flume AppendBatchAcceptedCount).",
                &l,
                c.append_batches.load(Ordering::Relaxed),
            );
            beats.push(("source", name.clone(), s.heartbeat.snapshot()));
        }
        for (name, k) in self.sinks.read().iter() {
            let l = [("sink", name.as_str())];
            let c = &k.counters;
            m.counter(
                "tidegate_sink_batches_complete_total",
                "Full batches delivered (Flume BatchCompleteCount).",
                &l,
                c.batch_complete.load(Ordering::Relaxed),
            );
            m.counter(
                "tidegate_sink_batches_underflow_total",
                "Partial batches delivered (Flume BatchUnderflowCount).",
                &l,
                c.batch_underflow.load(Ordering::Relaxed),
            );
            m.counter(
                "tidegate_sink_batches_empty_total",
                "Takes that found the channel empty (Flume BatchEmptyCount).",
                &l,
                c.batch_empty.load(Ordering::Relaxed),
            );
            m.counter(
                "tidegate_sink_event_drain_attempts_total",
                "Events handed to the sink (Flume EventDrainAttemptCount).",
                &l,
                c.event_drain_attempt.load(Ordering::Relaxed),
            );
            m.counter(
                "tidegate_sink_event_drain_successes_total",
                "Events delivered and committed (Flume EventDrainSuccessCount).",
                &l,
                c.event_drain_success.load(Ordering::Relaxed),
            );
            m.counter(
                "tidegate_sink_delivery_failures_total",
                "Batches that failed and were rolled back (Flume EventWriteFail).",
                &l,
                c.delivery_failures.load(Ordering::Relaxed),
            );
            m.counter(
                "tidegate_sink_connection_failures_total",
                "Failures to reach downstream (Flume ConnectionFailedCount).",
                &l,
                c.connection_failures.load(Ordering::Relaxed),
            );
            beats.push(("sink", name.clone(), k.heartbeat.snapshot()));
        }
        for (kind, name, hb) in &beats {
            m.gauge(
                "tidegate_component_consecutive_failures",
                "Failures since the component's last success.",
                &[("kind", kind), ("name", name)],
                hb.consecutive_failures as f64,
            );
        }
        m.gauge(
            "tidegate_ready",
            "1 once every channel has finished replay.",
            &[],
            f64::from(u8::from(self.is_ready())),
        );
        m.finish()
    }

    /// `/metrics.json`: Flume's JSON shape (every value a string).
    pub fn flume_json(&self) -> serde_json::Value {
        let mut root = serde_json::Map::new();
        let str_map = |pairs: Vec<(&str, String)>| {
            serde_json::Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                    .collect(),
            )
        };
        for (name, c) in self.channels.read().iter() {
            let Some(ch) = &c.channel else { continue };
            let s = ch.stats();
            root.insert(
                format!("CHANNEL.{name}"),
                str_map(vec![
                    ("Type", "CHANNEL".into()),
                    ("ChannelSize", s.size.to_string()),
                    ("ChannelCapacity", s.capacity.to_string()),
                    ("ChannelFillPercentage", s.fill_percent.to_string()),
                    ("EventPutAttemptCount", s.put_attempts.to_string()),
                    ("EventPutSuccessCount", s.put_successes.to_string()),
                    ("EventPutErrorCount", s.put_errors.to_string()),
                    ("EventTakeAttemptCount", s.take_attempts.to_string()),
                    ("EventTakeSuccessCount", s.take_successes.to_string()),
                    ("EventTakeErrorCount", s.take_errors.to_string()),
                    (
                        "CheckpointWriteErrorCount",
                        s.checkpoint_write_errors.to_string(),
                    ),
                    ("Open", s.open.to_string()),
                    ("Unhealthy", u8::from(s.poisoned.is_some()).to_string()),
                ]),
            );
        }
        for (name, s) in self.sources.read().iter() {
            let c = &s.counters;
            root.insert(
                format!("SOURCE.{name}"),
                str_map(vec![
                    ("Type", "SOURCE".into()),
                    (
                        "EventReceivedCount",
                        c.received.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "EventAcceptedCount",
                        c.accepted.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "EventRejectedCount",
                        c.rejected.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "AppendBatchAcceptedCount",
                        c.append_batches.load(Ordering::Relaxed).to_string(),
                    ),
                ]),
            );
        }
        for (name, k) in self.sinks.read().iter() {
            let c = &k.counters;
            root.insert(
                format!("SINK.{name}"),
                str_map(vec![
                    ("Type", "SINK".into()),
                    (
                        "BatchCompleteCount",
                        c.batch_complete.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "BatchUnderflowCount",
                        c.batch_underflow.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "BatchEmptyCount",
                        c.batch_empty.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "EventDrainAttemptCount",
                        c.event_drain_attempt.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "EventDrainSuccessCount",
                        c.event_drain_success.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "EventWriteFail",
                        c.delivery_failures.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "ConnectionFailedCount",
                        c.connection_failures.load(Ordering::Relaxed).to_string(),
                    ),
                ]),
            );
        }
        serde_json::Value::Object(root)
    }
}

/// Prometheus text exposition: each family's HELP and TYPE once, then its samples.
#[derive(Default)]
struct Metrics {
    families: BTreeMap<&'static str, (&'static str, &'static str, String)>,
}

impl Metrics {
    fn sample(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: &str,
    ) {
        let (_, _, body) = self
            .families
            .entry(name)
            .or_insert_with(|| (kind, help, String::new()));
        let _ = write!(body, "{name}");
        if !labels.is_empty() {
            body.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(body, "{k}=\"{v}\"");
            }
            body.push('}');
        }
        let _ = writeln!(body, " {value}");
    }
    fn gauge(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.sample(name, "gauge", help, labels, &v.to_string());
    }
    fn counter(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: u64) {
        self.sample(name, "counter", help, labels, &v.to_string());
    }
    fn finish(self) -> String {
        let mut out = String::new();
        for (name, (kind, help, body)) in self.families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            out.push_str(&body);
        }
        out
    }
}

/// Serves `/metrics`, `/metrics.json`, `/health` and `/ready` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use axum::extract::State;
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    type Shared = State<Arc<Registry>>;
    async fn metrics(State(r): Shared) -> impl axum::response::IntoResponse {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            r.prometheus(),
        )
    }
    async fn metrics_json(State(r): Shared) -> axum::Json<serde_json::Value> {
        axum::Json(r.flume_json())
    }
    async fn health(State(r): Shared) -> (StatusCode, axum::Json<serde_json::Value>) {
        let problems = r.health_problems();
        if problems.is_empty() {
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({"status": "ok"})),
            )
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unhealthy", "reasons": problems})),
            )
        }
    }
    async fn ready(State(r): Shared) -> (StatusCode, axum::Json<serde_json::Value>) {
        if r.is_ready() {
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({"status": "ready"})),
            )
        } else {
            let (mut replaying, mut failed) = (Vec::new(), Vec::new());
            for (n, c) in r
                .channels
                .read()
                .iter()
                .filter(|(_, c)| c.channel.is_none())
            {
                match c.error {
                    None => replaying.push(n.clone()),
                    Some(_) => failed.push(n.clone()),
                }
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "status": "replaying",
                    "channels": replaying,
                    "failed": failed,
                })),
            )
        }
    }
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics.json", get(metrics_json))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(registry);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, MemoryChannel, MemoryChannelConfig};

    fn registry_with_channel(events: u64) -> (Registry, Arc<dyn Channel>) {
        let reg = Registry::new(Duration::ZERO);
        let ch: Arc<dyn Channel> = Arc::new(MemoryChannel::new(MemoryChannelConfig::default()));
        let mut tx = ch.transaction();
        for i in 0..events {
            let put = tx.put(Event::new(i.to_string().into_bytes()));
            assert!(put.is_ok());
        }
        assert!(tx.commit().is_ok());
        reg.channels.write().insert(
            "c1".into(),
            ChannelEntry {
                kind: "memory",
                channel: Some(ch.clone()),
                error: None,
            },
        );
        (reg, ch)
    }

    fn sink(reg: &Registry) -> Arc<Heartbeat> {
        member(reg, "k1", None)
    }

    fn member(reg: &Registry, name: &str, group: Option<&str>) -> Arc<Heartbeat> {
        let hb = Arc::new(Heartbeat::default());
        hb.set_state(ComponentState::Running);
        reg.sinks.write().insert(
            name.into(),
            SinkEntry {
                kind: "null".into(),
                channel: "c1".into(),
                group: group.map(str::to_string),
                counters: Arc::default(),
                heartbeat: hb.clone(),
            },
        );
        hb
    }

    #[test]
    fn a_replaying_channel_is_reported() {
        let reg = Registry::new(Duration::from_secs(60));
        reg.channels.write().insert(
            "c1".into(),
            ChannelEntry {
                kind: "file",
                channel: None,
                error: None,
            },
        );
        let p = reg.health_problems();
        assert!(
            p.iter().any(|r| r.contains("channel c1 is replaying")),
            "{p:?}"
        );
    }

    #[test]
    fn a_failing_sink_is_unhealthy_only_with_a_backlog() {
        let (reg, ch) = registry_with_channel(5);
        let hb = sink(&reg);
        assert!(reg.health_problems().is_empty());
        hb.failure("connection refused");
        let p = reg.health_problems();
        assert!(
            p.iter()
                .any(|r| r.contains("sink k1 has failed") && r.contains("5 events waiting")),
            "{p:?}"
        );
        // Drained channel: a failing sink with nothing to deliver is not a health problem.
        let mut tx = ch.transaction();
        assert!(
            tx.take_batch(10, Duration::ZERO)
                .is_ok_and(|b| b.len() == 5)
        );
        assert!(tx.commit().is_ok());
        assert!(reg.health_problems().is_empty());
        // A success clears the failure.
        hb.success();
        assert_eq!(hb.snapshot().consecutive_failures, 0);
    }

    #[test]
    fn a_failing_group_member_is_unhealthy_only_when_the_whole_group_fails() {
        let (reg, _ch) = registry_with_channel(5);
        let k1 = member(&reg, "k1", Some("g1"));
        let k2 = member(&reg, "k2", Some("g1"));
        k1.failure("down");
        assert!(reg.health_problems().is_empty(), "k2 still delivers");
        k2.failure("down too");
        let p = reg.health_problems();
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn a_stalled_source_is_unhealthy() {
        let (reg, _ch) = registry_with_channel(0);
        let hb = Arc::new(Heartbeat::default());
        hb.set_state(ComponentState::Running);
        reg.sources.write().insert(
            "r1".into(),
            SourceEntry {
                kind: "seq".into(),
                counters: Arc::default(),
                heartbeat: hb.clone(),
            },
        );
        assert!(reg.health_problems().is_empty());
        hb.failure("channel c1 is full");
        hb.failure("channel c1 is full");
        let p = reg.health_problems();
        assert!(
            p.iter()
                .any(|r| r.contains("source r1 is stalled") && r.contains("2 attempts")),
            "{p:?}"
        );
    }

    #[test]
    fn prometheus_text_has_one_help_and_type_per_family() {
        let (reg, _ch) = registry_with_channel(3);
        sink(&reg);
        let text = reg.prometheus();
        assert!(
            text.contains(
                "# TYPE tidegate_channel_size gauge\ntidegate_channel_size{channel=\"c1\"} 3\n"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE tidegate_channel_event_put_successes_total counter")
                .count(),
            1
        );
        let json = reg.flume_json();
        assert_eq!(json["CHANNEL.c1"]["ChannelSize"], "3");
        assert_eq!(json["SINK.k1"]["Type"], "SINK");
    }
}
