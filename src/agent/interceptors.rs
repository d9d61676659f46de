//! Interceptors: per-source steps that change, drop or keep events before the channel selector
//! sees them (Flume's interceptors, under snake_case names).
//!
//! A source's `interceptors = [...]` list is a chain: each interceptor gets what the previous
//! one kept, in order. [`InterceptorConfig`] is one entry of the list, tagged by `type`;
//! [`build_interceptor`] checks it (regexes compile, keys are there) and returns the
//! [`Interceptor`]. Bodies are bytes: the regex interceptors match with `regex::bytes`, so a body
//! that is not UTF-8 is matched, not skipped.
//!
//! ```
//! use tidegate::Event;
//! use tidegate::agent::interceptors::{InterceptorConfig, build_interceptor};
//!
//! let cfg: InterceptorConfig = serde_json::from_str(
//!     r#"{"type": "regex_extractor", "regex": "user=(\\w+)", "headers": ["user"]}"#,
//! ).unwrap();
//! let i = build_interceptor(&cfg).unwrap();
//! let out = i.intercept(vec![Event::new(b"login user=ann ok".to_vec())]);
//! assert_eq!(out[0].headers().get("user").map(String::as_str), Some("ann"));
//! ```

use std::net::{IpAddr, ToSocketAddrs};
use std::time::{SystemTime, UNIX_EPOCH};

use regex::bytes::Regex;
use serde::Deserialize;

use super::component::{ComponentError, Interceptor};
use crate::Event;

/// One interceptor of a source's chain, as the config writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum InterceptorConfig {
    /// Sets `header` to the time the event passed, in milliseconds since the Unix epoch.
    Timestamp {
        /// Header to set. Default `timestamp`.
        #[serde(default = "default_timestamp_header")]
        header: String,
        /// Keep a value the event already has. Default false.
        #[serde(default)]
        preserve_existing: bool,
    },
    /// Sets `header` to this machine's IP address (or host name), found once at start.
    Host {
        /// Header to set. Default `host`.
        #[serde(default = "default_host_header")]
        header: String,
        /// The IP address (true, default) or the host name (false).
        #[serde(default = "yes")]
        use_ip: bool,
        /// Keep a value the event already has. Default false.
        #[serde(default)]
        preserve_existing: bool,
    },
    /// Sets a fixed header.
    Static {
        /// Header name. Default `key` (Flume's default).
        #[serde(default = "default_static_key")]
        key: String,
        /// Header value. Default `value` (Flume's default).
        #[serde(default = "default_static_value")]
        value: String,
        /// Keep a value the event already has. Default true.
        #[serde(default = "yes")]
        preserve_existing: bool,
    },
    /// Removes headers by exact name, by regex (whole-name match), or both.
    RemoveHeader {
        /// A header name to remove.
        #[serde(default)]
        name: Option<String>,
        /// A regex; every header whose whole name matches is removed.
        #[serde(default)]
        matching: Option<String>,
    },
    /// Sets `header` to a random (version 4) UUID, after `prefix`.
    Uuid {
        /// Header to set. Default `id`.
        #[serde(default = "default_uuid_header")]
        header: String,
        /// Keep a value the event already has. Default true.
        #[serde(default = "yes")]
        preserve_existing: bool,
        /// Written before the UUID. Default empty.
        #[serde(default)]
        prefix: String,
    },
    /// Keeps only events whose body matches `regex` (or, with `exclude`, drops them).
    RegexFilter {
        /// The regex, searched anywhere in the body. Default `.*` (everything matches).
        #[serde(default = "default_filter_regex")]
        regex: String,
        /// Drop matching events instead of keeping them. Default false.
        #[serde(default)]
        exclude: bool,
    },
    /// Sets one header per capture group of the first match of `regex` in the body.
    RegexExtractor {
        /// The regex.
        regex: String,
        /// Header names, one per capture group in order (at most as many as there are groups).
        headers: Vec<String>,
    },
    /// Replaces every match of `search` in the body with `replace` (`$1`, `${name}` refer to
    /// capture groups).
    SearchReplace {
        /// The regex.
        search: String,
        /// The replacement.
        #[serde(default)]
        replace: String,
    },
}

fn default_timestamp_header() -> String {
    "timestamp".into()
}
fn default_host_header() -> String {
    "host".into()
}
fn default_static_key() -> String {
    "key".into()
}
fn default_static_value() -> String {
    "value".into()
}
fn default_uuid_header() -> String {
    "id".into()
}
fn default_filter_regex() -> String {
    ".*".into()
}
fn yes() -> bool {
    true
}

