//! Requests arriving at the proxy (RFC 3261 §16.3): limits and validation, the call layer's
//! own dialogs, ACK and retransmissions, CANCEL, shedding and refusals of new calls,
//! Max-Forwards and loops, our own OPTIONS answer, and the classification of new INVITEs
//! (screen, pass, deny) before anything is forwarded.

use super::*;

impl Proxy {
    pub(super) fn respond_stateless(
        &mut self,
        msg: &SipMessage,
        facts: &Facts,
        from: Peer,
        reject: &Reject,
    ) {
        let via = response_via(facts, from);
        self.send_reject(msg, &via, self.reply_peer(facts, from), reject);
    }

    /// A refusal without a transaction (§8.2.6, §16.3): `via` is the top Via with our
    /// `received`/`rport`, `to` where the answer goes.
    fn send_reject(&mut self, msg: &SipMessage, via: &str, to: Peer, reject: &Reject) {
        let mut resp =
            build::response_to(msg, reject.status, reject.reason, Some(via), Some("ss-err"));
        for (n, v) in &reject.headers {
            resp.push_header(n, v.clone());
        }
        self.send(to, resp.to_bytes());
    }

    /// A header field too long or too many of them: what to say (`None`: fine). An
    /// oversized Via is not echoed back in an answer (`Err(None)`: drop).
    pub(super) fn check_limits(&self, msg: &SipMessage) -> Result<(), Option<Reject>> {
        let l = &self.cfg.limits;
        if msg.headers().len() > l.headers {
            return Err(Some(Reject {
                status: 400,
                reason: "Bad Request",
                detail: format!(
                    "{} header fields (at most {})",
                    msg.headers().len(),
                    l.headers
                ),
                headers: Vec::new(),
            }));
        }
        if let Some(h) = msg
            .headers()
            .iter()
            .find(|h| h.name.len() + h.value.len() > l.header_bytes)
        {
            if h.key == "via" {
                return Err(None);
            }
            return Err(Some(Reject {
                status: 400,
                reason: "Bad Request",
                detail: format!(
                    "header {} of {} bytes (at most {})",
                    h.key,
                    h.name.len() + h.value.len(),
                    l.header_bytes
                ),
                headers: Vec::new(),
            }));
        }
        Ok(())
    }

