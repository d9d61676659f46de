//! File and memory channels: Flume's camelCase keys, units and defaults.

use super::{
    FLUME_MAX_FILE_SIZE, FLUME_MIN_REQUIRED_SPACE, Keys, Mapper, Out, duration_ms, strings,
    type_prefix,
};
use crate::agent::flume::Diagnostic;
use crate::agent::flume::catalog::Kind;
use crate::agent::flume::topology::Component;

impl Mapper<'_> {
    pub(super) fn channel(&mut self, c: &Component, out: &mut Out) -> bool {
        let mut keys = Keys::new(c);
        let Some(ty) = keys.get("type") else {
            return false;
        };
        let ok = match self.support(Kind::Channel, &c.name, ty) {
            Some("file") => {
                out.put("type", "file", ty.line);
                self.file_channel(c, &mut keys, out);
                true
            }
            Some(_) => {
                out.put("type", "memory", ty.line);
                self.memory_channel(c, &mut keys, out);
                true
            }
            None => {
                keys.use_all();
                false
            }
        };
        self.leftovers(&keys, &format!("Flume's `{}` channel", ty.text));
        ok
    }

    fn capacities(
        &mut self,
        c: &Component,
        keys: &mut Keys<'_>,
        out: &mut Out,
        defaults: (i64, i64),
        emit_defaults: bool,
    ) {
        let line = c.line();
        let cap = match keys.get("capacity") {
            Some(v) => self.positive(v).map(|n| (n, v.line)),
            None => Some((defaults.0, line)),
        };
        let tc = match keys.get("transactionCapacity") {
            Some(v) => self.positive(v).map(|n| (n, v.line)),
            None => Some((defaults.1, line)),
        };
        if let Some((n, l)) = cap
            && (emit_defaults || keys.comp.keys.contains_key("capacity"))
        {
            out.put("capacity", n, l);
        }
        if let Some((n, l)) = tc {
            if emit_defaults || keys.comp.keys.contains_key("transactionCapacity") {
                out.put("transaction_capacity", n, l);
            }
            self.transaction_capacity.insert(c.name.clone(), n);
            if let Some((cap, cap_line)) = cap
                && n > cap
            {
                let at = keys
                    .comp
                    .keys
                    .get("transactionCapacity")
                    .or_else(|| keys.comp.keys.get("capacity"))
                    .map_or(cap_line, |v| v.line);
                self.errors.push(Diagnostic::new(
                    &format!("{}.transactionCapacity", type_prefix(c)),
                    Some(at),
                    format!("transactionCapacity {n} is above the channel's capacity {cap} (Flume refuses this channel)"),
                ));
            }
        }
        if let Some(v) = keys.get("keep-alive")
            && let Some(s) = self.non_negative(v)
        {
            out.put("keep_alive", format!("{s}s"), v.line);
        }
    }

    fn memory_channel(&mut self, c: &Component, keys: &mut Keys<'_>, out: &mut Out) {
        // Flume's memory channel defaults (100, 100) are far below tidegate's: write them out.
        self.capacities(c, keys, out, (100, 100), true);
        if let Some(v) = keys.get("byteCapacity")
            && let Some(n) = self.positive(v)
        {
            out.put("capacity_bytes", n, v.line);
        }
        if let Some(v) = keys.get("byteCapacityBufferPercentage")
            && let Some(n) = self.non_negative(v)
            && n > 100
        {
            self.error(v, format!("{n} is not a percentage"));
        }
    }

    fn default_dir(&mut self, c: &Component, what: &str, flume_key: &str) -> Option<String> {
        match (self.opts.env)("HOME") {
            Some(home) => {
                let dir = format!("{}/.flume/file-channel/{what}", home.trim_end_matches('/'));
                self.warnings.push(Diagnostic::new(
                    &format!("{}.{flume_key}", type_prefix(c)),
                    Some(c.line()),
                    format!("not set: using Flume's default `{dir}`"),
                ));
                Some(dir)
            }
            None => {
                self.errors.push(Diagnostic::new(
                    &format!("{}.{flume_key}", type_prefix(c)),
                    Some(c.line()),
                    format!("file channel `{}` sets no {flume_key} and HOME is not set for Flume's default ~/.flume/file-channel/{what}", c.name),
                ));
                None
            }
        }
    }

    fn claim_dir(&mut self, dir: &str, c: &Component, line: usize) {
        let norm = dir.trim_end_matches('/').to_string();
        if let Some(other) = self.file_dirs.insert(norm.clone(), c.name.clone())
            && other != c.name
        {
            self.errors.push(Diagnostic::new(
                &type_prefix(c),
                Some(line),
                format!("directory `{norm}` is also used by file channel `{other}`; each file channel needs its own directories (Flume would fail to lock it)"),
            ));
        }
    }

    fn file_channel(&mut self, c: &Component, keys: &mut Keys<'_>, out: &mut Out) {
        let line = c.line();
        let checkpoint = match keys.get("checkpointDir") {
            Some(v) => Some((v.text.clone(), v.line)),
            None => self
                .default_dir(c, "checkpoint", "checkpointDir")
                .map(|d| (d, line)),
        };
        if let Some((dir, l)) = checkpoint {
            self.claim_dir(&dir, c, l);
            out.put("checkpoint_dir", dir, l);
        }
        let data = match keys.get("dataDirs") {
            Some(v) => {
                let dirs: Vec<String> = v
                    .text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if dirs.is_empty() {
                    self.error(v, "names no directory".into());
                }
                Some((dirs, v.line))
            }
            None => self
                .default_dir(c, "data", "dataDirs")
                .map(|d| (vec![d], line)),
        };
        if let Some((dirs, l)) = data {
            for d in &dirs {
                self.claim_dir(d, c, l);
            }
            out.put("data_dirs", strings(&dirs), l);
        }
        self.capacities(c, keys, out, (1_000_000, 10_000), false);
        if let Some(v) = keys.get("checkpointInterval")
            && let Some(ms) = self.int(v)
        {
            let ms = if ms <= 0 {
                self.warn(v, format!("{ms} ms is invalid; Flume uses its default 30000 ms instead, and so does this import"));
                30_000
            } else if ms < 1000 {
                self.warn(
                    v,
                    format!(
                        "{ms} ms is below Flume's and tidegate's floor of 1000 ms; using 1000 ms"
                    ),
                );
                1000
            } else {
                ms
            };
            out.put("checkpoint_interval", duration_ms(ms), v.line);
        }
        if let Some(v) = keys.get("maxFileSize")
            && let Some(n) = self.positive(v)
        {
            let n = if n > FLUME_MAX_FILE_SIZE {
                self.warn(v, format!("{n} is above Flume's cap of {FLUME_MAX_FILE_SIZE} bytes, which Flume applied silently; using the cap"));
                FLUME_MAX_FILE_SIZE
            } else {
                n
            };
            out.put("max_segment_size", n, v.line);
            // A segment must hold the largest event; Flume had no event size bound of its own.
            let overhead =
                (crate::format::segment_header::LEN + crate::format::record::HEADER_LEN) as i64;
            let default_event = crate::config::DEFAULT_MAX_EVENT_SIZE as i64;
            if n - overhead < default_event && n > overhead {
                out.put("max_event_size", n - overhead, v.line);
                self.warn(
                    v,
                    format!(
                        "segments of {n} bytes hold events of at most {} bytes (max_event_size lowered from its default of {default_event})",
                        n - overhead
                    ),
                );
            }
        }
        if let Some(v) = keys.get("minimumRequiredSpace")
            && let Some(n) = self.positive(v)
        {
            let n = if n < FLUME_MIN_REQUIRED_SPACE {
                self.warn(v, format!("{n} is below Flume's floor of 1 MiB, which Flume applied silently; using 1048576"));
                FLUME_MIN_REQUIRED_SPACE
            } else {
                n
            };
            out.put("minimum_required_space", n, v.line);
        }
        if let Some(v) = keys.get("checkpointOnClose")
            && let Some(b) = self.boolean(v)
        {
            out.put("checkpoint_on_close", b, v.line);
        }
        if let Some(v) = keys.get("useDualCheckpoints") {
            // tidegate always keeps the previous checkpoint as the backup.
            self.boolean(v);
        }
        if let Some(v) = keys.get("backupCheckpointDir") {
            self.warn(v, format!("`{}` is not used: tidegate always keeps the previous checkpoint as the backup, in checkpoint_dir", v.text));
        }
        let per_txn = keys.get("fsyncPerTransaction");
        let interval = keys.get("fsyncInterval");
        let per_txn_value = per_txn.and_then(|v| self.boolean(v));
        let secs = interval.and_then(|v| self.positive(v));
        match (per_txn_value, per_txn) {
            (Some(false), Some(p)) => {
                out.put("fsync", "interval", p.line);
                out.put(
                    "fsync_interval",
                    format!("{}s", secs.unwrap_or(5)),
                    interval.map_or(p.line, |v| v.line),
                );
            }
            _ => {
                if let Some(v) = interval {
                    self.warn(v, "has no effect unless fsyncPerTransaction = false (as in Flume); every commit is synced".into());
                }
            }
        }
        for key in [
            "use-fast-replay",
            "useLogReplayV1",
            "write-timeout",
            "checkpoint-timeout",
        ] {
            if let Some(v) = keys.get(key) {
                self.warn(v, format!("`{key}` has no effect in tidegate (replay never materialises events; waits are bounded by keep_alive)"));
            }
        }
        let enc = keys.with_prefix("encryption.");
        if let Some((_, first)) = enc.first() {
            let names: Vec<String> = enc.iter().map(|(k, _)| format!("encryption.{k}")).collect();
            self.error(
                first,
                format!(
                    "Flume's encryption keys ({}) use JCEKS keystores, which tidegate cannot read; write one tidegate \
                     key file per key (32 random bytes: `head -c 32 /dev/urandom > k1.key && chmod 600 k1.key`) and set \
                     `encryption = {{ active_key = 1, keys = {{ 1 = \"/path/k1.key\" }} }}` on the channel in the TOML config \
                     (numeric key ids; see docs/security.md, \"Flume users\")",
                    names.join(", ")
                ),
            );
        }
    }
}
