//! Sink groups: failover and load_balance processors.

use std::collections::BTreeMap;

use super::{Keys, Mapper, Out, duration_ms, strings};
use crate::agent::flume::catalog::Kind;
use crate::agent::flume::topology::Component;

impl Mapper<'_> {
    pub(super) fn group(&mut self, g: &Component, out: &mut Out) -> bool {
        let mut keys = Keys::new(g);
        let Some(sv) = keys.get("sinks") else {
            return false;
        };
        let sinks: Vec<String> = sv.text.split_whitespace().map(String::from).collect();
        let ty = keys.get("processor.type");
        let kind = match ty {
            Some(t) => self.support(Kind::Processor, &g.name, t),
            None => Some("default"),
        };
        let line = ty.map_or(sv.line, |v| v.line);
        let mut proc_ = Out::new(format!("{}.processor", out.path));
        let ok = match kind {
            Some("default") => {
                if sinks.len() > 1 {
                    self.error(sv, format!("the default sink processor drives exactly one sink, not {} (Flume refuses this group); use failover or load_balance", sinks.len()));
                } else {
                    self.warn(sv, format!("a group with the default processor and one sink has no effect; sink `{}` runs on its own", sinks.join("")));
                }
                false
            }
            Some("failover") => {
                proc_.put("type", "failover", line);
                let mut prio = Out::new(format!("{}.priorities", proc_.path));
                let given = keys.with_prefix("processor.priority.");
                let mut seen: BTreeMap<i64, String> = BTreeMap::new();
                let mut next = 0;
                for s in &sinks {
                    let p = match given.iter().find(|(k, _)| *k == s.as_str()) {
                        Some((_, v)) => self.int(v).map(|n| (n, *v)),
                        None => {
                            next -= 1;
                            self.warn(sv, format!("sink `{s}` has no processor.priority.{s}; Flume gives such sinks -1, -2, ... in an unspecified order; here it gets {next} (list order)"));
                            Some((next, sv))
                        }
                    };
                    if let Some((n, v)) = p {
                        if let Some(other) = seen.insert(n, s.clone()) {
                            self.error(v, format!("sinks `{other}` and `{s}` have the same priority {n}; Flume silently leaves the second out of the group (it never runs); give them distinct priorities"));
                        }
                        prio.put(s, n, v.line);
                    }
                }
                for (k, v) in &given {
                    if !sinks.iter().any(|s| s == k) {
                        self.warn(v, format!("`{k}` is not a sink of this group; ignored"));
                    }
                }
                proc_.put_table("priorities", prio, line);
                let (ms, l) = match keys.get("processor.maxpenalty") {
                    Some(v) => (self.positive(v), v.line),
                    None => (Some(30_000), line),
                };
                if let Some(ms) = ms {
                    proc_.put("max_penalty", duration_ms(ms), l);
                }
                true
            }
            Some(_) => {
                proc_.put("type", "load_balance", line);
                let sel = keys.get("processor.selector");
                match sel.map(|v| v.text.to_ascii_lowercase()) {
                    None => proc_.put("selector", "round_robin", line),
                    Some(s) if s == "round_robin" || s == "random" => {
                        proc_.put("selector", s, sel.map_or(line, |v| v.line));
                    }
                    Some(_) => {
                        if let Some(v) = sel {
                            self.error(
                                v,
                                format!(
                                    "selector `{}` is not supported: use round_robin or random",
                                    v.text
                                ),
                            );
                        }
                    }
                }
                let (backoff, l) = match keys.get("processor.backoff") {
                    Some(v) => (self.boolean(v), v.line),
                    None => (Some(false), line),
                };
                if let Some(b) = backoff {
                    proc_.put("backoff", b, l);
                }
                let (ms, l) = match keys.get("processor.selector.maxTimeOut") {
                    Some(v) => (self.positive(v), v.line),
                    None => (Some(30_000), line),
                };
                if let Some(ms) = ms {
                    proc_.put("max_backoff", duration_ms(ms), l);
                }
                true
            }
            None => {
                keys.use_all();
                false
            }
        };
        if ok {
            out.put("sinks", strings(&sinks), sv.line);
            out.put_table("processor", proc_, line);
        }
        self.leftovers(&keys, &format!("sink group `{}`", g.name));
        ok
    }
}