    pub(super) fn handle_request(&mut self, now: Instant, from: Peer, msg: SipMessage) {
        let method = msg.method().unwrap_or_default().to_string();
        if let Err(reject) = self.check_limits(&msg) {
            self.stats.too_large += 1;
            match reject {
                Some(r) => {
                    if method != "ACK" {
                        if let Some(via_text) = msg.header_values("via").first() {
                            self.respond_to_invalid(&msg, via_text, from, &r);
                        }
                    }
                    self.refuse(r.status, r.detail, from.addr);
                }
                None => self.refuse(400, "oversized Via: dropped".into(), from.addr),
            }
            return;
        }
        let (facts, ruri) = match check_request(&msg) {
            Ok(v) => v,
            Err(reject) => {
                self.stats.invalid += 1;
                // Without a usable Via there is nobody to answer; ACKs are never answered.
                if method != "ACK" {
                    if let Some(via_text) = msg.header_values("via").first() {
                        self.respond_to_invalid(&msg, via_text, from, &reject);
                    }
                }
                self.refuse(reject.status, reject.detail, from.addr);
                return;
            }
        };
        // Messages of calls the call layer owns go there, not through a proxy transaction.
        if let Some(call_id) = msg.header("call-id").map(str::to_string) {
            if let Some((call, leg_b)) = self.call_of_request(&call_id, from) {
                self.events.push_back(ProxyEvent::CallMessage {
                    call,
                    call_id,
                    from_upstream: leg_b,
                    msg,
                    source: from,
                });
                return;
            }
        }
        let key = server_key(&facts, &method);

        if method == "ACK" {
            self.on_ack(now, from, msg, &facts, &ruri, &key);
            return;
        }

        if let Some(&id) = self.by_server.get(&key) {
            // A retransmission: the server transaction replays its last response.
            self.stats.retransmissions_in += 1;
            if let Some(ctx) = self.contexts.get_mut(&id) {
                match &mut ctx.server {
                    ServerTx::Invite(tx) => tx.on_request_retransmission(now),
                    ServerTx::NonInvite(tx) => tx.on_request_retransmission(now),
                }
            }
            self.mark(id, now);
            return;
        }

        if method == "CANCEL" {
            self.handle_cancel(now, from, &msg, &facts);
            return;
        }

        if self.refused_as_new(&method, &msg, &facts, from) {
            return;
        }
        // Max-Forwards (§16.3 step 3); OPTIONS may be answered by us instead (§16.3, §11.2).
        let to_us = self.addressed_to_us(&ruri, &msg);
        let hash = build::loop_hash(&msg);
        if let Some(r) = self.hop_problem(&method, to_us, &facts, &hash) {
            self.respond_stateless(&msg, &facts, from, &r);
            self.refuse(r.status, r.detail, from.addr);
            return;
        }
        if method == "OPTIONS" && to_us {
            self.answer_options(&msg, &facts, from);
            return;
        }
        if self.cfg.device_mode
            && self.cfg.screen_calls
            && method == "INVITE"
            && facts.to.tag().is_none()
            && self.is_upstream(from)
        {
            self.screen_for_device(msg, &facts, from);
            return;
        }

        let target = match self.route(from, &msg) {
            Ok(t) => t,
            Err(detail) => {
                let r = Reject {
                    status: 403,
                    reason: "Forbidden",
                    detail,
                    headers: Vec::new(),
                };
                self.respond_stateless(&msg, &facts, from, &r);
                self.refuse(403, r.detail, from.addr);
                return;
            }
        };
        let mut forwarded = msg.clone();
        if !self.is_upstream(from) {
            self.sanitize_from_trunk(&mut forwarded, &facts);
        }
        // New calls from the trunk side: who is calling? (§ "Who is withheld" in DESIGN.md)
        if method == "INVITE" && facts.to.tag().is_none() && !self.is_upstream(from) {
            let Some(marked) = self.classify_from_trunk(&msg, &facts, from, forwarded) else {
                return;
            };
            forwarded = marked;
        }
        self.forward_stateful(now, from, msg, forwarded, &facts, key, &hash, target);
    }

    /// An ACK (§17.2.1, §16.11): the one for a rejection we sent without a transaction ends
    /// here; one for our non-2xx final is absorbed by the INVITE server transaction; one for
    /// a 2xx is a transaction of its own, forwarded statelessly.
    fn on_ack(
        &mut self,
        now: Instant,
        from: Peer,
        msg: SipMessage,
        facts: &Facts,
        ruri: &Uri,
        key: &ServerKey,
    ) {
        if facts.to.tag().is_some_and(|t| STATELESS_TAGS.contains(&t)) {
            self.stats.acks_absorbed += 1;
            return;
        }
        if let Some(&id) = self.by_server.get(key) {
            if let Some(ctx) = self.contexts.get_mut(&id) {
                if let ServerTx::Invite(tx) = &mut ctx.server {
                    let pass_up = tx.on_ack(now);
                    if !pass_up {
                        self.mark(id, now);
                        return;
                    }
                }
            }
        }
        self.forward_stateless(now, from, msg, facts, ruri);
    }

    /// A new request refused before it costs anything (answered here; `true`): while the
    /// core is behind (overload::Shedder) any new request; while shutting down, or from the
    /// trunk while the PBX does not answer, a new INVITE (said now, before anyone answers
    /// and bills the call, not with 408 after 32 s). Requests inside dialogs still pass
    /// (RFC 3261 §21.5.4).
    fn refused_as_new(
        &mut self,
        method: &str,
        msg: &SipMessage,
        facts: &Facts,
        from: Peer,
    ) -> bool {
        if facts.to.tag().is_some() {
            return false;
        }
        if self.shedding {
            self.stats.shed += 1;
            let resp = overload::shed_response(msg, facts, from);
            self.send(self.reply_peer(facts, from), resp.to_bytes());
            self.refuse(503, "overloaded".into(), from.addr);
            return true;
        }
        if method != "INVITE" {
            return false;
        }
        let why = if self.draining {
            self.stats.refused_draining += 1;
            "shutting down"
        } else if !self.is_upstream(from) && !self.upstream_up() {
            self.stats.refused_upstream_down += 1;
            "upstream not answering"
        } else {
            return false;
        };
        let r = Reject {
            status: 503,
            reason: "Service Unavailable",
            detail: why.into(),
            headers: vec![("Retry-After", RETRY_AFTER_SECS.to_string())],
        };
        self.respond_stateless(msg, facts, from, &r);
        self.refuse(503, r.detail, from.addr);
        true
    }

