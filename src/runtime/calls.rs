//! Screened calls on tokio: RTP sockets, prompts, the recorder tap, ASR and scoring around
//! the pure [`ScreenedCall`] machines and the pure media legs.
//!
//! The core task owns every call (no locks): socket readers and ASR tasks report back
//! through the core's input channel. Whisper never runs on this task: audio goes to the
//! `Transcriber` (its own threads, bounded queue) and a blocking task waits for the result.

use crate::asr::{AsrError, AsrRequest, Transcriber};
use crate::call::{
    CallAction, CallConfig, CallInput, CallRecordDraft, Leg, Prompt, ScreenedCall, ScreeningAction,
    ScreeningResult,
};
use crate::detect::score::Action as DetectAction;
use crate::detect::Detector;
use crate::media::ports::{PortPool, RtpPorts};
use crate::media::prompt::PromptPlayer;
use crate::media::relay::{LegId, MediaLeg, PacketVerdict, RtpRelay};
use crate::media::rtp::RtpSender;
use crate::media::sdp::{self, SessionDescription};
use crate::media::tap::{ListenLimits, RecorderTap, SpeechBuffer, SpeechState, TapReceiver};
use crate::sip::msg::SipMessage;
use crate::sip::proxy::{Peer, Proxy};
use crate::store::{CallRecord, RuleHit};
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

/// Receives every finished call (the call record store).
pub type FinishedHook = Box<dyn Fn(CallRecord) + Send>;

/// What the call layer needs, built once at start.
pub struct ScreeningResources {
    pub transcriber: Arc<dyn Transcriber>,
    pub detector: Arc<Detector>,
    pub greeting: Arc<[i16]>,
    pub block: Arc<[i16]>,
    pub ports: PortPool,
    /// Address put into our SDP and bound for RTP.
    pub media_ip: IpAddr,
    pub call: CallConfig,
    pub language: Option<String>,
    /// Called with every finished call (the call record store).
    pub on_finished: Option<FinishedHook>,
}

/// Reports from the call layer's helpers to the core task.
pub enum CallEvent {
    Rtp {
        call: u64,
        leg: Leg,
        src: SocketAddr,
        bytes: Bytes,
    },
    Screened {
        call: u64,
        result: Result<ScreeningResult, String>,
    },
    Warning {
        call: u64,
        pcm: Option<Arc<[i16]>>,
    },
}

struct ActiveCall {
    call: ScreenedCall,
    /// Leg A's media until the legs are bridged (then it lives in `relay`).
    a: Option<MediaLeg>,
    b: Option<MediaLeg>,
    relay: Option<RtpRelay>,
    /// RTP sockets of the two legs; dropped (ports closed) when the call finishes.
    socket_a: Option<Arc<UdpSocket>>,
    socket_b: Option<Arc<UdpSocket>>,
    ports: [RtpPorts; 2],
    readers: Vec<tokio::task::JoinHandle<()>>,
    players: Vec<(Leg, PromptPlayer)>,
    listening: Option<(TapReceiver, SpeechBuffer)>,
    captured: Vec<f32>,
    asr_cancel: Option<crate::asr::CancelToken>,
    leg_b_id: Option<String>,
    finished: bool,
    withheld_reason: String,
    started_at: std::time::SystemTime,
}

pub struct CallManager {
    res: ScreeningResources,
    calls: HashMap<u64, ActiveCall>,
    by_call_id: HashMap<String, u64>,
    next_id: u64,
    events: mpsc::Sender<CallEvent>,
}

impl CallManager {
    pub fn new(res: ScreeningResources, events: mpsc::Sender<CallEvent>) -> CallManager {
        CallManager {
            res,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            next_id: 1,
            events,
        }
    }

    /// Calls holding resources (ports, sockets, ASR).
    pub fn active(&self) -> usize {
        self.calls.values().filter(|c| !c.finished).count()
    }

