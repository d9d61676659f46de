//! The `syslog` and `exec` sources in the agent binary with a file channel, under `kill -9`.
//!
//! Neither source has an acknowledgement a sender could use, so "at least once" means: every
//! message the agent counted as accepted (committed to the channel) before the kill reaches the
//! sink after the restart, and the source serves again after the restart. The accepted count
//! of a single in-order stream (one TCP connection; one command's output) names a prefix of
//! that stream, which is what the tests check.

#[path = "common/agent.rs"]
mod agent;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use agent::{Agent, file_channel_to_files, free_port, request, wait_until};

fn config(dir: &Path, mon: u16, source: &str) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, file_channel_to_files(mon, source)).expect("write config");
    path
}

fn metric(mon: &str, component: &str, key: &str) -> Option<u64> {
    let (_, body) = request(mon, "GET", "/metrics.json", "")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v[component][key].as_str()?.parse().ok()
}

/// Waits for the sink to drain the channel, stops the agent, returns every output line.
fn drain_and_stop(mut agent: Agent, mon: &str, dir: &Path) -> Vec<String> {
    wait_until("the channel drains", || {
        metric(mon, "CHANNEL.c1", "ChannelSize") == Some(0)
    });
    agent.stop();
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir.join("out")).expect("out dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read output");
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

#[test]
fn syslog_tcp_committed_messages_survive_kill_9_and_the_source_serves_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, mon) = (free_port(), free_port());
    let addr = format!("127.0.0.1:{port}");
    let mon = format!("127.0.0.1:{mon}");
    let config = config(
        dir.path(),
        mon.rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("port"),
        &format!(
            r#"[sources.sl]
type = "syslog"
channels = ["c1"]
protocol = "tcp"
bind = "{addr}"
batch_size = 20"#
        ),
    );

    // One sender: ids in order, ten per write; reconnects when the agent is gone. `first_id`
    // of each connection is recorded.
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sender = {
        let (next, stop, connections, addr) = (
            next.clone(),
            stop.clone(),
            connections.clone(),
            addr.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut tcp) = std::net::TcpStream::connect(&addr) else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                connections
                    .lock()
                    .expect("lock")
                    .push(next.load(Ordering::SeqCst));
                while !stop.load(Ordering::SeqCst) {
                    let from = next.fetch_add(10, Ordering::SeqCst);
                    let batch: String = (from..from + 10)
                        .map(|i| format!("<13>1 - h app - - - ev-{i:09}\n"))
                        .collect();
                    if tcp.write_all(batch.as_bytes()).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };

    let mut agent = Agent::start(&config, dir.path());
    let mut accepted = 0;
    wait_until("the agent committed 200 messages", || {
        accepted = metric(&mon, "SOURCE.sl", "EventAcceptedCount").unwrap_or(0);
        accepted >= 200
    });
    agent.kill();
    eprintln!("killed with {accepted} messages committed");
    let first_connection = connections.lock().expect("lock").len();
    assert_eq!(first_connection, 1, "one connection before the kill");

    let agent = Agent::start(&config, dir.path());
    wait_until("the restarted agent commits again", || {
        metric(&mon, "SOURCE.sl", "EventAcceptedCount").unwrap_or(0) >= 100
    });
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("sender");
    let resumed_from = connections.lock().expect("lock")[1];

    let lines = drain_and_stop(agent, &mon, dir.path());
    let seen: BTreeSet<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ev-").and_then(|d| d.parse().ok()))
        .collect();
    let missing: Vec<u64> = (0..accepted).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of the {accepted} messages committed before the kill are missing: first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        seen.iter().any(|&i| i >= resumed_from),
        "messages sent after the restart (from id {resumed_from}) arrived"
    );
    eprintln!(
        "{} lines, {} distinct ids, {} duplicates",
        lines.len(),
        seen.len(),
        lines.len() - seen.len()
    );
}

