//! Screened calls on tokio: RTP sockets, prompt playback, the speech model and scoring
//! around the pure [`CallSession`] machines and the pure media legs.
//!
//! Nothing here decides anything about a call: the session says when to listen, what to
//! transcribe, which prompt to play and what the verdict means; this file moves its bytes
//! (SIP through the proxy, RTP through the legs' sockets), decodes the caller's audio and
//! the keys pressed (RFC 4733) for it, runs its transcriptions and tells it the time.
//!
//! The core task owns every call (no locks): socket readers and ASR tasks report back
//! through the core's input channel. Whisper never runs on this task, nor does resampling:
//! audio goes to the `Transcriber` (its own threads, bounded queue) as 8 kHz telephone
//! audio, and a blocking task waits for the result and scores it.

use crate::asr::{AsrError, AsrRequest, CancelToken, Transcriber};
use crate::call::{
    AsrFailure, CallAction, CallConfig, CallInput, CallRecordDraft, CallSession, JobKind, Leg,
    MediaPorts, Prompt, ScreeningAction, ScreeningResult, Stage, AFTERWARDS_WAIT,
};
use crate::detect::score::Action as DetectAction;
use crate::detect::Detector;
use crate::media::dtmf::DtmfReceiver;
use crate::media::ports::{PortPool, RtpPorts};
use crate::media::prompt::PromptPlayer;
use crate::media::relay::{MediaLeg, PacketVerdict, PayloadKind, RtpRelay};
use crate::media::rtp::RtpSender;
use crate::media::tap::AudioFrame;
use crate::runtime::media_relay::{LegSockets, RelayTask};
use crate::sip::msg::SipMessage;
use crate::sip::proxy::{Peer, Proxy, RETRY_AFTER_SECS};
use crate::store::{CallRecord, RuleHit, VoiceMessage};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn};

/// How long a leg may stay silent (no RTP) before the call is ended.
pub const RTP_INACTIVITY: Duration = Duration::from_secs(60);

/// Port pairs tried per leg before a call is refused (503).
const BIND_ATTEMPTS: usize = 8;
/// Least time between two retries of the RTP pairs taken out of the pool.
const UNUSABLE_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a bind error means another program holds the port (take it out of the pool), as
/// opposed to a shortage of the whole process or system (EMFILE, ENFILE, ENOBUFS, ENOMEM)
/// that says nothing about the port.
fn port_is_taken(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::AddrInUse
            | std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::AddrNotAvailable
    )
}

/// Receives every finished call (the call record store).
pub type FinishedHook = Box<dyn Fn(CallRecord) + Send>;

/// The recorded prompts (8 kHz mono) the calls ask for.
#[derive(Clone)]
pub struct Prompts {
    pub greeting: Arc<[i16]>,
    /// Played once to a caller who said nothing.
    pub reprompt: Arc<[i16]>,
    /// The follow-up question (`screening.follow_up`).
    pub follow_up: Arc<[i16]>,
    pub block: Arc<[i16]>,
    /// The block announcement offering a message, ending with a tone.
    pub block_message: Arc<[i16]>,
    /// "The person you are calling cannot be reached…" (the callee failed).
    pub unavailable: Arc<[i16]>,
}

/// The prompts of every language calls may be held in.
#[derive(Clone)]
pub struct PromptBook {
    langs: Vec<(String, Prompts)>,
}

impl PromptBook {
    /// One set per language; the first is used for a language without its own.
    pub fn new(langs: Vec<(String, Prompts)>) -> PromptBook {
        PromptBook { langs }
    }

    fn get(&self, lang: &str) -> Option<&Prompts> {
        let base = crate::call::language::base(lang);
        self.langs
            .iter()
            .find(|(l, _)| crate::call::language::base(l) == base)
            .or(self.langs.first())
            .map(|(_, p)| p)
    }
}

