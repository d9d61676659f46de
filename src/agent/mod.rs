//! The agent: sources put events into channels, sinks drain them, each hop a transaction, so an
//! event leaves a channel only after the next hop has it (feature `cli`).
//!
//! - [`component`] is the interface between the runtime and the sources and sinks.
//! - [`units`] parses the durations and sizes the config writes.
//! - [`wire`] is the JSON and binary batch formats of the HTTP source and sink.
//! - [`interceptors`] change, drop or keep events before the channel selector sees them.
//! - [`flume`] imports a Flume agent's properties file into this config.

pub mod component;
pub mod flume;
pub mod interceptors;
pub mod sinks;
pub mod sources;
pub mod units;
pub mod wire;
