//! One agent of a Flume file, with Flume's loader rules (`FlumeConfiguration`): which
//! components are active, which Flume would have dropped, and why.
//!
//! - Only keys `AGENT.sources|channels|sinks|sinkgroups|configfilters` (the lists) and
//!   `AGENT.<section>.NAME.KEY` (component keys) belong to the agent; anything else under the
//!   agent's prefix was ignored by Flume and is an error here.
//! - Lists are split on whitespace; a comma in a list is an error (Flume made `c1,` a component
//!   name that has no configuration and dropped it).
//! - A listed component with no keys or no `type`, a source whose channels are all inactive, a
//!   sink whose channel is inactive, a group with no usable sink: Flume dropped each of them and
//!   only logged it; here each is a warning that names it, and it is left out as Flume left it out.
//! - Components configured but not listed are warnings too.

use std::collections::{BTreeMap, BTreeSet};

use super::Diagnostic;

/// A value of the agent, resolved and trimmed, with where it came from.
#[derive(Debug, Clone)]
pub struct Value {
    /// The full Flume key (`a1.sources.r1.type`).
    pub key: String,
    /// The value.
    pub text: String,
    /// 1-based line.
    pub line: usize,
}

/// A component: its name and its keys (after `AGENT.<section>.NAME.`).
#[derive(Debug, Clone, Default)]
pub struct Component {
    /// The name.
    pub name: String,
    /// Sub-key -> value.
    pub keys: BTreeMap<String, Value>,
}

impl Component {
    /// The line of the component's `type` key, else of its first key.
    pub fn line(&self) -> usize {
        self.keys
            .get("type")
            .or_else(|| self.keys.values().min_by_key(|v| v.line))
            .map_or(0, |v| v.line)
    }
}

/// The active components of one agent, in list order.
#[derive(Debug, Default)]
pub struct Agent {
    /// The agent's name.
    pub name: String,
    /// Active channels.
    pub channels: Vec<Component>,
    /// Active sources; their `channels` lists hold only active channels.
    pub sources: Vec<Component>,
    /// Active sinks.
    pub sinks: Vec<Component>,
    /// Active sink groups; their `sinks` lists hold only usable sinks.
    pub groups: Vec<Component>,
    /// The line of the agent's `channels` list.
    pub line: usize,
}

/// The agent's lists and component keys before Flume's validation.
#[derive(Debug, Default)]
pub struct RawAgent {
    /// `sources`, `channels`, `sinks`, `sinkgroups` lists.
    pub lists: BTreeMap<&'static str, Value>,
    /// section -> component name -> component.
    pub sections: BTreeMap<&'static str, BTreeMap<String, Component>>,
}

/// The four component sections of an agent.
pub const SECTIONS: [&str; 4] = ["sources", "channels", "sinks", "sinkgroups"];

impl RawAgent {
    /// Files `sub_key` (the key after `AGENT.`); false when it is no agent key.
    pub fn add(&mut self, sub_key: &str, value: Value) -> bool {
        for section in SECTIONS {
            if sub_key == section {
                self.lists.insert(section, value);
                return true;
            }
            if let Some(rest) = sub_key
                .strip_prefix(section)
                .and_then(|r| r.strip_prefix('.'))
                && let Some((name, key)) = rest.split_once('.')
                && !name.is_empty()
                && !key.is_empty()
            {
                let comp = self
                    .sections
                    .entry(section)
                    .or_default()
                    .entry(name.to_string())
                    .or_insert_with(|| Component {
                        name: name.to_string(),
                        keys: BTreeMap::new(),
                    });
                comp.keys.insert(key.to_string(), value);
                return true;
            }
        }
        false
    }
}

/// Splits a Flume component list on whitespace. A name containing a comma is an error; a name
/// given twice a warning.
pub fn split_list(
    v: &Value,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut comma = false;
    for name in v.text.split_whitespace() {
        if name.contains(',') {
            comma = true;
        }
        if out.iter().any(|n| n == name) {
            warnings.push(Diagnostic::new(
                &v.key,
                Some(v.line),
                format!("`{name}` is listed twice"),
            ));
        } else {
            out.push(name.to_string());
        }
    }
    if comma {
        errors.push(Diagnostic::new(
            &v.key,
            Some(v.line),
            format!(
                "the list `{}` is comma-separated; Flume splits lists on whitespace only, so names like `{}` \
                 matched no component and Flume silently dropped them; write `{}`",
                v.text,
                out.iter().find(|n| n.contains(',')).map_or("", String::as_str),
                v.text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
            ),
        ));
    }
    out
}