    /// Max-Forwards exhausted (483, §16.3 step 3; not for an OPTIONS to us, §11.2) or the
    /// request came back to us unchanged (482, §16.3 step 4).
    fn hop_problem(&self, method: &str, to_us: bool, facts: &Facts, hash: &str) -> Option<Reject> {
        if facts.max_forwards == Some(0) && !(method == "OPTIONS" && to_us) {
            return Some(Reject {
                status: 483,
                reason: "Too Many Hops",
                detail: "Max-Forwards 0".into(),
                headers: Vec::new(),
            });
        }
        let looped = facts.vias.iter().any(|v| {
            build::via_is_our_loop(v, &self.cfg.advertised_host, self.cfg.advertised_port, hash)
        });
        looped.then(|| Reject {
            status: 482,
            reason: "Loop Detected",
            detail: "request came back unchanged".into(),
            headers: Vec::new(),
        })
    }

    /// An OPTIONS for us (a health probe, §11.2): 200 with what we allow, or 503 while we
    /// cannot screen or are shutting down.
    fn answer_options(&mut self, msg: &SipMessage, facts: &Facts, from: Peer) {
        self.stats.options_answered += 1;
        let via = response_via(facts, from);
        if let Some(why) = self.unavailable {
            // A dispatcher's probe (Kamailio dispatcher, OpenSIPS) takes this node out
            // while it cannot screen or is shutting down (RFC 3261 §21.5.4).
            let mut resp = build::response_to(
                msg,
                503,
                "Service Unavailable",
                Some(&via),
                Some("ss-options"),
            );
            resp.push_header("Retry-After", RETRY_AFTER_SECS.to_string());
            resp.push_header("Warning", format!("399 scamscreen \"{why}\""));
            self.send(self.reply_peer(facts, from), resp.to_bytes());
            return;
        }
        let mut resp = build::response_to(msg, 200, "OK", Some(&via), Some("ss-options"));
        resp.push_header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, REFER, NOTIFY, SUBSCRIBE, MESSAGE");
        resp.push_header("Accept", "application/sdp");
        self.send(self.reply_peer(facts, from), resp.to_bytes());
    }

    /// Device mode: a new call from the router is for this device. Screen it (unless the
    /// deny list refuses it); there is nowhere to route it but back to the router.
    fn screen_for_device(&mut self, msg: SipMessage, facts: &Facts, from: Peer) {
        let id = caller_identity(&msg, facts, true);
        let mut classification = classify_caller(&id, &self.cfg.classify);
        self.events.push_back(ProxyEvent::CallClassified {
            call_id: facts.call_id.clone(),
            classification: classification.clone(),
        });
        if classification.class == CallerClass::Deny {
            self.decline(&msg, facts, from, &classification.reason);
            return;
        }
        if classification.class != CallerClass::Screen {
            classification.reason = format!("sent by the router ({})", classification.reason);
        }
        classification.class = CallerClass::Screen;
        self.stats.calls_screened += 1;
        self.events.push_back(ProxyEvent::ScreenCall {
            invite: msg,
            source: from,
            classification,
        });
    }

