//! The `exec` source: runs a command and turns each line of its standard output into an event
//! (Flume's exec source).
//!
//! The command runs directly (`command` split into words by POSIX shell rules: quotes and
//! backslashes, no expansion; the [`shlex`] crate), or through `shell` (e.g. `"/bin/sh -c"`:
//! the shell's words, then `command` as one argument). It gets `env` on top of the agent's
//! environment, standard input from `/dev/null`, and its own process group.
//!
//! **Lines.** Each line, without its `\n` (and a `\r` before it), becomes an event body. A line
//! longer than `max_line_length` bytes is split into pieces of `max_line_length` bytes (each
//! one event), so no buffer grows past that. Lines are delivered in order, up to `batch_size`
//! per channel transaction; a partial batch is delivered `batch_timeout` after its first line
//! arrived (or when the output ends).
//!
//! **Back-pressure.** While a batch is being delivered (`deliver_or_retry`, which retries while
//! the channels are full), the source does not read the child's output: the pipe fills and the
//! child blocks on its next write. Memory stays bounded (one read chunk, one batch, one partial
//! line).
//!
//! **Standard error** is read on its own task; with `log_stderr = true` each line is logged at
//! warn with the source name (cut at `max_line_length`), else it is read and dropped (so the
//! child never blocks on a full stderr pipe).
//!
//! **Exit and restart.** The exit status is logged. With `restart = false` the source then
//! finishes (like `stdin`; when every source has finished, the agent drains and exits). With
//! `restart = true` the command is started again after `restart_throttle`; each exit that comes
//! less than ten times `restart_throttle` after the start doubles the pause, up to ten times
//! `restart_throttle`; a run that lasted longer resets it. A command that cannot be started
//! (missing executable) is an error naming the command: the source fails with
//! `restart = false`, and retries on the same schedule with `restart = true`.
//!
//! **Shutdown.** The source stops reading, makes one last attempt to commit what it read, then
//! sends SIGTERM to the child's process group, SIGKILL after [`KILL_GRACE`], and reaps it.
//!
//! **Delivery guarantee.** A line is committed before the source reads further; what was
//! committed survives a crash (with a file channel). There is no way to ask a command for its
//! output again: lines the command printed while the agent was down, and lines read but not yet
//! committed when the agent crashed (at most one batch plus one read chunk, and what sits in the
//! pipe), are lost. After a `kill -9` of the agent the child is not killed by the agent; it gets
//! SIGPIPE (or EPIPE) at its next write and usually ends there. A restarted agent starts the
//! command again, so a command like `tail -F` re-reads from where it starts (duplicates or
//! gaps, depending on the command).

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{Stopped, deliver_or_retry};
use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Source, SourceContext};
use crate::agent::units::{ByteSize, HumanDuration};

/// How long the child has between SIGTERM and SIGKILL at shutdown.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// The longest `restart_throttle` and `batch_timeout`.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Bytes read from the child's output at a time.
const READ_CHUNK: usize = 8 << 10;

/// `[sources.NAME]` keys of an `exec` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSourceConfig {
    /// The command line (required).
    pub command: String,
    /// Run `command` through this shell command line (e.g. `"/bin/sh -c"`). Default: none.
    #[serde(default)]
    pub shell: Option<String>,
    /// Start the command again when it exits. Default false.
    #[serde(default)]
    pub restart: bool,
    /// First pause before a restart. Default 10s.
    #[serde(default = "default_throttle")]
    pub restart_throttle: HumanDuration,
    /// Log the command's standard error lines at warn. Default true.
    #[serde(default = "yes")]
    pub log_stderr: bool,
    /// Most lines per put transaction. Default 20.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Deliver a partial batch this long after its first line. Default 3s.
    #[serde(default = "default_batch_timeout")]
    pub batch_timeout: HumanDuration,
    /// Longest line; longer ones are split. Default 64KiB.
    #[serde(default = "default_max_line_length")]
    pub max_line_length: ByteSize,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_throttle() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn yes() -> bool {
    true
}
fn default_batch_size() -> usize {
    20
}
fn default_batch_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(3))
}
fn default_max_line_length() -> ByteSize {
    ByteSize(64 << 10)
}

/// Builds an `exec` source.
pub fn build(name: &str, cfg: ExecSourceConfig) -> Result<Box<dyn Source>, ComponentError> {
    Ok(Box::new(ExecSource::new(name, cfg)?))
}

/// The `exec` source.
#[derive(Debug)]
pub struct ExecSource {
    name: String,
    cfg: ExecSourceConfig,
    argv: Vec<String>,
    max_line: usize,
}

