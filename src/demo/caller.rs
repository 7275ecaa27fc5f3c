//! The demo caller: one withheld call from a loopback address.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{
    cseq_method, header, method, pcmu_sdp, response, rtp_audio, rtp_packet, sdp_media, status,
    token, DemoError, FRAME_SAMPLES,
};
use crate::media::g711::Codec;

/// INVITE retransmission interval before any response (RFC 3261 Timer A, T1).
const T1: Duration = Duration::from_millis(500);

/// A withheld caller: sends an INVITE (`From: anonymous`, `Privacy: id`) with a PCMU offer,
/// ACKs the 200, then sends paced 20 ms PCMU packets of whatever it is told to say. It answers
/// a BYE with 200, records the audio it receives and the SIP messages it sees.
///
/// [`DemoCaller::call`] is the usual way in. For calls that are meant to fail,
/// [`DemoCaller::invite`] offers any SDP body and [`DemoCaller::wait_final`] returns the final
/// status, whatever it is (error responses are ACKed).
///
/// Every method that passes time ([`DemoCaller::speak`], [`DemoCaller::silence`],
/// [`DemoCaller::wait_for_bye`]) keeps sending RTP (silence when there is nothing to say), as a
/// real phone does, and handles SIP meanwhile.
pub struct DemoCaller {
    sip: UdpSocket,
    rtp: UdpSocket,
    proxy: SocketAddr,
    call_id: String,
    from_tag: String,
    /// The From header's value without its tag.
    from: String,
    to_tag: String,
    /// Request-URI for in-dialog requests (the 200's Contact).
    target: String,
    remote_rtp: Option<SocketAddr>,
    log: Vec<String>,
    heard: Vec<i16>,
    seq: u16,
    ts: u32,
    ssrc: u32,
    /// When the next RTP packet is due.
    next_packet: Instant,
    got_bye: bool,
    hung_up: bool,
    /// The first final response to the INVITE: status and reason.
    final_status: Option<(u16, String)>,
    /// The INVITE as sent, its branch, and when to retransmit it (until any response).
    invite: String,
    invite_branch: String,
    resend: Option<(Instant, Duration)>,
    /// The BYE, once sent.
    bye: Option<String>,
}

impl std::fmt::Debug for DemoCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoCaller")
            .field("call_id", &self.call_id)
            .field("remote_rtp", &self.remote_rtp)
            .field("got_bye", &self.got_bye)
            .finish()
    }
}

impl DemoCaller {
    /// Call through `proxy` from `local_ip` (any free port) and wait up to `timeout` for the
    /// 200 OK. `name` goes into the Call-ID, for finding the call record later.
    pub fn call(
        proxy: SocketAddr,
        local_ip: IpAddr,
        name: &str,
        timeout: Duration,
    ) -> Result<DemoCaller, DemoError> {
        let mut c = DemoCaller::invite(proxy, local_ip, name, None)?;
        match c.wait_final(timeout)? {
            Some(200..=299) => Ok(c),
            Some(_) => {
                let (status, reason) = c.final_status.clone().unwrap_or_default();
                Err(DemoError::Rejected { status, reason })
            }
            None => Err(DemoError::NoAnswer {
                secs: timeout.as_secs(),
                got: c.first_lines(),
            }),
        }
    }

    /// Send the INVITE from `local_ip` (any free port) and return at once. Its body is `sdp`
    /// when given (any text: a bad offer, or one naming another address), else a PCMU offer
    /// on the caller's RTP socket. The INVITE is retransmitted (RFC 3261 Timer A) while the
    /// caller waits: in [`DemoCaller::wait_final`] or any method that passes time.
    pub fn invite(
        proxy: SocketAddr,
        local_ip: IpAddr,
        name: &str,
        sdp: Option<String>,
    ) -> Result<DemoCaller, DemoError> {
        DemoCaller::invite_from(proxy, local_ip, name, sdp, None)
    }

    /// Like [`DemoCaller::invite`], from the caller ID `number` when given (no Privacy
    /// header: a caller with a number, passed through), withheld otherwise.
    pub fn invite_from(
        proxy: SocketAddr,
        local_ip: IpAddr,
        name: &str,
        sdp: Option<String>,
        number: Option<&str>,
    ) -> Result<DemoCaller, DemoError> {
        DemoCaller::invite_with(proxy, local_ip, name, sdp, number, "")
    }

    /// A withheld caller (`From: anonymous`, `Privacy: id`) whose network asserts its
    /// identity: `P-Asserted-Identity: <pai>` (RFC 3325).
    pub fn invite_asserted(
        proxy: SocketAddr,
        local_ip: IpAddr,
        name: &str,
        pai: &str,
    ) -> Result<DemoCaller, DemoError> {
        let extra = format!("P-Asserted-Identity: <{pai}>\r\n");
        DemoCaller::invite_with(proxy, local_ip, name, None, None, &extra)
    }

