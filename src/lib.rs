//! scamscreen: a SIP call-screening proxy that answers withheld callers, transcribes their
//! opening words with a local whisper model, and diverts scam calls.
//!
//! This crate is built up issue by issue; see `docs/architecture.md` for the map.

pub mod admin;
pub mod asr;
pub mod call;
pub mod config;
pub mod demo;
pub mod detect;
pub mod media;
pub mod model;
pub mod notify;
pub mod runtime;
pub mod sip;
pub mod store;
