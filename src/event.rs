//! Events: what flows through a channel.

use std::collections::BTreeMap;

/// An event: string headers (ordered by key) and a body of bytes.
///
/// ```
/// use tidegate::Event;
/// let ev = Event::new(b"GET /index.html 200".to_vec()).with_header("host", "web-1");
/// assert_eq!(ev.body(), b"GET /index.html 200");
/// assert_eq!(ev.headers().get("host").map(String::as_str), Some("web-1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Event {
    /// An event with `body` and no headers.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Event {
            headers: BTreeMap::new(),
            body: body.into(),
        }
    }
    /// An event from its parts.
    pub fn from_parts(headers: BTreeMap<String, String>, body: Vec<u8>) -> Self {
        Event { headers, body }
    }
    /// Adds (or replaces) a header.
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }
    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    /// The headers.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }
    /// The headers, to change them.
    pub fn headers_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.headers
    }
    /// The body, to change it.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }
    /// Splits the event into headers and body.
    pub fn into_parts(self) -> (BTreeMap<String, String>, Vec<u8>) {
        (self.headers, self.body)
    }
    /// The body, consuming the event.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}
