//! The results of a `tidegate bench` run: per configuration, the medians and spreads over its
//! rounds, commit-latency percentiles, fsyncs per commit, CPU and memory; rendered as a terminal
//! table, JSON ([`BenchReport::to_json`]) and Markdown.
//!
//! ## JSON fields (stable; `schema` 1)
//!
//! Top level: `tool`, `version`, `schema`, `started_unix_sec`, `channel`, `rounds_requested`,
//! `events_per_phase` (or `null` for a timed run) and `duration_per_phase_sec` (or `null`),
//! `interrupted` (Ctrl-C), `disk_regime_tool` (path or `null`), `disk_regime` (per directory:
//! `dir`, `before`, `after`: the `disk-regime` script's lines), `method`, and `configurations`,
//! each with:
//!
//! | field | meaning |
//! |---|---|
//! | `dir`, `channel`, `event_size`, `batch`, `producers`, `consumers`, `fsync`, `data_dirs_per_dir`, `segment_size`, `encrypt`, `compression` | the configuration |
//! | `rounds_done` | recorded rounds |
//! | `events_per_sec`, `mb_per_sec` | put+commit, median over the rounds (MB = 10^6 bytes of event bodies) |
//! | `baseline_events_per_sec`, `baseline_mb_per_sec` | raw write + fdatasync of the same bytes in the same batches, median (`null` for the memory channel) |
//! | `ratio` | median over the rounds of each round's `events_per_sec / baseline_events_per_sec` (`null` for the memory channel) |
//! | `ratio_spread` | `{min, median, max}` of the per-round ratios |
//! | `put`, `take`, `end_to_end`, `baseline` | `{events, events_per_sec: {min, median, max}, mb_per_sec: {min, median, max}}`; `events` is the total over the rounds |
//! | `take_ratio` | median of each round's take+commit rate over its put+commit rate (goal: at least 1) |
//! | `commit_latency_us` | put `commit()` latency over every round: `{count, p50, p99, p99_9, max}` in microseconds |
//! | `take_commit_latency_us` | the same for take transactions |
//! | `fsyncs_per_commit` | segment fdatasyncs / commits during the put phases (group commit shows as < 1; `null` for the memory channel) |
//! | `cpu_sec_per_million_events` | process CPU seconds (all threads) per million events put and taken, `{min, median, max}` |
//! | `peak_rss_bytes` | the process's peak resident set during the configuration |
//! | `regimes` | per-round disk regime from the quick probe: `{fast, throttled, mixed}` counts |
//! | `note`, `error` | what to keep in mind, and why the configuration failed (or `null`) |
//! | `rounds` | per round: `put_events_per_sec`, `take_events_per_sec`, `end_to_end_events_per_sec`, `baseline_events_per_sec`, `ratio`, `fsyncs_per_commit`, `cpu_sec_per_million_events`, `regime`, `probe_p50_us` |

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::plan::{BenchOptions, PlannedConfig};
use super::workload::{self, Amount, ChannelKind, RoundResult};

/// How the figures were measured, in one paragraph (in the JSON and the Markdown).
pub const METHOD: &str = "Each round runs the channel (put+commit, take+commit, then end to end) \
and then, on the same directory, the raw baseline: pwrite + fdatasync of the same bytes in the \
same batch sizes into a preallocated file. The disk's flush latency drifts 10-30x between \
regimes, so compare the per-round ratio, not absolute rates from different runs.";

/// Minimum, median and maximum of a set of figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `xs`, `None` when empty.
    pub fn of(xs: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
        })
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Commits recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Largest.
    pub max: u64,
}

