//! Screened calls on tokio: RTP sockets, prompt playback, the speech model and scoring
//! around the pure [`CallSession`] machines and the pure media legs.
//!
//! Nothing here decides anything about a call: the session says when to listen, what to
//! transcribe, which prompt to play and what the verdict means; this module moves its bytes
//! (SIP through the proxy, RTP through the legs' sockets), decodes the caller's audio and
//! the keys pressed (RFC 4733) for it, runs its transcriptions and tells it the time.
//!
//! The core task owns every call (no locks): socket readers and ASR tasks report back
//! through the core's input channel. Whisper never runs on this task, nor does resampling:
//! audio goes to the `Transcriber` (its own threads, bounded queue) as 8 kHz telephone
//! audio, and a blocking task waits for the result and scores it.
//!
//! - this file: the calls, their SIP and RTP events, timers and prompt packets;
//! - `setup.rs`: a screened INVITE taken (admission, two RTP port pairs bound, the answer);
//! - `actions.rs`: what a session asks for, carried out (SIP, prompts, jobs, the bridge);
//! - `transcribe.rs`: transcription jobs and their scoring;
//! - `resources.rs`: what the layer is given (models, rules, prompts by language, ports);
//! - `record.rs`: a finished call's log line and stored record.

mod actions;
mod record;
mod resources;
mod setup;
mod transcribe;

pub use resources::{
    load_prompt, synthesize, FinishedHook, PromptBook, Prompts, ScreeningResources,
};
pub use transcribe::score;

use crate::asr::CancelToken;
use crate::call::{AsrFailure, CallInput, CallSession, Leg, ScreeningResult, Stage};
use crate::detect::Detector;
use crate::media::dtmf::DtmfReceiver;
use crate::media::ports::{PortPool, RtpPorts};
use crate::media::prompt::PromptPlayer;
use crate::media::relay::{MediaLeg, PacketVerdict, PayloadKind};
use crate::media::tap::AudioFrame;
use crate::runtime::media_relay::{LegSockets, RelayTask};
use crate::sip::msg::SipMessage;
use crate::sip::proxy::{Peer, Proxy};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// How long a leg may stay silent (no RTP) before the call is ended.
pub const RTP_INACTIVITY: Duration = Duration::from_secs(60);

/// Reports from the call layer's helpers to the core task.
pub enum CallEvent {
    Rtp {
        call: u64,
        leg: Leg,
        src: SocketAddr,
        bytes: Bytes,
    },
    /// A transcription job's verdict.
    Transcribed {
        call: u64,
        job: u64,
        result: Result<ScreeningResult, AsrFailure>,
    },
    Warning {
        call: u64,
        pcm: Option<Arc<[i16]>>,
    },
    /// A bridged leg sent nothing for [`RTP_INACTIVITY`].
    MediaTimeout {
        call: u64,
        leg: Leg,
    },
}

/// Resources the call layer holds: all zero once every call has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallStats {
    /// Calls holding ports, sockets or an ASR job.
    pub active: usize,
    /// Calls still known (ended ones linger until their last SIP transaction is done).
    pub tracked: usize,
    pub rtp_port_pairs_in_use: usize,
    /// Pairs taken out of the pool because another program held them.
    pub rtp_port_pairs_unusable: usize,
    /// ASR jobs queued or running.
    pub asr_in_flight: usize,
    /// Withheld INVITEs refused with 503 before answering: the model could not keep up.
    pub refused_saturated: u64,
}

struct ActiveCall {
    call: CallSession,
    /// When the INVITE was taken (bursts of calls are admitted with care).
    started: Instant,
    /// Leg A's media until the legs are bridged (then it lives in `relay`).
    a: Option<MediaLeg>,
    b: Option<MediaLeg>,
    /// Keys pressed on each leg (RFC 4733), before the bridge.
    dtmf: [DtmfReceiver; 2],
    /// Set once the legs are bridged: the relay task owns both legs and sockets' use.
    relay: Option<RelayTask>,
    /// RTP sockets of the two legs; dropped (ports closed) when the call finishes.
    socket_a: Option<Arc<UdpSocket>>,
    socket_b: Option<Arc<UdpSocket>>,
    /// Both legs' RTP and RTCP sockets, handed to the relay task at the bridge.
    sockets: Option<[LegSockets; 2]>,
    ports: [RtpPorts; 2],
    readers: Vec<tokio::task::JoinHandle<()>>,
    players: Vec<(Leg, PromptPlayer)>,
    /// The ringback tone to the caller while the callee rings (looped).
    ringback: Option<PromptPlayer>,
    /// Transcriptions in flight, by the session's job number.
    jobs: HashMap<u64, CancelToken>,
    leg_b_id: Option<String>,
    /// Ports and sockets given back (`ReleaseMedia`).
    released: bool,
    finished: bool,
    withheld_reason: String,
    started_at: std::time::SystemTime,
    /// The call's language (prompts, model, rules).
    language: String,
}

