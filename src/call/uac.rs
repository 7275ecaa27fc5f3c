//! Leg B, where we are the UAC: the INVITE to the callee (or the divert target) through
//! the upstream, its responses, and the requests we send on either leg to end a dialog
//! (BYE) or a ringing INVITE (CANCEL).
//!
//! ```text
//!  verdict ─▶ INVITE (X-Scamscreen-Verdict/Score/Reason) ─▶ upstream
//!     1xx ─▶ ringback on (100 aside); a CANCEL held back for it (§9.1) goes out instead
//!     2xx ─▶ ACK (every 2xx, §13.2.2.4); the first one answers the call (see `stage.rs`);
//!            one from another fork ─▶ ACK, then BYE once
//!     3xx-6xx ─▶ the call ends with the callee's status
//!  `ring_timeout` ─▶ CANCEL, and the call ends with 408; so does Timer B (no response)
//! ```
//!
//! Responses from the callee count only for the transaction they name (§17.1.3): our
//! INVITE by its branch, CSeq and From tag; a BYE or CANCEL by its branch and CSeq method.

use super::dialog::{cseq_of, tag_of, top_branch, Dialog};
use super::io::{CallAction, Leg, Stage};
use super::stage::CallSession;
use crate::sip::msg::SipMessage;
use crate::sip::transaction::{ClientInvite, ClientNonInvite};
use bytes::Bytes;
use std::time::Instant;

/// A request we sent (BYE, CANCEL) and its client transaction, matched by branch and CSeq
/// method (§17.1.3).
pub(super) struct SentRequest {
    pub(super) leg: Leg,
    branch: String,
    method: &'static str,
    pub(super) tx: ClientNonInvite,
}

impl CallSession {
    pub(super) fn call_b(
        &mut self,
        now: Instant,
        uri: &str,
        verdict: &str,
        score: f64,
        reason: &str,
    ) {
        let (contact, local, remote, uri) = match &self.cfg.device {
            // Device mode: as the registered device, to the house's number (or the divert
            // target), the verdict on the phones' displays.
            Some(d) => {
                let target = if self.diverted {
                    uri.to_string()
                } else {
                    d.callback_uri.clone()
                };
                self.b_auth = Some(crate::sip::digest::DigestClient::new(d.credentials.clone()));
                (
                    format!("<sip:{}@{}>", d.user, self.cfg.local_host),
                    format!("\"{}\" <{}>", device_label(verdict, score), d.aor),
                    format!("<{target}>"),
                    target,
                )
            }
            // Over TCP the PBX must send its in-dialog requests (BYE) back over TCP
            // (RFC 3261 §8.1.1.8, §18.1.1: the Contact's transport parameter).
            None => (
                match self.cfg.upstream.transport {
                    crate::sip::proxy::Transport::Tcp => {
                        format!("<sip:scamscreen@{};transport=tcp>", self.cfg.local_host)
                    }
                    crate::sip::proxy::Transport::Udp => {
                        format!("<sip:scamscreen@{}>", self.cfg.local_host)
                    }
                },
                NameAddrText::of(&self.original_from),
                NameAddrText::of(&self.original_to),
                uri.to_string(),
            ),
        };
        let uri = uri.as_str();
        let mut b = Dialog::new_uac(
            &format!("ss-{}-{:x}", self.a.call_id, self.id),
            &local,
            &format!("ss{:x}b", self.id),
            &remote,
            uri,
            self.cfg.upstream,
            &contact,
            &self.cfg.local_host,
        );
        let branch = self.branch();
        let mut invite = b.request("INVITE", &branch, None);
        invite.push_header("X-Scamscreen-Caller", "withheld");
        invite.push_header("X-Scamscreen-Verdict", verdict);
        invite.push_header("X-Scamscreen-Score", format!("{score:.2}"));
        invite.push_header("X-Scamscreen-Reason", reason.replace(['\r', '\n'], " "));
        invite.push_header("Content-Type", "application/sdp");
        invite.set_body(self.local_sdp_b.clone());
        self.b = Some(b);
        self.start_b_invite(now, invite);
        self.stage = Stage::CallingCallee;
        self.deadline = Some(now + self.cfg.ring_timeout);
    }

