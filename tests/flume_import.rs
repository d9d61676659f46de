//! The Flume config import against real Flume configs (`../shared/flume-configs`, beside the
//! checkout) and against small fixtures of our own (`tests/fixtures/flume`) for every supported
//! path. Every real file has an asserted outcome for each of its agents.
#![cfg(feature = "cli")]
#![expect(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use tidegate::agent::config::{Origin, load_config_table};
use tidegate::agent::flume::{FlumeErrors, FlumeImport, ImportOptions, to_toml, to_toml_with};

fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/flume-configs")
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flume")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The environment every test sees (never the process's).
fn options() -> ImportOptions {
    ImportOptions::with_env(BTreeMap::from([
        ("HOME".to_string(), "/home/flume".to_string()),
        ("FLUME_DATA".to_string(), "/data/fl".to_string()),
        ("PORT".to_string(), "8080".to_string()),
    ]))
}

/// Converts, checks the table survives a round trip through TOML text, and returns it.
fn convert_text(text: &str, agent: &str, opts: &ImportOptions) -> FlumeImport {
    let import = to_toml_with(text, agent, opts).unwrap_or_else(|e| panic!("{agent}: {e}"));
    let printed = toml::to_string(&import.table).unwrap();
    let back: toml::Table = toml::from_str(&printed).unwrap();
    assert_eq!(
        back, import.table,
        "the printed TOML parses back to the same table"
    );
    // What the agent would run: the same checks as `tidegate agent --config`.
    if let Err(e) = load_config_table(import.table.clone(), Origin::new("converted.toml")) {
        panic!("{agent}: the converted config does not load:\n{e}\n{printed}");
    }
    import
}

fn convert_shared(file: &str, agent: &str) -> FlumeImport {
    convert_text(&read(shared_dir().join(file)), agent, &options())
}

fn reject_text(text: &str, agent: &str) -> FlumeErrors {
    match to_toml_with(text, agent, &options()) {
        Ok(i) => panic!(
            "{agent} converted, expected a rejection:\n{}",
            toml::to_string(&i.table).unwrap()
        ),
        Err(e) => e,
    }
}

/// Rejects; each of `needles` must appear in one error (as "line N: key: ..." text).
fn reject_shared(file: &str, agent: &str, needles: &[&str]) -> FlumeErrors {
    let e = reject_text(&read(shared_dir().join(file)), agent);
    assert_errors(&e, needles);
    e
}

fn assert_errors(e: &FlumeErrors, needles: &[&str]) {
    let text = e.to_string();
    for n in needles {
        assert!(text.contains(n), "no error contains {n:?}; errors:\n{text}");
    }
}

fn assert_warns(warnings: &[tidegate::agent::flume::Diagnostic], needle: &str) {
    assert!(
        warnings.iter().any(|w| w.to_string().contains(needle)),
        "no warning contains {needle:?}; warnings: {warnings:#?}"
    );
}

fn get<'a>(t: &'a toml::Table, path: &str) -> &'a toml::Value {
    let mut parts = path.split('.');
    let first = parts.next().unwrap();
    let mut v = t
        .get(first)
        .unwrap_or_else(|| panic!("no {first} in {path}"));
    for p in parts {
        v = match v {
            toml::Value::Array(a) => &a[p.parse::<usize>().unwrap()],
            other => other.get(p).unwrap_or_else(|| panic!("no {p} in {path}")),
        };
    }
    v
}