    /// What a request from the trunk side may not carry on: `X-Scamscreen-*` headers (only
    /// scamscreen may tell the PBX what it found) and, on a new request, Route entries that
    /// are not ours.
    fn sanitize_from_trunk(&mut self, forwarded: &mut SipMessage, facts: &Facts) {
        // Only scamscreen may tell the PBX what it found: a caller's own
        // `X-Scamscreen-Verdict: allow` would otherwise reach a dialplan that trusts it.
        let removed = strip_own_headers(forwarded);
        self.stats.spoofed_headers_removed += removed as u64;
        // A new request from the trunk side goes to the PBX and nowhere else: a
        // pre-loaded Route (to a foreign host) must not steer the PBX (RFC 3261 §16.4
        // lets a proxy drop what it does not honour; only ours, popped later, counts).
        if facts.to.tag().is_none() {
            let foreign: Vec<String> = forwarded
                .header_values("route")
                .iter()
                .filter(|r| !self.route_is_us(r))
                .map(|r| r.to_string())
                .collect();
            if !foreign.is_empty() {
                let ours: Vec<String> = forwarded
                    .header_values("route")
                    .iter()
                    .filter(|r| self.route_is_us(r))
                    .map(|r| r.to_string())
                    .collect();
                forwarded.remove_header("route");
                for r in ours {
                    forwarded.push_header("Route", r);
                }
                self.stats.routes_stripped += foreign.len() as u64;
            }
        }
    }

    /// A new INVITE from the trunk side: who is calling? (§ "Who is withheld" in DESIGN.md.)
    /// Denied (603) or handed to the call layer for screening: `None`; else the request to
    /// forward, marked for the PBX where screening is skipped or only marks.
    fn classify_from_trunk(
        &mut self,
        msg: &SipMessage,
        facts: &Facts,
        from: Peer,
        mut forwarded: SipMessage,
    ) -> Option<SipMessage> {
        let id = caller_identity(msg, facts, true);
        let classification = classify_caller(&id, &self.cfg.classify);
        self.events.push_back(ProxyEvent::CallClassified {
            call_id: facts.call_id.clone(),
            classification: classification.clone(),
        });
        match classification.class {
            CallerClass::Deny => {
                self.decline(msg, facts, from, &classification.reason);
                return None;
            }
            CallerClass::Screen
                if self
                    .cfg
                    .skip_screening_from
                    .iter()
                    .any(|n| n.contains(&from.addr.ip())) =>
            {
                self.stats.calls_passed += 1;
                forwarded.push_header("X-Scamscreen-Caller", "withheld");
                forwarded.push_header("X-Scamscreen-Verdict", "skipped");
                forwarded.push_header(
                    "X-Scamscreen-Reason",
                    "screening skipped for this source (screening.skip_from)",
                );
            }
            CallerClass::Screen if self.cfg.screen_calls => {
                self.stats.calls_screened += 1;
                self.events.push_back(ProxyEvent::ScreenCall {
                    invite: msg.clone(),
                    source: from,
                    classification,
                });
                return None;
            }
            CallerClass::Screen => {
                self.stats.calls_screened += 1;
                // Until the call layer answers screened calls itself, mark them.
                let caller = if classification.withheld {
                    "withheld"
                } else {
                    "unknown"
                };
                forwarded.push_header("X-Scamscreen-Caller", caller);
                forwarded.push_header("X-Scamscreen-Reason", classification.reason.clone());
            }
            CallerClass::PassThrough => self.stats.calls_passed += 1,
        }
        Some(forwarded)
    }

    /// A caller on the deny list: 603 Decline, statelessly.
    pub(super) fn decline(&mut self, msg: &SipMessage, facts: &Facts, from: Peer, why: &str) {
        self.stats.calls_denied += 1;
        let r = Reject {
            status: 603,
            reason: "Decline",
            detail: why.to_string(),
            headers: Vec::new(),
        };
        self.respond_stateless(msg, facts, from, &r);
        self.refuse(603, r.detail, from.addr);
    }

    pub(super) fn respond_to_invalid(
        &mut self,
        msg: &SipMessage,
        via_text: &str,
        from: Peer,
        reject: &Reject,
    ) {
        // The Via may itself be what is broken: answer the packet's source then.
        let (via_value, to) = match Via::parse(via_text) {
            Ok(v) => {
                let port = if v.param("rport").is_some() || from.transport == Transport::Tcp {
                    from.addr.port()
                } else {
                    v.port.unwrap_or(5060)
                };
                let mut v2 = v.clone();
                v2.set_param("received", Some(from.addr.ip().to_string()));
                let to = if from.transport == Transport::Tcp {
                    from
                } else {
                    Peer::udp(SocketAddr::new(from.addr.ip(), port))
                };
                (v2.to_header_value(), to)
            }
            Err(_) => (via_text.to_string(), from),
        };
        self.send_reject(msg, &via_value, to, reject);
    }
}
