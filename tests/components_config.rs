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

/// Every agent the Flume import converts (the repository's fixtures and the shared Flume
/// configs, when present): each `http`/`netcat` source, `file_roll`/`http` sink and interceptor
/// it writes deserializes into the component's config and builds. Returns how many it checked.
fn check_imported(text: &str, agent: &str) -> usize {
    use tidegate::agent::flume::{ImportOptions, to_toml_with};
    use tidegate::agent::sinks::{file_roll, http as http_sink};
    use tidegate::agent::sources::{http as http_source, netcat};
    let opts = ImportOptions::with_env(
        [
            ("HOME".to_string(), "/home/flume".to_string()),
            ("FLUME_DATA".to_string(), "/data/fl".to_string()),
            ("PORT".to_string(), "8080".to_string()),
        ]
        .into(),
    );
    let Ok(import) = to_toml_with(text, agent, &opts) else {
        return 0;
    };
    let own_keys = |t: &toml::Table, common: &[&str]| {
        let mut t = t.clone();
        for k in common {
            t.remove(*k);
        }
        toml::Value::Table(t)
    };
    let mut checked = 0;
    let section = |name: &str| {
        import
            .table
            .get(name)
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    for (name, source) in section("sources") {
        let t = source.as_table().expect("a source table");
        for i in t
            .get("interceptors")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let cfg: InterceptorConfig = i
                .clone()
                .try_into()
                .unwrap_or_else(|e| panic!("{agent}: {name}: interceptor {i}: {e}"));
            build_interceptor(&cfg).unwrap_or_else(|e| panic!("{agent}: {name}: {e}"));
            checked += 1;
        }
        let common = ["type", "channels", "selector", "interceptors", "batch_size"];
        match t.get("type").and_then(toml::Value::as_str) {
            Some("http") => {
                let cfg: http_source::HttpSourceConfig = own_keys(t, &common)
                    .try_into()
                    .unwrap_or_else(|e| panic!("{agent}: source {name}: {e}"));
                if cfg.tls.is_none() {
                    http_source::build(&name, cfg).expect("builds");
                }
                checked += 1;
            }
            Some("netcat") => {
                let cfg: netcat::NetcatSourceConfig = own_keys(t, &common)
                    .try_into()
                    .unwrap_or_else(|e| panic!("{agent}: source {name}: {e}"));
                netcat::build(&name, cfg).expect("builds");
                checked += 1;
            }
            _ => {}
        }
    }
    for (name, sink) in section("sinks") {
        let t = sink.as_table().expect("a sink table");
        let common = ["type", "channel", "batch_size"];
        match t.get("type").and_then(toml::Value::as_str) {
            Some("file_roll") => {
                let cfg: file_roll::FileRollSinkConfig = own_keys(t, &common)
                    .try_into()
                    .unwrap_or_else(|e| panic!("{agent}: sink {name}: {e}"));
                file_roll::build(&name, cfg).expect("builds");
                checked += 1;
            }
            Some("http") => {
                let cfg: http_sink::HttpSinkConfig = own_keys(t, &common)
                    .try_into()
                    .unwrap_or_else(|e| panic!("{agent}: sink {name}: {e}"));
                http_sink::build(&name, cfg).expect("builds");
                checked += 1;
            }
            _ => {}
        }
    }
    checked
}

#[test]
fn what_the_flume_import_writes_fits_the_components() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<std::path::PathBuf> = ["tests/fixtures/flume", "../shared/flume-configs"]
        .iter()
        .filter_map(|d| std::fs::read_dir(root.join(d)).ok())
        .flatten()
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "properties"))
        .collect();
    files.sort();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        // The agents a file configures: the first part of every `X.sources`/`X.sinks` key.
        let agents: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| {
                let (agent, rest) = l.trim().split_once('.')?;
                (rest.starts_with("sources") || rest.starts_with("sinks")).then_some(agent)
            })
            .filter(|a| !a.starts_with('#') && !a.starts_with('!'))
            .collect();
        for agent in agents {
            checked += check_imported(&text, agent);
        }
    }
    // The repository's every-key fixture alone has an http source, eight interceptors and a
    // file_roll sink.
    assert!(checked >= 10, "only {checked} components checked");
}