impl ActiveCall {
    fn release_media(&mut self, ports: &mut PortPool) {
        if self.released {
            return;
        }
        self.released = true;
        for r in self.readers.drain(..) {
            r.abort();
        }
        self.players.clear();
        self.ringback = None;
        self.socket_a = None;
        self.socket_b = None;
        self.sockets = None;
        self.relay = None;
        self.a = None;
        self.b = None;
        ports.release(self.ports[0].rtp);
        ports.release(self.ports[1].rtp);
    }
}

pub struct CallManager {
    res: ScreeningResources,
    calls: HashMap<u64, ActiveCall>,
    next_id: u64,
    /// When the RTP pairs taken out of the pool were last tried again.
    last_unusable_retry: Option<std::time::Instant>,
    /// Withheld INVITEs refused with 503 because the model could not keep up.
    refused_saturated: u64,
    events: mpsc::Sender<CallEvent>,
}

pub(super) fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl CallManager {
    pub fn new(res: ScreeningResources, events: mpsc::Sender<CallEvent>) -> CallManager {
        CallManager {
            res,
            calls: HashMap::new(),
            next_id: 1,
            last_unusable_retry: None,
            refused_saturated: 0,
            events,
        }
    }

    /// Calls holding resources (ports, sockets, ASR).
    pub fn active(&self) -> usize {
        self.calls
            .values()
            .filter(|c| !c.released || !c.jobs.is_empty())
            .count()
    }

    pub fn ports_in_use(&self) -> usize {
        self.res.ports.in_use()
    }

    /// What the call layer holds now (printed with the proxy's counters at shutdown).
    pub fn stats(&self) -> CallStats {
        CallStats {
            active: self.active(),
            tracked: self.calls.len(),
            rtp_port_pairs_in_use: self.ports_in_use(),
            rtp_port_pairs_unusable: self.res.ports.unusable(),
            asr_in_flight: self.res.transcriber.in_flight(),
            refused_saturated: self.refused_saturated,
        }
    }

    /// Calls not yet ended (whatever they hold).
    pub fn live(&self) -> usize {
        self.calls
            .values()
            .filter(|c| !matches!(c.call.stage(), Stage::Ending | Stage::Ended))
            .count()
    }

    /// Shutdown: end every call still going on both legs (BYE, or CANCEL to a callee still
    /// ringing); each is recorded as it finishes.
    pub async fn end_all(&mut self, proxy: &mut Proxy) {
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.calls.get_mut(&id) {
                c.call.handle_input(Instant::now(), CallInput::Shutdown);
            }
            self.pump(proxy, id).await;
        }
    }

    /// The upstream stopped answering: a call ringing the callee through it fails now
    /// (the caller is released at once, not after the ring timeout).
    pub async fn upstream_down(&mut self, proxy: &mut Proxy) {
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.call.stage() == Stage::CallingCallee)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(c) = self.calls.get_mut(&id) {
                c.call
                    .handle_input(Instant::now(), CallInput::CalleeUnreachable);
            }
            self.pump(proxy, id).await;
        }
    }

    /// A reloaded configuration (SIGHUP): rules, thresholds, prompts and languages for the
    /// calls that start from now on (calls in progress keep what they began with where they
    /// hold it, and use the new prompts for what they play next).
    pub fn reload(
        &mut self,
        detector: Arc<Detector>,
        prompts: PromptBook,
        languages: crate::call::language::LanguageByNumber,
    ) {
        self.res.detector = detector;
        self.res.prompts = prompts;
        self.res.languages = languages;
    }

    /// The speech model's load now (`None` when it does not say).
    pub fn asr_capacity(&self) -> Option<crate::asr::AsrCapacity> {
        self.res.transcriber.capacity()
    }

    /// `when_unscreened = "503"` is configured.
    pub fn refuses_when_saturated(&self) -> bool {
        self.res.refuse_when_saturated
    }

    /// Why a new withheld call could not be screened in time now, or `None`.
    pub fn saturated(&self) -> Option<&'static str> {
        let cap = self.res.transcriber.capacity()?;
        let timeout = self.res.call.screening_timeout;
        let (mut undecided, mut recent) = (0, 0);
        for c in self.calls.values() {
            if matches!(
                c.call.stage(),
                Stage::Greeting | Stage::Listening | Stage::Prompting | Stage::Screening
            ) {
                undecided += 1;
                if c.started.elapsed() < timeout {
                    recent += 1;
                }
            }
        }
        crate::call::admission::saturated(cap, undecided, recent, timeout, self.res.call.listen)
    }

    /// A SIP message for a call we own.
    pub async fn sip(
        &mut self,
        proxy: &mut Proxy,
        id: u64,
        (from_upstream, source): (bool, Peer),
        msg: SipMessage,
    ) {
        if let Some(c) = self.calls.get_mut(&id) {
            let input = CallInput::Sip {
                upstream: from_upstream,
                msg,
                source,
            };
            c.call.handle_input(Instant::now(), input);
        }
        self.pump(proxy, id).await;
    }

    pub async fn event(&mut self, proxy: &mut Proxy, ev: CallEvent) {
        let now = Instant::now();
        match ev {
            CallEvent::Rtp {
                call,
                leg,
                src,
                bytes,
            } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                if c.released {
                    return;
                }
                // Before the bridge: the legs are ours (greeting, listening, warning);
                // after it the relay task reads the sockets and nothing comes here.
                let media = match leg {
                    Leg::A => c.a.as_mut(),
                    Leg::B => c.b.as_mut(),
                };
                let Some(m) = media else {
                    return;
                };
                let input = match m.on_packet(now, src, &bytes) {
                    PacketVerdict::Accept(p) => match p.kind {
                        PayloadKind::Audio if leg == Leg::A && c.call.wants_audio() => {
                            Some(CallInput::CallerAudio(AudioFrame {
                                samples: m.negotiated().codec.decode(p.payload),
                                rtp_timestamp: p.header.timestamp,
                                received: now,
                            }))
                        }
                        PayloadKind::TelephoneEvent => c.dtmf[leg_index(leg)]
                            .on_event(&p.header, p.payload)
                            .map(|digit| CallInput::Dtmf { leg, digit }),
                        PayloadKind::Audio => None,
                    },
                    PacketVerdict::Drop(_) => None,
                };
                let Some(input) = input else {
                    return;
                };
                c.call.handle_input(now, input);
                self.pump(proxy, call).await;
            }
            CallEvent::Transcribed { call, job, result } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.jobs.remove(&job);
                    c.call
                        .handle_input(now, CallInput::Transcribed { job, result });
                }
                self.pump(proxy, call).await;
            }
            CallEvent::Warning { call, pcm } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    match (pcm, c.b.as_ref()) {
                        (Some(pcm), Some(b)) => {
                            let player = b.prompt_player(pcm, now);
                            c.players.push((Leg::B, player));
                        }
                        _ => c.call.handle_input(now, CallInput::PromptFinished(Leg::B)),
                    }
                }
                self.pump(proxy, call).await;
            }
            CallEvent::MediaTimeout { call, leg } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.call.handle_input(now, CallInput::MediaTimeout(leg));
                }
                self.pump(proxy, call).await;
            }
        }
    }

    /// The earliest instant any call or prompt needs attention.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .flat_map(|c| {
                let players = c.players.iter().map(|(_, p)| p).chain(&c.ringback);
                c.call
                    .poll_timeout()
                    .into_iter()
                    .chain(players.filter_map(PromptPlayer::poll_timeout))
            })
            .min()
    }

    pub async fn handle_timeout(&mut self, proxy: &mut Proxy) {
        let now = Instant::now();
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.calls.get_mut(&id) {
                if c.call.poll_timeout().is_some_and(|t| t <= now) {
                    c.call.handle_timeout(now);
                }
                // Prompts: send due packets; report finished ones.
                let mut done = Vec::new();
                for (i, (leg, player)) in c.players.iter_mut().enumerate() {
                    let (media, sock) = match leg {
                        Leg::A => (c.a.as_mut(), &c.socket_a),
                        Leg::B => (c.b.as_mut(), &c.socket_b),
                    };
                    if let (Some(m), Some(sock)) = (media, sock) {
                        for (to, pkt) in m.transmit_prompt(now, player) {
                            let _ = sock.try_send_to(&pkt, to);
                        }
                    }
                    if player.is_done() {
                        done.push(i);
                    }
                }
                for i in done.into_iter().rev() {
                    let (leg, _) = c.players.remove(i);
                    c.call.handle_input(now, CallInput::PromptFinished(leg));
                }
                let prompt_on_a = c.players.iter().any(|(l, _)| *l == Leg::A);
                if let (Some(player), Some(a), Some(sock), false) =
                    (&mut c.ringback, c.a.as_mut(), &c.socket_a, prompt_on_a)
                {
                    for (to, pkt) in a.transmit_prompt(now, player) {
                        let _ = sock.try_send_to(&pkt, to);
                    }
                    if player.is_done() {
                        // One cadence played: ring again, same stream, until told to stop.
                        *player = a.prompt_player(player.pcm(), now);
                    }
                }
            }
            self.pump(proxy, id).await;
        }
    }
}
