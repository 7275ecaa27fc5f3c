//! The requests the peers send us, on either leg: the caller's on leg A and, once leg B is
//! up, the callee's (a BYE, a re-INVITE). Responses to the requests we send are `uac.rs`'s.
//!
//! Both legs are dialogs whose far ends we do not trust. Every request passes the UAS
//! core's checks in RFC 3261 order before it is acted on:
//!
//! ```text
//!  request ─▶ transaction (§17.2.3: branch + method) ── retransmission ─▶ same answer again
//!     │                                               └─ ACK of our non-2xx ─▶ absorbed
//!     ├─ no To tag (§8.2.2.2, §9.2): initial INVITE again ─▶ our 200 again (until ACK)
//!     │                              CANCEL of the initial INVITE ─▶ 200, no effect
//!     │                              another INVITE (merged / Call-ID reuse) ─▶ 482
//!     │                              anything else ─▶ 481
//!     ├─ dialog (§12.2.2): tags not this leg's, or leg hung up ─▶ 481 (not acted on)
//!     │                    CSeq lower than the peer's last ─▶ 500
//!     ├─ method (§8.2.1): PRACK, NOTIFY ─▶ 481; SUBSCRIBE, REFER, MESSAGE … ─▶ 405 + Allow;
//!     │                   unknown ─▶ 501
//!     ├─ Require (§8.2.2.3): an option tag we do not understand ─▶ 420 + Unsupported
//!     └─ act: BYE ─▶ 200 and hang up; re-INVITE / UPDATE ─▶ 200 with our SDP (RFC 4028
//!             refresh); OPTIONS ─▶ 200; INFO ─▶ 200 (469 for an Info Package, RFC 6086)
//! ```
//!
//! Answers to requests that are not in our dialogs (481, 482) go statelessly (§8.2.7), so
//! a forged request costs one datagram and no state; answers inside a dialog go through a
//! server transaction, so retransmissions get the same answer.
//!
//! The session timer (RFC 4028) is the peer's to refresh: each accepted refresh moves the
//! leg's `session_bye`, which `stage.rs` acts on when it passes.

use super::dialog::{
    accepted_session_expires, cseq_of, refusal_for_method, response_to, session_bye_after,
    session_timer_headers, tag_of, top_branch, Dialog, Refusal, ALLOWED_METHODS,
    SUPPORTED_EXTENSIONS,
};
use super::io::{Leg, Stage};
use super::stage::CallSession;
use super::verdict::CallOutcome;
use super::CallAction;
use crate::sip::msg::SipMessage;
use crate::sip::proxy::Peer;
use bytes::Bytes;
use std::time::Instant;

impl CallSession {
    pub(super) fn on_caller_message(&mut self, now: Instant, msg: SipMessage) {
        if msg.is_request() {
            self.on_request(now, Leg::A, msg);
        } else {
            // A response on leg A: to our BYE.
            self.response_to_request(now, Leg::A, &msg);
        }
    }

    /// A request from either peer, through the UAS core's checks in RFC 3261 order (see
    /// the module comment): transaction (§17.2.3), dialog (§8.2.2.2, §12.2.2), method
    /// (§8.2.1), Require (§8.2.2.3), then the method itself.
    pub(super) fn on_request(&mut self, now: Instant, leg: Leg, msg: SipMessage) {
        let method = msg.method().unwrap_or_default().to_string();
        let branch = top_branch(&msg).unwrap_or_default();
        if self.served.absorb(now, leg, &msg) {
            return;
        }
        if tag_of(&msg, "to").is_none() {
            self.on_request_without_to_tag(now, leg, &method, &branch, &msg);
            return;
        }
        let admitted = match (leg, &mut self.b) {
            (Leg::A, _) if self.a_hung_up => Err(Refusal::no_dialog()),
            (Leg::A, _) => self.a.admit_request(&msg),
            (Leg::B, Some(b)) => b.admit_request(&msg),
            (Leg::B, None) => Err(Refusal::no_dialog()),
        };
        if let Err(refusal) = admitted {
            // Not acted on. An ACK is never answered (§17.1.1.3).
            if method != "ACK" {
                self.refuse_statelessly(leg, &msg, &refusal);
            }
            return;
        }
        match method.as_str() {
            "ACK" => self.on_ack(leg, &msg),
            "CANCEL" => {
                // §9.2: a CANCEL inside a dialog is for a re-INVITE, which we answered at
                // once: 200, and no effect. One for no request of ours: 481.
                let known = self.served.answered_invite(leg, &branch);
                let resp = match known {
                    true => self.dialog(leg).map(|d| d.response(&msg, 200, "OK")),
                    false => self
                        .dialog(leg)
                        .map(|d| Refusal::no_dialog().response(&msg, &d.local_tag)),
                };
                if let Some(resp) = resp {
                    self.reply(now, leg, &msg, resp);
                }
            }
            _ => self.on_dialog_request(now, leg, &method, &msg),
        }
    }

