//! The agent runtime on tokio: opens the channels, runs the sink units and the sources,
//! serves monitoring, and obeys signals.
//!
//! Start: the monitoring endpoints come up first (so `/ready` answers 503 during replay), then
//! every channel opens (file channels replay, in parallel, off the async workers), then the
//! sink units, then the sources.
//!
//! Stop (SIGTERM/SIGINT): sources stop accepting and finish their in-flight deliveries; each
//! sink unit finishes its current batch (commit or roll back) and stops; every channel is
//! checkpointed and closed. All of it within `agent.shutdown_timeout`; past that the remaining
//! tasks are abandoned, the channels are closed anyway (open takes roll back on replay) and the
//! agent exits with an error.
//!
//! Drain: when every source has finished on its own (`stdin` at end of input, `seq` after
//! `count`), the sinks drain their channels to empty, then the agent stops as above.
//!
//! Reload (SIGHUP): the config is read again; if it has errors they are logged and nothing
//! changes. Otherwise sources and sink units whose table changed (or that use a changed
//! channel) restart; a file channel whose table changed is closed and reopened (its data
//! stays); a memory channel is kept as it runs (a new one would be empty; the change waits for
//! the next start) unless its type changes; removed components stop, new ones start; the rest run on undisturbed.
//! Stopping tasks get `shutdown_timeout` each group, then are aborted; a stop signal during a
//! reload interrupts it and shuts down as above. `/ready` is 503 while a channel is not open.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;

use super::channels::{self, AgentChannel};
use super::component::{SourceContext, SourceCounters, SourceOutput};
use super::config::{AgentConfig, ChannelKind, ConfigErrors, SourceConfig};
use super::monitoring::{
    self, ChannelEntry, ComponentState, Heartbeat, Registry, SinkEntry, SourceEntry,
};
use super::selector::Router;
use super::signals::{Request, Signals};
use super::sink_group::Processor;
use super::sink_runner::{self, Backoff, SinkSlot};
use super::{sinks, sources};
use crate::Channel;

/// Reads the config again (for SIGHUP).
pub type ConfigLoader = Box<dyn Fn() -> Result<AgentConfig, ConfigErrors> + Send + Sync>;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A channel could not be opened.
    #[error("channel {channel}: {source}")]
    Channel {
        /// The channel.
        channel: String,
        /// Why.
        #[source]
        source: crate::Error,
    },
    /// A component could not be built.
    #[error("{component}: {message}")]
    Component {
        /// `source r1`, `sink k1`.
        component: String,
        /// Why.
        message: String,
    },
    /// The monitoring address could not be bound, or signals not installed.
    #[error("{0}")]
    Io(String),
    /// The drain did not finish within `shutdown_timeout`.
    #[error(
        "shutdown did not finish within {0:?}; channels closed anyway (uncommitted takes are redelivered)"
    )]
    ShutdownTimeout(Duration),
}

/// Pause range before a failed source is built and started again.
const SOURCE_RESTART_MIN: Duration = Duration::from_secs(1);
const SOURCE_RESTART_MAX: Duration = Duration::from_secs(30);
/// How often the main loop checks whether a drain finished.
const DRAIN_POLL: Duration = Duration::from_millis(100);

struct Task {
    stop: CancellationToken,
    drain: Option<CancellationToken>,
    handle: JoinHandle<()>,
}

/// A sink unit's definition, compared on reload.
#[derive(PartialEq)]
struct UnitDef {
    group: Option<toml::Table>,
    members: Vec<(String, toml::Table)>,
    channels: BTreeSet<String>,
}

fn unit_defs(cfg: &AgentConfig) -> BTreeMap<String, UnitDef> {
    let mut out = BTreeMap::new();
    let member = |name: &String| {
        cfg.sinks
            .get(name)
            .map(|k| ((name.clone(), k.raw.clone()), k.channel.clone()))
    };
    for (g, group) in &cfg.sink_groups {
        let (members, channels) = group.sinks.iter().filter_map(member).unzip();
        out.insert(
            format!("group {g}"),
            UnitDef {
                group: Some(group.raw.clone()),
                members,
                channels,
            },
        );
    }
    for name in cfg.sinks.keys() {
        if cfg.group_of(name).is_none()
            && let Some((m, c)) = member(name)
        {
            out.insert(
                format!("sink {name}"),
                UnitDef {
                    group: None,
                    members: vec![m],
                    channels: [c].into(),
                },
            );
        }
    }
    out
}

