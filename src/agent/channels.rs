//! Opening and closing the agent's channels, off the async workers.
//!
//! A file channel replays its log when it opens; on a terminal the replay shows a progress bar
//! (indicatif), otherwise it logs a line every few seconds.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::config::{ChannelConfig, ChannelKind};
use crate::{Channel, FileChannel, MemoryChannel, ReplayProgress};

/// How often replay progress is logged when stderr is not a terminal.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);

/// An open channel of the agent.
#[derive(Clone)]
pub struct AgentChannel {
    /// Its name.
    pub name: String,
    /// The channel.
    pub channel: Arc<dyn Channel>,
    /// The config it was opened with.
    pub config: ChannelConfig,
}

fn progress_callback(name: &str) -> impl Fn(&ReplayProgress) + Send + Sync + 'static {
    let name = name.to_string();
    let terminal = std::io::stderr().is_terminal();
    let bar: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
    let last_log = Mutex::new(Instant::now());
    move |p: &ReplayProgress| {
        if terminal {
            let mut bar = bar.lock();
            let b = bar.get_or_insert_with(|| {
                let b = indicatif::ProgressBar::new(p.segments_total);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:40}] {pos}/{len} segments, {elapsed}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_message(format!("replaying channel {name}"));
                b
            });
            b.set_length(p.segments_total);
            b.set_position(p.segments_done);
            if p.segments_done >= p.segments_total {
                b.finish();
            }
        } else {
            let mut last = last_log.lock();
            if last.elapsed() >= PROGRESS_LOG_EVERY || p.segments_done >= p.segments_total {
                *last = Instant::now();
                tracing::info!(
                    channel = %name,
                    segments_done = p.segments_done,
                    segments_total = p.segments_total,
                    bytes_scanned = p.bytes_scanned,
                    "replay progress"
                );
            }
        }
    }
}

/// Opens (and, for a file channel, replays) a channel. Blocking: call it off the async workers.
pub fn open(name: &str, config: &ChannelConfig) -> crate::Result<AgentChannel> {
    let channel: Arc<dyn Channel> = match &config.kind {
        ChannelKind::File(cfg) => {
            let ch = FileChannel::open(cfg.clone().on_replay_progress(progress_callback(name)))?;
            let r = ch.recovery_report();
            tracing::info!(
                channel = %name,
                events = r.events_restored,
                redelivered = r.inflight_redelivered,
                torn_tails = r.torn_tails,
                full_replay = r.full_replay,
                took_ms = r.duration.as_millis() as u64,
                "file channel open"
            );
            Arc::new(ch)
        }
        ChannelKind::Memory(cfg) => Arc::new(MemoryChannel::new(cfg.clone())),
    };
    Ok(AgentChannel {
        name: name.to_string(),
        channel,
        config: config.clone(),
    })
}

/// Checkpoints and closes a channel. Blocking.
pub fn close(ch: &AgentChannel) {
    if let Err(e) = ch.channel.close() {
        tracing::error!(channel = %ch.name, error = %e, "closing the channel failed");
    } else {
        tracing::info!(channel = %ch.name, "channel closed");
    }
}
