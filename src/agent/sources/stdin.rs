//! `stdin`: one event per line of standard input (the newline, and a `\r` before it, removed)
//! until end of file. When every source of the agent has finished, the agent drains its
//! channels to the sinks and exits, which makes `producer | tidegate agent` useful.

use std::io::BufRead;

use serde::Deserialize;

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

/// Reads lines on a thread of its own (a read of standard input cannot be cancelled) and sends
/// them on; the channel closes at end of input.
fn spawn_reader(name: String) -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let spawned = std::thread::Builder::new()
        .name(format!("stdin-{name}"))
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
            let mut lines = spawn_reader(ctx.name.clone());
            let batch = self.cfg.batch_size.max(1);
            let mut total = 0u64;
            loop {
                let first = tokio::select! {
                    () = ctx.shutdown.cancelled() => break,
                    l = lines.recv() => l,
                };
                let Some(first) = first else { break };
                let mut events = vec![Event::new(first?)];
                let mut failed = None;
                while events.len() < batch {
                    match lines.try_recv() {
                        Ok(Ok(l)) => events.push(Event::new(l)),
                        Ok(Err(e)) => {
                            failed = Some(e);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let n = events.len() as u64;
                match deliver_or_retry(&ctx, events).await {
                    Ok(()) => total += n,
                    Err(Stopped::Shutdown) => break,
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