/// Builds the interceptor `cfg` describes; a bad regex or an impossible setting is an error
/// naming the key.
pub fn build_interceptor(cfg: &InterceptorConfig) -> Result<Box<dyn Interceptor>, ComponentError> {
    Ok(match cfg {
        InterceptorConfig::Timestamp {
            header,
            preserve_existing,
        } => Box::new(SetHeader {
            header: header.clone(),
            preserve_existing: *preserve_existing,
            value: HeaderValue::NowMillis,
        }),
        InterceptorConfig::Host {
            header,
            use_ip,
            preserve_existing,
        } => Box::new(SetHeader {
            header: header.clone(),
            preserve_existing: *preserve_existing,
            value: HeaderValue::Fixed(local_host(*use_ip)?),
        }),
        InterceptorConfig::Static {
            key,
            value,
            preserve_existing,
        } => Box::new(SetHeader {
            header: key.clone(),
            preserve_existing: *preserve_existing,
            value: HeaderValue::Fixed(value.clone()),
        }),
        InterceptorConfig::Uuid {
            header,
            preserve_existing,
            prefix,
        } => Box::new(SetHeader {
            header: header.clone(),
            preserve_existing: *preserve_existing,
            value: HeaderValue::Uuid {
                prefix: prefix.clone(),
            },
        }),
        InterceptorConfig::RemoveHeader { name, matching } => {
            if name.is_none() && matching.is_none() {
                return Err(ComponentError::Config(
                    "remove_header interceptor: set `name`, `matching` or both".into(),
                ));
            }
            let matching = matching
                .as_deref()
                .map(|m| regex::Regex::new(&format!("^(?:{m})$")))
                .transpose()
                .map_err(|e| bad_regex("remove_header", "matching", &e))?;
            Box::new(RemoveHeader {
                name: name.clone(),
                matching,
            })
        }
        InterceptorConfig::RegexFilter { regex, exclude } => Box::new(RegexFilter {
            regex: Regex::new(regex).map_err(|e| bad_regex("regex_filter", "regex", &e))?,
            exclude: *exclude,
        }),
        InterceptorConfig::RegexExtractor { regex, headers } => {
            let regex = Regex::new(regex).map_err(|e| bad_regex("regex_extractor", "regex", &e))?;
            let groups = regex.captures_len() - 1;
            if headers.len() > groups {
                return Err(ComponentError::Config(format!(
                    "regex_extractor interceptor: `headers` names {} headers but `regex` has {groups} capture groups",
                    headers.len()
                )));
            }
            Box::new(RegexExtractor {
                regex,
                headers: headers.clone(),
            })
        }
        InterceptorConfig::SearchReplace { search, replace } => Box::new(SearchReplace {
            search: Regex::new(search).map_err(|e| bad_regex("search_replace", "search", &e))?,
            replace: replace.clone().into_bytes(),
        }),
    })
}

fn bad_regex(kind: &str, key: &str, e: &regex::Error) -> ComponentError {
    ComponentError::Config(format!(
        "{kind} interceptor: `{key}` is not a valid regex: {e}"
    ))
}

/// This machine's host name, or the address it resolves to (a non-loopback one if any).
fn local_host(use_ip: bool) -> Result<String, ComponentError> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if !use_ip {
        return Ok(name);
    }
    let addrs: Vec<IpAddr> = (name.as_str(), 0)
        .to_socket_addrs()
        .map_err(|e| {
            ComponentError::Config(format!(
                "host interceptor: cannot resolve this machine's name {name:?} to an address ({e}); set use_ip = false"
            ))
        })?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|ip| !ip.is_loopback())
        .or(addrs.first())
        .map(IpAddr::to_string)
        .ok_or_else(|| {
            ComponentError::Config(format!(
                "host interceptor: {name:?} resolves to no address; set use_ip = false"
            ))
        })
}

/// What a [`SetHeader`] writes.
enum HeaderValue {
    Fixed(String),
    NowMillis,
    Uuid { prefix: String },
}

/// timestamp, host, static and uuid: set one header unless it is there and kept.
struct SetHeader {
    header: String,
    preserve_existing: bool,
    value: HeaderValue,
}

