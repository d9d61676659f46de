//! The `exec` source running real commands, delivering into real channels.

mod components_common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use components_common::{ChannelDeliver, FullDeliver, Running, bodies, drain};
use tidegate::agent::component::{ComponentError, Deliver};
use tidegate::agent::sources::exec::{ExecSource, ExecSourceConfig};
use tidegate::{Event, MemoryChannel, MemoryChannelConfig};

const WAIT: Duration = Duration::from_secs(20);

fn start(keys: &str, output: Arc<dyn Deliver>) -> Running {
    let cfg: ExecSourceConfig = toml::from_str(keys).unwrap_or_else(|e| panic!("config: {e}"));
    let source = ExecSource::new("ex", cfg).expect("source");
    Running::start(Box::new(source), output)
}

fn memory() -> Arc<MemoryChannel> {
    Arc::new(MemoryChannel::new(MemoryChannelConfig::default()))
}

/// Polls `ok` until it holds (bounded by [`WAIT`]).
async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the source to finish on its own; returns its result.
async fn finished(src: Running) -> Result<(), ComponentError> {
    tokio::time::timeout(WAIT, src.task)
        .await
        .expect("the source finishes")
        .expect("source task")
}

/// Whether process `pid` still exists (a zombie counts: it was not reaped).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_arrive_in_order_and_the_source_finishes_with_the_command() {
    let ch = memory();
    let src = start(
        r#"
command = "seq 1 500; printf 'abcdefghij\n'; echo \"$FOO\""
shell = "/bin/sh -c"
batch_size = 7
max_line_length = 4
env = { FOO = "from env" }
"#,
        Arc::new(ChannelDeliver(ch.clone())),
    );
    let result = finished(src).await;
    assert!(result.is_ok(), "{result:?}");
    let got = bodies(&drain(ch.as_ref()));
    let mut want: Vec<String> = (1..=500).map(|i| i.to_string()).collect();
    want.extend(["abcd", "efgh", "ij", "from", " env"].map(String::from));
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_is_delivered_after_batch_timeout() {
    let ch = memory();
    let src = start(
        r#"
command = "echo early; exec sleep 1000"
shell = "/bin/sh -c"
batch_size = 100
batch_timeout = "50ms"
"#,
        Arc::new(ChannelDeliver(ch.clone())),
    );
    let mut got: Vec<Event> = Vec::new();
    wait_until("the partial batch arrives", || {
        got.extend(drain(ch.as_ref()));
        !got.is_empty()
    })
    .await;
    assert_eq!(bodies(&got), ["early"]);
    src.stop().await;
}

/// A command that prints and exits, with `restart = true`: it runs again and again (each run
/// appends to a file); the source keeps serving until it is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_runs_the_command_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let ch = memory();
    let src = start(
        &format!(
            r#"
command = "echo run >> '{}'; echo line"
shell = "/bin/sh -c"
restart = true
restart_throttle = "10ms"
batch_timeout = "10ms"
"#,
            runs.display()
        ),
        Arc::new(ChannelDeliver(ch.clone())),
    );
    let mut got: Vec<Event> = Vec::new();
    wait_until("four runs delivered", || {
        got.extend(drain(ch.as_ref()));
        got.len() >= 4
    })
    .await;
    assert!(bodies(&got).iter().all(|b| b == "line"));
    src.stop().await;
    got.extend(drain(ch.as_ref()));
    let started = std::fs::read_to_string(&runs)
        .expect("runs")
        .lines()
        .count();
    assert!(
        started >= got.len(),
        "every line came from its own run: {started} runs, {} lines",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_is_an_error_naming_it() {
    let src = start(
        "command = \"/nonexistent/tidegate-no-such-tool --flag\"",
        Arc::new(ChannelDeliver(memory())),
    );
    let result = finished(src).await;
    assert!(
        matches!(&result, Err(ComponentError::Other(m)) if m.contains("/nonexistent/tidegate-no-such-tool") && m.contains("source ex")),
        "{result:?}"
    );

    // With restart = true it is retried, and the source stops cleanly when asked.
    let src = start(
        "command = \"/nonexistent/tidegate-no-such-tool\"\nrestart = true\nrestart_throttle = \"10ms\"",
        Arc::new(ChannelDeliver(memory())),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!src.task.is_finished(), "restart = true keeps trying");
    src.stop().await;
}

/// Shutdown stops the child (SIGTERM; SIGKILL when it ignores SIGTERM) and reaps it: its pid is
/// gone when the source returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_and_reaps_the_child() {
    for ignore_term in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let trap = if ignore_term { "trap '' TERM; " } else { "" };
        let src = start(
            &format!(
                r#"
command = "{trap}echo $$ > '{0}.tmp' && mv '{0}.tmp' '{0}' && exec sleep 1000"
shell = "/bin/sh -c"
"#,
                pidfile.display()
            ),
            Arc::new(ChannelDeliver(memory())),
        );
        let mut pid = None;
        wait_until("the command wrote its pid", || {
            pid = read_pid(&pidfile);
            pid.is_some()
        })
        .await;
        let pid = pid.expect("pid");
        assert!(alive(pid));
        src.stop().await;
        assert!(
            !alive(pid),
            "the child {pid} is gone (killed and reaped), ignore_term = {ignore_term}"
        );
    }
}

