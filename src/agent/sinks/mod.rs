//! Sinks (stub until the runtime's version is merged).

pub mod file_roll;
pub mod http;