/// Whether `pid` runs (a zombie, or no such process, counts as gone).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn exec_committed_lines_survive_kill_9_and_the_command_runs_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mon_port = free_port();
    let mon = format!("127.0.0.1:{mon_port}");
    // Each run numbers itself (file `runs`) and writes its pid (file `pid<run>`).
    let command = "n=$(cat runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > runs; echo $$ > pid$n; \
                   i=0; while :; do echo run$n-$i; i=$((i+1)); if [ $((i % 10)) -eq 0 ]; then sleep 0.01; fi; done";
    let config = config(
        dir.path(),
        mon_port,
        &format!(
            r#"[sources.ex]
type = "exec"
channels = ["c1"]
command = "{command}"
shell = "/bin/sh -c"
batch_size = 10
batch_timeout = "100ms""#
        ),
    );
    let mut agent = Agent::start(&config, dir.path());
    let mut accepted = 0;
    wait_until("the agent committed 200 lines", || {
        accepted = metric(&mon, "SOURCE.ex", "EventAcceptedCount").unwrap_or(0);
        accepted >= 200
    });
    agent.kill();
    eprintln!("killed with {accepted} lines committed");
    let pid1: u32 = std::fs::read_to_string(dir.path().join("pid1"))
        .expect("pid1")
        .trim()
        .parse()
        .expect("pid");
    // The orphaned command dies at its next write to the closed pipe (SIGPIPE).
    wait_until(
        "the first run's command ends after the agent's death",
        || !running(pid1),
    );

    let agent = Agent::start(&config, dir.path());
    wait_until("the restarted agent commits again", || {
        metric(&mon, "SOURCE.ex", "EventAcceptedCount").unwrap_or(0) >= 50
    });
    let lines = drain_and_stop(agent, &mon, dir.path());
    let run1: BTreeSet<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("run1-").and_then(|d| d.parse().ok()))
        .collect();
    let missing: Vec<u64> = (0..accepted).filter(|i| !run1.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of the {accepted} lines committed before the kill are missing: first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        lines.iter().any(|l| l.starts_with("run2-")),
        "the command ran again after the restart"
    );
}

/// `restart = false`: the command's stdout lines become events, its stderr is logged with the
/// source name, its exit status is logged, and the agent (its only source done) drains and
/// exits.
#[test]
fn exec_stderr_and_exit_status_are_logged_and_the_agent_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        r#"[channels.c1]
type = "memory"

[sources.ex]
type = "exec"
channels = ["c1"]
command = "echo out-line; echo err-line >&2; exit 3"
shell = "/bin/sh -c"

[sinks.log]
type = "logger"
channel = "c1"
"#,
    )
    .expect("config");
    let mut agent = Agent::start(&path, dir.path());
    let err = agent.wait_for_log("command stderr");
    assert!(
        err.contains("err-line") && err.contains("\"source\":\"ex\"") && err.contains("WARN"),
        "{err}"
    );
    let exit = agent.wait_for_log("the command exited");
    assert!(exit.contains("exit status: 3"), "{exit}");
    assert_eq!(agent.wait_exit(), 0, "log:\n{}", agent.lines().join("\n"));
    assert_eq!(agent.logged_bodies(), ["out-line"]);
}

/// The agent with a UDP syslog source on two ports: `logger --udp` to each arrives, with its
/// headers, at a `logger` sink.
#[test]
fn syslog_udp_on_two_ports_through_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = [free_udp_port(), free_udp_port()];
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"[channels.c1]
type = "memory"

[sources.sl]
type = "syslog"
channels = ["c1"]
protocol = "udp"
bind = ["127.0.0.1:{}", "127.0.0.1:{}"]

[sinks.log]
type = "logger"
channel = "c1"
"#,
            ports[0], ports[1]
        ),
    )
    .expect("config");
    let mut agent = Agent::start(&path, dir.path());
    agent.wait_for_log("syslog source listening (udp)");
    for (i, port) in ports.iter().enumerate() {
        let body = format!("udp-{i}");
        // UDP may drop a datagram: send again until it is there.
        wait_until("the datagram arrives", || {
            let st = std::process::Command::new("logger")
                .args(["--server", "127.0.0.1", "--port", &port.to_string()])
                .args(["--udp", "--rfc5424", "-t", "uapp", &body])
                .status()
                .expect("logger");
            assert!(st.success());
            std::thread::sleep(Duration::from_millis(50));
            agent.logged_bodies().contains(&body)
        });
    }
    let line = agent.wait_for_log("udp-1");
    assert!(
        line.contains("uapp"),
        "the app_name header is logged: {line}"
    );
    agent.stop();
}

/// A loopback UDP port that was free a moment ago.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free udp port")
}

/// `restart = true`: a command that keeps exiting is started again and again; each exit status
/// and restart is logged.
#[test]
fn exec_restarts_are_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        r#"[channels.c1]
type = "memory"

[sources.ex]
type = "exec"
channels = ["c1"]
command = "echo again; exit 2"
shell = "/bin/sh -c"
restart = true
restart_throttle = "10ms"

[sinks.log]
type = "logger"
channel = "c1"
"#,
    )
    .expect("config");
    let mut agent = Agent::start(&path, dir.path());
    let count = |needle: &str| agent.lines().iter().filter(|l| l.contains(needle)).count();
    wait_until("three restarts logged", || {
        count("exec source restarts the command") >= 3
    });
    assert!(count("exit status: 2") >= 3, "each exit status is logged");
    assert!(count("exec source started the command") >= 3);
    agent.stop();
    assert!(agent.logged_bodies().iter().all(|b| b == "again"));
}