    fn invite_with(
        proxy: SocketAddr,
        local_ip: IpAddr,
        name: &str,
        sdp: Option<String>,
        number: Option<&str>,
        extra_headers: &str,
    ) -> Result<DemoCaller, DemoError> {
        let bind = |what: &str| {
            UdpSocket::bind((local_ip, 0)).map_err(|e| {
                DemoError::io(
                    format!("cannot bind the caller's {what} socket on {local_ip}"),
                    e,
                )
            })
        };
        let sip = bind("SIP")?;
        let rtp = bind("RTP")?;
        sip.set_read_timeout(Some(Duration::from_millis(2)))
            .map_err(|e| DemoError::io("socket option", e))?;
        rtp.set_nonblocking(true)
            .map_err(|e| DemoError::io("socket option", e))?;
        let local = sip
            .local_addr()
            .map_err(|e| DemoError::io("local address", e))?;
        let rtp_addr = rtp
            .local_addr()
            .map_err(|e| DemoError::io("local address", e))?;
        let tok = token();
        let call_id = format!("demo-{name}-{tok}@{local_ip}");
        let from_tag = format!("c{tok}");
        let body = sdp.unwrap_or_else(|| pcmu_sdp(rtp_addr));
        let branch = format!("z9hG4bK{}", token());
        let (from, privacy) = match number {
            Some(n) => (format!("<sip:{n}@{local_ip}>"), ""),
            None => (
                "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_string(),
                "Privacy: id\r\n",
            ),
        };
        let invite = format!(
            "INVITE sip:100@{proxy} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from};tag={from_tag}\r\n\
             To: <sip:100@{proxy}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:caller@{local}>\r\n{privacy}{extra_headers}User-Agent: scamscreen-demo\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let c = DemoCaller {
            sip,
            rtp,
            proxy,
            call_id,
            from_tag,
            from,
            to_tag: String::new(),
            target: String::new(),
            remote_rtp: None,
            log: Vec::new(),
            heard: Vec::new(),
            seq: 1,
            ts: 0,
            ssrc: 0x5ca0_0000 | (std::process::id() & 0xffff),
            next_packet: Instant::now(),
            got_bye: false,
            hung_up: false,
            final_status: None,
            invite,
            invite_branch: branch,
            resend: Some((Instant::now() + T1, T1)),
            bye: None,
        };
        c.send_sip(&c.invite)?;
        Ok(c)
    }

    /// Wait up to `timeout` for the final response to the INVITE and return its status
    /// (`None` when none came). A 2xx is ACKed and starts the media; an error is ACKed.
    pub fn wait_final(&mut self, timeout: Duration) -> Result<Option<u16>, DemoError> {
        let deadline = Instant::now() + timeout;
        while self.final_status.is_none() && Instant::now() < deadline {
            self.poll_sip()?;
        }
        self.next_packet = Instant::now();
        Ok(self.final_status.as_ref().map(|(code, _)| *code))
    }

