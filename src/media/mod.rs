//! Media for screened calls: G.711, RTP packets, SDP offer/answer (RFC 3264), the RTP port
//! pool, the relay between legs (latching, strict source), the prompt player and the
//! recorder tap that feeds ASR. Pure state machines told the time; sockets live in
//! `crate::runtime`.
//!
//! How the call layer uses them, for a screened call:
//!
//! 1. Caller's INVITE: [`sdp::SessionDescription::parse`] the offer (error →
//!    [`sdp::SdpError::sip_status`], 400 or 488), [`ports::PortPool::allocate`] a port pair,
//!    [`sdp::answer`] it, and build the caller's [`relay::MediaLeg`] from the
//!    [`sdp::Negotiated`] with an [`rtp::RtpSender`]. The caller's accepted audio is decoded
//!    and given to the call session, which collects it in a [`tap::SpeechBuffer`] (end of
//!    speech by voice activity); keys pressed come through [`dtmf::DtmfReceiver`].
//! 2. Greeting: a [`prompt::PromptPlayer`] driven through
//!    [`relay::MediaLeg::transmit_prompt`] at its [`prompt::PromptPlayer::poll_timeout`];
//!    caller packets go to [`relay::MediaLeg::on_packet`].
//! 3. Allow / warn: [`sdp::offer`] to the callee, [`sdp::accept_answer`] its answer, a second
//!    `MediaLeg`, then [`relay::RtpRelay::new`] joins them and [`relay::RtpRelay::relay`]
//!    forwards every packet (transcoding PCMU↔PCMA if the legs differ). For a warning, play
//!    it with `transmit_prompt` on the callee's leg while
//!    [`relay::RtpRelay::set_forwarding`] holds the caller's audio back.
//!    Once bridged, a [`bridge::MediaBridge`] owns the relay, RTCP per leg and the
//!    inactivity check.
//! 4. Hang-up: [`ports::PortPool::release`] both pairs.

pub mod bridge;
pub mod dtmf;
pub mod g711;
pub mod ports;
pub mod prompt;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod tap;
pub mod tones;

#[cfg(test)]
mod robustness_tests;
