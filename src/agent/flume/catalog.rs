//! Flume's component type names (short aliases and Java class names) and what tidegate does
//! with each.
//!
//! Flume matches its built-in aliases case-insensitively, and the class names of its built-in
//! components too (`FlumeConfiguration.getKnownSource` and friends); so does this catalogue.

/// What tidegate does with a Flume component type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Mapped to the tidegate type of this name.
    Yes(&'static str),
    /// Not supported, with the reason.
    No(&'static str),
}

/// A catalogue row: alias, Java class, support.
type Row = (&'static str, &'static str, Support);

const AVRO: &str = "Flume's Avro RPC protocol is not spoken here; agent-to-agent tiers use tidegate's http sink and http source (binary batch format)";
const THRIFT: &str = "Flume's Thrift RPC protocol is not spoken here; agent-to-agent tiers use tidegate's http sink and http source";
const JAVA: &str = "it needs a Java client library";

const SOURCES: &[Row] = &[
    (
        "seq",
        "org.apache.flume.source.SequenceGeneratorSource",
        Support::Yes("seq"),
    ),
    (
        "netcat",
        "org.apache.flume.source.NetcatSource",
        Support::Yes("netcat"),
    ),
    (
        "http",
        "org.apache.flume.source.http.HTTPSource",
        Support::Yes("http"),
    ),
    (
        "exec",
        "org.apache.flume.source.ExecSource",
        Support::Yes("exec"),
    ),
    (
        "spooldir",
        "org.apache.flume.source.SpoolDirectorySource",
        Support::Yes("spooldir"),
    ),
    (
        "taildir",
        "org.apache.flume.source.taildir.TaildirSource",
        Support::Yes("taildir"),
    ),
    (
        "syslogtcp",
        "org.apache.flume.source.SyslogTcpSource",
        Support::Yes("syslog"),
    ),
    (
        "syslogudp",
        "org.apache.flume.source.SyslogUDPSource",
        Support::Yes("syslog"),
    ),
    (
        "multiport_syslogtcp",
        "org.apache.flume.source.MultiportSyslogTCPSource",
        Support::Yes("syslog"),
    ),
    (
        "kafka",
        "org.apache.flume.source.kafka.KafkaSource",
        Support::Yes("kafka"),
    ),
    (
        "avro",
        "org.apache.flume.source.AvroSource",
        Support::No(AVRO),
    ),
    (
        "thrift",
        "org.apache.flume.source.ThriftSource",
        Support::No(THRIFT),
    ),
    (
        "jms",
        "org.apache.flume.source.jms.JMSSource",
        Support::No(JAVA),
    ),
    (
        "netcatudp",
        "org.apache.flume.source.NetcatUdpSource",
        Support::No("UDP has no acknowledgement, so events can be lost before the channel commit"),
    ),
    (
        "scribe",
        "org.apache.flume.source.scribe.ScribeSource",
        Support::No(THRIFT),
    ),
    (
        "twitter",
        "org.apache.flume.source.twitter.TwitterSource",
        Support::No(JAVA),
    ),
];

const HDFS: &str =
    "writing HDFS needs Hadoop's Java client; write files with file_roll, or deliver to Kafka";

const SINKS: &[Row] = &[
    (
        "logger",
        "org.apache.flume.sink.LoggerSink",
        Support::Yes("logger"),
    ),
    (
        "null",
        "org.apache.flume.sink.NullSink",
        Support::Yes("null"),
    ),
    (
        "file_roll",
        "org.apache.flume.sink.RollingFileSink",
        Support::Yes("file_roll"),
    ),
    (
        "http",
        "org.apache.flume.sink.http.HttpSink",
        Support::Yes("http"),
    ),
    (
        "kafka",
        "org.apache.flume.sink.kafka.KafkaSink",
        Support::Yes("kafka"),
    ),
    (
        "hdfs",
        "org.apache.flume.sink.hdfs.HDFSEventSink",
        Support::No(HDFS),
    ),
    ("avro", "org.apache.flume.sink.AvroSink", Support::No(AVRO)),
    (
        "thrift",
        "org.apache.flume.sink.ThriftSink",
        Support::No(THRIFT),
    ),
    (
        "hbase",
        "org.apache.flume.sink.hbase.HBaseSink",
        Support::No(JAVA),
    ),
    (
        "hbase2",
        "org.apache.flume.sink.hbase2.HBase2Sink",
        Support::No(JAVA),
    ),
    (
        "asynchbase",
        "org.apache.flume.sink.hbase.AsyncHBaseSink",
        Support::No(JAVA),
    ),
    (
        "elasticsearch",
        "org.apache.flume.sink.elasticsearch.ElasticSearchSink",
        Support::No(JAVA),
    ),
    (
        "irc",
        "org.apache.flume.sink.irc.IRCSink",
        Support::No("IRC is not a delivery target tidegate supports"),
    ),
    (
        "morphline_solr",
        "org.apache.flume.sink.solr.morphline.MorphlineSolrSink",
        Support::No(JAVA),
    ),
    (
        "hive",
        "org.apache.flume.sink.hive.HiveSink",
        Support::No(JAVA),
    ),
    (
        "",
        "org.apache.flume.sink.kite.DatasetSink",
        Support::No(JAVA),
    ),
];

const CHANNELS: &[Row] = &[
    (
        "memory",
        "org.apache.flume.channel.MemoryChannel",
        Support::Yes("memory"),
    ),
    (
        "file",
        "org.apache.flume.channel.file.FileChannel",
        Support::Yes("file"),
    ),
    (
        "spillablememory",
        "org.apache.flume.channel.SpillableMemoryChannel",
        Support::No(
            "use type = file: tidegate's file channel is the durable one (a spillable channel loses its in-memory part on a crash)",
        ),
    ),
    (
        "jdbc",
        "org.apache.flume.channel.jdbc.JdbcChannel",
        Support::No("use type = file: tidegate's file channel is the durable one"),
    ),
    (
        "",
        "org.apache.flume.channel.kafka.KafkaChannel",
        Support::No("use a file channel and a Kafka sink"),
    ),
];

const INTERCEPTORS: &[Row] = &[
    (
        "timestamp",
        "org.apache.flume.interceptor.TimestampInterceptor$Builder",
        Support::Yes("timestamp"),
    ),
    (
        "host",
        "org.apache.flume.interceptor.HostInterceptor$Builder",
        Support::Yes("host"),
    ),
    (
        "static",
        "org.apache.flume.interceptor.StaticInterceptor$Builder",
        Support::Yes("static"),
    ),
    (
        "remove_header",
        "org.apache.flume.interceptor.RemoveHeaderInterceptor$Builder",
        Support::Yes("remove_header"),
    ),
    (
        "regex_filter",
        "org.apache.flume.interceptor.RegexFilteringInterceptor$Builder",
        Support::Yes("regex_filter"),
    ),
    (
        "regex_extractor",
        "org.apache.flume.interceptor.RegexExtractorInterceptor$Builder",
        Support::Yes("regex_extractor"),
    ),
    (
        "search_replace",
        "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder",
        Support::Yes("search_replace"),
    ),
    (
        "",
        "org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder",
        Support::Yes("uuid"),
    ),
    (
        "",
        "org.apache.flume.sink.solr.morphline.MorphlineInterceptor$Builder",
        Support::No("morphlines are a Java library"),
    ),
];

const SELECTORS: &[Row] = &[
    (
        "replicating",
        "org.apache.flume.channel.ReplicatingChannelSelector",
        Support::Yes("replicating"),
    ),
    (
        "multiplexing",
        "org.apache.flume.channel.MultiplexingChannelSelector",
        Support::Yes("multiplexing"),
    ),
    (
        "load_balancing",
        "org.apache.flume.channel.LoadBalancingChannelSelector",
        Support::No(
            "spreading one source over channels is not supported; use a sink group with a load_balance processor",
        ),
    ),
];

const PROCESSORS: &[Row] = &[
    (
        "default",
        "org.apache.flume.sink.DefaultSinkProcessor",
        Support::Yes("default"),
    ),
    (
        "failover",
        "org.apache.flume.sink.FailoverSinkProcessor",
        Support::Yes("failover"),
    ),
    (
        "load_balance",
        "org.apache.flume.sink.LoadBalancingSinkProcessor",
        Support::Yes("load_balance"),
    ),
];

/// The kinds of component a Flume config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `sources.NAME.type`
    Source,
    /// `sinks.NAME.type`
    Sink,
    /// `channels.NAME.type`
    Channel,
    /// `interceptors.NAME.type`
    Interceptor,
    /// `selector.type`
    Selector,
    /// `processor.type`
    Processor,
}