impl Prompts {
    fn pcm(&self, prompt: &Prompt) -> Option<Arc<[i16]>> {
        Some(match prompt {
            Prompt::Greeting => self.greeting.clone(),
            Prompt::Reprompt => self.reprompt.clone(),
            Prompt::FollowUp => self.follow_up.clone(),
            Prompt::Block => self.block.clone(),
            Prompt::BlockMessage => self.block_message.clone(),
            Prompt::Unavailable => self.unavailable.clone(),
            Prompt::Warning(_) => return None,
        })
    }
}

/// What the call layer needs, built once at start.
pub struct ScreeningResources {
    /// The speech model for English calls (and every call when it is multilingual).
    pub transcriber: Arc<dyn Transcriber>,
    /// Whether `transcriber` hears other languages than English.
    pub transcriber_multilingual: bool,
    /// The multilingual model for calls in a language `transcriber` cannot hear.
    pub multilingual: Option<Arc<dyn Transcriber>>,
    /// The bigger model that hears an open verdict again (`JobKind::Second`); `None`: no
    /// second pass.
    pub second: Option<Arc<dyn Transcriber>>,
    pub detector: Arc<Detector>,
    pub prompts: PromptBook,
    /// The language of calls to numbers named in `screening.called`.
    pub languages: crate::call::language::LanguageByNumber,
    /// One cadence of the ringback tone, looped while the callee rings; `None`: silence.
    pub ringback: Option<Arc<[i16]>>,
    pub ports: PortPool,
    /// Address put into our SDP and bound for RTP.
    pub media_ip: IpAddr,
    pub call: CallConfig,
    /// `when_unscreened = "503"`: refuse a withheld INVITE with 503 before answering when
    /// the speech model cannot screen it in time (see [`crate::call::admission`]).
    pub refuse_when_saturated: bool,
    /// The language of calls no `languages` entry names.
    pub language: Option<String>,
    /// Called with every finished call (the call record store).
    pub on_finished: Option<FinishedHook>,
}

impl ScreeningResources {
    /// The model that hears `lang`: the first one for English or when it is multilingual,
    /// else the multilingual one (start-up refuses a language no model hears).
    pub fn transcriber_for(&self, lang: &str) -> &Arc<dyn Transcriber> {
        if self.transcriber_multilingual || crate::call::language::base(lang) == "en" {
            return &self.transcriber;
        }
        self.multilingual.as_ref().unwrap_or(&self.transcriber)
    }
}

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