/// Splits a command line into words (POSIX shell rules, see the module docs).
fn words(name: &str, key: &str, line: &str) -> Result<Vec<String>, ComponentError> {
    match shlex::split(line) {
        Some(w) if !w.is_empty() => Ok(w),
        Some(_) => Err(ComponentError::Config(format!(
            "source {name}: {key} is empty"
        ))),
        None => Err(ComponentError::Config(format!(
            "source {name}: {key} {line:?} has an unterminated quote or a trailing backslash"
        ))),
    }
}

impl ExecSource {
    /// Checks `cfg`.
    pub fn new(name: &str, cfg: ExecSourceConfig) -> Result<Self, ComponentError> {
        let argv = match &cfg.shell {
            Some(shell) => {
                let mut w = words(name, "shell", shell)?;
                if cfg.command.trim().is_empty() {
                    return Err(ComponentError::Config(format!(
                        "source {name}: command is empty"
                    )));
                }
                w.push(cfg.command.clone());
                w
            }
            None => words(name, "command", &cfg.command)?,
        };
        if cfg.batch_size == 0 {
            return Err(ComponentError::Config(format!(
                "source {name}: batch_size must be at least 1"
            )));
        }
        let max_line = cfg.max_line_length.get();
        if max_line == 0 || max_line > 1 << 30 {
            return Err(ComponentError::Config(format!(
                "source {name}: max_line_length must be between 1 byte and 1GiB"
            )));
        }
        if cfg.restart_throttle.get().is_zero() {
            return Err(ComponentError::Config(format!(
                "source {name}: restart_throttle must be more than 0"
            )));
        }
        // Bounded so the pause arithmetic (up to 10x the throttle) and the batch deadline
        // cannot overflow (which would panic).
        for (key, d) in [
            ("restart_throttle", cfg.restart_throttle.get()),
            ("batch_timeout", cfg.batch_timeout.get()),
        ] {
            if d > MAX_DURATION {
                return Err(ComponentError::Config(format!(
                    "source {name}: {key} must be at most {}",
                    HumanDuration(MAX_DURATION)
                )));
            }
        }
        Ok(ExecSource {
            name: name.to_owned(),
            argv,
            max_line: max_line as usize,
            cfg,
        })
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let (program, args) = self.argv.split_first().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command")
        })?;
        Command::new(program)
            .args(args)
            .envs(&self.cfg.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
    }
}

/// The pause before the next start: `throttle` after a run of at least ten times `throttle`,
/// else twice the previous pause, at most ten times `throttle`.
pub fn next_pause(previous: Duration, throttle: Duration, ran_for: Duration) -> Duration {
    let longest = throttle * 10;
    if ran_for >= longest {
        throttle
    } else {
        (previous * 2).clamp(throttle, longest)
    }
}

/// How one run of the command ended.
enum Run {
    /// The output ended and the child exited.
    Exited,
    /// The source is stopping (the child was killed and reaped).
    Stopped,
}

impl Source for ExecSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), ComponentError>> {
        Box::pin(async move {
            let throttle = self.cfg.restart_throttle.get();
            // Doubled before the first restart: start at half.
            let mut pause = throttle / 2;
            loop {
                let started = Instant::now();
                match self.spawn() {
                    Err(e) => {
                        let msg = format!(
                            "source {}: cannot run command {:?}: {e}",
                            self.name, self.argv
                        );
                        if !self.cfg.restart {
                            return Err(ComponentError::Other(msg));
                        }
                        pause = next_pause(pause, throttle, started.elapsed());
                        tracing::error!(source = %self.name, retry_in = ?pause, "{msg}");
                    }
                    Ok(child) => {
                        tracing::info!(source = %self.name, pid = child.id(), command = ?self.argv, "exec source started the command");
                        if let Run::Stopped = self.serve(child, &ctx).await {
                            return Ok(());
                        }
                        if !self.cfg.restart {
                            return Ok(());
                        }
                        pause = next_pause(pause, throttle, started.elapsed());
                        tracing::info!(source = %self.name, restart_in = ?pause, "exec source restarts the command");
                    }
                }
                tokio::select! {
                    () = ctx.shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(pause) => {}
                }
            }
        })
    }
}

