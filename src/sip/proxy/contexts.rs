//! Response contexts: CANCEL and responses matched to them, timers, draining a context's
//! transactions into transmissions, the 408 when the target never answers, and freeing
//! finished contexts.

use super::{build, server_key, ClientTx, Context, Peer, Proxy, ProxyEvent, Transmit};
use crate::sip::msg::SipMessage;
use crate::sip::transaction::{ClientNonInvite, TimerConfig, TxEvent};
use crate::sip::validate::{check_response, Facts, Reject};
use bytes::Bytes;
use std::cmp::Reverse;
use std::time::Instant;

impl Proxy {
    pub(super) fn handle_cancel(
        &mut self,
        now: Instant,
        from: Peer,
        msg: &SipMessage,
        facts: &Facts,
    ) {
        let invite_key = server_key(facts, "INVITE");
        let Some(&id) = self.by_server.get(&invite_key) else {
            // No INVITE to cancel (§16.10 would forward statelessly; the upstream could only
            // answer 481 too, so we answer it here and keep the upstream quiet).
            let r = Reject {
                status: 481,
                reason: "Call/Transaction Does Not Exist",
                detail: "CANCEL matches no INVITE".into(),
                headers: Vec::new(),
            };
            self.respond_stateless(msg, facts, from, &r);
            return;
        };
        // 200 to the CANCEL itself (§16.10), statelessly: a retransmitted CANCEL gets another.
        let via = super::response_via(facts, from);
        let ok = build::response_to(msg, 200, "OK", Some(&via), Some("ss-cancel"));
        self.send(self.reply_peer(facts, from), ok.to_bytes());
        self.stats.cancels += 1;
        if let Some(ctx) = self.contexts.get_mut(&id) {
            if ctx.final_sent || ctx.cancel.is_some() {
                return;
            }
            if ctx.provisional_seen {
                start_cancel(ctx, now, &self.cfg.timers);
            } else {
                // §9.1: a CANCEL may not be sent before a provisional response arrived.
                ctx.cancel_pending = true;
            }
        }
        self.mark(id, now);
    }

    pub(super) fn handle_response(&mut self, now: Instant, from: Peer, msg: SipMessage) {
        let Some(facts) = check_response(&msg) else {
            self.stats.invalid += 1;
            return;
        };
        // Responses to the call layer's own requests (its INVITE/BYE/CANCEL on either leg).
        let in_b = self.calls_b.get(&facts.call_id);
        if let Some(&call) = in_b.or_else(|| self.calls_a.get(&facts.call_id)) {
            let in_b = in_b.is_some();
            self.events.push_back(ProxyEvent::CallMessage {
                call,
                call_id: facts.call_id.clone(),
                from_upstream: in_b,
                msg,
                source: from,
            });
            return;
        }
        let top = facts.top_via();
        // Answers to our health probes are ours.
        if let Some(h) = &mut self.health {
            if top.branch().is_some_and(|b| h.on_response(b)) {
                self.health_actions(now);
                return;
            }
        }
        let ours = top.host == self.cfg.advertised_host
            && top.port.unwrap_or(5060) == self.cfg.advertised_port;
        let Some(&id) = top
            .branch()
            .and_then(|b| self.by_branch.get(b))
            .filter(|_| ours)
        else {
            self.stats.stray_responses += 1;
            return;
        };
        let status = msg.status().unwrap_or(0);
        let Some(ctx) = self.contexts.get_mut(&id) else {
            return;
        };
        if facts.cseq_method == "CANCEL" {
            if let Some(c) = &mut ctx.cancel {
                c.on_response(now, status);
            }
            self.mark(id, now);
            return;
        }
        let deliver = match &mut ctx.client {
            Some(ClientTx::Invite(tx)) => {
                let forwarded = ctx.forwarded.as_ref();
                tx.on_response(now, status, || match forwarded {
                    Some(f) => build::ack_for(f, &msg).to_bytes(),
                    None => Bytes::new(),
                })
            }
            Some(ClientTx::NonInvite(tx)) => tx.on_response(now, status),
            None => false,
        };
        if status >= 200 {
            // Once a final arrived there is nothing left to CANCEL.
            ctx.cancel_pending = false;
        }
        if (100..200).contains(&status) {
            ctx.provisional_seen = true;
            if ctx.cancel_pending {
                ctx.cancel_pending = false;
                start_cancel(ctx, now, &self.cfg.timers);
            }
        }
        if deliver && status != 100 {
            // §16.7: 100 is not forwarded; everything else goes up with our Via removed.
            let mut up = msg;
            up.remove_first_value("via");
            let bytes = up.to_bytes();
            ctx.server.send_response(now, status, bytes);
            if status >= 200 {
                ctx.final_sent = true;
            }
            self.stats.responses_relayed += 1;
            let class = usize::from(status / 100).clamp(1, 6) - 1;
            self.stats.responses_by_class[class] += 1;
        }
        self.mark(id, now);
    }