impl From<Histogram<u64>> for Latency {
    fn from(h: Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One phase over the rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PhaseReport {
    /// Events over every round.
    pub events: u64,
    /// Events per second, over the rounds.
    pub events_per_sec: Option<Spread>,
    /// Megabytes (10^6 bytes of event bodies) per second, over the rounds.
    pub mb_per_sec: Option<Spread>,
}

impl PhaseReport {
    fn of(phases: &[workload::PhaseResult], event_size: usize) -> PhaseReport {
        let rates: Vec<f64> = phases
            .iter()
            .map(workload::PhaseResult::events_per_sec)
            .collect();
        let mb: Vec<f64> = rates.iter().map(|r| r * event_size as f64 / 1e6).collect();
        PhaseReport {
            events: phases.iter().map(|p| p.events).sum(),
            events_per_sec: Spread::of(&rates),
            mb_per_sec: Spread::of(&mb),
        }
    }
}

/// Rounds per disk regime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RegimeCounts {
    /// Both probes fast.
    pub fast: usize,
    /// Both probes throttled.
    pub throttled: usize,
    /// The regime changed during the round.
    pub mixed: usize,
}

/// One round, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundReport {
    /// Put+commit events per second.
    pub put_events_per_sec: f64,
    /// Take+commit events per second.
    pub take_events_per_sec: f64,
    /// End-to-end events per second.
    pub end_to_end_events_per_sec: f64,
    /// Raw baseline events per second.
    pub baseline_events_per_sec: Option<f64>,
    /// `put_events_per_sec / baseline_events_per_sec`.
    pub ratio: Option<f64>,
    /// Fsyncs per commit of the put phase.
    pub fsyncs_per_commit: Option<f64>,
    /// CPU seconds per million events.
    pub cpu_sec_per_million_events: f64,
    /// The quick probe's verdict.
    pub regime: Option<&'static str>,
    /// The quick probe's median sync latency before and after, in microseconds.
    pub probe_p50_us: Option<[f64; 2]>,
}

/// One configuration's results.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// The benchmarked directory.
    pub dir: Option<PathBuf>,
    /// `file` or `memory`.
    pub channel: &'static str,
    /// Body bytes per event.
    pub event_size: usize,
    /// Events per transaction.
    pub batch: usize,
    /// Producer threads.
    pub producers: usize,
    /// Consumer threads.
    pub consumers: usize,
    /// `always`, `interval` or `never`.
    pub fsync: &'static str,
    /// Data directories per benchmarked directory.
    pub data_dirs_per_dir: usize,
    /// Segment size in bytes.
    pub segment_size: u64,
    /// The log is encrypted.
    pub encrypt: bool,
    /// `none`, `lz4` or `zstd`.
    pub compression: &'static str,
    /// Recorded rounds.
    pub rounds_done: usize,
    /// Put+commit events per second, median.
    pub events_per_sec: Option<f64>,
    /// Put+commit MB/s, median.
    pub mb_per_sec: Option<f64>,
    /// Raw baseline events per second, median.
    pub baseline_events_per_sec: Option<f64>,
    /// Raw baseline MB/s, median.
    pub baseline_mb_per_sec: Option<f64>,
    /// Median of the per-round ratios.
    pub ratio: Option<f64>,
    /// Spread of the per-round ratios.
    pub ratio_spread: Option<Spread>,
    /// Put phases.
    pub put: PhaseReport,
    /// Take phases.
    pub take: PhaseReport,
    /// End-to-end phases.
    pub end_to_end: PhaseReport,
    /// Baseline runs.
    pub baseline: Option<PhaseReport>,
    /// Median of take rate over put rate per round.
    pub take_ratio: Option<f64>,
    /// Put commit latency.
    pub commit_latency_us: Latency,
    /// Take commit latency.
    pub take_commit_latency_us: Latency,
    /// Fsyncs per commit over the put phases.
    pub fsyncs_per_commit: Option<f64>,
    /// CPU seconds per million events.
    pub cpu_sec_per_million_events: Option<Spread>,
    /// Peak RSS in bytes.
    pub peak_rss_bytes: u64,
    /// Rounds per regime.
    pub regimes: RegimeCounts,
    /// What to keep in mind.
    pub note: Option<String>,
    /// Why the configuration failed.
    pub error: Option<String>,
    /// Per-round figures.
    pub rounds: Vec<RoundReport>,
    /// The raw round results (not serialized).
    #[serde(skip)]
    pub results: Vec<RoundResult>,
}