impl Interceptor for SetHeader {
    fn intercept(&self, mut events: Vec<Event>) -> Vec<Event> {
        for e in &mut events {
            if self.preserve_existing && e.headers().contains_key(&self.header) {
                continue;
            }
            let value = match &self.value {
                HeaderValue::Fixed(v) => v.clone(),
                HeaderValue::NowMillis => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
                    .to_string(),
                HeaderValue::Uuid { prefix } => format!("{prefix}{}", uuid::Uuid::new_v4()),
            };
            e.headers_mut().insert(self.header.clone(), value);
        }
        events
    }
}

struct RemoveHeader {
    name: Option<String>,
    matching: Option<regex::Regex>,
}

impl Interceptor for RemoveHeader {
    fn intercept(&self, mut events: Vec<Event>) -> Vec<Event> {
        for e in &mut events {
            if let Some(name) = &self.name {
                e.headers_mut().remove(name);
            }
            if let Some(re) = &self.matching {
                e.headers_mut().retain(|k, _| !re.is_match(k));
            }
        }
        events
    }
}

struct RegexFilter {
    regex: Regex,
    exclude: bool,
}

impl Interceptor for RegexFilter {
    fn intercept(&self, mut events: Vec<Event>) -> Vec<Event> {
        events.retain(|e| self.regex.is_match(e.body()) != self.exclude);
        events
    }
}

struct RegexExtractor {
    regex: Regex,
    headers: Vec<String>,
}

impl Interceptor for RegexExtractor {
    fn intercept(&self, mut events: Vec<Event>) -> Vec<Event> {
        for e in &mut events {
            let Some(caps) = self.regex.captures(e.body()) else {
                continue;
            };
            let found: Vec<(String, String)> = self
                .headers
                .iter()
                .zip(caps.iter().skip(1))
                .filter_map(|(name, m)| {
                    m.map(|m| {
                        (
                            name.clone(),
                            String::from_utf8_lossy(m.as_bytes()).into_owned(),
                        )
                    })
                })
                .collect();
            e.headers_mut().extend(found);
        }
        events
    }
}

struct SearchReplace {
    search: Regex,
    replace: Vec<u8>,
}

