//! `stdin`: one event per line of standard input (the newline, and a `\r` before it, removed)
//! until end of file. When every source of the agent has finished, the agent drains its
//! channels to the sinks and exits, which makes `producer | tidegate agent` useful.
//!
//! Standard input is read by one thread for the whole process (a read cannot be cancelled), and
//! the lines it read wait in a process-wide queue. A source that stops (a reload restarts it)
//! puts the lines it had not committed back at the head of that queue, so its successor goes on
//! from exactly there: nothing is skipped or reordered. Only one `stdin` source may exist.

use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use tokio::sync::{Mutex, mpsc};

use super::{Stopped, deliver_or_retry};
use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Source, SourceContext};

/// `[sources.NAME]` keys of a `stdin` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Most lines per put transaction (fewer when input pauses). Default 100.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_batch() -> usize {
    100
}

/// The `stdin` source.
#[derive(Debug)]
pub struct StdinSource {
    cfg: StdinConfig,
}

impl StdinSource {
    /// A `stdin` source.
    pub fn new(_name: &str, cfg: StdinConfig) -> Self {
        StdinSource { cfg }
    }
}

/// What the reader thread produces: a line, or the read error that ended the input.
type Line = std::io::Result<Vec<u8>>;

/// Standard input as the process-wide reader left it.
struct Input {
    /// Lines handed back by a source that stopped before committing them.
    pending: VecDeque<Vec<u8>>,
    /// Lines from the reader thread; `None` from `recv` means end of input.
    lines: mpsc::Receiver<Line>,
    /// End of input was seen.
    ended: bool,
}

impl Input {
    async fn next(&mut self) -> Option<Line> {
        if let Some(l) = self.pending.pop_front() {
            return Some(Ok(l));
        }
        if self.ended {
            return None;
        }
        let l = self.lines.recv().await;
        self.ended = l.is_none();
        l
    }

    fn try_next(&mut self) -> Option<Line> {
        if let Some(l) = self.pending.pop_front() {
            return Some(Ok(l));
        }
        self.lines.try_recv().ok()
    }
}

fn input() -> Arc<Mutex<Input>> {
    static INPUT: OnceLock<Arc<Mutex<Input>>> = OnceLock::new();
    INPUT
        .get_or_init(|| {
            Arc::new(Mutex::new(Input {
                pending: VecDeque::new(),
                lines: spawn_reader(),
                ended: false,
            }))
        })
        .clone()
}

/// Reads lines on a thread of its own and sends them on; the channel closes at end of input.
fn spawn_reader() -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(1024);
    let spawned = std::thread::Builder::new()
        .name("stdin-reader".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            loop {
                let mut line = Vec::new();
                match input.read_until(b'\n', &mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                        }
                        if tx.blocking_send(Ok(line)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the stdin reader thread");
    }
    rx
}

impl Source for StdinSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let input = input();
            let mut input = tokio::select! {
                () = ctx.shutdown.cancelled() => return Ok(()),
                i = input.lock_owned() => i,
            };
            let batch = self.cfg.batch_size.max(1);
            let mut total = 0u64;
            loop {
                let first = tokio::select! {
                    () = ctx.shutdown.cancelled() => break,
                    l = input.next() => l,
                };
                let Some(first) = first else { break };
                let mut events = vec![Event::new(first?)];
                let mut failed = None;
                while events.len() < batch {
                    match input.try_next() {
                        Some(Ok(l)) => events.push(Event::new(l)),
                        Some(Err(e)) => {
                            failed = Some(e);
                            break;
                        }
                        None => break,
                    }
                }
                let n = events.len() as u64;
                match deliver_or_retry(&ctx, events).await {
                    Ok(()) => total += n,
                    Err(Stopped::Shutdown(events)) => {
                        for e in events.into_iter().rev() {
                            input.pending.push_front(e.into_body());
                        }
                        break;
                    }
                }
                if let Some(e) = failed {
                    return Err(e.into());
                }
            }
            tracing::info!(source = %ctx.name, lines = total, "stdin source done");
            Ok(())
        })
    }
}
