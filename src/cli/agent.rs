//! `tidegate agent`: runs an agent from a TOML config (or a Flume properties file).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::agent::config::{self, AgentConfig, ConfigErrors};
use crate::agent::runtime;

/// Exit code for a config with errors (Vector's and sysexits' `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// Where the agent config comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// The agent config (TOML).
    #[arg(
        long,
        required_unless_present = "flume_conf",
        conflicts_with = "flume_conf"
    )]
    pub config: Option<PathBuf>,
    /// A Flume agent properties file instead (needs --name).
    #[arg(long, requires = "name")]
    pub flume_conf: Option<PathBuf>,
    /// The agent's name in the Flume properties file (Flume's `-n`).
    #[arg(long)]
    pub name: Option<String>,
}

impl ConfigArgs {
    /// Reads and checks the config.
    pub fn load(&self) -> Result<AgentConfig, ConfigErrors> {
        match (&self.config, &self.flume_conf, &self.name) {
            (Some(path), _, _) => config::load_config_file(path),
            (None, Some(path), Some(name)) => load_flume(path, name),
            _ => Err(ConfigErrors(vec![config::ConfigError {
                file: String::new(),
                line: None,
                key: String::new(),
                message: "give --config FILE, or --flume-conf FILE --name AGENT".into(),
            }])),
        }
    }
}

/// Loads agent `name` of a Flume properties file through the Flume import; its warnings are
/// logged, its errors (and then the config checks') carry the properties file's lines.
fn load_flume(path: &std::path::Path, name: &str) -> Result<AgentConfig, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![config::ConfigError {
            file: file.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read the Flume properties file: {e}"),
        }])
    })?;
    let import = crate::agent::flume::to_toml(&text, name).map_err(|e| {
        ConfigErrors(
            e.errors
                .into_iter()
                .map(|d| config::ConfigError {
                    file: file.clone(),
                    line: d.line,
                    key: d.key,
                    message: d.message,
                })
                .collect(),
        )
    })?;
    for w in &import.warnings {
        tracing::warn!(file = %file, "{w}");
    }
    config::load_config_table(
        import.table,
        config::Origin {
            file,
            lines: import.lines,
        },
    )
}

/// Prints every config problem, one per line, to stderr.
pub fn report(errors: &ConfigErrors) {
    eprintln!("{} problem(s) in the config:", errors.0.len());
    for e in &errors.0 {
        eprintln!("  {e}");
    }
}

/// `tidegate agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// Runs the agent until it is stopped (SIGTERM/SIGINT) or has drained (finite sources).
pub fn run(args: AgentArgs) -> ExitCode {
    let cfg = match args.config.load() {
        Ok(c) => c,
        Err(errors) => {
            report(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tidegate-agent")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = args.config.clone();
    let reload: runtime::ConfigLoader = Box::new(move || source.load());
    let result = rt.block_on(runtime::run(cfg, reload));
    // Blocking tasks still running (a replay abandoned by a signal) do not hold the exit up.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agent failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
