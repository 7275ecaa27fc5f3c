//! Media for screened calls: G.711, RTP packets, SDP offer/answer (RFC 3264), the RTP port
//! pool, the relay between legs (latching, strict source), the prompt player and the
//! recorder tap that feeds ASR. Pure state machines told the time; sockets live in
//! `crate::runtime`.

pub mod g711;
pub mod ports;
pub mod prompt;
pub mod relay;
pub mod rtp;
pub mod sdp;
pub mod tap;
