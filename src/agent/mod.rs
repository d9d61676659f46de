//! The agent: sources put events into channels, sinks drain them, each hop a transaction, so an
//! event leaves a channel only after the next hop has it (feature `cli`).
//!
//! - [`config`] loads and checks the TOML config (`tidegate validate`).
//! - [`component`] is the interface between the runtime and the sources and sinks.
//! - [`units`] parses the durations and sizes the config writes.

pub mod channels;
pub mod component;
pub mod config;
pub mod monitoring;
pub mod runtime;
pub mod selector;
pub mod signals;
pub mod sink_group;
pub mod sink_runner;
pub mod sinks;
pub mod sources;
pub mod units;
