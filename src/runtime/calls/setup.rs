//! Taking a screened INVITE: SDP and admission checks, two RTP port pairs bound (a port
//! another program holds is taken out of the pool), the answer, and the socket readers.

use super::{ActiveCall, CallEvent, CallManager};
use crate::call::{Leg, MediaPorts};
use crate::media::dtmf::DtmfReceiver;
use crate::media::ports::RtpPorts;
use crate::media::relay::MediaLeg;
use crate::media::rtp::RtpSender;
use crate::runtime::media_relay::LegSockets;
use crate::sip::msg::SipMessage;
use crate::sip::proxy::{Peer, Proxy, RETRY_AFTER_SECS};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{info, info_span, warn};

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

impl CallManager {
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
}

pub(super) async fn read_rtp(
    sock: Arc<UdpSocket>,
    call: u64,
    leg: Leg,
    tx: mpsc::Sender<CallEvent>,
) {
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
