//! The tokio runtime: sockets, timers, tasks. The only place that uses tokio's I/O.
