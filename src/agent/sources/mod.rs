//! Sources (stub until the runtime's version is merged).

pub mod http;
pub mod netcat;