    pub(super) fn on_callee_message(&mut self, now: Instant, msg: SipMessage) {
        if msg.is_request() {
            self.on_request(now, Leg::B, msg);
            return;
        }
        let status = msg.status().unwrap_or(0);
        let Some((cseq, cseq_method)) = cseq_of(&msg) else {
            return;
        };
        if cseq_method != "INVITE" {
            self.response_to_request(now, Leg::B, &msg);
            return;
        }
        // Only responses to our INVITE count: its branch and CSeq (§17.1.3), our From tag.
        let Some(inv) = &self.b_invite_msg else {
            return;
        };
        let invite_cseq = cseq_of(inv).map(|c| c.0).unwrap_or(1);
        if top_branch(&msg) != top_branch(inv)
            || cseq != invite_cseq
            || tag_of(&msg, "from") != tag_of(inv, "from")
        {
            return;
        }
        let deliver = match &mut self.b_invite {
            Some(tx) => tx.on_response(now, status, || {
                crate::sip::proxy::ack_for_non_2xx(inv, &msg).to_bytes()
            }),
            // A 2xx retransmission after the transaction ended: ACK it again below.
            None => (200..300).contains(&status),
        };
        if !deliver {
            return;
        }
        match status {
            401 | 407
                if self.stage == Stage::CallingCallee && self.retry_with_credentials(now, &msg) => {
            }
            100..=199 if self.cancel_pending => {
                self.cancel_pending = false;
                self.cancel_b(now);
            }
            100 => {}
            101..=199 => {
                if !self.b_ringing && self.stage == Stage::CallingCallee {
                    self.b_ringing = true;
                    self.actions.push_back(CallAction::Ringback(true));
                }
            }
            200..=299 => {
                let first = !self.b_confirmed;
                let to_tag = tag_of(&msg, "to").unwrap_or_default();
                if !first && self.b.as_ref().is_some_and(|b| b.remote_tag != to_tag) {
                    self.end_fork(now, &msg, invite_cseq, to_tag);
                    return;
                }
                if let Some(b) = &mut self.b {
                    if first {
                        b.confirm_from_response(&msg);
                    }
                    // ACK for 2xx is the UAC core's, sent for every 2xx (§13.2.2.4).
                    let branch = format!("z9hG4bK-call{:x}-ack", self.id);
                    let ack = b.request("ACK", &branch, Some(invite_cseq)).to_bytes();
                    self.actions.push_back(CallAction::Send {
                        to: self.cfg.upstream,
                        bytes: ack,
                    });
                }
                if !first {
                    return;
                }
                self.b_confirmed = true;
                self.b_answered = true;
                self.deadline = None;
                if self.stage != Stage::CallingCallee {
                    // The caller left while the callee was being rung: hang up on B.
                    self.end_b(now);
                    return;
                }
                self.callee_answered(msg.body().clone());
            }
            _ => {
                // Busy, declined, not found…: the caller is already answered, so end it.
                self.b = None;
                if self.stage == Stage::CallingCallee {
                    self.callee_failed(now, status);
                }
            }
        }
    }

    /// A 2xx from another fork of our INVITE than the one we bridged: ACK it (every 2xx
    /// is ACKed) and hang it up once (§13.2.2.4).
    fn end_fork(&mut self, now: Instant, msg: &SipMessage, invite_cseq: u32, to_tag: String) {
        let Some(b) = &self.b else {
            return;
        };
        let mut fork = b.clone();
        fork.confirm_from_response(msg);
        let ack_branch = format!("z9hG4bK-call{:x}-ack", self.id);
        let ack = fork
            .request("ACK", &ack_branch, Some(invite_cseq))
            .to_bytes();
        self.send(Leg::B, ack);
        if self.ended_forks.contains(&to_tag) {
            return;
        }
        self.ended_forks.push(to_tag);
        let branch = self.branch();
        let bye = fork.request("BYE", &branch, None).to_bytes();
        self.push_request(now, Leg::B, branch, "BYE", bye);
    }

    /// A response to one of our BYEs or CANCELs: its branch and CSeq method name the
    /// transaction (§17.1.3); anything else is dropped.
    pub(super) fn response_to_request(&mut self, now: Instant, leg: Leg, msg: &SipMessage) {
        let status = msg.status().unwrap_or(0);
        let branch = top_branch(msg);
        let method = cseq_of(msg).map(|c| c.1);
        for r in &mut self.requests {
            if r.leg == leg
                && branch.as_deref() == Some(r.branch.as_str())
                && method.as_deref() == Some(r.method)
            {
                r.tx.on_response(now, status);
            }
        }
    }

