//! The components' keys as the agent's TOML config writes them: defaults, and unknown keys
//! refused by name.

use std::time::Duration;

use tidegate::agent::interceptors::{InterceptorConfig, build_interceptor};
use tidegate::agent::sinks::file_roll::{FileRollSinkConfig, Serializer};
use tidegate::agent::sinks::http::HttpSinkConfig;
use tidegate::agent::sources::http::HttpSourceConfig;
use tidegate::agent::sources::netcat::NetcatSourceConfig;
use tidegate::agent::wire::Format;

fn unknown_key_is_named<T: serde::de::DeserializeOwned + std::fmt::Debug>(toml_text: &str) {
    let err = toml::from_str::<T>(toml_text).expect_err("an unknown key");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn http_source_keys() {
    let c: HttpSourceConfig = toml::from_str(r#"bind = "127.0.0.1:8080""#).expect("parse");
    assert_eq!(c.max_body_size.0, 16 << 20);
    assert!(c.auth_token.is_none() && c.tls.is_none());
    let c: HttpSourceConfig = toml::from_str(
        r#"
        bind = "127.0.0.1:8080"
        max_body_size = "1MiB"
        auth_token = "s"
        tls = { cert = "c.pem", key = "k.pem" }
        "#,
    )
    .expect("parse");
    assert_eq!(c.max_body_size.0, 1 << 20);
    assert_eq!(c.tls.map(|t| t.key), Some("k.pem".into()));
    unknown_key_is_named::<HttpSourceConfig>("bind = \"x\"\nnope = 1");
}

#[test]
fn netcat_source_keys() {
    let c: NetcatSourceConfig = toml::from_str(r#"bind = "127.0.0.1:44444""#).expect("parse");
    assert_eq!((c.max_line_length, c.ack_every_event), (512, true));
    unknown_key_is_named::<NetcatSourceConfig>("bind = \"x\"\nnope = 1");
}

#[test]
fn file_roll_sink_keys() {
    let c: FileRollSinkConfig = toml::from_str(r#"directory = "out""#).expect("parse");
    assert_eq!(c.roll_interval.0, Duration::from_secs(30));
    assert_eq!(c.roll_size.0, 128 << 20);
    assert_eq!(c.serializer, Serializer::Text);
    assert_eq!(c.file_prefix, "events");
    let c: FileRollSinkConfig = toml::from_str(
        r#"
        directory = "out"
        roll_interval = "0s"
        roll_size = 0
        serializer = "json"
        file_prefix = "x"
        "#,
    )
    .expect("parse");
    assert_eq!(
        (c.roll_interval.0, c.roll_size.0, c.serializer),
        (Duration::ZERO, 0, Serializer::Json)
    );
    assert!(
        toml::from_str::<FileRollSinkConfig>("directory = \"o\"\nserializer = \"xml\"").is_err()
    );
    unknown_key_is_named::<FileRollSinkConfig>("directory = \"x\"\nnope = 1");
}

#[test]
fn http_sink_keys() {
    let c: HttpSinkConfig = toml::from_str(r#"url = "http://127.0.0.1:9000/""#).expect("parse");
    assert_eq!(
        (c.format, c.timeout.0),
        (Format::Json, Duration::from_secs(10))
    );
    assert!(c.headers.is_empty() && c.auth_token.is_none());
    let c: HttpSinkConfig = toml::from_str(
        r#"
        url = "https://example.invalid/"
        format = "binary"
        timeout = "500ms"
        headers = { "X-Env" = "prod" }
        "#,
    )
    .expect("parse");
    assert_eq!(
        (c.format, c.timeout.0),
        (Format::Binary, Duration::from_millis(500))
    );
    assert_eq!(c.headers.get("X-Env").map(String::as_str), Some("prod"));
    unknown_key_is_named::<HttpSinkConfig>("url = \"x\"\nnope = 1");
}

#[test]
fn interceptor_lists() {
    #[derive(Debug, serde::Deserialize)]
    struct Chain {
        interceptors: Vec<InterceptorConfig>,
    }
    let chain: Chain = toml::from_str(
        r#"
        interceptors = [
            { type = "timestamp" },
            { type = "host", use_ip = false },
            { type = "static", key = "env", value = "prod" },
            { type = "remove_header", matching = "x-.*" },
            { type = "uuid", prefix = "a1-" },
            { type = "regex_filter", regex = "^DEBUG", exclude = true },
            { type = "regex_extractor", regex = "(\\d+)", headers = ["n"] },
            { type = "search_replace", search = "pw=\\S+", replace = "pw=***" },
        ]
        "#,
    )
    .expect("parse");
    assert_eq!(chain.interceptors.len(), 8);
    for i in &chain.interceptors {
        assert!(build_interceptor(i).is_ok(), "{i:?}");
    }
    assert_eq!(
        chain.interceptors[0],
        InterceptorConfig::Timestamp {
            header: "timestamp".into(),
            preserve_existing: false
        }
    );
    let err = toml::from_str::<Chain>(r#"interceptors = [{ type = "uuid", nope = 1 }]"#)
        .expect_err("unknown key");
    assert!(err.to_string().contains("nope"), "{err}");
}