impl ConfigReport {
    /// An empty report for `c`.
    pub fn new(c: &PlannedConfig) -> ConfigReport {
        let w = &c.workload;
        ConfigReport {
            dir: c.dir.clone(),
            channel: w.channel.name(),
            event_size: w.event_size,
            batch: w.batch,
            producers: w.producers,
            consumers: w.consumers,
            fsync: workload::fsync_name(w.fsync),
            data_dirs_per_dir: w.data_dirs_per_dir,
            segment_size: w.segment_size,
            encrypt: w.encrypt,
            compression: w.compression.name(),
            rounds_done: 0,
            events_per_sec: None,
            mb_per_sec: None,
            baseline_events_per_sec: None,
            baseline_mb_per_sec: None,
            ratio: None,
            ratio_spread: None,
            put: PhaseReport::default(),
            take: PhaseReport::default(),
            end_to_end: PhaseReport::default(),
            baseline: None,
            take_ratio: None,
            commit_latency_us: Latency::default(),
            take_commit_latency_us: Latency::default(),
            fsyncs_per_commit: None,
            cpu_sec_per_million_events: None,
            peak_rss_bytes: 0,
            regimes: RegimeCounts::default(),
            note: (w.channel == ChannelKind::Memory).then(|| {
                "memory channel: no durability and no disk, so no baseline and no ratio; \
                 the ceiling of the transaction machinery"
                    .to_string()
            }),
            error: None,
            rounds: Vec::new(),
            results: Vec::new(),
        }
    }

    /// Computes the summary fields from `results`.
    pub fn finish(&mut self) {
        let rs = &self.results;
        let size = self.event_size;
        self.rounds_done = rs.len();
        let put: Vec<_> = rs.iter().map(|r| r.put).collect();
        let take: Vec<_> = rs.iter().map(|r| r.take).collect();
        let e2e: Vec<_> = rs.iter().map(|r| r.end_to_end).collect();
        let base: Vec<_> = rs.iter().filter_map(|r| r.baseline).collect();
        self.put = PhaseReport::of(&put, size);
        self.take = PhaseReport::of(&take, size);
        self.end_to_end = PhaseReport::of(&e2e, size);
        self.baseline = (!base.is_empty()).then(|| PhaseReport::of(&base, size));
        self.events_per_sec = self.put.events_per_sec.map(|s| s.median);
        self.mb_per_sec = self.put.mb_per_sec.map(|s| s.median);
        self.baseline_events_per_sec = self
            .baseline
            .as_ref()
            .and_then(|b| b.events_per_sec)
            .map(|s| s.median);
        self.baseline_mb_per_sec = self
            .baseline
            .as_ref()
            .and_then(|b| b.mb_per_sec)
            .map(|s| s.median);
        let ratios: Vec<f64> = rs.iter().filter_map(RoundResult::ratio).collect();
        self.ratio_spread = Spread::of(&ratios);
        self.ratio = self.ratio_spread.map(|s| s.median);
        let take_ratios: Vec<f64> = rs
            .iter()
            .map(|r| r.take.events_per_sec() / r.put.events_per_sec())
            .collect();
        self.take_ratio = Spread::of(&take_ratios).map(|s| s.median);
        let commits: u64 = rs.iter().map(|r| r.put_commits).sum();
        let fsyncs: u64 = rs.iter().map(|r| r.put_fsyncs).sum();
        let file = self.channel == ChannelKind::File.name();
        self.fsyncs_per_commit = (file && commits > 0).then(|| fsyncs as f64 / commits as f64);
        let cpu: Vec<f64> = rs
            .iter()
            .map(RoundResult::cpu_sec_per_million_events)
            .collect();
        self.cpu_sec_per_million_events = Spread::of(&cpu);
        self.regimes = RegimeCounts::default();
        for r in rs {
            match r.regime() {
                Some("fast") => self.regimes.fast += 1,
                Some("throttled") => self.regimes.throttled += 1,
                Some(_) => self.regimes.mixed += 1,
                None => {}
            }
        }
        self.rounds = rs
            .iter()
            .map(|r| RoundReport {
                put_events_per_sec: r.put.events_per_sec(),
                take_events_per_sec: r.take.events_per_sec(),
                end_to_end_events_per_sec: r.end_to_end.events_per_sec(),
                baseline_events_per_sec: r.baseline.map(|b| b.events_per_sec()),
                ratio: r.ratio(),
                fsyncs_per_commit: (file && r.put_commits > 0)
                    .then(|| r.put_fsyncs as f64 / r.put_commits as f64),
                cpu_sec_per_million_events: r.cpu_sec_per_million_events(),
                regime: r.regime(),
                probe_p50_us: r.probe_us.map(|(a, b)| [a, b]),
            })
            .collect();
    }

