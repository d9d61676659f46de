//! How the offline commands (`verify`, `repair`, `inspect`) name a channel, and the keys that
//! decode its encrypted events.

use std::path::PathBuf;

use crate::at_rest::EncryptionConfig;
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
    /// An agent configuration file (with `--channel`): that file channel's directories,
    /// encryption keys, recovery mode and `max_event_size` are used.
    #[arg(long, requires = "channel", conflicts_with = "checkpoint_dir")]
    pub config: Option<PathBuf>,
    /// The channel's name in `--config`.
    #[arg(long, requires = "config")]
    pub channel: Option<String>,
    /// A key that decodes encrypted events: `ID=PATH` (repeatable; added to, or replacing, the
    /// keys of `--config`). Only what decodes events needs it; CRC checks need no key.
    #[arg(long = "key", value_name = "ID=PATH", value_parser = parse_key_arg)]
    pub keys: Vec<(u16, PathBuf)>,
    /// The active key id (as in the channel's config; the offline tools never encrypt, so 0,
    /// the default, is fine).
    #[arg(long, value_name = "ID")]
    pub active_key: Option<u16>,
}

fn parse_key_arg(s: &str) -> Result<(u16, PathBuf), String> {
    let (id, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ID=PATH, e.g. 1=/etc/tidegate/k1.key"))?;
    let id: u16 = id
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: the key id {id:?} is not a number from 1 to 65535"))?;
    if id == 0 || path.is_empty() {
        return Err(format!(
            "{s:?}: key ids run from 1 to 65535 and the path may not be empty"
        ));
    }
    Ok((id, PathBuf::from(path)))
}

impl ChannelArgs {
    /// The channel these arguments name, with its keys.
    pub fn dirs(&self) -> Result<ChannelDirs, String> {
        let mut dirs = if let (Some(config), Some(channel)) = (&self.config, &self.channel) {
            let named = || format!("--config {} --channel {channel}", config.display());
            let c = crate::agent::config::load_config_file(config)
                .map_err(|e| format!("{}: the config has errors:\n{e}", named()))?;
            let f = c
                .file_channel(channel)
                .map_err(|e| format!("{}: {e}", named()))?;
            ChannelDirs::of(&f)
        } else {
            let checkpoint_dir = self
                .checkpoint_dir
                .clone()
                .ok_or("name the channel with --checkpoint-dir and --data-dirs")?;
            if self.data_dirs.is_empty() {
                return Err("--data-dirs names no directory".into());
            }
            ChannelDirs::new(checkpoint_dir, self.data_dirs.clone())
        };
        if !self.keys.is_empty() || self.active_key.is_some() {
            let base = dirs.encryption.take();
            let active = self
                .active_key
                .or(base.as_ref().map(EncryptionConfig::active_key))
                .unwrap_or(0);
            let mut enc = EncryptionConfig::new(active);
            for (id, path) in base.iter().flat_map(EncryptionConfig::keys) {
                enc = enc.key(id, path);
            }
            for (id, path) in &self.keys {
                enc = enc.key(*id, path);
            }
            dirs = dirs.encryption(enc);
        }
        Ok(dirs)
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