/// A command that closed its output but keeps running is still stopped and reaped at
/// shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_closed_its_output_is_stopped_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let ch = memory();
    let src = start(
        &format!(
            r#"
command = "echo bye; exec >&- 2>&-; echo $$ > '{0}.tmp' && mv '{0}.tmp' '{0}' && exec sleep 1000"
shell = "/bin/sh -c"
batch_timeout = "10ms"
"#,
            pidfile.display()
        ),
        Arc::new(ChannelDeliver(ch.clone())),
    );
    let mut got: Vec<Event> = Vec::new();
    wait_until("the line arrives", || {
        got.extend(drain(ch.as_ref()));
        !got.is_empty()
    })
    .await;
    assert_eq!(bodies(&got), ["bye"]);
    let mut pid = None;
    wait_until("the command wrote its pid", || {
        pid = read_pid(&pidfile);
        pid.is_some()
    })
    .await;
    let pid = pid.expect("pid");
    src.stop().await;
    assert!(!alive(pid), "the child {pid} is gone");
}

/// The channel refuses everything: the source takes one batch and stops reading, so the
/// command blocks writing to the full pipe and never gets to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_channel_blocks_the_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pidfile, done) = (dir.path().join("pid"), dir.path().join("done"));
    // About 16 MB of output, far more than the pipe and the source's buffers.
    let src = start(
        &format!(
            r#"
command = "seq 1 2000000 & echo $! > '{0}.tmp' && mv '{0}.tmp' '{0}'; wait; touch '{1}'"
shell = "/bin/sh -c"
batch_size = 10
"#,
            pidfile.display(),
            done.display()
        ),
        Arc::new(FullDeliver),
    );
    let mut pid = None;
    wait_until("the writer started", || {
        pid = read_pid(&pidfile);
        pid.is_some()
    })
    .await;
    let pid = pid.expect("pid");
    let wchan = format!("/proc/{pid}/wchan");
    wait_until("the writer blocks on the full pipe", || {
        std::fs::read_to_string(&wchan).is_ok_and(|w| w.contains("pipe_write"))
    })
    .await;
    // Give a source that reads without bound time to let the writer finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !done.exists(),
        "the command finished: its output was read without bound"
    );
    assert!(alive(pid));
    assert_eq!(src.counters.received.load(Relaxed), 10, "one batch taken");
    assert_eq!(src.counters.accepted.load(Relaxed), 0);
    src.stop().await;
}

/// Absurd durations are config errors naming the key (a `restart_throttle` of 3e11 years made
/// the pause arithmetic overflow: the source task panicked at the first restart).
#[test]
fn durations_over_a_day_are_config_errors_naming_the_key() {
    for (key, value) in [
        ("restart_throttle", "300000000000years"),
        ("batch_timeout", "300000000000years"),
        ("restart_throttle", "25h"),
    ] {
        let cfg: ExecSourceConfig = toml::from_str(&format!(
            "command = \"true\"\nrestart = true\n{key} = \"{value}\""
        ))
        .unwrap_or_else(|e| panic!("config: {e}"));
        let r = ExecSource::new("ex", cfg).map(|_| ());
        assert!(
            matches!(&r, Err(ComponentError::Config(m)) if m.contains(key) && m.contains("at most")),
            "{key} = {value:?}: {r:?}"
        );
    }
    let cfg: ExecSourceConfig =
        toml::from_str("command = \"true\"\nrestart_throttle = \"24h\"\nbatch_timeout = \"24h\"")
            .unwrap_or_else(|e| panic!("config: {e}"));
    assert!(ExecSource::new("ex", cfg).is_ok(), "a day is accepted");
}