    /// Stop ringing B (CANCEL) or hang up B (BYE), whichever applies.
    pub(super) fn cancel_b(&mut self, now: Instant) {
        use crate::sip::transaction::ClientInviteState as CI;
        if self.b_answered {
            return;
        }
        match self.b_invite.as_ref().map(|t| t.state()) {
            Some(CI::Proceeding) => {}
            Some(CI::Calling) => {
                // §9.1: no CANCEL before a provisional response; send it when one comes.
                self.cancel_pending = true;
                return;
            }
            _ => return, // already final: nothing to cancel
        }
        if self
            .requests
            .iter()
            .any(|r| r.leg == Leg::B && r.method == "CANCEL")
        {
            return; // one CANCEL is enough
        }
        if let Some(inv) = &self.b_invite_msg {
            if self.b_invite.is_some() {
                let cancel = crate::sip::proxy::cancel_for_invite(inv);
                let branch = top_branch(&cancel).unwrap_or_default();
                self.push_request(now, Leg::B, branch, "CANCEL", cancel.to_bytes());
            }
        }
    }

    pub(super) fn end_b(&mut self, now: Instant) {
        if self.b_answered {
            if let Some(b) = &mut self.b {
                self.branch_seq += 1;
                let branch = format!("z9hG4bK-call{:x}-{}", self.id, self.branch_seq);
                let bye = b.request("BYE", &branch, None).to_bytes();
                self.push_request(now, Leg::B, branch, "BYE", bye);
            }
            self.b_answered = false;
        } else {
            self.cancel_b(now);
        }
    }

    /// Device mode: the router challenged our INVITE (RFC 3261 §22.2): send it again in a
    /// new transaction, CSeq one higher, with the credentials. Once per nonce: a second
    /// challenge to the same credentials ends the call like any other failure.
    fn retry_with_credentials(&mut self, now: Instant, challenge: &SipMessage) -> bool {
        let Some(auth) = self.b_auth.as_mut() else {
            return false;
        };
        if let Err(e) = auth.on_challenge(challenge) {
            tracing::warn!(error = %e, "the router refused scamscreen's credentials for the call to the house");
            return false;
        }
        let Some(old) = self.b_invite_msg.clone() else {
            return false;
        };
        let branch = self.branch();
        let (Some(b), Some(auth)) = (self.b.as_mut(), self.b_auth.as_mut()) else {
            return false;
        };
        let mut invite = b.request("INVITE", &branch, None);
        for h in old.headers() {
            let n = h.name.to_ascii_lowercase();
            if n.starts_with("x-scamscreen-") || n == "content-type" {
                invite.push_header(&h.name, h.value.clone());
            }
        }
        invite.set_body(old.body().clone());
        let uri = invite.request_uri().unwrap_or_default().to_string();
        let cnonce = format!("{:08x}{}", self.id, branch.len() as u32 + self.branch_seq);
        if let Some((name, value)) = auth.authorization("INVITE", &uri, &cnonce) {
            invite.push_header(name, value);
        }
        self.start_b_invite(now, invite);
        true
    }

    /// Leg B's INVITE on its way: a new client transaction (RFC 3261 §17.1.1), the message
    /// kept for a retry with credentials.
    fn start_b_invite(&mut self, now: Instant, invite: SipMessage) {
        let reliability = self.reliability(Leg::B);
        self.b_invite = Some(ClientInvite::new(
            now,
            invite.to_bytes(),
            reliability,
            &self.cfg.timers,
        ));
        self.b_invite_msg = Some(invite);
    }

    pub(super) fn push_request(
        &mut self,
        now: Instant,
        leg: Leg,
        branch: String,
        method: &'static str,
        bytes: Bytes,
    ) {
        let reliability = self.reliability(leg);
        self.requests.push(SentRequest {
            leg,
            branch,
            method,
            tx: ClientNonInvite::new(now, bytes, reliability, &self.cfg.timers),
        });
    }
}

/// The display name of leg B in device mode: what the house's phones show.
fn device_label(verdict: &str, score: f64) -> String {
    match verdict {
        "allow" => "Screened caller".to_string(),
        "warn" => format!("SCAM WARNING {score:.2}"),
        "divert" => format!("SCAM {score:.2}"),
        "unscreened" => "Unscreened caller".to_string(),
        "silent" => "Silent caller".to_string(),
        "bypass" => "Caller with code".to_string(),
        other => format!("Caller ({other})"),
    }
}

/// `"Display" <uri>` without header parameters (the tag is ours to choose).
struct NameAddrText;

impl NameAddrText {
    fn of(value: &str) -> String {
        match crate::sip::uri::NameAddr::parse(value) {
            Ok(n) => match n.display {
                Some(d) => format!("\"{}\" <{}>", d.replace('"', ""), n.uri_text),
                None => format!("<{}>", n.uri_text),
            },
            Err(_) => "<sip:anonymous@anonymous.invalid>".to_string(),
        }
    }
}