impl ExecSource {
    /// Reads the child's output into batches until it ends or the source stops; reaps the
    /// child.
    async fn serve(&self, mut child: Child, ctx: &SourceContext) -> Run {
        let pid = child.id();
        let stderr_task = child.stderr.take().map(|err| {
            let (name, max, log) = (self.name.clone(), self.max_line, self.cfg.log_stderr);
            tokio::spawn(async move { log_stderr(err, &name, max, log).await })
        });
        let Some(mut out) = child.stdout.take() else {
            // Not possible with Stdio::piped; stop the child rather than hang.
            stop_child(&mut child, &self.name).await;
            return Run::Exited;
        };
        let mut lines = Lines::new(self.max_line);
        let mut buf = vec![0u8; READ_CHUNK];
        let mut batch: Vec<Event> = Vec::new();
        let mut deadline = Instant::now();
        let timeout = self.cfg.batch_timeout.get();
        let mut total = 0u64;
        let stopped = loop {
            let n = tokio::select! {
                biased;
                () = ctx.shutdown.cancelled() => break true,
                () = tokio::time::sleep_until(deadline), if !batch.is_empty() => {
                    if !self.deliver(ctx, std::mem::take(&mut batch), &mut total).await {
                        break true;
                    }
                    continue;
                }
                r = out.read(&mut buf) => match r {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(source = %self.name, error = %e, "exec source: reading the command's output failed");
                        0
                    }
                },
            };
            let got = match buf.get(..n) {
                Some(bytes) if n > 0 => lines.push(bytes),
                _ => lines.finish(),
            };
            let mut got = got.into_iter();
            while let Some(line) = got.next() {
                if batch.is_empty() {
                    deadline = Instant::now() + timeout;
                }
                batch.push(Event::new(line));
                if batch.len() >= self.cfg.batch_size
                    && !self
                        .deliver(ctx, std::mem::take(&mut batch), &mut total)
                        .await
                {
                    // Stopping: the rest gets the last attempt below.
                    batch.extend(got.by_ref().map(Event::new));
                    break;
                }
            }
            if ctx.shutdown.is_cancelled() {
                break true;
            }
            if n == 0 {
                let done = self
                    .deliver(ctx, std::mem::take(&mut batch), &mut total)
                    .await;
                break !done;
            }
        };
        let mut stopped = stopped;
        if stopped {
            // Deliver what was read (one attempt), then stop the child.
            ctx.counters
                .received
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            last_attempt(ctx, std::mem::take(&mut batch)).await;
            drop(out);
            stop_child(&mut child, &self.name).await;
        } else {
            drop(out);
            // The output ended; the command may still run (it closed its stdout).
            let status = tokio::select! {
                r = child.wait() => Some(r),
                () = ctx.shutdown.cancelled() => None,
            };
            match status {
                Some(Ok(st)) => log_exit(&self.name, pid, st, total),
                Some(Err(e)) => {
                    tracing::error!(source = %self.name, ?pid, error = %e, "exec source: waiting for the command failed")
                }
                None => {
                    stop_child(&mut child, &self.name).await;
                    stopped = true;
                }
            }
        }
        if let Some(t) = stderr_task {
            // The child is gone; its stderr ends unless a grandchild holds it open.
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        if stopped { Run::Stopped } else { Run::Exited }
    }

    /// Commits a batch; false when the source stops first (the batch then gets
    /// [`last_attempt`]).
    async fn deliver(&self, ctx: &SourceContext, events: Vec<Event>, total: &mut u64) -> bool {
        if events.is_empty() {
            return true;
        }
        let n = events.len() as u64;
        match deliver_or_retry(ctx, events).await {
            Ok(()) => {
                *total += n;
                true
            }
            Err(Stopped::Shutdown(events)) => {
                last_attempt(ctx, events).await;
                false
            }
        }
    }
}

/// One last commit of `events` at shutdown; logs what is lost if the channels refuse.
pub(super) async fn last_attempt(ctx: &SourceContext, events: Vec<Event>) {
    if events.is_empty() {
        return;
    }
    let n = events.len();
    match ctx.output.deliver(events).await {
        Ok(()) => {
            ctx.counters.accepted.fetch_add(n as u64, Ordering::Relaxed);
            ctx.counters.append_batches.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::warn!(source = %ctx.name, events = n, error = %e,
                "source stopping: events read but not committed are lost");
        }
    }
}

fn log_exit(name: &str, pid: Option<u32>, st: ExitStatus, lines: u64) {
    if st.success() {
        tracing::info!(source = %name, ?pid, status = %st, lines, "exec source: the command exited");
    } else {
        tracing::warn!(source = %name, ?pid, status = %st, lines, "exec source: the command exited");
    }
}

/// SIGTERM to the child's process group, SIGKILL after [`KILL_GRACE`]; reaps the child.
async fn stop_child(child: &mut Child, name: &str) {
    let pid = child.id();
    let group = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(g) = group {
        let _ = rustix::process::kill_process_group(g, rustix::process::Signal::TERM);
    }
    let status = match tokio::time::timeout(KILL_GRACE, child.wait()).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(source = %name, ?pid, "exec source: the command ignored SIGTERM; killing it");
            if let Some(g) = group {
                let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
            }
            let _ = child.start_kill();
            child.wait().await
        }
    };
    match status {
        Ok(st) => {
            tracing::info!(source = %name, ?pid, status = %st, "exec source: the command was stopped")
        }
        Err(e) => {
            tracing::error!(source = %name, ?pid, error = %e, "exec source: reaping the command failed")
        }
    }
}