fn leg_index(leg: Leg) -> usize {
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

    /// A screened INVITE: negotiate SDP (488/400 if impossible), take two port pairs
    /// (503 when out of ports), bind, answer.
    pub async fn start(
        &mut self,
        proxy: &mut Proxy,
        invite: SipMessage,
        source: Peer,
        withheld_reason: String,
    ) {
        let now = Instant::now();
        // Refusals (420, 400, 488) come before any port or ASR slot is taken.
        let pending = match crate::call::accept(&invite, source) {
            Ok(p) => p,
            Err(r) => {
                info!(status = r.status, "screened call refused: {}", r.reason);
                proxy.respond_with(&invite, source, r.status, r.reason, &r.headers);
                return;
            }
        };
        if self.res.refuse_when_saturated {
            if let Some(why) = self.saturated() {
                // Before answering: the dispatcher can still send the call elsewhere.
                self.refused_saturated += 1;
                info!(
                    why,
                    "screened call refused with 503: cannot screen it in time"
                );
                proxy.respond_with(
                    &invite,
                    source,
                    503,
                    "Service Unavailable",
                    &[
                        ("Retry-After", RETRY_AFTER_SECS.to_string()),
                        ("Warning", format!("399 scamscreen \"{why}\"")),
                    ],
                );
                return;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let pairs = match self.bind_pair() {
            Some(a) => {
                let ports_a = a.0;
                self.bind_pair().map(|b| (a, b)).ok_or(Some(ports_a))
            }
            None => Err(None),
        };
        let ((pa, la), (pb, lb)) = match pairs {
            Ok(p) => p,
            Err(taken) => {
                // Give back whatever was taken (its socket is already closed).
                if let Some(p) = taken {
                    self.res.ports.release(p.rtp);
                }
                warn!("screened call refused: no free RTP ports");
                proxy.respond_with(
                    pending.invite(),
                    pending.source(),
                    503,
                    "Service Unavailable",
                    &[("Retry-After", RETRY_AFTER_SECS.to_string())],
                );
                return;
            }
        };
        let (sa, sb) = (la.rtp.clone(), lb.rtp.clone());
        let call_id = pending
            .invite()
            .header("call-id")
            .unwrap_or_default()
            .to_string();
        let media = MediaPorts {
            ip: self.res.media_ip,
            a: pa.rtp,
            b: pb.rtp,
        };
        let language = pending
            .invite()
            .request_uri()
            .and_then(|u| self.res.languages.language_for(u))
            .or(self.res.language.as_deref())
            .unwrap_or("en")
            .to_string();
        let mut cfg = self.res.call.clone();
        // A second pass only where it hears better than the first: calls on the small
        // English model.
        cfg.second_pass = cfg.second_pass
            && self.res.second.is_some()
            && !self.res.transcriber_multilingual
            && crate::call::language::base(&language) == "en";
        cfg.language = language.clone();
        let (call, negotiated) = match pending.answer(now, id, cfg, media) {
            Ok(v) => v,
            Err(r) => {
                self.res.ports.release(pa.rtp);
                self.res.ports.release(pb.rtp);
                proxy.respond_with(&invite, source, r.status, r.reason, &r.headers);
                return;
            }
        };
        // Before the caller's first packet only its SDP address (or, for a NATed phone,
        // where its INVITE came from) may latch: a stranger spraying ports gets nothing.
        let a = MediaLeg::new(
            now,
            negotiated,
            RtpSender::from_seed(id.wrapping_mul(2654435761)),
        )
        .with_signalling_source(source.addr.ip());
        proxy.attach_call(&call_id, false, id);
        let readers = vec![
            tokio::spawn(read_rtp(sa.clone(), id, Leg::A, self.events.clone())),
            tokio::spawn(read_rtp(sb.clone(), id, Leg::B, self.events.clone())),
        ];
        let span = info_span!("call", call = id);
        span.in_scope(|| info!(rtp_a = pa.rtp, rtp_b = pb.rtp, "screening call"));
        self.calls.insert(
            id,
            ActiveCall {
                call,
                started: now,
                a: Some(a),
                b: None,
                dtmf: [DtmfReceiver::new(), DtmfReceiver::new()],
                relay: None,
                socket_a: Some(sa),
                socket_b: Some(sb),
                sockets: Some([la, lb]),
                ports: [pa, pb],
                readers,
                players: Vec::new(),
                ringback: None,
                jobs: HashMap::new(),
                leg_b_id: None,
                released: false,
                finished: false,
                withheld_reason,
                started_at: std::time::SystemTime::now(),
                language,
            },
        );
        self.pump(proxy, id).await;
    }

    /// A port pair from the pool and its bound RTP socket. A pair another program holds
    /// (e.g. the kernel gave it out as an ephemeral port) is taken out of circulation and
    /// the next one tried, so one busy port never refuses a call; pairs taken out are tried
    /// again when the pool runs dry (at most every [`UNUSABLE_RETRY`]). A failure that says
    /// nothing about the port (no file descriptors left, no kernel memory) gives the pair
    /// back and refuses this call only: the port is not lost.
    fn bind_pair(&mut self) -> Option<(RtpPorts, LegSockets)> {
        if self.res.ports.available() == 0
            && self.res.ports.unusable() > 0
            && self
                .last_unusable_retry
                .is_none_or(|t| t.elapsed() >= UNUSABLE_RETRY)
        {
            self.last_unusable_retry = Some(std::time::Instant::now());
            let n = self.res.ports.retry_unusable();
            info!(
                pairs = n,
                "RTP pool empty: trying the ports taken out again"
            );
        }
        let bind = |port: u16| {
            let addr = SocketAddr::new(self.res.media_ip, port);
            std::net::UdpSocket::bind(addr).and_then(|s| {
                s.set_nonblocking(true)?;
                UdpSocket::from_std(s).map(Arc::new)
            })
        };
        for _ in 0..BIND_ATTEMPTS {
            let pair = self.res.ports.allocate()?;
            let bound = bind(pair.rtp).and_then(|rtp| Ok((rtp, bind(pair.rtcp)?)));
            match bound {
                Ok((rtp, rtcp)) => return Some((pair, LegSockets { rtp, rtcp })),
                Err(e) if port_is_taken(&e) => {
                    warn!(port = pair.rtp, error = %e, "RTP port busy: taken out of the pool");
                    self.res.ports.mark_unusable(pair.rtp);
                }
                Err(e) => {
                    warn!(port = pair.rtp, error = %e, "cannot open an RTP socket: call refused");
                    self.res.ports.release(pair.rtp);
                    return None;
                }
            }
        }
        None
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

    /// Queue a transcription for a call: the speech model resamples and transcribes on its
    /// own threads; a blocking task waits (bounded) and scores. A partial look is only run
    /// on an idle model, so it never delays a full screening.
    fn transcribe(
        &mut self,
        id: u64,
        job: u64,
        kind: JobKind,
        pcm: Vec<i16>,
        deadline: Option<Instant>,
    ) -> Option<AsrFailure> {
        let res = &self.res;
        let call_lang = self.calls.get(&id).map_or("en", |c| c.language.as_str());
        // The second pass: the bigger model, in the call's language. Not `auto`: whisper.cpp
        // detects the language by encoding a full 30 s window whatever the clip's length,
        // which made base's second pass 4.5 s instead of 0.8 s on 2 cores (BENCHMARKS.md),
        // past any screening deadline; a line that expects German callers says so
        // (`[[screening.called]] language = "de"`).
        let (transcriber, asr_lang) = if kind == JobKind::Second {
            match &res.second {
                Some(t) => (t, call_lang),
                None => return Some(AsrFailure::Failed("no second model".into())),
            }
        } else {
            (res.transcriber_for(call_lang), call_lang)
        };
        if kind == JobKind::Partial && transcriber.in_flight() > 0 {
            return Some(AsrFailure::Skipped);
        }
        let now = Instant::now();
        let (deadline, wait) = match (kind, deadline) {
            (JobKind::Afterwards, _) => (None, AFTERWARDS_WAIT),
            (_, Some(d)) => (Some(d), d.saturating_duration_since(now)),
            (_, None) => (
                Some(now + res.call.screening_timeout),
                res.call.screening_timeout,
            ),
        };
        let request = AsrRequest::telephone(pcm, deadline).in_language(asr_lang);
        let call_lang = call_lang.to_string();
        let pending = match transcriber.submit(request) {
            Ok(p) => p,
            Err(e) => return Some(asr_failure(&e)),
        };
        if let Some(c) = self.calls.get_mut(&id) {
            c.jobs.insert(job, pending.cancel_token());
        }
        let (events, detector) = (self.events.clone(), res.detector.clone());
        tokio::task::spawn_blocking(move || {
            let result = match pending.wait_timeout(wait) {
                Ok(t) => {
                    // Rules of the language heard (a German caller on an English line is
                    // scored with the German rules once the bigger model has heard German).
                    let lang = if crate::call::language::SUPPORTED.contains(&t.language.as_str()) {
                        t.language.clone()
                    } else {
                        call_lang
                    };
                    score(&detector, &t, Some(&lang)).map_err(AsrFailure::Failed)
                }
                Err(e) => Err(asr_failure(&e)),
            };
            let _ = events.blocking_send(CallEvent::Transcribed {
                call: id,
                job,
                result,
            });
        });
        None
    }

    /// Carry out what a call asked for.
    async fn pump(&mut self, proxy: &mut Proxy, id: u64) {
        let now = Instant::now();
        loop {
            let Some(c) = self.calls.get_mut(&id) else {
                return;
            };
            let Some(action) = c.call.poll_action() else {
                break;
            };
            match action {
                CallAction::Send { to, bytes } => proxy.send_raw(to, bytes),
                CallAction::PlayPrompt { leg, prompt } => match self
                    .res
                    .prompts
                    .get(&c.language)
                    .and_then(|p| p.pcm(&prompt))
                {
                    Some(pcm) => {
                        let media = match leg {
                            Leg::A => c.a.as_ref(),
                            Leg::B => c.b.as_ref(),
                        };
                        match media {
                            Some(m) => c.players.push((leg, m.prompt_player(pcm, now))),
                            None => c.call.handle_input(now, CallInput::PromptFinished(leg)),
                        }
                    }
                    None => {
                        let Prompt::Warning(text) = prompt else {
                            continue;
                        };
                        let events = self.events.clone();
                        let voice = crate::call::language::voice(&c.language);
                        tokio::task::spawn_blocking(move || {
                            let pcm = synthesize(&text, voice).map(Arc::from);
                            let _ = events.blocking_send(CallEvent::Warning { call: id, pcm });
                        });
                    }
                },
                CallAction::StopPrompt(leg) => c.players.retain(|(l, _)| *l != leg),
                CallAction::Transcribe {
                    job,
                    kind,
                    pcm,
                    deadline,
                } => {
                    if let Some(failure) = self.transcribe(id, job, kind, pcm, deadline) {
                        if failure != AsrFailure::Skipped {
                            info_span!("call", call = id).in_scope(
                                || warn!(error = %failure, kind = ?kind, "transcription refused"),
                            );
                        }
                        let result = Err(failure);
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.call
                                .handle_input(now, CallInput::Transcribed { job, result });
                        }
                    }
                }
                CallAction::CancelTranscription(job) => {
                    if let Some(t) = c.jobs.remove(&job) {
                        t.cancel();
                    }
                }
                CallAction::Ringback(on) => {
                    c.ringback = match (on, &self.res.ringback, c.a.as_ref()) {
                        (true, Some(pcm), Some(a)) => Some(a.prompt_player(pcm.clone(), now)),
                        _ => None,
                    };
                }
                CallAction::CalleeMedia(negotiated) => match negotiated {
                    Some(n) => {
                        let sender = RtpSender::from_seed(id ^ 0x5bd1_e995);
                        let pbx = self.res.call.upstream.addr.ip();
                        c.b = Some(MediaLeg::new(now, n, sender).with_signalling_source(pbx));
                    }
                    None => debug!(call = id, "callee answered without usable SDP"),
                },
                CallAction::Bridge => {
                    c.ringback = None;
                    c.players.clear();
                    if let (Some(a), Some(b), Some([sa, sb])) =
                        (c.a.take(), c.b.take(), c.sockets.take())
                    {
                        // The relay task reads the sockets from now on.
                        for r in c.readers.drain(..) {
                            r.abort();
                        }
                        let relay = RtpRelay::new(a, b);
                        c.relay = Some(RelayTask::spawn(relay, sa, sb, id, self.events.clone()));
                    }
                }
                CallAction::ReleaseMedia => c.release_media(&mut self.res.ports),
                CallAction::Finished(record) => {
                    c.release_media(&mut self.res.ports);
                    c.finished = true;
                    for (_, t) in c.jobs.drain() {
                        t.cancel();
                    }
                    log_finished(id, &record);
                    if let Some(f) = &self.res.on_finished {
                        f(call_record(
                            &record,
                            &c.withheld_reason,
                            c.started_at,
                            Some(c.language.as_str()),
                        ));
                    }
                }
            }
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        // Leg B's Call-ID becomes known when the callee is called.
        let (a_id, b_id) = c.call.call_ids();
        if let Some(b) = b_id {
            if c.leg_b_id.as_deref() != Some(b.as_str()) {
                proxy.attach_call(&b, true, id);
                c.leg_b_id = Some(b);
            }
        }
        if c.finished && c.call.is_done() {
            proxy.detach_call(&a_id);
            if let Some(b) = c.leg_b_id.take() {
                proxy.detach_call(&b);
            }
            self.calls.remove(&id);
        }
    }
}

/// One line per finished call; unscreened calls at warn (they rang through, or were
/// diverted, without a verdict).
fn log_finished(id: u64, record: &CallRecordDraft) {
    let span = info_span!("call", call = id);
    let r = record.result.as_ref();
    let action = r.map(|r| r.action.as_str()).unwrap_or("-");
    let score = r.map(|r| r.score).unwrap_or(0.0);
    let reason = r.map(|r| r.reason.as_str()).unwrap_or("");
    let ttv = record.time_to_verdict.map(|d| d.as_millis() as u64);
    let listen_ms = record.listen.map(|d| d.as_millis() as u64);
    span.in_scope(|| {
        if r.is_some_and(|r| r.action == ScreeningAction::Unscreened) {
            let late = record.afterwards.as_ref().map(|a| a.action.as_str());
            warn!(outcome = ?record.outcome, action, reason, afterwards = late, listen_ms, "call finished unscreened");
        } else {
            info!(outcome = ?record.outcome, action, score, reason, time_to_verdict_ms = ttv, listen_ms, message = record.message.is_some(), "call finished");
        }
        if let Some(r) = r {
            debug!(transcript = %r.transcript, "transcript");
        }
    });
}

/// The stored row of a finished call. An unscreened call keeps its action; the transcript,
/// score and reasons made afterwards (when they came in time) fill the rest.
fn call_record(
    d: &CallRecordDraft,
    withheld_reason: &str,
    started: std::time::SystemTime,
    lang: Option<&str>,
) -> CallRecord {
    let r = d.result.as_ref();
    let heard = d.afterwards.as_ref().or(r);
    let ms = |x: Option<Duration>| x.map(|d| d.as_millis() as u64);
    let message = d.message.as_ref().map(|pcm| VoiceMessage {
        pcm_8k: pcm.clone(),
    });
    CallRecord {
        call_id: d.call_id.clone(),
        started_at_ms: crate::store::unix_ms(started),
        withheld_reason: withheld_reason.to_string(),
        transcript: heard.map(|r| r.transcript.clone()).unwrap_or_default(),
        language: lang.unwrap_or("en").to_string(),
        score: heard.map(|r| r.score).unwrap_or(0.0),
        action: r
            .map(|r| r.action.as_str().to_string())
            .unwrap_or_else(|| "caller_hung_up".to_string()),
        reasons: heard
            .map(|r| r.reasons.iter().map(RuleHit::from).collect())
            .unwrap_or_default(),
        warning: r.and_then(|r| r.warning.clone()),
        time_to_verdict_ms: ms(d.time_to_verdict),
        listen_ms: ms(d.listen).unwrap_or(0),
        screening_ms: ms(d.screening).unwrap_or(0),
        total_ms: Some(d.total.as_millis() as u64),
        outcome: format!("{:?}", d.outcome).to_lowercase(),
        message_ms: message.as_ref().map(VoiceMessage::duration_ms),
        message,
    }
}

fn asr_failure(e: &AsrError) -> AsrFailure {
    match e {
        AsrError::QueueFull => AsrFailure::Overloaded,
        AsrError::TimedOut => AsrFailure::TimedOut,
        AsrError::CannotMakeIt { .. } => AsrFailure::CannotMakeIt,
        other => AsrFailure::Failed(other.to_string()),
    }
}

/// Score a transcript: the verdict the call acts on. Scored from its timed segments, so every
/// reason carries the time in the call at which it was said (ms from the start of listening).
pub fn score(
    detector: &Detector,
    t: &crate::asr::Transcript,
    lang: Option<&str>,
) -> Result<ScreeningResult, String> {
    let transcript = t.text.as_str();
    let v = detector
        .score_segments(&t.segments, lang)
        .map_err(|e| format!("scoring failed: {e}"))?;
    let action = match v.action {
        DetectAction::Allow => ScreeningAction::Allow,
        DetectAction::Warn => ScreeningAction::Warn,
        DetectAction::Divert => ScreeningAction::Divert,
    };
    let reason = if v.reasons.is_empty() {
        "no scam signals".to_string()
    } else {
        v.reasons
            .iter()
            .map(|r| r.rule.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(ScreeningResult {
        action,
        score: v.score,
        transcript: transcript.to_string(),
        reason,
        warning: (!v.warning.is_empty()).then(|| v.warning.clone()),
        reasons: v.reasons,
        more_speech: v.more_speech_could_change,
    })
}

/// Speak `text` with espeak-ng's `voice` into 8 kHz mono PCM (the warning prompt).
pub fn synthesize(text: &str, voice: &str) -> Option<Vec<i16>> {
    let dir = tempfile::tempdir().ok()?;
    let wav = dir.path().join("warning.wav");
    let ok = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    load_prompt(&wav).ok()
}

/// Any WAV → 8 kHz mono i16.
pub fn load_prompt(path: &std::path::Path) -> Result<Vec<i16>, AsrError> {
    let audio = crate::asr::audio::read_wav(path)?;
    crate::media::prompt::to_8k_mono(&audio.samples, audio.rate)
}

async fn read_rtp(sock: Arc<UdpSocket>, call: u64, leg: Leg, tx: mpsc::Sender<CallEvent>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, src)) => {
                let ev = CallEvent::Rtp {
                    call,
                    leg,
                    src,
                    bytes: Bytes::copy_from_slice(&buf[..n]),
                };
                // Never block: a full queue drops the packet (media is not worth a stall).
                if tx.try_send(ev).is_err() && tx.is_closed() {
                    return;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallOutcome;

    fn draft(result: Option<ScreeningResult>) -> CallRecordDraft {
        let verdict = result.is_some();
        CallRecordDraft {
            call_id: "c1".into(),
            result,
            outcome: CallOutcome::Connected,
            time_to_verdict: verdict.then(|| Duration::from_millis(400)),
            listen: Some(Duration::from_millis(4000)),
            screening: verdict.then(|| Duration::from_millis(9400)),
            total: Duration::from_secs(30),
            message: None,
            afterwards: None,
        }
    }

    #[test]
    fn record_times_and_actions() {
        let allow = ScreeningResult {
            action: ScreeningAction::Allow,
            score: 0.1,
            transcript: "hello".into(),
            reason: "no scam signals".into(),
            warning: None,
            reasons: Vec::new(),
            more_speech: false,
        };
        let now = std::time::SystemTime::now();
        let r = call_record(&draft(Some(allow)), "Privacy: id", now, Some("en"));
        assert_eq!(r.action, "allow");
        assert_eq!(r.listen_ms, 4000);
        assert_eq!(r.time_to_verdict_ms, Some(400));
        // Answer → verdict, greeting included (not just listening + transcription).
        assert_eq!(r.screening_ms, 9400);
        let r = call_record(&draft(None), "Privacy: id", now, None);
        assert_eq!(r.action, "caller_hung_up");
        assert_eq!(r.screening_ms, 0);
        assert_eq!(r.transcript, "");
    }
}