    /// Run expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.health_timeout(now);
        while let Some(Reverse((t, id))) = self.wakeups.peek().copied() {
            if t > now {
                break;
            }
            self.wakeups.pop();
            if let Some(ctx) = self.contexts.get_mut(&id) {
                if ctx.scheduled != Some(t) {
                    continue; // superseded by a newer wake-up
                }
                ctx.scheduled = None;
                ctx.server.handle_timeout(now);
                if let Some(c) = &mut ctx.client {
                    c.handle_timeout(now);
                }
                if let Some(c) = &mut ctx.cancel {
                    c.handle_timeout(now);
                }
                self.dirty.push(id);
            }
        }
        self.flush_all_dirty(now);
    }

    pub(super) fn mark(&mut self, id: u64, _now: Instant) {
        self.dirty.push(id);
    }

    /// Drain every touched context: transmissions, events (408 on client timeout), removal
    /// when all its transactions ended, and its next wake-up.
    pub(super) fn flush_all_dirty(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            self.flush(id, now);
        }
    }

    fn flush(&mut self, id: u64, now: Instant) {
        let Some(ctx) = self.contexts.get_mut(&id) else {
            return;
        };
        // Client events first: a timeout there produces a response on the server side.
        let mut client_timed_out = false;
        let mut client_transport_error = false;
        if let Some(tx) = &mut ctx.client {
            while let Some(ev) = tx.poll_event() {
                client_timed_out |= ev == TxEvent::Timeout;
                client_transport_error |= ev == TxEvent::TransportError;
            }
        }
        if (client_timed_out || client_transport_error) && !ctx.final_sent {
            // §16.7 step 2 / §16.8: the target never answered → 408 (503 if unreachable).
            let (status, reason) = if client_transport_error {
                (503, "Service Unavailable")
            } else {
                (408, "Request Timeout")
            };
            self.stats.upstream_timeouts += 1;
            let Some(received) = &ctx.received else {
                return;
            };
            let resp = build::response_to(
                received,
                status,
                reason,
                Some(&ctx.response_via),
                Some(&ctx.to_tag),
            );
            ctx.server.send_response(now, status, resp.to_bytes());
            ctx.final_sent = true;
        }
        let mut send_trying = false;
        while let Some(ev) = ctx.server.poll_event() {
            send_trying |= ev == TxEvent::SendTrying;
        }
        if let (true, Some(received)) = (send_trying, &ctx.received) {
            let trying = build::response_to(received, 100, "Trying", Some(&ctx.response_via), None);
            ctx.server.send_response(now, 100, trying.to_bytes());
        }
        if ctx.final_sent {
            ctx.received = None;
            ctx.forwarded = None;
        }
        // Answers to the sender go out before what we send onwards: 100 Trying first.
        let mut sends: Vec<(Peer, Bytes)> = Vec::new();
        while let Some(b) = ctx.server.poll_transmit() {
            sends.push((ctx.reply_to, b));
        }
        if let Some(tx) = &mut ctx.client {
            while let Some(b) = tx.poll_transmit() {
                sends.push((ctx.target, b));
            }
        }
        if let Some(c) = &mut ctx.cancel {
            while let Some(b) = c.poll_transmit() {
                sends.push((ctx.target, b));
            }
            while c.poll_event().is_some() {}
        }
        for (to, bytes) in sends {
            self.stats.sent += 1;
            self.out.push_back(Transmit { to, bytes });
        }
        let server_done = ctx.server.is_terminated();
        let client_done = ctx.client.as_ref().is_none_or(|c| c.is_terminated());
        let cancel_done = ctx.cancel.as_ref().is_none_or(|c| c.is_terminated());
        if server_done && client_done && cancel_done {
            let ctx = self.contexts.remove(&id);
            if let Some(ctx) = ctx {
                self.by_server.remove(&ctx.server_key);
                self.by_branch.remove(&ctx.branch);
            }
            return;
        }
        let next = [
            ctx.server.poll_timeout(),
            ctx.client.as_ref().and_then(|c| c.poll_timeout()),
            ctx.cancel.as_ref().and_then(|c| c.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(next) = next {
            if ctx.scheduled.is_none_or(|s| next < s || s <= now) {
                ctx.scheduled = Some(next);
                self.wakeups.push(Reverse((next, id)));
            }
        }
    }
}

pub(super) fn start_cancel(ctx: &mut Context, now: Instant, timers: &TimerConfig) {
    if let Some(f) = &ctx.forwarded {
        let cancel = build::cancel_for(f).to_bytes();
        ctx.cancel = Some(ClientNonInvite::new(
            now,
            cancel,
            ctx.target.transport.reliability(),
            timers,
        ));
    }
}
