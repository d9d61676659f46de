//! The `http` sink: POSTs each batch to a URL, in the JSON or binary format (see
//! [`wire`](crate::agent::wire)), the format the `http` source reads.
//!
//! A batch is delivered when the server answers 2xx; the runner then commits its take. Any
//! other status, a connection failure, or no complete answer within `timeout` is an error: the
//! runner rolls the take back (the events return to the head of the channel) and retries after
//! a backoff. So nothing is lost, and a batch whose 2xx was lost on the way back is sent again
//! (at-least-once). An empty batch is not sent. Redirects are not followed (a 3xx is an error):
//! a POST redirected as a GET would get a 2xx without the batch arriving anywhere.
//!
//! `https://` URLs are verified against the WebPKI roots (rustls, ring). `auth_token` sends
//! `Authorization: Bearer <token>`; `headers` adds fixed request headers.
//!
//! The `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` / `NO_PROXY` environment variables are ignored:
//! agent-to-agent traffic must not silently go through a proxy the environment happens to name.
//! A sink that should use one says so with `proxy = "http://proxy:3128"`.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::Event;
use crate::agent::component::{BoxFuture, ComponentError, Sink, SinkError};
use crate::agent::units::HumanDuration;
use crate::agent::wire::Format;

/// Most bytes of an error answer's body quoted in the error.
const QUOTED_BODY: usize = 200;

/// The `http` sink's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where to POST (`http://` or `https://`).
    pub url: String,
    /// `json` (default) or `binary`.
    #[serde(default)]
    pub format: Format,
    /// Longest wait for the whole exchange. Default 10 s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Sends `Authorization: Bearer <auth_token>`.
    #[serde(default)]
    pub auth_token: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Send every request through this proxy (`http://` or `https://`). Without it no proxy
    /// is used, whatever `HTTP_PROXY` and the like say.
    #[serde(default)]
    pub proxy: Option<String>,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// Builds an `http` sink.
pub fn build(name: &str, cfg: HttpSinkConfig) -> Result<Box<dyn Sink>, ComponentError> {
    Ok(Box::new(HttpSink::new(name, cfg)?))
}

/// The `http` sink.
pub struct HttpSink {
    client: reqwest::Client,
    url: reqwest::Url,
    format: Format,
    timeout: Duration,
}

impl HttpSink {
    /// Checks `cfg` (URL, header names and values) and builds the client.
    pub fn new(name: &str, cfg: HttpSinkConfig) -> Result<Self, ComponentError> {
        let config_err = |msg: String| ComponentError::Config(format!("sink {name}: {msg}"));
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| config_err(format!("url {:?}: {e}", cfg.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_err(format!(
                "url {:?}: the scheme must be http or https",
                cfg.url
            )));
        }
        if cfg.timeout.0.is_zero() {
            return Err(config_err("timeout must be more than 0".into()));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| config_err(format!("headers: {k:?} is not a header name: {e}")))?;
            let value = HeaderValue::from_str(v).map_err(|e| {
                config_err(format!("headers.{k}: {v:?} is not a header value: {e}"))
            })?;
            headers.insert(name, value);
        }
        if let Some(token) = &cfg.auth_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| config_err(format!("auth_token is not a header value: {e}")))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(cfg.format.content_type()),
        );
        let builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.timeout.0)
            // A redirected POST may come back as a GET without the body, answered 200: the
            // batch would be committed and lost. A 3xx is an error like any other non-2xx.
            .redirect(reqwest::redirect::Policy::none());
        // Only the proxy the config names: the environment's proxy variables are ignored.
        let builder = match &cfg.proxy {
            None => builder.no_proxy(),
            Some(p) => {
                let bad = |why: String| config_err(format!("proxy {p:?}: {why}"));
                let parsed = reqwest::Url::parse(p).map_err(|e| bad(e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(bad("the scheme must be http or https".into()));
                }
                builder.proxy(reqwest::Proxy::all(parsed).map_err(|e| bad(e.to_string()))?)
            }
        };
        let client = builder
            .build()
            .map_err(|e| config_err(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpSink {
            client,
            url,
            format: cfg.format,
            timeout: cfg.timeout.0,
        })
    }

    async fn post(&self, batch: &[Event]) -> Result<(), SinkError> {
        let body = self
            .format
            .encode(batch)
            .map_err(|e| SinkError::Delivery(e.to_string()))?;
        let response = self
            .client
            .post(self.url.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| self.request_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let quoted: String = text.trim().chars().take(QUOTED_BODY).collect();
        Err(SinkError::Delivery(format!(
            "{} answered {status}: {quoted}",
            self.url
        )))
    }

    fn request_error(&self, e: &reqwest::Error) -> SinkError {
        if e.is_timeout() {
            SinkError::Connection(format!("{}: no answer within {:?}", self.url, self.timeout))
        } else if e.is_connect() {
            SinkError::Connection(format!("{}: cannot connect: {}", self.url, error_chain(e)))
        } else {
            SinkError::Connection(format!("{}: {}", self.url, error_chain(e)))
        }
    }
}

/// `e` and its causes, joined (reqwest's Display leaves the cause out).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl Sink for HttpSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            self.post(batch).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// Set in the child process of [`environment_proxy_is_ignored`].
    const CHILD: &str = "TIDEGATE_HTTP_SINK_PROXY_CHILD";

    /// A one-request HTTP server on loopback that answers 200; returns its URL.
    fn answer_once() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then a body of Content-Length bytes.
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|v| v.trim().parse().ok())
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        });
        format!("http://{addr}/")
    }

    /// A loopback port nothing listens on.
    fn dead_address() -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        format!("http://{addr}")
    }

    fn deliver(cfg: HttpSinkConfig) -> Result<(), SinkError> {
        let mut sink = HttpSink::new("k1", cfg).expect("sink");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(sink.deliver(&[Event::new(b"hello".to_vec())]))
    }

    fn config(url: String, proxy: Option<String>) -> HttpSinkConfig {
        HttpSinkConfig {
            url,
            format: Format::default(),
            timeout: HumanDuration(Duration::from_secs(10)),
            auth_token: None,
            headers: BTreeMap::new(),
            proxy,
        }
    }

    /// Runs in a child process whose environment names a dead proxy (the parent's environment
    /// is never changed, so no other test sees it).
    #[test]
    fn child_delivers_despite_a_dead_environment_proxy() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        assert!(std::env::var_os("HTTP_PROXY").is_some());
        deliver(config(answer_once(), None)).expect("delivered without the environment's proxy");
    }

    #[test]
    fn environment_proxy_is_ignored() {
        let dead = dead_address();
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "agent::sinks::http::tests::child_delivers_despite_a_dead_environment_proxy",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("HTTP_PROXY", &dead)
            .env("http_proxy", &dead)
            .env("ALL_PROXY", &dead)
            .env("all_proxy", &dead)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("REQUEST_METHOD")
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_configured_proxy_is_used() {
        // The configured proxy is dead: delivery fails with a connection error, though the
        // server itself answers.
        let e = deliver(config(answer_once(), Some(dead_address()))).expect_err("via the proxy");
        assert!(matches!(e, SinkError::Connection(_)), "{e:?}");
        let e = HttpSink::new("k1", config(answer_once(), Some("socks5://x:1".into())))
            .err()
            .expect("a socks proxy is refused");
        assert!(
            e.to_string().contains("proxy") && e.to_string().contains("scheme"),
            "{e}"
        );
    }
}