    pub fn ports_in_use(&self) -> usize {
        self.res.ports.in_use()
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
        let offer = std::str::from_utf8(invite.body())
            .map_err(|_| sdp::SdpError::Malformed("SDP is not UTF-8".into()))
            .and_then(SessionDescription::parse);
        let id = self.next_id;
        self.next_id += 1;
        let answer =
            offer.and_then(|o| sdp::answer(&o, self.res.media_ip, 0, id, 1).map(|(n, _)| (o, n)));
        let (offer, _) = match answer {
            Ok(v) => v,
            Err(e) => {
                let status = e.sip_status();
                info!(status, error = %e, "screened call refused: SDP");
                let reason = if status == 488 {
                    "Not Acceptable Here"
                } else {
                    "Bad Request"
                };
                proxy.respond(&invite, source, status, reason);
                return;
            }
        };
        let (pa, pb) = match (self.res.ports.allocate(), self.res.ports.allocate()) {
            (Some(a), Some(b)) => (a, b),
            (a, b) => {
                // Give back whatever was taken.
                for p in [a, b].into_iter().flatten() {
                    self.res.ports.release(p.rtp);
                }
                warn!("screened call refused: no free RTP ports");
                proxy.respond(&invite, source, 503, "Service Unavailable");
                return;
            }
        };
        let bind = |port: u16| {
            let addr = SocketAddr::new(self.res.media_ip, port);
            std::net::UdpSocket::bind(addr).and_then(|s| {
                s.set_nonblocking(true)?;
                UdpSocket::from_std(s)
            })
        };
        let (sa, sb) = match (bind(pa.rtp), bind(pb.rtp)) {
            (Ok(a), Ok(b)) => (Arc::new(a), Arc::new(b)),
            _ => {
                warn!(a = pa.rtp, b = pb.rtp, "cannot bind RTP ports");
                self.res.ports.mark_unusable(pa.rtp);
                self.res.ports.mark_unusable(pb.rtp);
                proxy.respond(&invite, source, 503, "Service Unavailable");
                return;
            }
        };
        let (negotiated, answer_sdp) = match sdp::answer(&offer, self.res.media_ip, pa.rtp, id, 1) {
            Ok(v) => v,
            Err(_) => {
                self.res.ports.release(pa.rtp);
                self.res.ports.release(pb.rtp);
                proxy.respond(&invite, source, 488, "Not Acceptable Here");
                return;
            }
        };
        let offer_b = sdp::offer_preferring(negotiated.codec, self.res.media_ip, pb.rtp, id, 1);
        let a = MediaLeg::new(
            now,
            negotiated,
            RtpSender::from_seed(id.wrapping_mul(2654435761)),
        );
        let call = ScreenedCall::answer(
            now,
            id,
            &invite,
            source,
            self.res.call.clone(),
            Bytes::from(answer_sdp),
            Bytes::from(offer_b),
        );
        let call_id = invite.header("call-id").unwrap_or_default().to_string();
        proxy.attach_call(&call_id, false);
        self.by_call_id.insert(call_id.clone(), id);
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
                a: Some(a),
                b: None,
                relay: None,
                socket_a: Some(sa),
                socket_b: Some(sb),
                ports: [pa, pb],
                readers,
                players: Vec::new(),
                listening: None,
                captured: Vec::new(),
                asr_cancel: None,
                leg_b_id: None,
                finished: false,
                withheld_reason,
                started_at: std::time::SystemTime::now(),
            },
        );
        self.pump(proxy, id).await;
    }

    /// A SIP message for a call we own.
    pub async fn sip(
        &mut self,
        proxy: &mut Proxy,
        call_id: &str,
        from_upstream: bool,
        msg: SipMessage,
    ) {
        let Some(&id) = self.by_call_id.get(call_id) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(&id) {
            let input = if from_upstream {
                CallInput::FromCallee(msg)
            } else {
                CallInput::FromCaller(msg)
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
                if c.finished {
                    return;
                }
                let mut speech_done = false;
                if let Some(relay) = &mut c.relay {
                    let from = if leg == Leg::A {
                        LegId::Caller
                    } else {
                        LegId::Callee
                    };
                    if let Some((to, out)) = relay.relay(now, from, src, &bytes) {
                        let sock = if leg == Leg::A {
                            &c.socket_b
                        } else {
                            &c.socket_a
                        };
                        if let Some(sock) = sock {
                            let _ = sock.try_send_to(&out, to);
                        }
                    }
                } else {
                    let media = match leg {
                        Leg::A => c.a.as_mut(),
                        Leg::B => c.b.as_mut(),
                    };
                    if let Some(m) = media {
                        let _ = matches!(m.on_packet(now, src, &bytes), PacketVerdict::Accept(_));
                    }
                    if leg == Leg::A {
                        if let Some((rx, buf)) = &mut c.listening {
                            let state = rx.drain_into(buf);
                            speech_done =
                                matches!(state, SpeechState::EndOfSpeech | SpeechState::Full);
                        }
                    }
                }
                if speech_done {
                    if let Some((_, buf)) = c.listening.take() {
                        c.captured = buf.to_whisper_input().unwrap_or_default();
                    }
                    if let Some(a) = c.a.as_mut() {
                        a.set_tap(None);
                    }
                    c.call.handle_input(now, CallInput::SpeechCaptured);
                } else {
                    return;
                }
                self.pump(proxy, call).await;
            }
            CallEvent::Screened { call, result } => {
                match &result {
                    Ok(r) => info_span!("call", call).in_scope(|| {
                        info!(action = r.action.as_str(), score = r.score, reason = %r.reason, "verdict");
                        debug!(transcript = %r.transcript, "transcript");
                    }),
                    Err(e) => info_span!("call", call).in_scope(|| info!(error = %e, "unscreened")),
                }
                if let Some(c) = self.calls.get_mut(&call) {
                    c.asr_cancel = None;
                    c.call.handle_input(now, CallInput::Screened(result));
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
        }
    }

    /// The earliest instant any call or prompt needs attention.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .flat_map(|c| {
                let mut t: Vec<Instant> = c.call.poll_timeout().into_iter().collect();
                t.extend(c.players.iter().filter_map(|(_, p)| p.poll_timeout()));
                t
            })
            .min()
    }

    pub async fn handle_timeout(&mut self, proxy: &mut Proxy) {
        let now = Instant::now();
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.calls.get_mut(&id) {
                if c.call.poll_timeout().is_some_and(|t| t <= now) {
                    // The listening deadline may end listening: keep what was captured.
                    if let Some((rx, buf)) = &mut c.listening {
                        rx.drain_into(buf);
                    }
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
                if c.listening.is_some() && matches!(c.call.stage(), crate::call::Stage::Screening)
                {
                    if let Some((_, buf)) = c.listening.take() {
                        c.captured = buf.to_whisper_input().unwrap_or_default();
                    }
                    if let Some(a) = c.a.as_mut() {
                        a.set_tap(None);
                    }
                }
                if let Some(leg) = c
                    .relay
                    .as_ref()
                    .and_then(|r| r.inactive_leg(now, RTP_INACTIVITY))
                {
                    let leg = if leg == LegId::Caller { Leg::A } else { Leg::B };
                    c.call.handle_input(now, CallInput::MediaTimeout(leg));
                }
            }
            self.pump(proxy, id).await;
        }
    }

    /// Carry out what a call asked for.
    async fn pump(&mut self, proxy: &mut Proxy, id: u64) {
        let now = Instant::now();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        while let Some(action) = c.call.poll_action() {
            match action {
                CallAction::Send { to, bytes } => proxy.send_raw(to, bytes),
                CallAction::PlayPrompt { leg, prompt } => match prompt {
                    Prompt::Greeting | Prompt::Block => {
                        let pcm = if prompt == Prompt::Greeting {
                            self.res.greeting.clone()
                        } else {
                            self.res.block.clone()
                        };
                        if let Some(a) = c.a.as_ref() {
                            c.players.push((leg, a.prompt_player(pcm, now)));
                        }
                    }
                    Prompt::Warning(text) => {
                        let events = self.events.clone();
                        tokio::task::spawn_blocking(move || {
                            let pcm = synthesize(&text).map(Arc::from);
                            let _ = events.blocking_send(CallEvent::Warning { call: id, pcm });
                        });
                    }
                },
                CallAction::StartListening { max } => {
                    let (tap, rx) = RecorderTap::new(2048);
                    if let Some(a) = c.a.as_mut() {
                        a.set_tap(Some(tap));
                    }
                    let limits = ListenLimits::new(max.as_millis() as u32);
                    c.listening = Some((rx, SpeechBuffer::new(limits)));
                }
                CallAction::Screen => {
                    if let Some((rx, mut buf)) = c.listening.take() {
                        rx.drain_into(&mut buf);
                        c.captured = buf.to_whisper_input().unwrap_or_default();
                        if let Some(a) = c.a.as_mut() {
                            a.set_tap(None);
                        }
                    }
                    let pcm = std::mem::take(&mut c.captured);
                    let events = self.events.clone();
                    let detector = self.res.detector.clone();
                    let lang = self.res.language.clone();
                    let timeout = self.res.call.screening_timeout;
                    match self.res.transcriber.submit(AsrRequest { pcm_16k: pcm }) {
                        Ok(pending) => {
                            c.asr_cancel = Some(pending.cancel_token());
                            tokio::task::spawn_blocking(move || {
                                let result = match pending.wait_timeout(timeout) {
                                    Ok(t) => score(&detector, &t.text, lang.as_deref()),
                                    Err(e) => Err(asr_failure(&e)),
                                };
                                let _ =
                                    events.blocking_send(CallEvent::Screened { call: id, result });
                            });
                        }
                        Err(e) => {
                            // Refused at once (queue full): say so, like a failed job.
                            let reason = asr_failure(&e);
                            info_span!("call", call = id)
                                .in_scope(|| warn!(error = %reason, "unscreened"));
                            c.call.handle_input(now, CallInput::Screened(Err(reason)));
                        }
                    }
                }
                CallAction::Ringback(_) => {}
                CallAction::CalleeSdp(body) => {
                    let neg = std::str::from_utf8(&body)
                        .ok()
                        .and_then(|t| SessionDescription::parse(t).ok())
                        .and_then(|s| sdp::accept_answer(&s).ok());
                    match neg {
                        Some(n) => {
                            c.b = Some(MediaLeg::new(
                                now,
                                n,
                                RtpSender::from_seed(id ^ 0x5bd1_e995),
                            ));
                        }
                        None => debug!(call = id, "callee answered without usable SDP"),
                    }
                }
                CallAction::Bridge => {
                    if let (Some(a), Some(b)) = (c.a.take(), c.b.take()) {
                        c.relay = Some(RtpRelay::new(a, b));
                    }
                }
                CallAction::Finished(record) => {
                    c.finished = true;
                    if let Some(t) = c.asr_cancel.take() {
                        t.cancel();
                    }
                    for r in c.readers.drain(..) {
                        r.abort();
                    }
                    c.players.clear();
                    c.listening = None;
                    c.socket_a = None;
                    c.socket_b = None;
                    c.relay = None;
                    c.a = None;
                    c.b = None;
                    self.res.ports.release(c.ports[0].rtp);
                    self.res.ports.release(c.ports[1].rtp);
                    let span = info_span!("call", call = id);
                    span.in_scope(|| {
                        info!(
                            outcome = ?record.outcome,
                            action = record.result.as_ref().map(|r| r.action.as_str()).unwrap_or("-"),
                            score = record.result.as_ref().map(|r| r.score).unwrap_or(0.0),
                            time_to_verdict_ms = record.time_to_verdict.map(|d| d.as_millis() as u64),
                            "call finished"
                        )
                    });
                    if let Some(f) = &self.res.on_finished {
                        f(call_record(
                            &record,
                            &c.withheld_reason,
                            c.started_at,
                            self.res.language.as_deref(),
                        ));
                    }
                }
            }
        }
        // Leg B's Call-ID becomes known when the callee is called.
        let (a_id, b_id) = c.call.call_ids();
        if let Some(b) = b_id {
            if c.leg_b_id.as_deref() != Some(b.as_str()) {
                proxy.attach_call(&b, true);
                self.by_call_id.insert(b.clone(), id);
                c.leg_b_id = Some(b);
            }
        }
        if c.finished && c.call.is_done() {
            proxy.detach_call(&a_id);
            self.by_call_id.remove(&a_id);
            if let Some(b) = c.leg_b_id.take() {
                proxy.detach_call(&b);
                self.by_call_id.remove(&b);
            }
            self.calls.remove(&id);
        }
    }
}