    fn dialog(&self, leg: Leg) -> Option<&Dialog> {
        match leg {
            Leg::A => Some(&self.a),
            Leg::B => self.b.as_ref(),
        }
    }

    /// A request with no To tag on a Call-ID this call owns: only the initial INVITE's own
    /// transaction may lack it.
    fn on_request_without_to_tag(
        &mut self,
        now: Instant,
        leg: Leg,
        method: &str,
        branch: &str,
        msg: &SipMessage,
    ) {
        let initial = leg == Leg::A && !branch.is_empty() && branch == self.invite_branch;
        let cseq = cseq_of(msg).map(|c| c.0);
        match method {
            // Acknowledges nothing of ours (our responses all carry a To tag).
            "ACK" => {}
            "INVITE" if initial => {
                // The initial INVITE again: our 200 again while we still retransmit it
                // (§13.3.1.4); after its ACK the transaction is over and this is absorbed.
                let cseq = self.invite_cseq;
                if self.answers.awaits_ack(Leg::A, cseq) {
                    let bytes = self.invite_response.clone();
                    self.send(Leg::A, bytes);
                }
            }
            "CANCEL" if initial && cseq == Some(self.invite_cseq) => {
                // §9.2: the INVITE has its final response, so the CANCEL gets 200 and has
                // no effect on the call (the caller hangs up with BYE, §15).
                let ok = self.a.response(msg, 200, "OK");
                self.reply(now, leg, msg, ok);
            }
            // §8.2.2.2: the same request again by another path (same From tag, Call-ID and
            // CSeq, another branch) is a merged request. A new INVITE reusing this Call-ID
            // with another From tag would be a second dialog this call cannot host (one
            // call per Call-ID): refused the same way.
            "INVITE" => self.refuse_statelessly(leg, msg, &Refusal::new(482, "Loop Detected")),
            // §9.2, §12.2.2, §15.1.2: no transaction or dialog of ours matches.
            _ => self.refuse_statelessly(leg, msg, &Refusal::no_dialog()),
        }
    }

    /// An ACK in the dialog: the 2xx it acknowledges is no longer retransmitted.
    fn on_ack(&mut self, leg: Leg, msg: &SipMessage) {
        if let Some((cseq, _)) = cseq_of(msg) {
            self.answers.acked(leg, cseq);
        }
    }

    /// A request admitted into a leg's dialog (tags and CSeq checked).
    fn on_dialog_request(&mut self, now: Instant, leg: Leg, method: &str, msg: &SipMessage) {
        let Some(local_tag) = self.dialog(leg).map(|d| d.local_tag.clone()) else {
            return;
        };
        let refusal = refusal_for_method(msg);
        if let Some(refusal) = refusal {
            let resp = refusal.response(msg, &local_tag);
            self.reply(now, leg, msg, resp);
            return;
        }
        match method {
            "BYE" => self.on_bye(now, leg, msg),
            "INVITE" | "UPDATE" => self.accept_session_update(now, leg, msg),
            "OPTIONS" => {
                // §11.2: what we can do, in the dialog.
                if let Some(mut ok) = self.dialog(leg).map(|d| d.response(msg, 200, "OK")) {
                    ok.push_header("Allow", ALLOWED_METHODS);
                    ok.push_header("Accept", "application/sdp");
                    ok.push_header("Supported", SUPPORTED_EXTENSIONS);
                    self.reply(now, leg, msg, ok);
                }
            }
            _ => {
                // INFO. Legacy INFO (RFC 6086 §2: no Info-Package header; DTMF, keepalives)
                // is acknowledged with 200 and not relayed. An Info Package we never
                // declared in Recv-Info gets 469 with an empty Recv-Info (RFC 6086 §4.2.2).
                let resp = if msg.header("info-package").is_some() {
                    Refusal::new(469, "Bad Info Package")
                        .with("Recv-Info", "")
                        .response(msg, &local_tag)
                } else {
                    response_to(msg, 200, "OK", &local_tag)
                };
                self.reply(now, leg, msg, resp);
                // Legacy DTMF over INFO (application/dtmf-relay, application/dtmf).
                let content_type = msg.header("content-type").unwrap_or_default();
                if msg.header("info-package").is_none() {
                    if let Some(digit) =
                        crate::media::dtmf::parse_info_dtmf(content_type, msg.body())
                    {
                        self.on_dtmf(now, leg, digit);
                    }
                }
            }
        }
    }