struct Agent {
    config: AgentConfig,
    registry: Arc<Registry>,
    channels: BTreeMap<String, AgentChannel>,
    sources: BTreeMap<String, Task>,
    units: BTreeMap<String, Task>,
    /// Tasks asked to stop and not yet finished: a shutdown that runs out of time aborts them.
    stopping: Vec<(String, AbortHandle)>,
    finished_tx: mpsc::UnboundedSender<String>,
    draining: bool,
}

/// Runs the agent until it is stopped (signal) or has drained (finite sources done).
pub async fn run(config: AgentConfig, reload: ConfigLoader) -> Result<(), AgentError> {
    let mut signals = Signals::install()
        .map_err(|e| AgentError::Io(format!("installing signal handlers: {e}")))?;
    let unhealthy_after = config
        .monitoring
        .as_ref()
        .map_or(super::config::DEFAULT_UNHEALTHY_AFTER, |m| {
            m.unhealthy_after
        });
    let registry = Arc::new(Registry::new(unhealthy_after));
    let monitor_stop = CancellationToken::new();
    if let Some(m) = &config.monitoring {
        let listener = tokio::net::TcpListener::bind(m.bind)
            .await
            .map_err(|e| AgentError::Io(format!("monitoring.bind {}: {e}", m.bind)))?;
        let addr = listener.local_addr().map_or(m.bind, |a| a);
        tracing::info!(%addr, "monitoring on http://{addr}/metrics, /metrics.json, /health, /ready");
        let (r, stop) = (registry.clone(), monitor_stop.clone());
        tokio::spawn(async move {
            if let Err(e) = monitoring::serve(listener, r, stop).await {
                tracing::error!(error = %e, "monitoring server failed");
            }
        });
    }
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel();
    let mut agent = Agent {
        config,
        registry,
        channels: BTreeMap::new(),
        sources: BTreeMap::new(),
        units: BTreeMap::new(),
        stopping: Vec::new(),
        finished_tx,
        draining: false,
    };
    tracing::info!(agent = %agent.config.agent.name, config = %agent.config.origin, "agent starting");
    for w in agent.config.warnings() {
        tracing::warn!("{w}");
    }
    let opened = tokio::select! {
        r = agent.open_missing_channels() => r,
        req = signals.recv() => {
            tracing::info!(?req, "signal during replay; stopping");
            Ok(())
        }
    };
    if let Err(e) = opened {
        agent.shutdown().await;
        monitor_stop.cancel();
        return Err(e);
    }
    if agent.channels.len() < agent.config.channels.len() {
        // Stopped during replay.
        let r = agent.shutdown_within().await;
        monitor_stop.cancel();
        return r;
    }
    if let Err(e) = agent.start_missing(true) {
        agent.shutdown().await;
        monitor_stop.cancel();
        return Err(e);
    }
    let mut poll = tokio::time::interval(DRAIN_POLL);
    let result = loop {
        tokio::select! {
            req = signals.recv() => match req {
                Request::Stop => {
                    tracing::info!("stop requested; shutting down");
                    break agent.shutdown_within().await;
                }
                Request::Reload => match reload() {
                    Ok(new) => {
                        tracing::info!("reloading the config");
                        let stop = tokio::select! {
                            () = agent.reload(new) => false,
                            () = stop_requested(&mut signals) => true,
                        };
                        if stop {
                            tracing::info!("stop requested during the reload; shutting down");
                            break agent.shutdown_within().await;
                        }
                    }
                    Err(errors) => {
                        for e in &errors.0 {
                            tracing::error!(error = %e, "config error; reload refused, the running config stays");
                        }
                    }
                }
            },
            Some(name) = finished_rx.recv() => {
                tracing::info!(source = %name, "source finished");
                if !agent.draining && agent.all_sources_finished() {
                    tracing::info!("every source finished; draining the channels to the sinks");
                    agent.start_drain();
                }
            }
            _ = poll.tick(), if agent.draining => {
                if agent.units.values().all(|u| u.handle.is_finished()) {
                    tracing::info!("channels drained");
                    break agent.shutdown_within().await;
                }
            }
        }
    };
    monitor_stop.cancel();
    result
}