impl Kind {
    /// The word for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Sink => "sink",
            Kind::Channel => "channel",
            Kind::Interceptor => "interceptor",
            Kind::Selector => "channel selector",
            Kind::Processor => "sink processor",
        }
    }
}

/// Looks a Flume type up (alias or class, case-insensitively). Unknown names are custom Java
/// classes, which tidegate cannot load.
pub fn lookup(kind: Kind, flume_type: &str) -> Support {
    let rows = match kind {
        Kind::Source => SOURCES,
        Kind::Sink => SINKS,
        Kind::Channel => CHANNELS,
        Kind::Interceptor => INTERCEPTORS,
        Kind::Selector => SELECTORS,
        Kind::Processor => PROCESSORS,
    };
    rows.iter()
        .find(|(alias, class, _)| {
            (!alias.is_empty() && alias.eq_ignore_ascii_case(flume_type))
                || class.eq_ignore_ascii_case(flume_type)
        })
        .map(|&(_, _, s)| s)
        .unwrap_or(Support::No(
            "it is not a Flume built-in type but a custom Java class, which tidegate cannot load",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_classes_case_insensitively() {
        assert_eq!(lookup(Kind::Source, "spoolDir"), Support::Yes("spooldir"));
        assert_eq!(lookup(Kind::Source, "TAILDIR"), Support::Yes("taildir"));
        assert_eq!(
            lookup(Kind::Channel, "SPILLABLEMEMORY"),
            lookup(Kind::Channel, "spillablememory")
        );
        assert_eq!(
            lookup(Kind::Sink, "org.apache.flume.sink.kafka.KafkaSink"),
            Support::Yes("kafka")
        );
        assert_eq!(
            lookup(
                Kind::Interceptor,
                "org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder"
            ),
            Support::Yes("uuid")
        );
        assert!(
            matches!(lookup(Kind::Sink, "com.example.MySink"), Support::No(r) if r.contains("custom Java class"))
        );
        // The empty alias of class-only rows never matches an empty type.
        assert!(matches!(lookup(Kind::Sink, ""), Support::No(_)));
    }
}