fn s<'a>(t: &'a toml::Table, path: &str) -> &'a str {
    get(t, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn i(t: &toml::Table, path: &str) -> i64 {
    get(t, path)
        .as_integer()
        .unwrap_or_else(|| panic!("{path} is not an integer"))
}

fn b(t: &toml::Table, path: &str) -> bool {
    get(t, path)
        .as_bool()
        .unwrap_or_else(|| panic!("{path} is not a bool"))
}

fn list(t: &toml::Table, path: &str) -> Vec<String> {
    get(t, path)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn names(t: &toml::Table, section: &str) -> Vec<String> {
    t.get(section)
        .and_then(|v| v.as_table())
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default()
}

// ---- the real configs: one test per file --------------------------------------------------

/// Every file of the shared directory is covered by a test below.
#[test]
fn every_shared_config_has_a_test() {
    let covered = [
        "01", "03", "05", "07", "09", "11", "13", "15", "17", "19", "21", "23", "25", "27", "29",
        "31", "33", "35", "37", "39", "41",
    ];
    let mut seen = 0;
    for entry in std::fs::read_dir(shared_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".properties") {
            seen += 1;
            assert!(
                covered.iter().any(|c| name.starts_with(&format!("{c}-"))),
                "{name} has no test"
            );
        }
    }
    assert_eq!(seen, covered.len());
}

#[test]
fn c01_hdfs_sink_rejected_duplicates_reported() {
    let e = reject_shared(
        "01-tier1-netcat-hdfs-csv.properties",
        "tier1",
        &[
            "line 14: tier1.sinks.sink1.type: sink type `hdfs` is not supported",
            "1 unsupported component(s)",
        ],
    );
    assert_eq!(e.errors.len(), 2, "{e}");
    assert_warns(
        &e.warnings,
        "line 21: tier1.sinks.sink1.hdfs.rollInterval: is set more than once; the value of line 18",
    );
}

#[test]
fn c03_spooldir_to_kafka_converts() {
    let a = convert_shared("03-spooldir-kafka-filechannel-uuid.properties", "agent1");
    let t = &a.table;
    assert_eq!(s(t, "sources.r1.type"), "spooldir");
    assert_eq!(
        s(t, "sources.r1.directory"),
        "/home/hadoop/myworkspace/zhy/spooldir"
    );
    assert_eq!(
        s(t, "sources.r1.ignore_pattern"),
        "^(.)*\\.tmp$",
        "the properties escape `\\\\` is one backslash"
    );
    assert_eq!(i(t, "sources.r1.batch_size"), 100);
    assert_eq!(s(t, "sources.r1.interceptors.0.type"), "uuid");
    assert_eq!(s(t, "sinks.k1.type"), "kafka");
    assert_eq!(
        s(t, "sinks.k1.bootstrap_servers"),
        "hadoop02:9092,hadoop03:9092,hadoop04:9092",
        "the legacy brokerList"
    );
    assert_eq!(s(t, "sinks.k1.topic"), "test_topic_gn_02");
    assert_eq!(
        s(t, "sinks.k1.topic_header"),
        "topic",
        "Flume's allowTopicOverride default"
    );
    assert_eq!(i(t, "sinks.k1.batch_size"), 100);
    assert_eq!(s(t, "channels.c1.type"), "file");
    assert_warns(
        &a.warnings,
        "line 19: agent1.sinks.k1.requiredAcks: acks `1` is raised to `all`",
    );
}

#[test]
fn c05_exec_and_hdfs_rejected() {
    reject_shared(
        "05-exec-hdfs-interleaved.properties",
        "agent",
        &[
            "1 unsupported component(s), all listed here: sink `hdfsSink` of type `hdfs` (line 9)",
            "line 9: agent.sinks.hdfsSink.type: sink type `hdfs`",
        ],
    );
}

#[test]
fn c07_both_agents_convert() {
    let a = convert_shared("07-two-agents-seq-netcat-logger.properties", "a1");
    let t = &a.table;
    assert_eq!(s(t, "agent.name"), "a1");
    assert_eq!(s(t, "sources.r1.type"), "netcat");
    assert_eq!(s(t, "sources.r1.bind"), "localhost:44444");
    assert_eq!(list(t, "sources.r1.channels"), ["c1"]);
    assert_eq!(s(t, "channels.c1.type"), "memory");
    assert_eq!(i(t, "channels.c1.capacity"), 1000);
    assert_eq!(i(t, "channels.c1.transaction_capacity"), 100);
    assert_eq!(s(t, "sinks.k1.type"), "logger");
    assert_eq!(s(t, "sinks.k1.channel"), "c1");
    assert_eq!(a.lines["sources.r1.bind"], 40, "the port's line");
    assert_eq!(a.lines["sinks.k1.channel"], 52);
    assert_warns(&a.warnings, "also defines agent(s) agent_foo");

    let f = convert_shared("07-two-agents-seq-netcat-logger.properties", "agent_foo");
    let t = &f.table;
    assert_eq!(s(t, "sources.log-1.type"), "seq");
    assert_eq!(
        i(t, "sources.log-1.batch_size"),
        1,
        "Flume's seq default batch"
    );
    assert_eq!(s(t, "sinks.sink-1.channel"), "channel-1");
    assert_eq!(names(t, "channels"), ["channel-1"]);
}

#[test]
fn c09_apache_template_converts_with_flume_memory_defaults() {
    let a = convert_shared("09-apache-template-seq-logger.properties", "foo");
    let t = &a.table;
    assert_eq!(s(t, "sources.seqGenSrc.type"), "seq");
    assert_eq!(i(t, "channels.memoryChannel.capacity"), 100);
    assert_eq!(
        i(t, "channels.memoryChannel.transaction_capacity"),
        100,
        "Flume's memory default"
    );
    assert_eq!(i(t, "sinks.loggerSink.batch_size"), 100);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
}

#[test]
fn c11_avro_rejected_group_name_listed_as_sink_warned() {
    let e = reject_shared(
        "11-avro-http-loadbalance-filechannel.properties",
        "agent",
        &[
            "3 unsupported component(s)",
            "line 13: agent.sources.avro.type: source type `avro` is not supported: Flume's Avro RPC",
            "line 38: agent.sinks.collector0.type: sink type `avro`",
            "line 43: agent.sinks.collector1.type: sink type `avro`",
        ],
    );
    assert_eq!(
        e.errors.len(),
        4,
        "the http source, the static interceptor named `type` and the file channel are fine: {e}"
    );
    assert_warns(
        &e.warnings,
        "`collectors` is listed as a sink but is the name of a sink group",
    );
}

#[test]
fn c13_misplaced_kafka_batch_size_rejected_max_file_size_capped() {
    let e = reject_shared(
        "13-taildir-filechannel-kafka-tabs.properties",
        "producer",
        &[
            "line 25: producer.sinks.r_normal_test.kafka.flumeBatchSize: `kafka.flumeBatchSize` is not a key of Flume's `org.apache.flume.sink.kafka.KafkaSink` sink (Flume ignored it); did you mean `flumeBatchSize`?",
        ],
    );
    assert_eq!(
        e.errors.len(),
        1,
        "taildir, the file channel and the rest of the sink convert: {e}"
    );
    assert_warns(
        &e.warnings,
        "line 26: producer.sinks.r_normal_test.kafka.producer.acks: acks `1` is raised to `all`",
    );
    assert_warns(
        &e.warnings,
        "line 17: producer.channels.c_normal_test.maxFileSize: 2146435071 is above Flume's cap",
    );
}

#[test]
fn c15_avro_and_custom_es_rejected_inactive_components_warned() {
    let e = reject_shared(
        "15-avro-multiplexing-inactive-components.properties",
        "gateway_agent",
        &[
            "source type `avro`",
            "line 67: gateway_agent.sinks.es-sink.type: sink type `com.frontier45.flume.sink.elasticsearch2.ElasticSearchSink` is not supported: it is not a Flume built-in type but a custom Java class",
            // Flume discards unmapped events here (the file says so); tidegate refuses that.
            "gateway_agent.sources.avro_source.selector.default: a multiplexing selector needs a non-empty default",
        ],
    );
    for ch in [
        "hdfs-audit-c",
        "hdfs-listener-c",
        "hdfs-metric-c",
        "hdfs-alert-c",
    ] {
        assert_warns(
            &e.warnings,
            &format!("channel `{ch}` is configured but not listed"),
        );
    }
    for sk in [
        "hdfs-audit-s",
        "hdfs-listener-s",
        "hdfs-metric-s",
        "hdfs-alert-s",
    ] {
        assert_warns(
            &e.warnings,
            &format!("sink `{sk}` is configured but not listed"),
        );
    }
}

#[test]
fn c17_hbase_and_kafka_rejected() {
    reject_shared(
        "17-netcat-hbase-kafka-two-sinks.properties",
        "tier1",
        &[
            "1 unsupported component(s), all listed here: sink `sink1` of type `hbase` (line 22)",
            "line 35: tier1.sinks.sink2.batchSize: batchSize 1000 is above the transactionCapacity 100 of channel `channel1`",
        ],
    );
}

#[test]
fn c19_custom_sql_source_and_kafka_rejected() {
    let e = reject_shared(
        "19-sqlsource-kafka-values-with-equals.properties",
        "agent",
        &[
            "line 8: agent.sources.sqlSource.type: source type `org.keedio.flume.source.SQLSource` is not supported: it is not a Flume built-in type",
        ],
    );
    assert_eq!(
        e.errors.len(),
        3,
        "byteCapacity and the values with `=` are fine: {e}"
    );
}

#[test]
fn c21_both_agents_rejected_untyped_sink_warned() {
    let e = reject_shared(
        "21-two-agents-sink-listed-but-commented-out.properties",
        "producer",
        &["line 13: producer.sources.s.type: source type `avro`"],
    );
    assert_eq!(e.errors.len(), 2, "{e}");
    assert_warns(
        &e.warnings,
        "line 10: producer.sinks: sink `hdfsSink` is listed but has no keys; Flume dropped it",
    );
    reject_shared(
        "21-two-agents-sink-listed-but-commented-out.properties",
        "consumer",
        &[
            "line 68: consumer.sources.s.type: source type `org.apache.flume.plugins.KafkaSource` is not supported",
        ],
    );
}

#[test]
fn c23_nested_system_property_lookup() {
    let text = read(shared_dir().join("23-apache-test-recursive-lookup.properties"));
    let e = reject_text(&text, "a1");
    assert_errors(
        &e,
        &[
            "line 23: a1.sources.r1.bind: `${sys:env}` is a Java system property",
            "-D env=VALUE",
        ],
    );
    assert_eq!(e.errors.len(), 1, "{e}");

    let mut opts = options();
    opts.system_properties.insert("env".into(), "PROD".into());
    let a = convert_text(&text, "a1", &opts);
    assert_eq!(s(&a.table, "sources.r1.bind"), "192.168.10.110:6667");
    assert_eq!(i(&a.table, "channels.c1.capacity_bytes"), 800_000);
    assert_warns(&a.warnings, "line 19: PROD_BIND: has no agent prefix");
    assert_warns(&a.warnings, "line 34: a1.channels: is set more than once");
    opts.system_properties.insert("env".into(), "DEV".into());
    let a = convert_text(&text, "a1", &opts);
    assert_eq!(s(&a.table, "sources.r1.bind"), "192.168.11.101:6667");
}

#[test]
fn c25_syslogudp_custom_udp_and_hbase_rejected_unlisted_sinks_warned() {
    let e = reject_shared(
        "25-netcat-syslogudp-hbase-unlisted-sinks.properties",
        "a1",
        &[
            "2 unsupported component(s), all listed here: source `r3` of type `com.meetme.flume.JSONUDPSource` (line 20); sink `k3` of type `org.apache.flume.sink.hbase.HBaseSink` (line 38)",
        ],
    );
    assert_eq!(e.errors.len(), 3, "the syslogudp source converts: {e}");
    assert_warns(
        &e.warnings,
        "line 29: a1.sinks.k1: sink `k1` is configured but not listed",
    );
    assert_warns(
        &e.warnings,
        "line 31: a1.sinks.k2: sink `k2` is configured but not listed",
    );
}

#[test]
fn c27_three_agents() {
    let a = convert_shared("27-three-agents-seq-avro-chain.properties", "agent");
    assert_eq!(s(&a.table, "sources.seqGenSrc.type"), "seq");
    assert_eq!(s(&a.table, "sinks.loggerSink.type"), "logger");
    reject_shared(
        "27-three-agents-seq-avro-chain.properties",
        "agent1",
        &[
            "line 42: agent1.sinks.kAvro1.type: sink type `avro`",
            "line 37: agent1.sources.rSeq1.sleepMinMillis: `sleepMinMillis` is not a key of Flume's `seq` source (Flume ignored it)",
            "line 38: agent1.sources.rSeq1.sleepMaxMillis",
        ],
    );
    reject_shared(
        "27-three-agents-seq-avro-chain.properties",
        "agent2",
        &["line 55: agent2.sources.rAvro2.type: source type `avro`"],
    );
}

#[test]
fn c29_kafka_source_and_hdfs_rejected_default_dirs_warned() {
    let e = reject_shared(
        "29-kafkasource-hdfs-filechannel-defaults.properties",
        "flume1",
        &[
            "line 9: flume1.sources.kafka-source-1.zookeeperConnect: tidegate's kafka source connects to the brokers, not to ZooKeeper: set `kafka.bootstrap.servers`",
            "sink type `hdfs`",
        ],
    );
    assert_warns(
        &e.warnings,
        "flume1.channels.hdfs-channel-1.checkpointDir: not set: using Flume's default `/home/flume/.flume/file-channel/checkpoint`",
    );
    assert_warns(&e.warnings, "`/home/flume/.flume/file-channel/data`");
}

#[test]
fn c31_exec_to_file_roll_converts() {
    let a = convert_shared("31-exec-file-roll-commented-agent.properties", "agent");
    let t = &a.table;
    assert_eq!(s(t, "sources.execSource.type"), "exec");
    assert_eq!(
        s(t, "sources.execSource.command"),
        "tail -F /data/tmp/flume-input.log"
    );
    assert_eq!(
        i(t, "sources.execSource.batch_size"),
        20,
        "Flume's exec default batch"
    );
    assert_eq!(s(t, "sinks.logSink.type"), "file_roll");
    assert_eq!(s(t, "sinks.logSink.directory"), "/data/tmp/flume-output");
    // The commented-out agent does not exist.
    let e = reject_shared(
        "31-exec-file-roll-commented-agent.properties",
        "docker",
        &["no key starts with `docker.`; the agents in this file are: agent"],
    );
    assert_eq!(e.errors.len(), 1);
}

#[test]
fn c33_taildir_and_avro_rejected() {
    let e = reject_shared(
        "33-taildir-filechannel-loadbalance-avro.properties",
        "a1",
        &[
            "2 unsupported component(s), all listed here: sink `k1` of type `avro` (line 31); sink `k2` of type `avro` (line 36)",
        ],
    );
    assert_eq!(
        e.errors.len(),
        3,
        "the group (maxTimeOut) and the file channel (keep-alive) are fine: {e}"
    );
    assert_warns(
        &e.warnings,
        "line 42: a1.sources.r1.channels: is set more than once",
    );
}

#[test]
fn c35_hdfs_and_millis_serializer_rejected() {
    reject_shared(
        "35-netcat-hdfs-regex-extractor.properties",
        "AgentDas",
        &[
            "sink type `hdfs`",
            "line 40: AgentDas.sources.netcat-source.interceptors.add-timestamp.serializers.s1.type: serializer type `org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer` is not supported",
        ],
    );
}

#[test]
fn c37_comma_separated_lists_rejected() {
    let e = reject_shared(
        "37-exec-es-logger-comma-separated-lists.properties",
        "agent",
        &[
            "line 16: agent.channels: the list `log_channel, es_channel` is comma-separated",
            "write `log_channel es_channel`",
            "line 17: agent.sinks: the list `log_sink, es_sink` is comma-separated",
            "line 22: agent.sources.tail.channels: the list",
            "1 unsupported component(s), all listed here: sink `es_sink` of type `org.apache.flume.sink.elasticsearch.ElasticSearchSink` (line 30)",
        ],
    );
    assert_eq!(e.errors.len(), 5, "{e}");
}

#[test]
fn c39_spillable_avro_and_unresolved_variables_rejected() {
    let e = reject_shared(
        "39-http-spillable-loadbalance-configfilters-env.properties",
        "a",
        &[
            "line 33: a.channels.c_flume_opg210_prod_ds.type: channel type `SPILLABLEMEMORY` is not supported: use type = file",
            "line 27: a.sources.r_http.interceptors.i_timestamp.headerName: `${FLUME_IP}` is neither a property of the file nor a set environment variable (the declared env config filter would be written `${cf['FLUME_IP']}`)",
            "line 38: a.channels.c_flume_opg210_prod_ds.checkpointDir: `${FLUME_DIR_CHANNELS}`",
            "3 unsupported component(s)",
        ],
    );
    assert_eq!(e.errors.len(), 7, "{e}");
    // With the variables set, only the unsupported components remain.
    let text =
        read(shared_dir().join("39-http-spillable-loadbalance-configfilters-env.properties"));
    let opts = ImportOptions::with_env(BTreeMap::from([
        ("FLUME_IP".to_string(), "10.1.1.1".to_string()),
        ("FLUME_DIR_CHANNELS".to_string(), "/ch".to_string()),
    ]));
    let e = to_toml_with(&text, "a", &opts).unwrap_err();
    assert_eq!(e.errors.len(), 4, "{e}");
}

#[test]
fn c41_unprefixed_roll_interval_named() {
    let e = reject_shared(
        "41-spoolDir-camelcase-file-roll-wrong-key.properties",
        "agent01",
        &[
            "line 14: agent01.sinks.fileSink.rollInterval: `rollInterval` is not a key of Flume's `file_roll` sink (Flume ignored it); did you mean `sink.rollInterval`?",
        ],
    );
    assert_eq!(
        e.errors.len(),
        1,
        "the camelCase spoolDir source converts: {e}"
    );
}

// ---- our fixtures: the supported paths ----------------------------------------------------

#[test]
fn file_channel_every_key_and_routing() {
    let a = convert_text(
        &read(fixture_dir().join("every-key.properties")),
        "web",
        &options(),
    );
    let t = &a.table;
    // File channel: every camelCase key, units converted.
    assert_eq!(s(t, "channels.c1.type"), "file");
    assert_eq!(s(t, "channels.c1.checkpoint_dir"), "/data/fl/checkpoint");
    assert_eq!(
        list(t, "channels.c1.data_dirs"),
        ["/data/fl/data1", "/data/fl/data2"]
    );
    assert_eq!(i(t, "channels.c1.capacity"), 200_000);
    assert_eq!(i(t, "channels.c1.transaction_capacity"), 5000);
    assert_eq!(s(t, "channels.c1.checkpoint_interval"), "15s");
    assert_eq!(i(t, "channels.c1.max_segment_size"), 268_435_456);
    assert_eq!(i(t, "channels.c1.minimum_required_space"), 104_857_600);
    assert_eq!(s(t, "channels.c1.keep_alive"), "10s");
    assert!(!b(t, "channels.c1.checkpoint_on_close"));
    assert_eq!(s(t, "channels.c1.fsync"), "interval");
    assert_eq!(s(t, "channels.c1.fsync_interval"), "2s");
    assert_warns(&a.warnings, "line 19: web.channels.c1.backupCheckpointDir");
    assert_warns(&a.warnings, "line 23: web.channels.c1.use-fast-replay");
    // The continuation's line is the line the key starts on.
    assert_eq!(a.lines["channels.c1.data_dirs"], 10);
    assert_eq!(a.lines["channels.c1.fsync_interval"], 22);
    // Memory channel.
    assert_eq!(i(t, "channels.m1.capacity_bytes"), 67_108_864);
    assert_eq!(s(t, "channels.m1.keep_alive"), "1s");
    // Source: ${PORT} from the environment, multiplexing selector.
    assert_eq!(s(t, "sources.r1.bind"), "127.0.0.1:8080");
    assert_eq!(s(t, "sources.r1.selector.type"), "multiplexing");
    assert_eq!(s(t, "sources.r1.selector.header"), "region");
    assert_eq!(list(t, "sources.r1.selector.mapping.eu"), ["c1"]);
    assert_eq!(list(t, "sources.r1.selector.mapping.us"), ["c1", "m1"]);
    assert_eq!(list(t, "sources.r1.selector.default"), ["m1"]);
    assert_eq!(list(t, "sources.r1.selector.optional.us"), ["m1"]);
    // Interceptors in list order, with Flume's keys and defaults.
    let kinds: Vec<&str> = (0..8)
        .map(|n| s(t, &format!("sources.r1.interceptors.{n}.type")))
        .collect();
    assert_eq!(
        kinds,
        [
            "timestamp",
            "host",
            "static",
            "remove_header",
            "uuid",
            "regex_filter",
            "regex_extractor",
            "search_replace"
        ]
    );
    assert_eq!(s(t, "sources.r1.interceptors.0.header"), "received");
    assert!(!b(t, "sources.r1.interceptors.0.preserve_existing"));
    assert_eq!(s(t, "sources.r1.interceptors.1.header"), "hostname");
    assert!(!b(t, "sources.r1.interceptors.1.use_ip"));
    assert_eq!(s(t, "sources.r1.interceptors.2.key"), "env");
    assert_eq!(s(t, "sources.r1.interceptors.2.value"), "prod");
    assert!(
        b(t, "sources.r1.interceptors.2.preserve_existing"),
        "Flume's static default"
    );
    assert_eq!(s(t, "sources.r1.interceptors.3.name"), "secret");
    assert_eq!(s(t, "sources.r1.interceptors.4.header"), "key");
    assert!(!b(t, "sources.r1.interceptors.4.preserve_existing"));
    assert_eq!(s(t, "sources.r1.interceptors.5.regex"), "^DEBUG");
    assert!(b(t, "sources.r1.interceptors.5.exclude"));
    assert_eq!(
        s(t, "sources.r1.interceptors.6.regex"),
        r"(\w+) (\d+)",
        "escapes resolved once, as Java does"
    );
    assert_eq!(
        list(t, "sources.r1.interceptors.6.headers"),
        ["word", "number"]
    );
    assert_eq!(s(t, "sources.r1.interceptors.7.search"), r"(\d{4})-(\d{4})");
    assert_eq!(s(t, "sources.r1.interceptors.7.replace"), "${2}-${1}");
    assert_eq!(a.lines["sources.r1.interceptors[7].search"], 65);
    // Sinks and the failover group.
    assert_eq!(s(t, "sinks.k1.type"), "file_roll");
    assert_eq!(s(t, "sinks.k1.directory"), "/var/log/flume-out");
    assert_eq!(s(t, "sinks.k1.roll_interval"), "0s");
    assert_eq!(
        i(t, "sinks.k1.roll_size"),
        0,
        "Flume's file_roll never rolls by size"
    );
    assert_eq!(s(t, "sinks.k1.serializer"), "text");
    assert_eq!(i(t, "sinks.k1.batch_size"), 1000);
    assert_eq!(s(t, "sinks.k1.file_prefix"), "events");
    assert_eq!(
        s(t, "sinks.k2.type"),
        "logger",
        "LOGGER matched case-insensitively"
    );
    assert_eq!(i(t, "sinks.k2.max_body_length"), 64);
    assert_eq!(list(t, "sink_groups.g1.sinks"), ["k1", "k2"]);
    assert_eq!(s(t, "sink_groups.g1.processor.type"), "failover");
    assert_eq!(i(t, "sink_groups.g1.processor.priorities.k1"), 10);
    assert_eq!(i(t, "sink_groups.g1.processor.priorities.k2"), 5);
    assert_eq!(s(t, "sink_groups.g1.processor.max_penalty"), "10s");
    assert_eq!(a.lines["sink_groups.g1.processor.max_penalty"], 84);
}

#[test]
fn load_balance_group_http_sinks_replicating_optional() {
    let a = convert_text(
        &read(fixture_dir().join("load-balance.properties")),
        "lb",
        &options(),
    );
    let t = &a.table;
    assert_eq!(s(t, "sink_groups.pool.processor.type"), "load_balance");
    assert_eq!(s(t, "sink_groups.pool.processor.selector"), "random");
    assert!(b(t, "sink_groups.pool.processor.backoff"));
    assert_eq!(s(t, "sink_groups.pool.processor.max_backoff"), "5s");
    assert_eq!(s(t, "sinks.out1.url"), "http://127.0.0.1:9001/");
    assert_eq!(
        s(t, "sinks.out1.timeout"),
        "10s",
        "Flume's 5 s connect + 5 s request"
    );
    assert_eq!(s(t, "sinks.out2.type"), "http", "class name matched");
    assert_eq!(s(t, "sinks.out2.timeout"), "10s");
    assert_eq!(s(t, "sinks.out2.format"), "json");
    assert_warns(
        &a.warnings,
        "line 27: lb.sinks.out1.type: Flume's http sink POSTs each event body on its own",
    );
    assert_eq!(i(t, "sinks.drop.batch_size"), 200);
    assert_eq!(s(t, "sources.nc.bind"), "[::1]:44444");
    assert_eq!(i(t, "sources.nc.max_line_length"), 1024);
    assert!(!b(t, "sources.nc.ack_every_event"));
    assert_eq!(s(t, "sources.nc.selector.type"), "replicating");
    assert_eq!(list(t, "sources.nc.selector.optional"), ["c2"]);
    assert_eq!(i(t, "sources.gen.count"), 1000);
    assert_eq!(i(t, "sources.gen.batch_size"), 50);
}

#[test]
fn java_properties_syntax() {
    let a = convert_text(
        &read(fixture_dir().join("syntax.properties")),
        "s",
        &options(),
    );
    let t = &a.table;
    assert_eq!(list(t, "sources.r1.channels"), ["c1"], "continuation");
    assert_eq!(s(t, "sources.r1.type"), "seq", "SEQ, tab separators");
    assert_eq!(i(t, "sources.r1.count"), 10, "\\u0045 in a key");
    assert_eq!(i(t, "channels.c1.capacity"), 200, "the last of two values");
    assert_eq!(s(t, "sinks.k1.channel"), "c1", "no final newline");
    assert_eq!(a.lines["sources.r1.channels"], 7);
    assert_eq!(a.lines["channels.c1.capacity"], 12);
    assert_warns(
        &a.warnings,
        "line 12: s.channels.c1.capacity: is set more than once; the value of line 11",
    );
    assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
}

// ---- rejections with inline configs --------------------------------------------------------

const BASE: &str = "a.sources = r1\na.channels = c1\na.sinks = k1\n\
a.sources.r1.type = seq\na.sources.r1.channels = c1\n\
a.channels.c1.type = file\na.channels.c1.checkpointDir = /d/cp\na.channels.c1.dataDirs = /d/data\n\
a.sinks.k1.type = null\na.sinks.k1.channel = c1\n";

#[test]
fn base_converts() {
    let a = convert_text(BASE, "a", &options());
    assert_eq!(s(&a.table, "channels.c1.checkpoint_dir"), "/d/cp");
    assert_eq!(list(&a.table, "channels.c1.data_dirs"), ["/d/data"]);
    assert_eq!(i(&a.table, "sinks.k1.batch_size"), 100);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
}

#[test]
fn encryption_keys_point_to_key_files() {
    let text = format!(
        "{BASE}a.channels.c1.encryption.activeKey = key-0\na.channels.c1.encryption.cipherProvider = AESCTRNOPADDING\n\
         a.channels.c1.encryption.keyProvider = JCEKSFILE\na.channels.c1.encryption.keyProvider.keyStoreFile = /k.jceks\n"
    );
    let e = reject_text(&text, "a");
    assert_errors(
        &e,
        &[
            "a.channels.c1.encryption.activeKey: Flume's encryption keys (encryption.activeKey, encryption.cipherProvider",
            "JCEKS keystores",
            "key file",
            r#"`encryption = { active_key = 1, keys = { 1 = "/path/k1.key" } }`"#,
            "docs/security.md, \"Flume users\"",
        ],
    );
    assert_eq!(e.errors.len(), 1, "one error for the group of keys: {e}");
}

#[test]
fn duplicate_failover_priorities_rejected() {
    let text = "a.sources = r1\na.channels = c1\na.sinks = k1 k2\na.sinkgroups = g\n\
        a.sources.r1.type = seq\na.sources.r1.channels = c1\na.channels.c1.type = memory\n\
        a.sinks.k1.type = null\na.sinks.k1.channel = c1\na.sinks.k2.type = null\na.sinks.k2.channel = c1\n\
        a.sinkgroups.g.sinks = k1 k2\na.sinkgroups.g.processor.type = failover\n\
        a.sinkgroups.g.processor.priority.k1 = 5\na.sinkgroups.g.processor.priority.k2 = 5\n\
        a.sinkgroups.g.processor.maxPenalty = 1000\n";
    let e = reject_text(text, "a");
    assert_errors(
        &e,
        &[
            "sinks `k1` and `k2` have the same priority 5",
            "line 16: a.sinkgroups.g.processor.maxPenalty: `processor.maxPenalty` is not a key of sink group `g` (Flume ignored it); did you mean `processor.maxpenalty`?",
        ],
    );
}

#[test]
fn batch_above_transaction_capacity_rejected() {
    let text = BASE.replace(
        "a.sinks.k1.channel = c1\n",
        "a.sinks.k1.channel = c1\na.sinks.k1.batchSize = 20000\n",
    );
    let e = reject_text(&text, "a");
    assert_errors(
        &e,
        &[
            "line 11: a.sinks.k1.batchSize: batchSize 20000 is above the transactionCapacity 10000 of channel `c1`",
        ],
    );
    // A source batch and the sinks' default batch (100) against a small transaction capacity.
    let text = "a.sources = r1\na.channels = c1\na.sinks = k1\na.sources.r1.type = seq\na.sources.r1.channels = c1\n\
        a.sources.r1.batchSize = 150\na.channels.c1.type = memory\na.channels.c1.transactionCapacity = 10\n\
        a.sinks.k1.type = null\na.sinks.k1.channel = c1\n";
    let e = reject_text(text, "a");
    assert_errors(
        &e,
        &[
            "line 6: a.sources.r1.batchSize: batchSize 150 is above the transactionCapacity 10 of channel `c1`",
            "line 9: a.sinks.k1.type: the default batch size 100 is above the transactionCapacity 10",
        ],
    );
    assert_eq!(e.errors.len(), 2, "{e}");
    // Flume's memory default transaction capacity (100) above a small capacity.
    let text = text
        .replace("transactionCapacity = 10", "capacity = 50")
        .replace("batchSize = 150", "batchSize = 5");
    let e = reject_text(&text, "a");
    assert_errors(
        &e,
        &[
            "line 8: a.channels.c1.transactionCapacity: transactionCapacity 100 is above the channel's capacity 50",
        ],
    );
    assert_eq!(e.errors.len(), 1, "{e}");
}

#[test]
fn bad_values_and_keys_named() {
    let text = format!(
        "{BASE}a.channels.c1.capacity = lots\na.channels.c1.checkpointOnClose = yes\na.channels.c1.keep-alive =\n\
         a.source.r1.type = seq\na.channels.c1.checkpointinterval = 5000\nlonely = 1\n"
    );
    let e = reject_text(&text, "a");
    assert_errors(
        &e,
        &[
            "line 11: a.channels.c1.capacity: `lots` is not a whole number",
            "line 12: a.channels.c1.checkpointOnClose: `yes` is not `true` or `false` (Flume would have read it as false)",
            "line 13: a.channels.c1.keep-alive: has an empty value",
            "line 14: a.source.r1.type: is not an agent key: Flume ignored it",
            "line 15: a.channels.c1.checkpointinterval: `checkpointinterval` is not a key of Flume's `file` channel (Flume ignored it); did you mean `checkpointInterval`?",
        ],
    );
    assert_warns(&e.warnings, "line 16: lonely: has no agent prefix");
}

#[test]
fn unsupported_everything_listed_at_once() {
    let text = "a.sources = r1 r2\na.channels = c1\na.sinks = k1 k2\n\
        a.sources.r1.type = avro\na.sources.r1.channels = c1\n\
        a.sources.r2.type = seq\na.sources.r2.channels = c1\na.sources.r2.interceptors = m\n\
        a.sources.r2.interceptors.m.type = org.apache.flume.sink.solr.morphline.MorphlineInterceptor$Builder\n\
        a.sources.r2.selector.type = load_balancing\n\
        a.channels.c1.type = jdbc\n\
        a.sinks.k1.type = hdfs\na.sinks.k1.channel = c1\na.sinks.k2.type = com.acme.Sink\na.sinks.k2.channel = c1\n";
    let e = reject_text(text, "a");
    assert_errors(
        &e,
        &[
            "6 unsupported component(s), all listed here: channel `c1` of type `jdbc` (line 11); source `r1` of type `avro` (line 4); \
             channel selector `r2` of type `load_balancing` (line 10); interceptor `r2/m` of type \
             `org.apache.flume.sink.solr.morphline.MorphlineInterceptor$Builder` (line 9); sink `k1` of type `hdfs` (line 12); \
             sink `k2` of type `com.acme.Sink` (line 14)",
        ],
    );
    assert_eq!(e.errors.len(), 7, "the summary and one per component: {e}");
}

#[test]
fn dropped_components_are_warnings_that_name_them() {
    let text = "a.sources = r1 r2\na.channels = c1 c2\na.sinks = k1 k2 k3\na.sinkgroups = g\n\
        a.sources.r1.type = seq\na.sources.r1.channels = c1 c2\n\
        a.sources.r2.type = seq\na.sources.r2.channels = c2\n\
        a.channels.c1.type = memory\na.channels.c2.capacity = 5\n\
        a.sinks.k1.type = null\na.sinks.k1.channel = c1\n\
        a.sinks.k2.type = null\na.sinks.k2.channel = c2\n\
        a.sinks.k3.channel = c1\n\
        a.sinkgroups.g.sinks = k1 k2\na.sinkgroups.g.processor.type = failover\n";
    let a = convert_text(text, "a", &options());
    assert_warns(
        &a.warnings,
        "channel `c2` has keys (line 10) but no `type`; Flume dropped it",
    );
    assert_warns(
        &a.warnings,
        "channel(s) `c2` of source `r1` are not active channels",
    );
    assert_warns(
        &a.warnings,
        "source `r2` is dropped as Flume dropped it: none of its channels is active",
    );
    assert_warns(
        &a.warnings,
        "sink `k2` is dropped as Flume dropped it: its channel `c2` is not an active channel",
    );
    assert_warns(&a.warnings, "sink `k3` has keys (line 15) but no `type`");
    assert_warns(&a.warnings, "sink `k2` of group `g` is not an active sink");
    assert_eq!(names(&a.table, "sources"), ["r1"]);
    assert_eq!(names(&a.table, "sinks"), ["k1"]);
    assert_eq!(list(&a.table, "sources.r1.channels"), ["c1"]);
    assert_eq!(list(&a.table, "sink_groups.g.sinks"), ["k1"]);
}

#[test]
fn sink_with_channels_instead_of_channel_and_bom() {
    let text = format!(
        "\u{feff}{}",
        BASE.replace("a.sinks.k1.channel = c1", "a.sinks.k1.channels = c1")
    );
    let text = text.replace(
        "a.sources.r1.type = seq",
        "a.sources.r1.type = seq\na.sources.r1.totalEvents = 5",
    );
    let a = convert_text(&text, "a", &options());
    assert_warns(
        &a.warnings,
        "sink `k1` is dropped as Flume dropped it: it has no `channel` key (it has `channels`; a sink takes `channel`)",
    );
    assert_warns(&a.warnings, "line 1: (file): starts with a byte-order mark");
    assert_eq!(i(&a.table, "sources.r1.count"), 5);
    assert!(
        a.table.get("sinks").is_none(),
        "the sink is left out as Flume left it out"
    );
    // With neither a source nor a sink left, the agent is refused.
    let text = text.replace("a.sources = r1", "a.sources = r9");
    let e = reject_text(&text, "a");
    assert_errors(
        &e,
        &["a: the agent has no usable source and no usable sink; Flume refuses such an agent"],
    );
}

#[test]
fn remove_header_patterns_match_whole_names_as_in_flume() {
    let text = BASE.replace(
        "a.sources.r1.channels = c1\n",
        "a.sources.r1.channels = c1\na.sources.r1.interceptors = a b\n\
         a.sources.r1.interceptors.a.type = remove_header\na.sources.r1.interceptors.a.withName = x.y\n\
         a.sources.r1.interceptors.a.fromList = p, q\na.sources.r1.interceptors.a.matching = tmp_.*\n\
         a.sources.r1.interceptors.b.type = REMOVE_HEADER\na.sources.r1.interceptors.b.matching = secret\n",
    );
    let a = convert_text(&text, "a", &options());
    assert_eq!(
        s(&a.table, "sources.r1.interceptors.0.matching"),
        r"^(?:(?:x\.y)|(?:p)|(?:q)|(?:tmp_.*))$"
    );
    assert_eq!(
        s(&a.table, "sources.r1.interceptors.1.matching"),
        "^(?:(?:secret))$"
    );
}

#[test]
fn file_roll_sinks_sharing_a_directory_get_prefixes() {
    let text = "a.sources = r1\na.channels = c1\na.sinks = k1 k2\na.sources.r1.type = seq\na.sources.r1.channels = c1\n\
        a.channels.c1.type = memory\n\
        a.sinks.k1.type = file_roll\na.sinks.k1.channel = c1\na.sinks.k1.sink.directory = /out\n\
        a.sinks.k2.type = file_roll\na.sinks.k2.channel = c1\na.sinks.k2.sink.directory = /out/\n";
    let a = convert_text(text, "a", &options());
    assert_eq!(s(&a.table, "sinks.k1.file_prefix"), "k1");
    assert_eq!(s(&a.table, "sinks.k2.file_prefix"), "k2");
    assert_eq!(a.lines["sinks.k2.file_prefix"], 10);
    assert_warns(
        &a.warnings,
        "line 10: a.sinks.k2: file_roll sinks share directory `/out`",
    );
}

#[test]
fn file_channels_sharing_default_directories_rejected() {
    let text = "a.sources = r1\na.channels = c1 c2\na.sinks = k1\na.sources.r1.type = seq\na.sources.r1.channels = c1 c2\n\
        a.channels.c1.type = file\na.channels.c2.type = file\na.sinks.k1.type = null\na.sinks.k1.channel = c1\n";
    let e = reject_text(text, "a");
    assert_errors(
        &e,
        &[
            "line 7: a.channels.c2: directory `/home/flume/.flume/file-channel/checkpoint` is also used by file channel `c1`",
        ],
    );
    let e = to_toml_with(text, "a", &ImportOptions::with_env(BTreeMap::new())).unwrap_err();
    assert_errors(
        &e,
        &[
            "line 6: a.channels.c1.checkpointDir: file channel `c1` sets no checkpointDir and HOME is not set",
        ],
    );
}

#[test]
fn small_max_file_size_lowers_the_event_bound() {
    let text = format!("{BASE}a.channels.c1.maxFileSize = 1048576\n");
    let a = convert_text(&text, "a", &options());
    assert_eq!(i(&a.table, "channels.c1.max_segment_size"), 1_048_576);
    assert_eq!(i(&a.table, "channels.c1.max_event_size"), 1_048_576 - 96);
    assert_warns(
        &a.warnings,
        "line 11: a.channels.c1.maxFileSize: segments of 1048576 bytes hold events of at most 1048480 bytes",
    );
}

#[test]
fn java_only_regex_features_rejected() {
    let text = BASE.replace(
        "a.sources.r1.channels = c1\n",
        "a.sources.r1.channels = c1\na.sources.r1.interceptors = f s ok\n\
         a.sources.r1.interceptors.f.type = regex_filter\na.sources.r1.interceptors.f.regex = ^(?!health)\n\
         a.sources.r1.interceptors.s.type = search_replace\na.sources.r1.interceptors.s.searchPattern = (a)\\\\1\n\
         a.sources.r1.interceptors.ok.type = regex_filter\na.sources.r1.interceptors.ok.regex = a\\\\\\\\1\n",
    );
    let e = reject_text(&text, "a");
    assert_errors(
        &e,
        &[
            "line 8: a.sources.r1.interceptors.f.regex: the regex uses negative lookahead `(?!`",
            "line 10: a.sources.r1.interceptors.s.searchPattern: the regex uses back-reference",
        ],
    );
    assert_eq!(
        e.errors.len(),
        2,
        "an escaped backslash before a digit is no back-reference: {e}"
    );
}

#[test]
fn sink_group_rules() {
    let head = "a.sources = r1\na.channels = c1\na.sinks = k1 k2 k3\na.sources.r1.type = seq\na.sources.r1.channels = c1\n\
        a.channels.c1.type = memory\na.sinks.k1.type = null\na.sinks.k1.channel = c1\na.sinks.k2.type = null\n\
        a.sinks.k2.channel = c1\na.sinks.k3.type = null\na.sinks.k3.channel = c1\n";
    // A sink in two groups stays in the first; a group left with no sink is dropped; unset
    // priorities follow list order.
    let text = format!(
        "{head}a.sinkgroups = g1 g2 g3\na.sinkgroups.g1.sinks = k1 k2\na.sinkgroups.g1.processor.type = failover\n\
         a.sinkgroups.g1.processor.priority.k1 = 7\na.sinkgroups.g2.sinks = k2\na.sinkgroups.g2.processor.type = load_balance\n\
         a.sinkgroups.g3.sinks = k3\na.sinkgroups.g3.processor.type = default\na.sinkgroups.g4.sinks = k3\n"
    );
    let a = convert_text(&text, "a", &options());
    assert_eq!(names(&a.table, "sink_groups"), ["g1"]);
    assert_eq!(i(&a.table, "sink_groups.g1.processor.priorities.k1"), 7);
    assert_eq!(i(&a.table, "sink_groups.g1.processor.priorities.k2"), -1);
    assert_eq!(
        s(&a.table, "sink_groups.g1.processor.max_penalty"),
        "30s",
        "Flume's default"
    );
    assert_warns(&a.warnings, "sink `k2` has no processor.priority.k2");
    assert_warns(
        &a.warnings,
        "sink `k2` is already in sink group `g1`; Flume left it out of `g2`",
    );
    assert_warns(
        &a.warnings,
        "sink group `g2` is dropped as Flume dropped it: none of its sinks is active",
    );
    assert_warns(
        &a.warnings,
        "a group with the default processor and one sink has no effect; sink `k3` runs on its own",
    );
    assert_warns(&a.warnings, "sink group `g4` is configured but not listed");
    // Refusals: the default processor with two sinks, an unknown load_balance selector.
    let text = format!(
        "{head}a.sinkgroups = g1 g2\na.sinkgroups.g1.sinks = k1 k2\na.sinkgroups.g1.processor.type = DEFAULT\n\
         a.sinkgroups.g2.sinks = k3\na.sinkgroups.g2.processor.type = load_balance\na.sinkgroups.g2.processor.selector = com.acme.Picker\n"
    );
    let e = reject_text(&text, "a");
    assert_errors(
        &e,
        &[
            "line 14: a.sinkgroups.g1.sinks: the default sink processor drives exactly one sink, not 2",
            "line 18: a.sinkgroups.g2.processor.selector: selector `com.acme.Picker` is not supported",
        ],
    );
    assert_eq!(e.errors.len(), 2, "{e}");
}

#[test]
fn http_source_tls_and_file_roll_serializer_rejected() {
    let text = "a.sources = r1\na.channels = c1\na.sinks = k1\n\
        a.sources.r1.type = http\na.sources.r1.port = 8080\na.sources.r1.channels = c1\n\
        a.sources.r1.ssl = true\na.sources.r1.keystore = /ks.jks\na.sources.r1.keystorePassword = x\n\
        a.channels.c1.type = memory\n\
        a.sinks.k1.type = file_roll\na.sinks.k1.channel = c1\na.sinks.k1.sink.directory = /out\na.sinks.k1.sink.serializer = avro_event\n";
    let e = reject_text(text, "a");
    assert_errors(
        &e,
        &[
            "line 7: a.sources.r1.ssl: TLS with a Java keystore cannot be imported",
            "tls = { cert",
            "line 14: a.sinks.k1.sink.serializer: serializer `avro_event` is not supported",
        ],
    );
    assert_eq!(e.errors.len(), 2, "{e}");
}

#[test]
fn environment_substitution_and_defaults() {
    let text = "a.sources = r1\na.channels = c1\na.sinks = k1\n\
        a.sources.r1.type = netcat\na.sources.r1.bind = ${env:BIND_HOST:-127.0.0.1}\n\
        a.sources.r1.port = ${env:PORT}\na.sources.r1.channels = c1\n\
        a.channels.c1.type = memory\na.channels.c1.capacity = $${env:PORT}\n\
        a.sinks.k1.type = logger\na.sinks.k1.channel = c1\n";
    let e = reject_text(text, "a");
    assert_errors(
        &e,
        &["line 9: a.channels.c1.capacity: `${env:PORT}` is not a whole number"],
    );
    let fixed = text.replace("$${env:PORT}", "1000");
    let a = convert_text(&fixed, "a", &options());
    assert_eq!(s(&a.table, "sources.r1.bind"), "127.0.0.1:8080");
    let e = to_toml_with(&fixed, "a", &ImportOptions::with_env(BTreeMap::new())).unwrap_err();
    assert_errors(
        &e,
        &["line 6: a.sources.r1.port: environment variable `PORT` is not set"],
    );
}

#[test]
fn to_toml_reads_the_process_environment() {
    // PATH is set in every test environment.
    let text = "a.sources = r1\na.channels = c1\na.sinks = k1\na.sources.r1.type = seq\na.sources.r1.channels = c1\n\
        a.channels.c1.type = file\na.channels.c1.checkpointDir = /cp\na.channels.c1.dataDirs = ${env:PATH}\n\
        a.sinks.k1.type = logger\na.sinks.k1.channel = c1\n";
    let a = to_toml(text, "a").unwrap();
    let path = std::env::var("PATH").unwrap();
    let first = path.split(',').next().unwrap().trim();
    assert_eq!(list(&a.table, "channels.c1.data_dirs")[0], first);
}

// ---- the command ---------------------------------------------------------------------------

#[test]
fn convert_command_prints_toml_or_every_problem() {
    let exe = env!("CARGO_BIN_EXE_tidegate");
    let ok = Command::new(exe)
        .args(["convert", "--name", "a1", "--flume-conf"])
        .arg(shared_dir().join("07-two-agents-seq-netcat-logger.properties"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8(ok.stdout).unwrap();
    assert!(
        out.starts_with("# tidegate agent config converted from Flume agent `a1`"),
        "{out}"
    );
    assert!(
        out.contains("# - a1: the file also defines agent(s) agent_foo"),
        "{out}"
    );
    let table: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(s(&table, "sources.r1.type"), "netcat");

    let bad = Command::new(exe)
        .args(["convert", "--name", "agent", "--flume-conf"])
        .arg(shared_dir().join("37-exec-es-logger-comma-separated-lists.properties"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(78));
    assert!(bad.stdout.is_empty());
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(err.contains("(5 problem(s))"), "{err}");
    assert!(
        err.contains(
            "line 16: agent.channels: the list `log_channel, es_channel` is comma-separated"
        ),
        "{err}"
    );

    let sys = Command::new(exe)
        .args(["convert", "--name", "a1", "-D", "env=PROD", "--flume-conf"])
        .arg(shared_dir().join("23-apache-test-recursive-lookup.properties"))
        .output()
        .unwrap();
    assert!(
        sys.status.success(),
        "{}",
        String::from_utf8_lossy(&sys.stderr)
    );
    assert!(
        String::from_utf8(sys.stdout)
            .unwrap()
            .contains("bind = \"192.168.10.110:6667\"")
    );
}

#[test]
fn a_multiplexing_selector_without_default_is_refused_naming_the_key() {
    let text = "a.sources = r1\na.channels = c1\n\
        a.sources.r1.type = seq\na.sources.r1.channels = c1\n\
        a.sources.r1.selector.type = multiplexing\na.sources.r1.selector.header = region\n\
        a.sources.r1.selector.mapping.eu = c1\n\
        a.channels.c1.type = memory\n";
    let e = reject_text(text, "a");
    assert_errors(
        &e,
        &[
            "line 5: a.sources.r1.selector.default: a multiplexing selector needs a non-empty default",
        ],
    );
    let empty = text.replace(
        "a.channels.c1.type",
        "a.sources.r1.selector.default =\na.channels.c1.type",
    );
    let e = reject_text(&empty, "a");
    assert_errors(
        &e,
        &[
            "line 8: a.sources.r1.selector.default: has an empty value",
            "line 5: a.sources.r1.selector.default: a multiplexing selector needs a non-empty default",
        ],
    );
}

#[test]
fn a_replicating_selector_with_every_channel_optional_is_refused_naming_the_key() {
    let text = "a.sources = r1\na.channels = c1 c2\n\
        a.sources.r1.type = seq\na.sources.r1.channels = c1 c2\n\
        a.sources.r1.selector.optional = c1 c2\n\
        a.channels.c1.type = memory\na.channels.c2.type = memory\n";
    let e = reject_text(text, "a");
    assert_errors(
        &e,
        &["line 5: a.sources.r1.selector.optional: every channel of the source is optional"],
    );
    let one_required = text.replace("optional = c1 c2", "optional = c2");
    let import = convert_text(&one_required, "a", &options());
    let sel = &import.table["sources"]["r1"]["selector"];
    assert_eq!(sel["optional"].as_array().map(Vec::len), Some(1), "{sel}");
}

// ---- the adapters: taildir, spooldir, exec, syslog, kafka -----------------------------------

#[test]
fn adapters_every_key() {
    let a = convert_text(
        &read(fixture_dir().join("adapters.properties")),
        "a",
        &options(),
    );
    let t = &a.table;
    // taildir: Flume's `/dir/file-regex` becomes a directory and a whole-name regex.
    assert_eq!(s(t, "sources.tail.type"), "taildir");
    assert_eq!(s(t, "sources.tail.filegroups.f1.directory"), "/var/log/app");
    assert_eq!(s(t, "sources.tail.filegroups.f1.regex"), "^(?:.*\\.log)$");
    assert_eq!(s(t, "sources.tail.filegroups.f1.headers.topic"), "app");
    assert_eq!(s(t, "sources.tail.filegroups.f1.headers.dc"), "eu");
    assert_eq!(s(t, "sources.tail.filegroups.f2.regex"), "^(?:access.log)$");
    assert_eq!(s(t, "sources.tail.position_file"), "/data/taildir.json");
    assert_eq!(i(t, "sources.tail.batch_size"), 500);
    assert!(b(t, "sources.tail.skip_to_end"));
    assert!(b(t, "sources.tail.file_header"));
    assert_eq!(s(t, "sources.tail.file_header_key"), "path");
    assert_warns(
        &a.warnings,
        "a.sources.tail.writePosInterval: no effect: tidegate writes the position file after every channel commit",
    );
    // spooldir
    assert_eq!(s(t, "sources.spool.type"), "spooldir");
    assert_eq!(s(t, "sources.spool.directory"), "/data/spool");
    assert_eq!(s(t, "sources.spool.completed_suffix"), ".DONE");
    assert_eq!(s(t, "sources.spool.delete_policy"), "immediate");
    assert_eq!(s(t, "sources.spool.include_pattern"), "^.*\\.csv$");
    assert_eq!(s(t, "sources.spool.ignore_pattern"), "^tmp-.*");
    assert_eq!(s(t, "sources.spool.tracker_dir"), ".track");
    assert_eq!(s(t, "sources.spool.consume_order"), "youngest");
    assert!(b(t, "sources.spool.recursive"));
    assert_eq!(s(t, "sources.spool.poll_delay"), "250ms");
    assert!(b(t, "sources.spool.basename_header"));
    assert_eq!(s(t, "sources.spool.basename_header_key"), "name");
    assert_eq!(i(t, "sources.spool.max_line_length"), 4096);
    assert_eq!(i(t, "sources.spool.batch_size"), 50);
    // exec
    assert_eq!(s(t, "sources.ex.command"), "tail -F /var/log/syslog");
    assert_eq!(s(t, "sources.ex.shell"), "/bin/bash -c");
    assert!(b(t, "sources.ex.restart"));
    assert_eq!(s(t, "sources.ex.restart_throttle"), "2500ms");
    assert!(b(t, "sources.ex.log_stderr"));
    assert_eq!(i(t, "sources.ex.batch_size"), 10);
    assert_eq!(s(t, "sources.ex.batch_timeout"), "1s");
    // syslog: three Flume types, one tidegate type.
    assert_eq!(s(t, "sources.stcp.type"), "syslog");
    assert_eq!(s(t, "sources.stcp.protocol"), "tcp");
    assert_eq!(s(t, "sources.stcp.bind"), "0.0.0.0:5140");
    assert_eq!(i(t, "sources.stcp.max_message_size"), 8192);
    assert!(b(t, "sources.stcp.keep_fields"));
    assert_eq!(s(t, "sources.sudp.protocol"), "udp");
    assert_eq!(s(t, "sources.sudp.bind"), "[::1]:5141");
    assert_eq!(s(t, "sources.smulti.protocol"), "tcp");
    assert_eq!(
        list(t, "sources.smulti.bind"),
        ["127.0.0.1:10001", "127.0.0.1:10002"]
    );
    assert_eq!(
        i(t, "sources.smulti.max_message_size"),
        2500,
        "Flume's eventSize default"
    );
    assert_eq!(i(t, "sources.smulti.batch_size"), 200);
    // kafka source
    assert_eq!(s(t, "sources.kin.type"), "kafka");
    assert_eq!(s(t, "sources.kin.bootstrap_servers"), "k1:9092,k2:9092");
    assert_eq!(list(t, "sources.kin.topics"), ["logs", "metrics"]);
    assert_eq!(s(t, "sources.kin.group_id"), "collectors");
    assert_eq!(s(t, "sources.kin.batch_duration"), "500ms");
    assert_eq!(s(t, "sources.kin.topic_header"), "from");
    let prop = |path: &str, key: &str| -> String {
        get(t, path)
            .get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("no {key} in {path}"))
            .to_string()
    };
    assert_eq!(
        prop("sources.kin.properties", "auto.offset.reset"),
        "earliest"
    );
    // kafka sink: Java producer properties translated for librdkafka.
    assert_eq!(s(t, "sinks.kout.type"), "kafka");
    assert_eq!(s(t, "sinks.kout.topic"), "out");
    assert_eq!(s(t, "sinks.kout.topic_header"), "dest");
    assert_eq!(i(t, "sinks.kout.batch_size"), 250);
    assert_eq!(s(t, "sinks.kout.compression"), "lz4");
    assert_eq!(prop("sinks.kout.properties", "linger.ms"), "5");
    assert_eq!(
        prop("sinks.kout.properties", "message.max.bytes"),
        "2000000",
        "the Java client's max.request.size"
    );
    assert!(
        get(t, "sinks.kout.properties")
            .as_table()
            .is_some_and(|p| !p.contains_key("acks") && !p.contains_key("compression.type")),
        "acks and compression are the sink's own keys, not passed twice"
    );
}

#[test]
fn adapters_what_tidegate_cannot_do_is_named() {
    let text = "a.sources = t s sl k\na.channels = c1\na.sinks = o\na.channels.c1.type = memory\n\
        a.sources.t.type = taildir\na.sources.t.channels = c1\na.sources.t.filegroups = f1 f9\n\
        a.sources.t.filegroups.f1 = relative/x.log\na.sources.t.headers.f3.k = v\n\
        a.sources.t.byteOffsetHeader = true\n\
        a.sources.s.type = spooldir\na.sources.s.channels = c1\na.sources.s.spoolDir = /in\n\
        a.sources.s.trackingPolicy = tracker_dir\na.sources.s.deserializer = AVRO\n\
        a.sources.s.inputCharset = ISO-8859-1\n\
        a.sources.sl.type = syslogtcp\na.sources.sl.channels = c1\na.sources.sl.host = h\n\
        a.sources.sl.port = 514\na.sources.sl.keepFields = hostname\na.sources.sl.clientIPHeader = ip\n\
        a.sources.k.type = kafka\na.sources.k.channels = c1\na.sources.k.kafka.bootstrap.servers = b:9092\n\
        a.sources.k.kafka.topics = t\na.sources.k.batchSize = 500\n\
        a.sources.k.kafka.consumer.enable.auto.commit = true\na.sources.k.useFlumeEventFormat = true\n\
        a.sinks.o.type = org.apache.flume.sink.kafka.KafkaSink\na.sinks.o.channel = c1\n\
        a.sinks.o.kafka.bootstrap.servers = b:9092\na.sinks.o.partitionIdHeader = p\n\
        a.sinks.o.kafka.producer.ssl.truststore.location = /ts.jks\n\
        a.sinks.o.kafka.producer.enable.idempotence = false\n";
    let e = reject_text(text, "a");
    assert_errors(
        &e,
        &[
            "line 7: a.sources.t.filegroups: file group `f9` has no path",
            "line 8: a.sources.t.filegroups.f1: `relative/x.log` is not an absolute path",
            "line 9: a.sources.t.headers.f3.k: `headers.f3.k` names file group `f3`, which is not in `filegroups`",
            "line 10: a.sources.t.byteOffsetHeader: byteOffsetHeader is not supported",
            "line 14: a.sources.s.trackingPolicy: trackingPolicy `tracker_dir` is not supported",
            "line 15: a.sources.s.deserializer: deserializer `AVRO` is not supported",
            "line 16: a.sources.s.inputCharset: charset `ISO-8859-1` is not supported",
            "line 21: a.sources.sl.keepFields: keepFields `hostname` is not supported",
            "line 22: a.sources.sl.clientIPHeader: clientIPHeader is not supported",
            "line 27: a.sources.k.batchSize: batchSize 500 is above the transactionCapacity",
            "line 28: a.sources.k.kafka.consumer.enable.auto.commit: tidegate's kafka source commits offsets only after the channel commit",
            "line 29: a.sources.k.useFlumeEventFormat: useFlumeEventFormat (Avro-wrapped events) is not supported",
            "line 33: a.sinks.o.partitionIdHeader: partitionIdHeader is not supported",
            "line 34: a.sinks.o.kafka.producer.ssl.truststore.location: Java keystores cannot be read",
            "line 35: a.sinks.o.kafka.producer.enable.idempotence: tidegate's kafka sink always enables idempotence",
        ],
    );
    assert_eq!(e.errors.len(), 15, "{e}");
}

#[test]
fn kafka_source_keeps_flumes_group_and_offset_reset() {
    let text = "a.sources = k\na.channels = c1\na.sinks = n\na.channels.c1.type = memory\n\
        a.channels.c1.capacity = 5000\na.channels.c1.transactionCapacity = 1000\n\
        a.sources.k.type = kafka\na.sources.k.channels = c1\n\
        a.sources.k.kafka.bootstrap.servers = b:9092\na.sources.k.kafka.topics = t\n\
        a.sinks.n.type = null\na.sinks.n.channel = c1\n";
    let a = convert_text(text, "a", &options());
    let t = &a.table;
    assert_eq!(s(t, "sources.k.group_id"), "flume", "Flume's default group");
    assert_eq!(
        get(t, "sources.k.properties")
            .get("auto.offset.reset")
            .and_then(toml::Value::as_str),
        Some("latest"),
        "Flume's (the Kafka consumer's) default"
    );
    assert_warns(&a.warnings, "auto.offset.reset = latest written");
    assert_eq!(i(t, "sources.k.batch_size"), 1000, "Flume's default");
}
