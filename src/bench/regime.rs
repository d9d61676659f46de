//! Which regime the disk is in. Our machines' disks switch over minutes between a fast regime
//! (`fdatasync` near 0.1 ms) and a throttled one (every flush on a 4 ms tick), so a figure means
//! something only next to the regime it was measured in (`../shared/reference/disk-limits.md`).
//!
//! Two probes: [`DiskRegimeTool`] runs the shared `disk-regime` script (1,000 syncs, a few
//! tenths of a second when fast) before and after a run when it is installed, and
//! [`QuickProbe`] (50 syncs, about 5 ms when fast) brackets each round.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::baseline::RawFile;

/// The shared `disk-regime` script, found at `TIDEGATE_DISK_REGIME`, `/work/shared/tools/`, or
/// `../shared/tools/` from the current directory. `TIDEGATE_DISK_REGIME=none` turns it off.
#[derive(Debug, Clone)]
pub struct DiskRegimeTool {
    path: PathBuf,
}

impl DiskRegimeTool {
    /// The script, if one of the places above has it.
    pub fn find() -> Option<DiskRegimeTool> {
        if std::env::var_os("TIDEGATE_DISK_REGIME").is_some_and(|v| v == "none") {
            return None;
        }
        let candidates = std::env::var_os("TIDEGATE_DISK_REGIME")
            .map(PathBuf::from)
            .into_iter()
            .chain([
                PathBuf::from("/work/shared/tools/disk-regime"),
                PathBuf::from("../shared/tools/disk-regime"),
            ]);
        candidates
            .into_iter()
            .find(|p| p.is_file())
            .map(|path| DiskRegimeTool { path })
    }

    /// The script's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the script on `dir` and returns its line, e.g. `regime=fast p50_us=98 p99_us=180
    /// syncs_per_s=9500 dir=/data`, or a line starting `regime=unknown` that says why not.
    pub fn probe(&self, dir: &Path) -> String {
        match std::process::Command::new(&self.path).arg(dir).output() {
            Ok(out) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
            Ok(out) => format!(
                "regime=unknown ({} failed: {})",
                self.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => format!("regime=unknown ({}: {e})", self.path.display()),
        }
    }
}

/// The `regime=` word of a `disk-regime` line (`fast`, `throttled`, or `unknown`).
pub fn regime_word(line: &str) -> &str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("regime="))
        .unwrap_or("unknown")
}

/// A quick in-process probe: 50 x (4 KiB overwrite of a preallocated 1 MiB file + `fdatasync`).
#[derive(Debug)]
pub struct QuickProbe {
    file: RawFile,
}

/// Median sync latency below which the disk is in its fast regime (disk-limits.md: fast near
/// 100 us, throttled near 4 ms).
pub const FAST_P50_US: f64 = 1000.0;

impl QuickProbe {
    /// Creates the probe's 1 MiB file at `path`.
    pub fn new(path: &Path) -> io::Result<QuickProbe> {
        Ok(QuickProbe {
            file: RawFile::create(path, 1 << 20)?,
        })
    }

    /// Median `write + fdatasync` latency in microseconds.
    pub fn p50_us(&mut self) -> io::Result<f64> {
        let block = [0u8; 4096];
        let mut lat = Vec::with_capacity(50);
        for _ in 0..50 {
            let t = Instant::now();
            self.file.write_sync(&block)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        lat.sort_by(f64::total_cmp);
        Ok(lat[lat.len() / 2])
    }

    /// "fast" or "throttled", from a median latency.
    pub fn label(p50_us: f64) -> &'static str {
        if p50_us < FAST_P50_US {
            "fast"
        } else {
            "throttled"
        }
    }

    /// The regime of a round bracketed by two probes: "fast", "throttled", or "mixed" when the
    /// disk changed regime during it.
    pub fn round_label(before_us: f64, after_us: f64) -> &'static str {
        match (Self::label(before_us), Self::label(after_us)) {
            ("fast", "fast") => "fast",
            ("throttled", "throttled") => "throttled",
            _ => "mixed",
        }
    }

    /// The probe file's path (to remove it).
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regime_word_reads_the_tool_line() {
        assert_eq!(
            regime_word("regime=fast p50_us=98 p99_us=180 syncs_per_s=9500 dir=/x"),
            "fast"
        );
        assert_eq!(regime_word("nothing here"), "unknown");
        assert_eq!(QuickProbe::round_label(90.0, 4000.0), "mixed");
        assert_eq!(QuickProbe::round_label(4100.0, 4000.0), "throttled");
    }
}
