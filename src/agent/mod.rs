//! The agent: sources put events into channels, sinks drain them (feature `cli`).

pub mod flume;
