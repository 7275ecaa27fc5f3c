//! SIP: message parsing, transactions (RFC 3261 §17), caller classification, proxy.

pub mod classify;
pub mod transaction;