impl Agent {
    async fn open_missing_channels(&mut self) -> Result<(), AgentError> {
        let mut opening = Vec::new();
        for (name, cfg) in &self.config.channels {
            if self.channels.contains_key(name) {
                continue;
            }
            self.registry.channels.write().insert(
                name.clone(),
                ChannelEntry {
                    kind: cfg.type_name(),
                    channel: None,
                    error: None,
                },
            );
            let (name, cfg) = (name.clone(), cfg.clone());
            opening.push(tokio::task::spawn_blocking(move || {
                let r = channels::open(&name, &cfg);
                (name, r)
            }));
        }
        let mut first_error = None;
        for t in opening {
            match t.await {
                Ok((name, Ok(ch))) => {
                    self.registry.channels.write().insert(
                        name.clone(),
                        ChannelEntry {
                            kind: ch.config.type_name(),
                            channel: Some(ch.channel.clone()),
                            error: None,
                        },
                    );
                    self.channels.insert(name, ch);
                }
                Ok((channel, Err(source))) => {
                    tracing::error!(%channel, error = %source, "cannot open the channel");
                    if let Some(entry) = self.registry.channels.write().get_mut(&channel) {
                        entry.error = Some(source.to_string());
                    }
                    first_error.get_or_insert(AgentError::Channel { channel, source });
                }
                Err(e) => {
                    first_error
                        .get_or_insert(AgentError::Io(format!("channel open task failed: {e}")));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                self.registry
                    .started
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn channel(&self, name: &str) -> Option<Arc<dyn Channel>> {
        self.channels.get(name).map(|c| c.channel.clone())
    }

    /// Starts every sink unit and source of the config that is not running. With `strict`, a
    /// component that cannot be built is an error; otherwise (reload) it is logged.
    fn start_missing(&mut self, strict: bool) -> Result<(), AgentError> {
        let mut errors = Vec::new();
        let defs = unit_defs(&self.config);
        for (key, def) in &defs {
            if !self.units.contains_key(key)
                && let Err(e) = self.start_unit(key)
            {
                for (sink, _) in &def.members {
                    self.register_not_started(sink, &e, false);
                }
                errors.push(e);
            }
        }
        let names: Vec<String> = self.config.sources.keys().cloned().collect();
        for name in names {
            if !self.sources.contains_key(&name)
                && let Err(e) = self.start_source(&name)
            {
                self.register_not_started(&name, &e, true);
                errors.push(e);
            }
        }
        for e in &errors {
            tracing::error!(error = %e, "component not started");
        }
        match (strict, errors.into_iter().next()) {
            (true, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Shows a component that could not start in the registry (stopped, with the error), so
    /// `/health` reports it.
    fn register_not_started(&self, name: &str, error: &AgentError, source: bool) {
        let heartbeat = Arc::new(Heartbeat::default());
        heartbeat.failure(error);
        heartbeat.set_state(ComponentState::Stopped);
        if source {
            let kind = self
                .config
                .sources
                .get(name)
                .map(|s| s.spec.type_name().to_string());
            self.registry.sources.write().insert(
                name.to_string(),
                SourceEntry {
                    kind: kind.unwrap_or_default(),
                    counters: Arc::default(),
                    heartbeat,
                },
            );
        } else if let Some(k) = self.config.sinks.get(name) {
            self.registry.sinks.write().insert(
                name.to_string(),
                SinkEntry {
                    kind: k.spec.type_name().to_string(),
                    channel: k.channel.clone(),
                    group: self.config.group_of(name).map(str::to_string),
                    counters: Arc::default(),
                    heartbeat,
                },
            );
        }
    }

    fn sink_slot(&self, name: &str) -> Result<SinkSlot, AgentError> {
        let err = |message: String| AgentError::Component {
            component: format!("sink {name}"),
            message,
        };
        let cfg = self
            .config
            .sinks
            .get(name)
            .ok_or_else(|| err("not in the config".into()))?;
        let ch = self
            .channel(&cfg.channel)
            .ok_or_else(|| err(format!("channel {} is not open", cfg.channel)))?;
        let sink = sinks::build(name, &cfg.spec).map_err(|e| err(e.to_string()))?;
        let slot = SinkSlot::new(name, sink, ch, cfg.batch_size);
        slot.heartbeat.set_state(ComponentState::Running);
        self.registry.sinks.write().insert(
            name.to_string(),
            SinkEntry {
                kind: cfg.spec.type_name().to_string(),
                channel: cfg.channel.clone(),
                group: self.config.group_of(name).map(str::to_string),
                counters: slot.counters.clone(),
                heartbeat: slot.heartbeat.clone(),
            },
        );
        Ok(slot)
    }

    fn start_unit(&mut self, key: &str) -> Result<(), AgentError> {
        let unit = if let Some(group) = key.strip_prefix("group ") {
            let g = self
                .config
                .sink_groups
                .get(group)
                .ok_or_else(|| AgentError::Component {
                    component: key.to_string(),
                    message: "not in the config".into(),
                })?;
            let slots = g
                .sinks
                .iter()
                .map(|s| self.sink_slot(s))
                .collect::<Result<Vec<_>, _>>()?;
            Processor::group(group, slots, g.processor.clone())
        } else {
            let name = key.strip_prefix("sink ").unwrap_or(key);
            Processor::Single(self.sink_slot(name)?)
        };
        let stop = CancellationToken::new();
        let drain = CancellationToken::new();
        if self.draining {
            drain.cancel();
        }
        let handle = tokio::spawn(sink_runner::run(unit, stop.clone(), drain.clone()));
        tracing::info!(unit = %key, "sink started");
        self.units.insert(
            key.to_string(),
            Task {
                stop,
                drain: Some(drain),
                handle,
            },
        );
        Ok(())
    }

    fn start_source(&mut self, name: &str) -> Result<(), AgentError> {
        let err = |message: String| AgentError::Component {
            component: format!("source {name}"),
            message,
        };
        let cfg = self
            .config
            .sources
            .get(name)
            .cloned()
            .ok_or_else(|| err("not in the config".into()))?;
        let mut chans = BTreeMap::new();
        for c in &cfg.channels {
            let ch = self
                .channel(c)
                .ok_or_else(|| err(format!("channel {c} is not open")))?;
            chans.insert(c.clone(), ch);
        }
        let interceptors =
            sources::build_interceptors(&cfg.interceptors).map_err(|e| err(e.to_string()))?;
        let heartbeat = Arc::new(Heartbeat::default());
        let counters = Arc::new(SourceCounters::default());
        let stop = CancellationToken::new();
        let router = Router::new(
            name,
            chans,
            cfg.selector.clone(),
            interceptors,
            stop.clone(),
            heartbeat.clone(),
        );
        self.registry.sources.write().insert(
            name.to_string(),
            SourceEntry {
                kind: cfg.spec.type_name().to_string(),
                counters: counters.clone(),
                heartbeat: heartbeat.clone(),
            },
        );
        let handle = tokio::spawn(run_source(
            name.to_string(),
            cfg,
            SourceOutput(Arc::new(router)),
            counters,
            heartbeat,
            stop.clone(),
            self.finished_tx.clone(),
        ));
        tracing::info!(source = %name, "source started");
        self.sources.insert(
            name.to_string(),
            Task {
                stop,
                drain: None,
                handle,
            },
        );
        Ok(())
    }

    fn all_sources_finished(&self) -> bool {
        let reg = self.registry.sources.read();
        self.sources.keys().all(|n| {
            reg.get(n)
                .is_some_and(|s| s.heartbeat.snapshot().state == ComponentState::Finished)
        })
    }

    fn start_drain(&mut self) {
        self.draining = true;
        for u in self.units.values() {
            if let Some(d) = &u.drain {
                d.cancel();
            }
        }
    }

    /// Stops the named tasks (sources first, then units) and waits for them: without end
    /// (`limit` None; the shutdown bounds it as a whole), or up to `limit` for each group, after
    /// which the tasks still running are aborted (a reload must not hang on a stuck source).
    async fn stop_tasks(&mut self, sources: &[String], units: &[String], limit: Option<Duration>) {
        let mut waiting = Vec::new();
        for n in sources {
            if let Some(t) = self.sources.remove(n) {
                waiting.push(self.stopping(format!("source {n}"), t));
            }
            self.registry.sources.write().remove(n);
        }
        Self::wait_stopped(std::mem::take(&mut waiting), limit).await;
        for k in units {
            if let Some(t) = self.units.remove(k) {
                waiting.push(self.stopping(k.clone(), t));
            }
        }
        Self::wait_stopped(waiting, limit).await;
        self.stopping.retain(|(_, h)| !h.is_finished());
    }

    /// Asks a task to stop and remembers it (to abort it if the shutdown runs out of time).
    fn stopping(&mut self, what: String, task: Task) -> (String, JoinHandle<()>) {
        task.stop.cancel();
        self.stopping
            .push((what.clone(), task.handle.abort_handle()));
        (what, task.handle)
    }

    async fn wait_stopped(tasks: Vec<(String, JoinHandle<()>)>, limit: Option<Duration>) {
        let deadline = limit.map(|l| tokio::time::Instant::now() + l);
        for (what, mut h) in tasks {
            let joined = match deadline {
                None => (&mut h).await,
                Some(d) => match tokio::time::timeout_at(d, &mut h).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::error!(
                            component = %what,
                            timeout = ?limit,
                            "did not stop in time; aborted"
                        );
                        h.abort();
                        continue;
                    }
                },
            };
            if let Err(e) = joined {
                tracing::error!(component = %what, error = %e, "task ended abnormally");
            }
        }
    }

    async fn close_channels(&mut self, names: &[String]) {
        for n in names {
            // Not open (so not ready) from here on, until it is reopened or gone.
            if let Some(entry) = self.registry.channels.write().get_mut(n) {
                entry.channel = None;
            }
            if let Some(ch) = self.channels.remove(n) {
                let _ = tokio::task::spawn_blocking(move || channels::close(&ch)).await;
            }
            self.registry.channels.write().remove(n);
        }
    }

    async fn shutdown(&mut self) {
        let sources: Vec<String> = self.sources.keys().cloned().collect();
        let units: Vec<String> = self.units.keys().cloned().collect();
        self.stop_tasks(&sources, &units, None).await;
        let names: Vec<String> = self.channels.keys().cloned().collect();
        self.close_channels(&names).await;
    }

    async fn shutdown_within(&mut self) -> Result<(), AgentError> {
        let limit = self.config.agent.shutdown_timeout;
        if tokio::time::timeout(limit, self.shutdown()).await.is_ok() {
            tracing::info!("agent stopped");
            return Ok(());
        }
        tracing::error!(timeout = ?limit, "shutdown timed out; closing the channels anyway");
        for t in self.sources.values().chain(self.units.values()) {
            t.handle.abort();
        }
        for (what, h) in self.stopping.drain(..) {
            if !h.is_finished() {
                tracing::error!(component = %what, "did not stop in time; aborted");
                h.abort();
            }
        }
        let names: Vec<String> = self.channels.keys().cloned().collect();
        self.close_channels(&names).await;
        Err(AgentError::ShutdownTimeout(limit))
    }

    /// A memory channel is not replaced by a reload while it stays a memory channel: a new one
    /// would start empty and lose the events the running one holds. Its changed table (`new`)
    /// is set back to the running one, with a warning; the change takes effect at the next
    /// start. A memory channel that becomes a file channel is replaced (the operator asked for
    /// another kind of channel); the events it still holds are lost, and a warning says how many.
    fn keep_memory_channels(&self, new: &mut AgentConfig) {
        for (name, running) in &self.config.channels {
            let Some(wanted) = new.channels.get_mut(name) else {
                continue;
            };
            if !matches!(running.kind, ChannelKind::Memory(_)) || wanted.raw == running.raw {
                continue;
            }
            if matches!(wanted.kind, ChannelKind::Memory(_)) {
                tracing::warn!(
                    channel = %name,
                    "memory channel changes take effect at the next start; it keeps running as it is, with its events"
                );
                *wanted = running.clone();
            } else {
                let held = self
                    .channels
                    .get(name)
                    .map_or(0, |c| c.channel.stats().size);
                tracing::warn!(
                    channel = %name,
                    events_lost = held,
                    "memory channel replaced by another type; the events it holds are dropped"
                );
            }
        }
    }

    async fn reload(&mut self, mut new: AgentConfig) {
        self.keep_memory_channels(&mut new);
        let old = &self.config;
        let changed_channels: BTreeSet<String> = old
            .channels
            .keys()
            .chain(new.channels.keys())
            .filter(|n| {
                old.channels.get(*n).map(|c| &c.raw) != new.channels.get(*n).map(|c| &c.raw)
            })
            .cloned()
            .collect();
        let touches = |chans: &BTreeSet<String>| !chans.is_disjoint(&changed_channels);
        let source_changed = |n: &String, s: &SourceConfig| {
            new.sources.get(n).map(|x| &x.raw) != Some(&s.raw)
                || touches(&s.channels.iter().cloned().collect())
        };
        let sources: Vec<String> = old
            .sources
            .iter()
            .filter(|(n, s)| source_changed(n, s))
            .map(|(n, _)| n.clone())
            .collect();
        let (old_units, new_units) = (unit_defs(old), unit_defs(&new));
        let units: Vec<String> = old_units
            .iter()
            .filter(|(k, d)| new_units.get(*k) != Some(*d) || touches(&d.channels))
            .map(|(k, _)| k.clone())
            .collect();
        tracing::info!(
            channels = ?changed_channels,
            sources = ?sources,
            sinks = ?units,
            "reload: restarting what changed"
        );
        if old.monitoring != new.monitoring {
            tracing::warn!("[monitoring] changes take effect at the next start");
        }
        let limit = self.config.agent.shutdown_timeout;
        self.stop_tasks(&sources, &units, Some(limit)).await;
        {
            let mut reg = self.registry.sinks.write();
            let keep: BTreeSet<&String> = new.sinks.keys().collect();
            reg.retain(|n, _| keep.contains(n));
        }
        let closing: Vec<String> = changed_channels
            .iter()
            .filter(|c| self.channels.contains_key(*c))
            .cloned()
            .collect();
        self.close_channels(&closing).await;
        self.config = new;
        if let Err(e) = self.open_missing_channels().await {
            tracing::error!(error = %e, "reload: a channel did not open; the components using it do not run");
        }
        let _ = self.start_missing(false);
        tracing::info!("reload done");
    }
}

/// Waits for a stop signal (SIGTERM/SIGINT); a SIGHUP meanwhile (during a reload) is ignored.
async fn stop_requested(signals: &mut Signals) {
    loop {
        match signals.recv().await {
            Request::Stop => return,
            Request::Reload => tracing::warn!(
                "SIGHUP during a reload ignored; send it again after \"reload done\""
            ),
        }
    }
}

/// Runs a source; builds it again after a failure (with back-off) until it is stopped or
/// finishes on its own.
async fn run_source(
    name: String,
    cfg: SourceConfig,
    output: SourceOutput,
    counters: Arc<SourceCounters>,
    heartbeat: Arc<Heartbeat>,
    stop: CancellationToken,
    finished: mpsc::UnboundedSender<String>,
) {
    let mut backoff = Backoff::new(SOURCE_RESTART_MIN, SOURCE_RESTART_MAX);
    loop {
        let outcome = match sources::build(&name, &cfg.spec) {
            Ok(src) => {
                heartbeat.set_state(ComponentState::Running);
                let ctx = SourceContext {
                    name: name.clone(),
                    output: output.clone(),
                    shutdown: stop.clone(),
                    counters: counters.clone(),
                };
                src.run(ctx).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) if stop.is_cancelled() => {
                heartbeat.set_state(ComponentState::Stopped);
                return;
            }
            Ok(()) => {
                heartbeat.set_state(ComponentState::Finished);
                let _ = finished.send(name);
                return;
            }
            Err(e) => {
                heartbeat.failure(&e);
                let pause = backoff.next_pause();
                tracing::error!(source = %name, error = %e, restart_in = ?pause, "source failed");
                tokio::select! {
                    () = stop.cancelled() => {
                        heartbeat.set_state(ComponentState::Stopped);
                        return;
                    }
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
