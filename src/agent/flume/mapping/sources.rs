//! Sources (seq, netcat, http here; the file, exec, syslog and Kafka sources in their own
//! modules) and their channel selectors.

use super::{Keys, Mapper, Out, strings};
use crate::agent::flume::catalog::Kind;
use crate::agent::flume::topology::{Component, Value};

impl Mapper<'_> {
    pub(super) fn source(&mut self, c: &Component, out: &mut Out) -> bool {
        let mut keys = Keys::new(c);
        let Some(ty) = keys.get("type") else {
            return false;
        };
        let supported = self.support(Kind::Source, &c.name, ty);
        if let Some(t) = supported {
            out.put("type", t, ty.line);
        }
        let channels: Vec<String> = match keys.get("channels") {
            Some(v) => {
                let names: Vec<String> = v.text.split_whitespace().map(String::from).collect();
                out.put("channels", strings(&names), v.line);
                names
            }
            None => Vec::new(),
        };
        self.selector(c, &channels, &mut keys, out);
        self.interceptors(c, &mut keys, out);
        match supported {
            Some("seq") => {
                if let Some(v) = keys.get("totalEvents")
                    && let Some(n) = self.positive(v)
                {
                    out.put("count", n, v.line);
                }
                self.source_batch(&mut keys, out, &channels, ty, 1);
            }
            Some("netcat") => {
                self.bind(&mut keys, out, None, ty);
                if let Some(v) = keys.get("max-line-length")
                    && let Some(n) = self.positive(v)
                {
                    out.put("max_line_length", n, v.line);
                }
                if let Some(v) = keys.get("ack-every-event")
                    && let Some(b) = self.boolean(v)
                {
                    out.put("ack_every_event", b, v.line);
                }
                self.utf8_only(&mut keys, "encoding");
            }
            Some("taildir") => self.taildir(&mut keys, out, &channels, ty),
            Some("spooldir") => self.spooldir(&mut keys, out, &channels, ty),
            Some("exec") => self.exec(&mut keys, out, &channels, ty),
            Some("syslog") => self.syslog(&mut keys, out, &channels, ty),
            Some("kafka") => self.kafka_source(&mut keys, out, &channels, ty),
            Some(_) => self.http_source(&mut keys, out, ty),
            None => keys.use_all(),
        }
        self.leftovers(&keys, &format!("Flume's `{}` source", ty.text));
        supported.is_some()
    }

    fn bind(&mut self, keys: &mut Keys<'_>, out: &mut Out, default_host: Option<&str>, ty: &Value) {
        let host = keys.get("bind");
        let port = keys.get("port");
        let host_text = match (host, default_host) {
            (Some(h), _) => Some(h.text.clone()),
            (None, Some(d)) => Some(d.to_string()),
            (None, None) => {
                self.error(
                    ty,
                    "the source needs a `bind` address (Flume refuses it without one)".into(),
                );
                None
            }
        };
        let Some(port) = port else {
            self.error(
                ty,
                "the source needs a `port` (Flume refuses it without one)".into(),
            );
            return;
        };
        let Ok(p) = port.text.parse::<u16>() else {
            self.error(port, format!("`{}` is not a port number", port.text));
            return;
        };
        if let Some(h) = host_text {
            let addr = if h.contains(':') && !h.starts_with('[') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            };
            out.put("bind", addr, port.line);
        }
    }

    fn http_source(&mut self, keys: &mut Keys<'_>, out: &mut Out, ty: &Value) {
        self.bind(keys, out, Some("0.0.0.0"), ty);
        if let Some(v) = keys.get("handler")
            && !v
                .text
                .eq_ignore_ascii_case("org.apache.flume.source.http.JSONHandler")
        {
            self.error(v, format!("handler `{}` is not supported: the http source takes Flume's JSON format (JSONHandler) and tidegate's binary batches", v.text));
        }
        let ssl = ["ssl", "enableSSL"]
            .into_iter()
            .filter_map(|k| keys.get(k))
            .filter_map(|v| self.boolean(v).map(|b| (b, v)))
            .find(|(b, _)| *b);
        let ssl_keys = keys.with_prefix("keystore");
        let ssl_keys_more: Vec<_> = [
            "excludeProtocols",
            "includeProtocols",
            "excludeCipherSuites",
            "includeCipherSuites",
            "exclude-protocols",
            "include-protocols",
            "exclude-cipher-suites",
            "include-cipher-suites",
        ]
        .into_iter()
        .filter_map(|k| keys.get(k))
        .collect();
        match ssl {
            Some((_, v)) => self.error(
                v,
                "TLS with a Java keystore cannot be imported: tidegate reads PEM files; set \
                 `tls = { cert = \"cert.pem\", key = \"key.pem\" }` on the source (convert with `keytool -importkeystore` and `openssl pkcs12`)"
                    .into(),
            ),
            None => {
                for (_, v) in ssl_keys {
                    self.warn(v, "has no effect: TLS is not enabled".into());
                }
                for v in ssl_keys_more {
                    self.warn(v, "has no effect: TLS is not enabled".into());
                }
            }
        }
        for prefix in [
            "QueuedThreadPool.",
            "HttpConfiguration.",
            "SslContextFactory.",
            "ServerConnector.",
        ] {
            for (_, v) in keys.with_prefix(prefix) {
                self.warn(
                    v,
                    "Jetty tuning has no equivalent in tidegate and is ignored".into(),
                );
            }
        }
    }

    fn selector(&mut self, c: &Component, channels: &[String], keys: &mut Keys<'_>, out: &mut Out) {
        let ty = keys.get("selector.type");
        let kind = match ty {
            Some(t) => self.support(Kind::Selector, &c.name, t),
            None => Some("replicating"),
        };
        let line = ty.map_or(c.line(), |t| t.line);
        let mut sel = Out::new(format!("{}.selector", out.path));
        let check = |me: &mut Self, v: &Value| -> Vec<String> {
            let names = me.list(v);
            for n in &names {
                if !channels.contains(n) {
                    me.error(v, format!("channel `{n}` is not one of the source's active channels ({}); Flume fails to start the source", channels.join(" ")));
                }
            }
            names
        };
        match kind {
            Some("replicating") => {
                if let Some(v) = keys.get("selector.optional") {
                    let names = check(self, v);
                    if !channels.is_empty() && channels.iter().all(|c| names.contains(c)) {
                        self.error(v, "every channel of the source is optional: Flume acknowledges a batch they all refuse and stores it nowhere, tidegate refuses such a selector; leave at least one channel required".into());
                    }
                    sel.put("type", "replicating", line);
                    sel.put("optional", strings(&names), v.line);
                    out.put_table("selector", sel, line);
                }
            }
            Some(_) => {
                sel.put("type", "multiplexing", line);
                let header = keys.get("selector.header");
                sel.put(
                    "header",
                    header.map_or("flume.selector.header", |v| v.text.as_str()),
                    header.map_or(line, |v| v.line),
                );
                let mut mapping = Out::new(format!("{}.mapping", sel.path));
                for (value, v) in keys.with_prefix("selector.mapping.") {
                    if value == "default" {
                        self.warn(v, "maps the header VALUE `default`; the channels for unmatched events are `selector.default`".into());
                    }
                    let names = check(self, v);
                    mapping.put(value, strings(&names), v.line);
                }
                sel.put_table("mapping", mapping, line);
                let default = keys.get("selector.default");
                let default_names = default.map(|v| check(self, v)).unwrap_or_default();
                if let Some(v) = default {
                    sel.put("default", strings(&default_names), v.line);
                }
                if default_names.is_empty() {
                    let key = format!("{}.selector.default", super::type_prefix(c));
                    let at = default.cloned().unwrap_or_else(|| Value {
                        key,
                        text: String::new(),
                        line,
                    });
                    self.error(&at, "a multiplexing selector needs a non-empty default: Flume silently drops an event whose header value has no mapping (or that lacks the header), tidegate refuses such a selector; name the channel(s) for every other value".into());
                }
                let optional = keys.with_prefix("selector.optional.");
                if !optional.is_empty() {
                    let mut opt = Out::new(format!("{}.optional", sel.path));
                    for (value, v) in optional {
                        let names = check(self, v);
                        opt.put(value, strings(&names), v.line);
                    }
                    sel.put_table("optional", opt, line);
                }
                out.put_table("selector", sel, line);
            }
            None => {
                keys.with_prefix("selector.");
            }
        }
    }
}