impl Interceptor for SearchReplace {
    fn intercept(&self, mut events: Vec<Event>) -> Vec<Event> {
        for e in &mut events {
            if let std::borrow::Cow::Owned(new) =
                self.search.replace_all(e.body(), self.replace.as_slice())
            {
                *e.body_mut() = new;
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Box<dyn Interceptor> {
        let cfg: InterceptorConfig = serde_json::from_str(json).expect("config");
        build_interceptor(&cfg).expect("build")
    }

    fn header<'a>(e: &'a Event, k: &str) -> Option<&'a str> {
        e.headers().get(k).map(String::as_str)
    }

    fn ev(body: &str) -> Event {
        Event::new(body.as_bytes().to_vec())
    }

    #[test]
    fn timestamp_sets_millis_and_preserves_only_when_asked() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis();
        let out = build(r#"{"type":"timestamp"}"#)
            .intercept(vec![ev("a"), ev("b").with_header("timestamp", "1")]);
        for e in &out {
            let ms: u128 = header(e, "timestamp")
                .expect("set")
                .parse()
                .expect("a number");
            assert!(ms >= before, "{ms} < {before}");
        }
        let out = build(r#"{"type":"timestamp","header":"ts","preserve_existing":true}"#)
            .intercept(vec![ev("b").with_header("ts", "1")]);
        assert_eq!(header(&out[0], "ts"), Some("1"));
    }

    #[test]
    fn host_sets_an_address_or_the_name() {
        let out = build(r#"{"type":"host"}"#).intercept(vec![ev("a")]);
        let ip = header(&out[0], "host").expect("set");
        assert!(ip.parse::<IpAddr>().is_ok(), "{ip} is not an IP address");
        let out = build(r#"{"type":"host","use_ip":false,"header":"h"}"#)
            .intercept(vec![ev("a").with_header("h", "old")]);
        let name = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        assert_eq!(header(&out[0], "h"), Some(name.as_str()));
    }

    #[test]
    fn static_preserves_by_default() {
        let i = build(r#"{"type":"static","key":"env","value":"prod"}"#);
        let out = i.intercept(vec![ev("a"), ev("b").with_header("env", "dev")]);
        assert_eq!(header(&out[0], "env"), Some("prod"));
        assert_eq!(header(&out[1], "env"), Some("dev"));
        let i = build(r#"{"type":"static","key":"env","value":"prod","preserve_existing":false}"#);
        let out = i.intercept(vec![ev("b").with_header("env", "dev")]);
        assert_eq!(header(&out[0], "env"), Some("prod"));
    }

    #[test]
    fn remove_header_by_name_and_whole_name_regex() {
        let i = build(r#"{"type":"remove_header","name":"a","matching":"x-.*"}"#);
        let e = ev("b")
            .with_header("a", "1")
            .with_header("x-trace", "2")
            .with_header("keep-x-", "3");
        let out = i.intercept(vec![e]);
        let keys: Vec<&str> = out[0].headers().keys().map(String::as_str).collect();
        assert_eq!(keys, ["keep-x-"]);
        let cfg: InterceptorConfig =
            serde_json::from_str(r#"{"type":"remove_header"}"#).expect("parses");
        assert!(matches!(
            build_interceptor(&cfg),
            Err(ComponentError::Config(m)) if m.contains("name")
        ));
    }

    #[test]
    fn uuid_is_unique_prefixed_and_preserved() {
        let i = build(r#"{"type":"uuid","prefix":"a1-"}"#);
        let out = i.intercept(vec![ev("a"), ev("b"), ev("c").with_header("id", "mine")]);
        let a = header(&out[0], "id").expect("set");
        let b = header(&out[1], "id").expect("set");
        assert_ne!(a, b);
        let rest = a.strip_prefix("a1-").expect("prefix");
        assert_eq!(
            uuid::Uuid::parse_str(rest).map(|u| u.get_version_num()),
            Ok(4)
        );
        assert_eq!(header(&out[2], "id"), Some("mine"));
    }

    #[test]
    fn regex_filter_keeps_or_excludes_in_order() {
        let input = || {
            vec![
                ev("error 1"),
                ev("ok 2"),
                ev("error 3"),
                Event::new(vec![0xff]),
            ]
        };
        let out = build(r#"{"type":"regex_filter","regex":"^error"}"#).intercept(input());
        let bodies: Vec<&[u8]> = out.iter().map(Event::body).collect();
        assert_eq!(bodies, [&b"error 1"[..], b"error 3"]);
        let out =
            build(r#"{"type":"regex_filter","regex":"^error","exclude":true}"#).intercept(input());
        let bodies: Vec<&[u8]> = out.iter().map(Event::body).collect();
        assert_eq!(bodies, [&b"ok 2"[..], &[0xff]]);
    }

    #[test]
    fn regex_extractor_sets_one_header_per_group() {
        let i = build(
            r#"{"type":"regex_extractor","regex":"(\\d+)-(\\w+)(x)?","headers":["n","w","x"]}"#,
        );
        let out = i.intercept(vec![ev("id 12-ab; 34-cd"), ev("none")]);
        assert_eq!(header(&out[0], "n"), Some("12"));
        assert_eq!(header(&out[0], "w"), Some("ab"));
        assert_eq!(
            header(&out[0], "x"),
            None,
            "a group that did not match sets nothing"
        );
        assert!(out[1].headers().is_empty());
        let cfg: InterceptorConfig =
            serde_json::from_str(r#"{"type":"regex_extractor","regex":"(a)","headers":["x","y"]}"#)
                .expect("parses");
        assert!(matches!(
            build_interceptor(&cfg),
            Err(ComponentError::Config(m)) if m.contains("capture groups")
        ));
    }

    #[test]
    fn search_replace_rewrites_bodies_with_groups() {
        let i = build(r#"{"type":"search_replace","search":"pw=(\\w+)","replace":"pw=***"}"#);
        let out = i.intercept(vec![ev("user=a pw=secret x pw=2"), ev("plain")]);
        assert_eq!(out[0].body(), b"user=a pw=*** x pw=***");
        assert_eq!(out[1].body(), b"plain");
        let i = build(r#"{"type":"search_replace","search":"(\\w+)@(\\w+)","replace":"$2 at $1"}"#);
        assert_eq!(i.intercept(vec![ev("ann@host")])[0].body(), b"host at ann");
    }

    #[test]
    fn bad_regexes_and_unknown_keys_are_refused() {
        let cfg: InterceptorConfig =
            serde_json::from_str(r#"{"type":"regex_filter","regex":"("}"#).expect("parses");
        assert!(matches!(
            build_interceptor(&cfg),
            Err(ComponentError::Config(m)) if m.contains("regex_filter") && m.contains("`regex`")
        ));
        assert!(
            serde_json::from_str::<InterceptorConfig>(r#"{"type":"static","kye":"a"}"#).is_err()
        );
        assert!(serde_json::from_str::<InterceptorConfig>(r#"{"type":"nope"}"#).is_err());
    }
}