impl Agent {
    /// Applies Flume's validation to `raw`: drops what Flume dropped (each a warning).
    pub fn validate(
        name: &str,
        mut raw: RawAgent,
        errors: &mut Vec<Diagnostic>,
        warnings: &mut Vec<Diagnostic>,
    ) -> Agent {
        let mut agent = Agent {
            name: name.to_string(),
            ..Agent::default()
        };
        let mut listed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for section in SECTIONS {
            if let Some(v) = raw.lists.get(section) {
                listed.insert(section, split_list(v, errors, warnings));
            }
        }
        // Names written with a comma in some list ("c1," in "c1, c2"): already errors.
        let comma_names: BTreeSet<String> = raw
            .lists
            .values()
            .chain(
                raw.sections
                    .values()
                    .flat_map(|s| s.values())
                    .filter_map(|c| c.keys.get("channels")),
            )
            .flat_map(|v| v.text.split_whitespace())
            .filter_map(|n| n.strip_suffix(','))
            .map(String::from)
            .collect();
        let names_in = |section: &str| -> BTreeSet<String> {
            raw.sections
                .get(section)
                .map(|s| s.keys().cloned().collect())
                .unwrap_or_default()
        };
        let group_names = names_in("sinkgroups");
        let mut take = |section: &'static str| raw.sections.remove(section).unwrap_or_default();
        let mut channel_defs = take("channels");
        let mut source_defs = take("sources");
        let mut sink_defs = take("sinks");
        let mut group_defs = take("sinkgroups");
        let list_key = |section: &str| format!("{name}.{section}");
        let list_line = |section: &str| raw.lists.get(section).map(|v| v.line);

        // Channels.
        let Some(channel_names) = listed.get("channels") else {
            errors.push(Diagnostic::new(
                &list_key("channels"),
                None,
                "the agent lists no channels; Flume refuses such an agent".to_string(),
            ));
            return agent;
        };
        agent.line = list_line("channels").unwrap_or(0);
        for ch in channel_names {
            if let Some(c) = take_typed(
                "channel",
                ch,
                &mut channel_defs,
                &list_key("channels"),
                list_line("channels"),
                warnings,
            ) {
                agent.channels.push(c);
            }
        }
        let active: BTreeSet<String> = agent.channels.iter().map(|c| c.name.clone()).collect();
        if active.is_empty() {
            errors.push(Diagnostic::new(
                &list_key("channels"),
                list_line("channels"),
                "no listed channel is usable (each lacks a `type`); Flume refuses such an agent"
                    .to_string(),
            ));
        }

        // Sources.
        for src in listed.get("sources").into_iter().flatten() {
            let Some(mut c) = take_typed(
                "source",
                src,
                &mut source_defs,
                &list_key("sources"),
                list_line("sources"),
                warnings,
            ) else {
                continue;
            };
            let Some(chv) = c.keys.get("channels").cloned() else {
                warnings.push(dropped("source", &c, "it has no `channels` key", name));
                continue;
            };
            let names = split_list(&chv, errors, warnings);
            let (kept, inactive): (Vec<_>, Vec<_>) =
                names.into_iter().partition(|n| active.contains(n));
            // Comma-suffixed names are already an error of the list.
            let inactive: Vec<String> = inactive.into_iter().filter(|n| !n.contains(',')).collect();
            if !inactive.is_empty() {
                warnings.push(Diagnostic::new(
                    &chv.key,
                    Some(chv.line),
                    format!(
                        "channel(s) {} of source `{}` are not active channels of the agent; Flume silently left them out",
                        quote_list(&inactive),
                        c.name
                    ),
                ));
            }
            if kept.is_empty() {
                warnings.push(dropped(
                    "source",
                    &c,
                    "none of its channels is active",
                    name,
                ));
                continue;
            }
            if let Some(v) = c.keys.get_mut("channels") {
                v.text = kept.join(" ");
            }
            agent.sources.push(c);
        }

        // Sinks.
        for snk in listed.get("sinks").into_iter().flatten() {
            if group_names.contains(snk) && !sink_defs.contains_key(snk) {
                warnings.push(Diagnostic::new(
                    &list_key("sinks"),
                    list_line("sinks"),
                    format!("`{snk}` is listed as a sink but is the name of a sink group (list it in `{name}.sinkgroups` only); Flume dropped the sink entry"),
                ));
                continue;
            }
            let Some(c) = take_typed(
                "sink",
                snk,
                &mut sink_defs,
                &list_key("sinks"),
                list_line("sinks"),
                warnings,
            ) else {
                continue;
            };
            match c.keys.get("channel") {
                None => {
                    let why = if c.keys.contains_key("channels") {
                        "it has no `channel` key (it has `channels`; a sink takes `channel`)"
                    } else {
                        "it has no `channel` key"
                    };
                    warnings.push(dropped("sink", &c, why, name));
                }
                Some(v) if v.text.split_whitespace().count() > 1 => errors.push(Diagnostic::new(
                    &v.key,
                    Some(v.line),
                    format!(
                        "a sink drains exactly one channel, not `{}` (Flume dropped this sink)",
                        v.text
                    ),
                )),
                Some(v) if !active.contains(&v.text) => warnings.push(dropped(
                    "sink",
                    &c,
                    &format!("its channel `{}` is not an active channel", v.text),
                    name,
                )),
                Some(_) => agent.sinks.push(c),
            }
        }

        // Sink groups.
        let sink_names: BTreeSet<String> = agent.sinks.iter().map(|c| c.name.clone()).collect();
        let mut used: BTreeMap<String, String> = BTreeMap::new();
        for grp in listed.get("sinkgroups").into_iter().flatten() {
            let Some(mut g) = group_defs.remove(grp) else {
                warnings.push(Diagnostic::new(
                    &list_key("sinkgroups"),
                    list_line("sinkgroups"),
                    format!("sink group `{grp}` is listed but has no keys; Flume dropped it"),
                ));
                continue;
            };
            let Some(sv) = g.keys.get("sinks").cloned() else {
                warnings.push(dropped("sink group", &g, "it has no `sinks` key", name));
                continue;
            };
            let mut kept = Vec::new();
            for s in split_list(&sv, errors, warnings) {
                if let Some(other) = used.get(&s) {
                    warnings.push(Diagnostic::new(
                        &sv.key,
                        Some(sv.line),
                        format!("sink `{s}` is already in sink group `{other}`; Flume left it out of `{}`", g.name),
                    ));
                } else if !sink_names.contains(&s) {
                    warnings.push(Diagnostic::new(
                        &sv.key,
                        Some(sv.line),
                        format!(
                            "sink `{s}` of group `{}` is not an active sink; Flume left it out",
                            g.name
                        ),
                    ));
                } else {
                    used.insert(s.clone(), g.name.clone());
                    kept.push(s);
                }
            }
            if kept.is_empty() {
                warnings.push(dropped(
                    "sink group",
                    &g,
                    "none of its sinks is active",
                    name,
                ));
                continue;
            }
            if let Some(v) = g.keys.get_mut("sinks") {
                v.text = kept.join(" ");
            }
            agent.groups.push(g);
        }

        // Configured but not listed.
        for (section, defs) in [
            ("channel", channel_defs),
            ("source", source_defs),
            ("sink", sink_defs),
            ("sink group", group_defs),
        ] {
            for c in defs.values().filter(|c| !comma_names.contains(&c.name)) {
                let noun = if section == "sink group" {
                    "sinkgroups"
                } else {
                    &format!("{section}s")
                };
                warnings.push(Diagnostic::new(
                    &format!("{name}.{noun}.{}", c.name),
                    Some(c.line()),
                    format!(
                        "{section} `{}` is configured but not listed in `{name}.{noun}`; Flume ignored it, and so does this import",
                        c.name
                    ),
                ));
            }
        }

        if agent.sources.is_empty() && agent.sinks.is_empty() && !agent.channels.is_empty() {
            errors.push(Diagnostic::new(
                name,
                None,
                "the agent has no usable source and no usable sink; Flume refuses such an agent"
                    .to_string(),
            ));
        }
        agent
    }
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dropped(noun: &str, c: &Component, why: &str, agent: &str) -> Diagnostic {
    let _ = agent;
    Diagnostic::new(
        &c.keys
            .get("type")
            .map_or_else(|| c.name.clone(), |v| v.key.clone()),
        Some(c.line()),
        format!("{noun} `{}` is dropped as Flume dropped it: {why}", c.name),
    )
}

/// Takes a listed component that has keys and a `type`; otherwise warns (Flume dropped it).
fn take_typed(
    noun: &str,
    name: &str,
    defs: &mut BTreeMap<String, Component>,
    list_key: &str,
    list_line: Option<usize>,
    warnings: &mut Vec<Diagnostic>,
) -> Option<Component> {
    if name.contains(',') {
        return None; // already an error of the list
    }
    let Some(c) = defs.remove(name) else {
        warnings.push(Diagnostic::new(
            list_key,
            list_line,
            format!("{noun} `{name}` is listed but has no keys; Flume dropped it"),
        ));
        return None;
    };
    if !c.keys.contains_key("type") {
        warnings.push(Diagnostic::new(
            list_key,
            list_line,
            format!(
                "{noun} `{name}` has keys (line {}) but no `type`; Flume dropped it",
                c.line()
            ),
        ));
        return None;
    }
    Some(c)
}
