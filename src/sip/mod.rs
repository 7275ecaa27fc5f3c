//! SIP: message framing and parsing, validation, transactions (RFC 3261 §17), caller
//! classification and the transaction-stateful proxy.

pub mod classify;
pub mod digest;
pub mod msg;
pub mod pattern;
pub mod proxy;
pub mod ratelimit;
pub mod register;
pub mod transaction;
pub mod uri;
pub mod validate;
pub mod via;

#[cfg(test)]
mod torture_tests;