    /// A short name: `512 B x100 1p always`, with the directory when `with_dir`.
    pub fn label(&self, with_dir: bool) -> String {
        let mut s = format!(
            "{} x{} {}p {}",
            bytes(self.event_size as u64),
            self.batch,
            self.producers,
            self.fsync
        );
        if self.channel == ChannelKind::Memory.name() {
            s.push_str(" mem");
        }
        if self.encrypt {
            s.push_str(" aes");
        }
        if self.compression != "none" {
            let _ = write!(s, " {}", self.compression);
        }
        if with_dir && let Some(d) = &self.dir {
            let _ = write!(s, " {}", d.display());
        }
        s
    }
}

/// The `disk-regime` script's lines for one directory.
#[derive(Debug, Clone, Serialize)]
pub struct DirRegime {
    /// The benchmarked directory.
    pub dir: PathBuf,
    /// Before the run (`null` without the script).
    pub before: Option<String>,
    /// After the run.
    pub after: Option<String>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `tidegate bench`.
    pub tool: &'static str,
    /// The crate version.
    pub version: &'static str,
    /// The JSON layout version (1).
    pub schema: u32,
    /// When the run started (Unix seconds).
    pub started_unix_sec: u64,
    /// `file` or `memory`.
    pub channel: &'static str,
    /// Rounds asked for per configuration.
    pub rounds_requested: usize,
    /// Events per phase (`--events`), or `null` for a timed run.
    pub events_per_phase: Option<u64>,
    /// Seconds per phase (`--duration`), or `null`.
    pub duration_per_phase_sec: Option<f64>,
    /// True when Ctrl-C stopped the run.
    pub interrupted: bool,
    /// The `disk-regime` script used, if found.
    pub disk_regime_tool: Option<PathBuf>,
    /// Its lines per directory.
    pub disk_regime: Vec<DirRegime>,
    /// How the figures were measured.
    pub method: &'static str,
    /// Per configuration.
    pub configurations: Vec<ConfigReport>,
}

impl BenchReport {
    /// An empty report for a run of `o`.
    pub fn new(o: &BenchOptions, tool: Option<&Path>) -> BenchReport {
        let (events, duration) = match o.amount {
            Amount::Events(n) => (Some(n), None),
            Amount::Duration(d) => (None, Some(d.as_secs_f64())),
        };
        BenchReport {
            tool: "tidegate bench",
            version: env!("CARGO_PKG_VERSION"),
            schema: 1,
            started_unix_sec: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            channel: o.channel.name(),
            rounds_requested: o.rounds,
            events_per_phase: events,
            duration_per_phase_sec: duration,
            interrupted: false,
            disk_regime_tool: tool.map(Path::to_path_buf),
            disk_regime: Vec::new(),
            method: METHOD,
            configurations: Vec::new(),
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// True when some configuration failed.
    pub fn has_errors(&self) -> bool {
        self.configurations.iter().any(|c| c.error.is_some())
    }

    /// Recorded rounds over every configuration.
    pub fn rounds_done(&self) -> usize {
        self.configurations.iter().map(|c| c.rounds_done).sum()
    }

    fn many_dirs(&self) -> bool {
        self.disk_regime.len() > 1
    }

    fn rows(&self) -> Vec<[String; 12]> {
        let many = self.many_dirs();
        self.configurations
            .iter()
            .map(|c| {
                let l = &c.commit_latency_us;
                [
                    c.label(many),
                    spread_rate(c.put.events_per_sec),
                    opt(c.mb_per_sec, |m| format!("{m:.0}")),
                    spread_rate(c.take.events_per_sec),
                    spread_rate(c.end_to_end.events_per_sec),
                    opt(c.baseline_events_per_sec, rate),
                    c.ratio_spread.map_or_else(
                        || "-".into(),
                        |s| format!("{:.2} [{:.2}-{:.2}]", s.median, s.min, s.max),
                    ),
                    if l.count == 0 {
                        "-".into()
                    } else {
                        format!("{}/{}/{}/{}", l.p50, l.p99, l.p99_9, l.max)
                    },
                    opt(c.fsyncs_per_commit, |f| format!("{f:.3}")),
                    opt(c.cpu_sec_per_million_events.map(|s| s.median), |v| {
                        format!("{v:.2}")
                    }),
                    format!("{:.0}", c.peak_rss_bytes as f64 / f64::from(1u32 << 20)),
                    match (&c.error, c.regimes) {
                        (Some(e), _) => format!("error: {e}"),
                        (None, r) if r.fast + r.throttled + r.mixed == 0 => "-".into(),
                        (None, r) => format!("{}f {}t {}m", r.fast, r.throttled, r.mixed),
                    },
                ]
            })
            .collect()
    }

    const HEADERS: [&'static str; 12] = [
        "configuration",
        "put ev/s [min-max]",
        "put MB/s",
        "take ev/s",
        "e2e ev/s",
        "raw ev/s",
        "ratio [min-max]",
        "commit us p50/p99/p99.9/max",
        "fsync/commit",
        "CPU s/M ev",
        "RSS MiB",
        "regime",
    ];

    fn header_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let amount = match (self.events_per_phase, self.duration_per_phase_sec) {
            (Some(n), _) => format!("{n} events per phase"),
            (_, Some(d)) => format!("{d} s per phase"),
            _ => String::new(),
        };
        out.push(format!(
            "tidegate bench {}: {} channel, {} of {} rounds per configuration, {amount}{}",
            self.version,
            self.channel,
            self.configurations
                .iter()
                .map(|c| c.rounds_done)
                .min()
                .unwrap_or(0),
            self.rounds_requested,
            if self.interrupted {
                " (INTERRUPTED: the rounds done so far)"
            } else {
                ""
            }
        ));
        for r in &self.disk_regime {
            out.push(format!(
                "disk regime of {}: before: {}; after: {}",
                r.dir.display(),
                r.before.as_deref().unwrap_or("(no disk-regime script)"),
                r.after.as_deref().unwrap_or("-")
            ));
        }
        if self.channel == ChannelKind::Memory.name() {
            out.push(
                "memory channel: no durability and no disk, so no baseline and no ratio".into(),
            );
        } else {
            out.push(
                "ratio = put+commit / raw write+fdatasync of the same bytes, same batches, \
                 interleaved round by round on the same directory; compare ratios, not rates \
                 from different runs"
                    .into(),
            );
        }
        out
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let rows = self.rows();
        let mut widths = Self::HEADERS.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for l in self.header_lines() {
            out.push_str(&l);
            out.push('\n');
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                if i == 0 {
                    let _ = write!(s, "{c:<w$}");
                } else {
                    let _ = write!(s, "  {c:>w$}");
                }
            }
            s.trim_end().to_string() + "\n"
        };
        out.push_str(&line(&Self::HEADERS.map(String::from)));
        for r in &rows {
            out.push_str(&line(r));
        }
        out
    }

