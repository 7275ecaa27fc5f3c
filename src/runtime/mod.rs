//! The tokio runtime: sockets, timers, tasks. The only place that uses tokio's I/O; the
//! protocol logic it drives lives in `crate::sip` as pure state machines.

pub mod calls;
pub mod sip_server;