/// Reads the child's standard error line by line; logs each line at warn when `log`.
async fn log_stderr(mut err: impl AsyncRead + Unpin, name: &str, max: usize, log: bool) {
    let mut lines = Lines::new(max);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = err.read(&mut buf).await.unwrap_or(0);
        let got = match buf.get(..n) {
            Some(bytes) if n > 0 => lines.push(bytes),
            _ => lines.finish(),
        };
        if log {
            for l in got {
                tracing::warn!(source = %name, line = %String::from_utf8_lossy(&l), "exec source: command stderr");
            }
        }
        if n == 0 {
            return;
        }
    }
}

/// Splits a byte stream into lines of at most `max` bytes: a longer line is cut into pieces of
/// `max` bytes (the last one shorter). Holds at most `max` bytes (plus a `\r`).
#[derive(Debug)]
pub struct Lines {
    max: usize,
    current: Vec<u8>,
}

impl Lines {
    /// Lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Lines {
            max: max.max(1),
            current: Vec::new(),
        }
    }

    /// Feeds `bytes`; returns the lines (and pieces) they completed.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let nl = bytes.iter().position(|&b| b == b'\n');
            let end = nl.unwrap_or(bytes.len());
            let (chunk, rest) = bytes.split_at(end);
            bytes = rest.get(1..).unwrap_or_default();
            for &b in chunk {
                // A piece is full: cut it. `current` may hold one byte more than `max` only
                // while that byte is a `\r` (which a `\n` would remove).
                if self.current.len() > self.max || (self.current.len() == self.max && b != b'\r') {
                    let rest = self.current.split_off(self.max);
                    out.push(std::mem::replace(&mut self.current, rest));
                }
                self.current.push(b);
            }
            if nl.is_some() {
                if self.current.last() == Some(&b'\r') {
                    self.current.pop();
                }
                out.push(std::mem::take(&mut self.current));
            }
        }
        out
    }

    /// The end of the stream: an unfinished line is a last line.
    pub fn finish(&mut self) -> Vec<Vec<u8>> {
        if self.current.is_empty() {
            return Vec::new();
        }
        let mut l = std::mem::take(&mut self.current);
        if l.last() == Some(&b'\r') {
            l.pop();
        }
        vec![l]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|x| x.as_bytes().to_vec()).collect()
    }

    #[test]
    fn lines_are_split_and_long_ones_cut() {
        let mut l = Lines::new(4);
        assert_eq!(l.push(b"ab\r\ncd"), s(&["ab"]));
        assert_eq!(l.push(b"efghij\n\n"), s(&["cdef", "ghij", ""]));
        assert_eq!(
            l.push(b"abcd\r\n"),
            s(&["abcd"]),
            "a \\r at the limit ends the line"
        );
        assert_eq!(l.push(b"xy"), s(&[]));
        assert_eq!(l.finish(), s(&["xy"]));
        assert_eq!(l.finish(), s(&[]));
    }

    #[test]
    fn restart_pauses_double_up_to_ten_times_and_reset_after_a_good_run() {
        let t = Duration::from_secs(1);
        let quick = Duration::from_millis(10);
        let mut p = t / 2;
        let mut seen = Vec::new();
        for _ in 0..6 {
            p = next_pause(p, t, quick);
            seen.push(p.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 10, 10]);
        assert_eq!(next_pause(p, t, t * 10), t, "a good run resets the pause");
    }

    fn cfg(command: &str, shell: Option<&str>) -> ExecSourceConfig {
        let mut t = toml::Table::new();
        t.insert("command".into(), command.into());
        if let Some(sh) = shell {
            t.insert("shell".into(), sh.into());
        }
        ExecSourceConfig::deserialize(toml::Value::Table(t)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn command_words() {
        let src = ExecSource::new("e", cfg("printf '%s\\n' \"a b\" c\\ d", None))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(src.argv, ["printf", "%s\\n", "a b", "c d"]);
        let src = ExecSource::new("e", cfg("echo $HOME | wc", Some("/bin/sh -c")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(src.argv, ["/bin/sh", "-c", "echo $HOME | wc"]);
        let err = ExecSource::new("e", cfg("echo 'x", None)).map(|_| ());
        assert!(
            matches!(&err, Err(ComponentError::Config(m)) if m.contains("command") && m.contains("unterminated")),
            "{err:?}"
        );
    }
}