    /// A Markdown section: the run's conditions and the table.
    pub fn markdown(&self) -> String {
        let mut out = String::from("## tidegate bench\n\n");
        for l in self.header_lines() {
            let _ = writeln!(out, "- {l}");
        }
        let _ = writeln!(out, "- method: {}\n", self.method);
        let _ = writeln!(out, "| {} |", Self::HEADERS.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            Self::HEADERS
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
                .collect::<String>()
        );
        for r in self.rows() {
            let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

/// A rate with an SI suffix: `754k`, `1.05M`.
pub fn rate(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn spread_rate(s: Option<Spread>) -> String {
    s.map_or_else(
        || "-".into(),
        |s| {
            if (s.max - s.min).abs() < f64::EPSILON {
                rate(s.median)
            } else {
                format!("{} [{}-{}]", rate(s.median), rate(s.min), rate(s.max))
            }
        },
    )
}

/// Bytes as `512 B`, `4 KiB`, `1 MiB`.
pub fn bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle() {
        assert_eq!(Spread::of(&[]), None);
        let s = Spread::of(&[3.0, 1.0, 2.0]).expect("three values");
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).expect("four values");
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn rates_and_sizes_read_well() {
        assert_eq!(rate(754_321.0), "754k");
        assert_eq!(rate(1_050_000.0), "1.05M");
        assert_eq!(rate(2_500.0), "2.5k");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(1000), "1000 B");
    }

    #[test]
    fn latency_from_histogram() {
        let mut h = workload::new_histogram();
        for v in 1..=1000 {
            h.saturating_record(v);
        }
        let l = Latency::from(h);
        assert_eq!(l.count, 1000);
        assert!((495..=505).contains(&l.p50), "{l:?}");
        assert!((985..=995).contains(&l.p99), "{l:?}");
        assert_eq!(l.max, 1000);
    }
}