    fn on_bye(&mut self, now: Instant, leg: Leg, msg: &SipMessage) {
        let Some(ok) = self.dialog(leg).map(|d| d.response(msg, 200, "OK")) else {
            return;
        };
        self.reply(now, leg, msg, ok);
        match leg {
            Leg::A => {
                self.a_hung_up = true;
                self.a_gone(now);
            }
            Leg::B => {
                self.b_answered = false;
                self.b = None;
                if !matches!(self.stage, Stage::Ending | Stage::Ended) {
                    let outcome = self.outcome.unwrap_or(CallOutcome::Connected);
                    self.hang_up(now, outcome);
                }
            }
        }
    }

    /// A re-INVITE or UPDATE (hold, a codec change, or only a session refresh, RFC 4028):
    /// the session stays as it is. A re-INVITE gets our current SDP (the answer to its
    /// offer, or our offer when it had none, §14.2); an UPDATE gets it only when it carried
    /// an offer (RFC 3311 §5.2). The session timer is settled again (RFC 4028 §9, see
    /// [`accepted_session_expires`]) and our 2xx to a re-INVITE is retransmitted until its
    /// ACK like the first one (§13.3.1.4).
    fn accept_session_update(&mut self, now: Instant, leg: Leg, msg: &SipMessage) {
        let is_invite = msg.method() == Some("INVITE");
        let sdp = match leg {
            Leg::A => sdp_of(&self.invite_response),
            Leg::B => Some(self.local_sdp_b.clone()),
        };
        let session_expires = accepted_session_expires(msg);
        let dialog = match leg {
            Leg::A => &mut self.a,
            Leg::B => match &mut self.b {
                Some(b) => b,
                None => return,
            },
        };
        dialog.refresh_target(msg);
        let mut ok = dialog.response(msg, 200, "OK");
        ok.push_header("Allow", ALLOWED_METHODS);
        ok.push_header("Supported", SUPPORTED_EXTENSIONS);
        for (name, value) in session_expires.into_iter().flat_map(session_timer_headers) {
            ok.push_header(name, value);
        }
        if is_invite || !msg.body().is_empty() {
            if let Some(sdp) = sdp {
                ok.push_header("Content-Type", "application/sdp");
                ok.set_body(sdp);
            }
        }
        *self.session_bye_mut(leg) = session_expires.map(|s| now + session_bye_after(s));
        let bytes = ok.to_bytes();
        if is_invite {
            let cseq = cseq_of(msg).map(|c| c.0).unwrap_or(0);
            self.answers.start(now, leg, cseq, bytes.clone());
        }
        self.reply_bytes(now, leg, msg, 200, bytes);
    }

    /// The session timer of a leg (RFC 4028 §10): when we hang up unless it is refreshed.
    fn session_bye_mut(&mut self, leg: Leg) -> &mut Option<Instant> {
        match leg {
            Leg::A => &mut self.session_bye[0],
            Leg::B => &mut self.session_bye[1],
        }
    }

    /// Our answer to a request, through a server transaction so its retransmissions get the
    /// same answer (§17.2; see [`ServedRequests`](super::dialog::ServedRequests)).
    fn reply(&mut self, now: Instant, leg: Leg, req: &SipMessage, resp: SipMessage) {
        let status = resp.status().unwrap_or(500);
        self.reply_bytes(now, leg, req, status, resp.to_bytes());
    }

    fn reply_bytes(&mut self, now: Instant, leg: Leg, req: &SipMessage, status: u16, bytes: Bytes) {
        let to = self.reply_peer(leg, req);
        self.served.answer(now, (leg, to), req, status, bytes);
        while let Some((to, bytes)) = self.served.poll_transmit() {
            self.actions.push_back(CallAction::Send { to, bytes });
        }
    }

    /// Where the answer to `req` goes: where it came from, per its top Via (RFC 3261
    /// §18.2.2, RFC 3581 §4), when the runtime said; else the leg's peer.
    fn reply_peer(&self, leg: Leg, req: &SipMessage) -> Peer {
        let via = req
            .header_values("via")
            .first()
            .and_then(|v| crate::sip::via::Via::parse(v).ok());
        match (self.request_source, via) {
            (Some(source), Some(via)) => crate::sip::proxy::reply_peer(&via, source),
            (Some(source), None) => source,
            _ => self.peer(leg),
        }
    }

    /// A refusal for a request that is not in our dialogs, sent once and forgotten
    /// (§8.2.7): a forged request costs one datagram and no state; its retransmissions are
    /// refused again the same way. It goes where the request came from (§18.2.2).
    fn refuse_statelessly(&mut self, leg: Leg, msg: &SipMessage, refusal: &Refusal) {
        let tag = format!("ss{:x}x", self.id);
        let bytes = refusal.response(msg, &tag).to_bytes();
        let to = self.reply_peer(leg, msg);
        self.actions.push_back(CallAction::Send { to, bytes });
    }
}

fn sdp_of(response: &Bytes) -> Option<Bytes> {
    let msg = SipMessage::parse(response).ok()?;
    let body = msg.body().clone();
    (!body.is_empty()).then_some(body)
}