/// The stored row of a finished call.
fn call_record(
    d: &CallRecordDraft,
    withheld_reason: &str,
    started: std::time::SystemTime,
    lang: Option<&str>,
) -> CallRecord {
    let r = d.result.as_ref();
    let ms = |x: Option<Duration>| x.map(|d| d.as_millis() as u64);
    CallRecord {
        call_id: d.call_id.clone(),
        started_at_ms: crate::store::unix_ms(started),
        withheld_reason: withheld_reason.to_string(),
        transcript: r.map(|r| r.transcript.clone()).unwrap_or_default(),
        language: lang.unwrap_or("en").to_string(),
        score: r.map(|r| r.score).unwrap_or(0.0),
        action: r
            .map(|r| r.action.as_str().to_string())
            .unwrap_or_else(|| "caller_hung_up".to_string()),
        reasons: r
            .map(|r| r.reasons.iter().map(RuleHit::from).collect())
            .unwrap_or_default(),
        warning: r.and_then(|r| r.warning.clone()),
        time_to_verdict_ms: ms(d.time_to_verdict),
        listen_ms: ms(d.listen).unwrap_or(0),
        screening_ms: ms(d.screening).unwrap_or(0),
        total_ms: Some(d.total.as_millis() as u64),
        outcome: format!("{:?}", d.outcome).to_lowercase(),
    }
}

fn asr_failure(e: &AsrError) -> String {
    match e {
        AsrError::QueueFull => "ASR overloaded (queue full)".to_string(),
        other => format!("ASR failed: {other}"),
    }
}

/// Score a transcript: the verdict the call acts on.
pub fn score(
    detector: &Detector,
    transcript: &str,
    lang: Option<&str>,
) -> Result<ScreeningResult, String> {
    let v = detector
        .score_text(transcript, lang)
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
    })
}

/// Speak `text` with espeak-ng into 8 kHz mono PCM (the warning prompt).
pub fn synthesize(text: &str) -> Option<Vec<i16>> {
    let dir = tempfile::tempdir().ok()?;
    let wav = dir.path().join("warning.wav");
    let ok = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
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