    /// The Call-ID of the caller's leg (scamscreen's call records are keyed by it).
    /// The dialog as the caller knows it: Call-ID, its From tag, the To tag from the 200,
    /// and the remote target (the 200's Contact URI), for hand-made in-dialog requests.
    pub fn dialog(&self) -> (String, String, String, String) {
        (
            self.call_id.clone(),
            self.from_tag.clone(),
            self.to_tag.clone(),
            self.target.clone(),
        )
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Where the caller sends its media (scamscreen's SDP answer); `None` before a 2xx.
    pub fn remote_rtp(&self) -> Option<SocketAddr> {
        self.remote_rtp
    }

    /// Whether scamscreen hung up on the caller (sent a BYE).
    pub fn got_bye(&self) -> bool {
        self.got_bye
    }

    /// The SIP messages the caller received, in order.
    pub fn sip_log(&self) -> &[String] {
        &self.log
    }

    /// The audio the caller heard so far (8 kHz PCM; one sample per sample received).
    pub fn heard(&self) -> &[i16] {
        &self.heard
    }

    /// The audio the caller heard so far, which is then forgotten (to keep only what comes
    /// next, e.g. an announcement).
    pub fn take_heard(&mut self) -> Vec<i16> {
        std::mem::take(&mut self.heard)
    }

    /// Say `pcm` (8 kHz): 20 ms PCMU packets, paced in real time.
    pub fn speak(&mut self, pcm: &[i16]) -> Result<(), DemoError> {
        for frame in pcm.chunks(FRAME_SAMPLES) {
            self.send_frame(frame)?;
        }
        Ok(())
    }

    /// Key `digits` (RFC 4733 telephone-events, 160 ms per key and 100 ms of silence after
    /// each), paced in real time like speech.
    pub fn press(&mut self, digits: &str) -> Result<(), DemoError> {
        for d in digits.chars() {
            let ts = self.ts;
            for pkt in super::dtmf_packets(d, self.seq, ts, self.ssrc) {
                while Instant::now() < self.next_packet {
                    self.poll_sip()?;
                    self.drain_rtp();
                }
                self.next_packet += Duration::from_millis(20);
                if let Some(to) = self.remote_rtp {
                    let _ = self.rtp.send_to(&pkt, to);
                }
                self.seq = self.seq.wrapping_add(1);
            }
            self.ts = self.ts.wrapping_add(8 * FRAME_SAMPLES as u32);
            self.silence(100)?;
        }
        Ok(())
    }

    /// Send `ms` of silence.
    pub fn silence(&mut self, ms: u64) -> Result<(), DemoError> {
        let frames = ms.div_ceil(20);
        let quiet = [0i16; FRAME_SAMPLES];
        for _ in 0..frames {
            self.send_frame(&quiet)?;
        }
        Ok(())
    }

    /// Send silence until scamscreen hangs up or `timeout` passes; true when it hung up.
    pub fn wait_for_bye(&mut self, timeout: Duration) -> Result<bool, DemoError> {
        let deadline = Instant::now() + timeout;
        while !self.got_bye && Instant::now() < deadline {
            self.silence(100)?;
        }
        Ok(self.got_bye)
    }

    /// Send silence until `done()` holds or `timeout` passes; true when it held.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut() -> bool,
    ) -> Result<bool, DemoError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done() {
                return Ok(true);
            }
            if self.got_bye {
                return Ok(done());
            }
            self.silence(100)?;
        }
        Ok(done())
    }

    /// Send a BYE (once) and return at once, without waiting for its answer (see
    /// [`DemoCaller::bye_answered`]). Unlike [`DemoCaller::hang_up`] the caller keeps sending
    /// what it is told to say, as a phone whose last packets cross its BYE does.
    pub fn send_bye(&mut self) -> Result<(), DemoError> {
        if self.bye.is_some() || self.got_bye || self.remote_rtp.is_none() {
            return Ok(());
        }
        let bye = self.request("BYE", 2, &format!("z9hG4bK{}", token()));
        self.send_sip(&bye)?;
        self.bye = Some(bye);
        Ok(())
    }

    /// Whether the caller's BYE was answered with a 2xx.
    pub fn bye_answered(&self) -> bool {
        self.log.iter().any(|m| {
            status(m).is_some_and(|s| (200..300).contains(&s)) && cseq_method(m) == Some("BYE")
        })
    }

    /// Hang up with a BYE (unless scamscreen already did, or the call was never answered),
    /// stop sending media and wait up to 2 s for the BYE's final response.
    pub fn hang_up(&mut self) -> Result<(), DemoError> {
        if self.got_bye || self.hung_up || self.remote_rtp.is_none() {
            return Ok(());
        }
        self.hung_up = true;
        self.send_bye()?;
        let Some(bye) = self.bye.clone() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut resend = Instant::now() + T1;
        while Instant::now() < deadline {
            let answered = self
                .log
                .iter()
                .any(|m| status(m).is_some_and(|s| s >= 200) && cseq_method(m) == Some("BYE"));
            if answered {
                break;
            }
            if Instant::now() >= resend {
                self.send_sip(&bye)?;
                resend = Instant::now() + T1;
            }
            self.poll_sip()?;
            self.drain_rtp();
        }
        Ok(())
    }

    fn send_frame(&mut self, frame: &[i16]) -> Result<(), DemoError> {
        while Instant::now() < self.next_packet {
            self.poll_sip()?;
            self.drain_rtp();
        }
        self.next_packet += Duration::from_millis(20);
        // After a long stall (a slow machine), do not burst to catch up.
        if self.next_packet + Duration::from_millis(200) < Instant::now() {
            self.next_packet = Instant::now();
        }
        if self.got_bye || self.hung_up {
            return Ok(());
        }
        let Some(to) = self.remote_rtp else {
            return Ok(());
        };
        let pkt = rtp_packet(0, self.seq, self.ts, self.ssrc, &Codec::Pcmu.encode(frame));
        let _ = self.rtp.send_to(&pkt, to);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
        Ok(())
    }

    fn drain_rtp(&mut self) {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
            if let Some(pcm) = rtp_audio(&buf[..n]) {
                self.heard.extend(pcm);
            }
        }
    }

    fn send_sip(&self, msg: &str) -> Result<(), DemoError> {
        self.sip
            .send_to(msg.as_bytes(), self.proxy)
            .map(|_| ())
            .map_err(|e| DemoError::io(format!("cannot send SIP to {}", self.proxy), e))
    }

    /// Handle the SIP messages that arrived (waits up to 2 ms for the first), and retransmit
    /// the INVITE while it has no response.
    fn poll_sip(&mut self) -> Result<(), DemoError> {
        if let Some((at, interval)) = self.resend {
            if !self.log.is_empty() {
                self.resend = None;
            } else if Instant::now() >= at {
                self.send_sip(&self.invite)?;
                let next = (interval * 2).min(Duration::from_secs(4));
                self.resend = Some((Instant::now() + next, next));
            }
        }
        let mut buf = [0u8; 65535];
        while let Ok((n, from)) = self.sip.recv_from(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            self.log.push(msg.clone());
            match (status(&msg), method(&msg)) {
                (Some(code), _) if cseq_method(&msg) == Some("INVITE") => {
                    self.on_invite_response(code, &msg)?;
                }
                (Some(_), _) => {}
                (None, Some("BYE")) => {
                    self.got_bye = true;
                    let ok = response(&msg, 200, "OK", "") + "Content-Length: 0\r\n\r\n";
                    let _ = self.sip.send_to(ok.as_bytes(), from);
                }
                (None, Some("ACK")) => {}
                (None, Some(m)) => {
                    // Re-INVITE / UPDATE: keep the media as it is; anything else: 200.
                    let mut ok = response(&msg, 200, "OK", "");
                    if m == "INVITE" || m == "UPDATE" {
                        let addr = self
                            .rtp
                            .local_addr()
                            .map_err(|e| DemoError::io("local address", e))?;
                        let body = pcmu_sdp(addr);
                        ok.push_str(&format!(
                            "Contact: <sip:caller@{}>\r\nContent-Type: application/sdp\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            self.sip
                                .local_addr()
                                .map_err(|e| DemoError::io("local address", e))?,
                            body.len()
                        ));
                    } else {
                        ok.push_str("Content-Length: 0\r\n\r\n");
                    }
                    let _ = self.sip.send_to(ok.as_bytes(), from);
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    fn on_invite_response(&mut self, code: u16, msg: &str) -> Result<(), DemoError> {
        if code >= 200 && self.final_status.is_none() {
            let reason = msg
                .lines()
                .next()
                .and_then(|l| l.splitn(3, ' ').nth(2))
                .unwrap_or_default()
                .to_string();
            self.final_status = Some((code, reason));
        }
        match code {
            100..=199 => {}
            200..=299 => {
                if self.remote_rtp.is_none() {
                    self.remote_rtp = Some(sdp_media(msg).ok_or(DemoError::NoSdp)?);
                    let to = header(msg, "to").unwrap_or_default();
                    self.to_tag = to
                        .split(";tag=")
                        .nth(1)
                        .and_then(|t| t.split(';').next())
                        .unwrap_or_default()
                        .to_string();
                    self.target = header(msg, "contact")
                        .unwrap_or_default()
                        .trim_matches(['<', '>'])
                        .split('>')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                }
                // The 2xx ACK, for the 200 and each retransmission of it.
                let ack = self.request("ACK", 1, &format!("z9hG4bK{}", token()));
                self.send_sip(&ack)?;
            }
            _ => {
                // A final error: ACK it in the INVITE's transaction (RFC 3261 §17.1.1.3).
                let local = self
                    .sip
                    .local_addr()
                    .map_err(|e| DemoError::io("local address", e))?;
                let to = header(msg, "to").unwrap_or_default();
                let ack = format!(
                    "ACK sip:100@{} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {local};branch={};rport\r\nMax-Forwards: 70\r\n\
                     From: {};tag={}\r\n\
                     To: {to}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    self.proxy, self.invite_branch, self.from, self.from_tag, self.call_id
                );
                self.send_sip(&ack)?;
            }
        }
        Ok(())
    }

    /// An in-dialog request to scamscreen.
    fn request(&self, method: &str, cseq: u32, branch: &str) -> String {
        let local = self
            .sip
            .local_addr()
            .map_or_else(|_| "127.0.0.1".to_string(), |a| a.to_string());
        let target = if self.target.is_empty() {
            format!("sip:100@{}", self.proxy)
        } else {
            self.target.clone()
        };
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {};tag={}\r\n\
             To: <sip:100@{}>;tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            self.from, self.from_tag, self.proxy, self.to_tag, self.call_id
        )
    }

    fn first_lines(&self) -> String {
        if self.log.is_empty() {
            return "nothing".into();
        }
        self.log
            .iter()
            .filter_map(|m| m.lines().next())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for DemoCaller {
    fn drop(&mut self) {
        let _ = self.hang_up();
    }
}
