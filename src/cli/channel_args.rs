//! How the offline commands (`verify`, `repair`, `inspect`) name a channel.

use std::path::PathBuf;

use crate::offline::ChannelDirs;

/// A channel named by its directories (Flume's tool takes `-l dataDirs`), or by an agent
/// configuration file and the channel's name in it.
#[derive(Debug, clap::Args)]
pub struct ChannelArgs {
    /// The checkpoint directory.
    #[arg(long, required_unless_present = "config")]
    pub checkpoint_dir: Option<PathBuf>,
    /// The data directories, comma-separated, in the channel's order.
    #[arg(long, value_delimiter = ',', requires = "checkpoint_dir")]
    pub data_dirs: Vec<PathBuf>,
    /// An agent configuration file (with `--channel`): its channel's directories are used.
    #[arg(long, requires = "channel", conflicts_with = "checkpoint_dir")]
    pub config: Option<PathBuf>,
    /// The channel's name in `--config`.
    #[arg(long, requires = "config")]
    pub channel: Option<String>,
}

impl ChannelArgs {
    /// The directories these arguments name.
    pub fn dirs(&self) -> Result<ChannelDirs, String> {
        if let (Some(config), Some(channel)) = (&self.config, &self.channel) {
            // TODO(lead): load `config` with the agent configuration loader and take the
            // checkpoint and data directories of file channel `channel` from it.
            return Err(format!(
                "--config {} --channel {channel}: reading an agent configuration is not \
                 supported by this build yet; name the channel with --checkpoint-dir and \
                 --data-dirs",
                config.display()
            ));
        }
        let checkpoint_dir = self
            .checkpoint_dir
            .clone()
            .ok_or("name the channel with --checkpoint-dir and --data-dirs")?;
        if self.data_dirs.is_empty() {
            return Err("--data-dirs names no directory".into());
        }
        Ok(ChannelDirs::new(checkpoint_dir, self.data_dirs.clone()))
    }
}

/// Exit code of an offline command that could not run (bad arguments, a locked or missing
/// directory, an I/O error). 1 means it ran and found damage (verify) or lost events (repair).
pub const EXIT_ERROR: u8 = 2;

/// Prints `error: {e}` (and for a locked directory, what to do) and returns [`EXIT_ERROR`].
pub fn fail(e: impl std::fmt::Display) -> std::process::ExitCode {
    let msg = e.to_string();
    eprintln!("error: {msg}");
    if msg.contains("is locked") {
        eprintln!(
            "the offline tools refuse to run against an open channel: stop the agent (or the \
             program) that has it open, then run this again"
        );
    }
    std::process::ExitCode::from(EXIT_ERROR)
}
