//! Process and syslog sources: Flume's `exec` -> `exec`; `syslogtcp`, `syslogudp` and
//! `multiport_syslogtcp` -> `syslog` (with `protocol`, and several `bind` addresses for the
//! multiport one).

use super::{Keys, Mapper, Out, duration_ms, strings};
use crate::agent::flume::topology::Value;

/// Flume's syslog `eventSize` default.
const FLUME_SYSLOG_EVENT_SIZE: i64 = 2500;

impl Mapper<'_> {
    /// Flume's exec source.
    pub(super) fn exec(
        &mut self,
        keys: &mut Keys<'_>,
        out: &mut Out,
        channels: &[String],
        ty: &Value,
    ) {
        match keys.get("command") {
            Some(v) => out.put("command", v.text.clone(), v.line),
            None => self.error(
                ty,
                "the source needs a `command` (Flume refuses it without one)".into(),
            ),
        }
        self.text(keys, out, "shell", "shell");
        self.flag(keys, out, "restart", "restart");
        if let Some(v) = keys.get("restartThrottle")
            && let Some(ms) = self.positive(v)
        {
            out.put("restart_throttle", duration_ms(ms), v.line);
        }
        self.flag(keys, out, "logStdErr", "log_stderr");
        self.source_batch(keys, out, channels, ty, 20);
        if let Some(v) = keys.get("batchTimeout")
            && let Some(ms) = self.positive(v)
        {
            out.put("batch_timeout", duration_ms(ms), v.line);
        }
        self.utf8_only(keys, "charset");
    }

    /// Flume's three syslog sources.
    pub(super) fn syslog(
        &mut self,
        keys: &mut Keys<'_>,
        out: &mut Out,
        channels: &[String],
        ty: &Value,
    ) {
        let flume = ty.text.to_ascii_lowercase();
        let udp = flume.contains("udp");
        let multiport = flume.contains("multiport");
        out.put("protocol", if udp { "udp" } else { "tcp" }, ty.line);
        let host = keys.get("host");
        let Some(host) = host else {
            self.error(
                ty,
                "the source needs a `host` (Flume refuses it without one)".into(),
            );
            keys.with_prefix("port");
            return self.syslog_rest(keys, out, channels, ty, udp, multiport);
        };
        let host_text = if host.text.contains(':') && !host.text.starts_with('[') {
            format!("[{}]", host.text)
        } else {
            host.text.clone()
        };
        let port_key = if multiport { "ports" } else { "port" };
        match keys.get(port_key) {
            Some(ports) => {
                let mut binds = Vec::new();
                for p in ports.text.split_whitespace() {
                    match p.parse::<u16>() {
                        Ok(p) => binds.push(format!("{host_text}:{p}")),
                        Err(_) => self.error(ports, format!("`{p}` is not a port number")),
                    }
                }
                match binds.len() {
                    0 => self.error(ports, "no port given".into()),
                    1 if !multiport => out.put("bind", binds.remove(0), ports.line),
                    _ => out.put("bind", strings(&binds), ports.line),
                }
            }
            None => self.error(
                ty,
                format!("the source needs `{port_key}` (Flume refuses it without)"),
            ),
        }
        self.syslog_rest(keys, out, channels, ty, udp, multiport);
    }

    fn syslog_rest(
        &mut self,
        keys: &mut Keys<'_>,
        out: &mut Out,
        channels: &[String],
        ty: &Value,
        udp: bool,
        multiport: bool,
    ) {
        if !udp {
            let size = match keys.get("eventSize") {
                Some(v) => self.positive(v).map(|n| (n, v.line)),
                None => Some((FLUME_SYSLOG_EVENT_SIZE, ty.line)),
            };
            if let Some((n, line)) = size {
                out.put("max_message_size", n, line);
            }
        }
        if let Some(v) = keys.get("keepFields") {
            match v.text.to_ascii_lowercase().as_str() {
                "all" | "true" => out.put("keep_fields", true, v.line),
                "none" | "false" => out.put("keep_fields", false, v.line),
                _ => self.error(v, format!("keepFields `{}` is not supported: tidegate keeps all fields in the body (`all`) or none (`none`); the fields are also in the headers", v.text)),
            }
        }
        if multiport {
            self.source_batch(keys, out, channels, ty, 100);
            for k in ["readBufferSize", "numProcessors"] {
                if let Some(v) = keys.get(k) {
                    self.warn(v, "no effect in tidegate".into());
                }
            }
            if let Some(v) = keys.get("portHeader") {
                self.error(v, "portHeader is not supported: tidegate adds no header naming the port a message came in on".into());
            }
            self.utf8_only(keys, "charset.default");
            for (_, v) in keys.with_prefix("charset.port.") {
                self.utf8_value(v);
            }
        }
        for k in ["clientIPHeader", "clientHostnameHeader"] {
            if let Some(v) = keys.get(k) {
                self.error(
                    v,
                    format!(
                        "{k} is not supported: tidegate adds no header with the client's address"
                    ),
                );
            }
        }
        let ssl = keys.get("ssl");
        let ssl_more = keys.with_prefix("keystore");
        if let Some(v) = ssl
            && self.boolean(v) == Some(true)
        {
            self.error(
                v,
                "syslog over TLS is not supported by tidegate's syslog source".into(),
            );
        } else {
            for (_, v) in ssl_more {
                self.warn(v, "has no effect: TLS is not enabled".into());
            }
        }
    }
}
