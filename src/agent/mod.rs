//! The agent: sources put events into channels, sinks drain them, each hop a transaction, so an
//! event leaves a channel only after the next hop has it (feature `cli`).
//!
//! ```text
//!  source --deliver--> Router --one put transaction per channel--> channel
//!                      (interceptors, selector)                       |
//!  sink <--batch-- sink runner <--take transaction (commit on Ok)-----+
//! ```
//!
//! - [`config`] loads and checks the TOML config (`tidegate validate`): every problem with its
//!   key path and line.
//! - [`component`] is the interface between the runtime and the sources and sinks.
//! - [`selector`] is the [`Deliver`](component::Deliver) a source writes to.
//! - [`sink_runner`] moves batches from a channel to a sink; [`sink_group`] picks the sink of a
//!   group (failover, load balance).
//! - [`runtime`] starts, reloads and stops everything; [`signals`] maps SIGTERM/SIGINT/SIGHUP.
//! - [`channels`] opens (replays) and closes the channels off the async workers.
//! - [`monitoring`] holds the heartbeats and counters and serves `/metrics`, `/metrics.json`,
//!   `/health` and `/ready`.
//! - [`sources`] and [`sinks`] build components by type name; [`units`] parses durations and
//!   sizes.
//! - [`flume`] turns a Flume properties file into this config (`--flume-conf`, `tidegate convert`).

pub mod channels;
pub mod component;
pub mod config;
pub mod flume;
pub mod monitoring;
pub mod runtime;
pub mod selector;
pub mod signals;
pub mod sink_group;
pub mod sink_runner;
pub mod sinks;
pub mod sources;
pub mod units;
