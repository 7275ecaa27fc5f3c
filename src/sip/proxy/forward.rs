//! Where a request goes and how (RFC 3261 §16.4–§16.6): only the upstream, or from the
//! upstream an IP-literal next hop inside the trusted networks; the Via and Record-Route
//! work of a forward, statelessly for ACKs of 2xx (§16.11) or through a response context.

use super::*;

impl Proxy {
    /// Is this request for us rather than for someone behind us? (OPTIONS health checks.)
    pub(super) fn addressed_to_us(&self, ruri: &Uri, msg: &SipMessage) -> bool {
        if !msg.header_values("route").is_empty() {
            return false;
        }
        if ruri.user.is_none() {
            return true;
        }
        ruri.host == self.cfg.advertised_host
            && ruri.port.unwrap_or(5060) == self.cfg.advertised_port
    }

    pub(super) fn route_is_us(&self, value: &str) -> bool {
        NameAddr::parse(value).is_ok_and(|n| {
            n.uri.host == self.cfg.advertised_host
                && n.uri.port.unwrap_or(5060) == self.cfg.advertised_port
        })
    }

    /// Pick the target (§16.5). From anyone but the upstream: the upstream, always. From
    /// the upstream: the next hop of the Route set or Request-URI, which must be an IP
    /// literal inside the trusted networks.
    pub(super) fn route(&self, from: Peer, msg: &SipMessage) -> Result<Peer, String> {
        if !self.is_upstream(from) {
            return Ok(Peer {
                addr: self.cfg.upstream,
                transport: self.cfg.upstream_transport,
                conn: None,
            });
        }
        let routes = msg.header_values("route");
        let next = routes
            .iter()
            .find(|r| !self.route_is_us(r))
            .and_then(|r| NameAddr::parse(r).ok().map(|n| n.uri))
            .or_else(|| msg.request_uri().and_then(|u| Uri::parse(u).ok()))
            .ok_or_else(|| "no next hop".to_string())?;
        let host = next.host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("next hop {} is not an IP address", next.host))?;
        if !self.is_trusted(ip) {
            return Err("next hop outside the trusted networks".into());
        }
        let transport = match next.param("transport").flatten() {
            Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
            _ => Transport::Udp,
        };
        Ok(Peer {
            addr: SocketAddr::new(ip, next.port.unwrap_or(5060)),
            transport,
            conn: None,
        })
    }

    /// Apply §16.6 steps 3–8 to a copy: Max-Forwards, Record-Route, our Route popped, Via.
    pub(super) fn prepare_forward(
        &self,
        msg: &mut SipMessage,
        facts: &Facts,
        branch: &str,
        target: Peer,
    ) {
        let mf = facts.max_forwards.map_or(70, |m| m.saturating_sub(1));
        msg.set_header("Max-Forwards", mf.to_string());
        if let Some(first) = msg.header_values("route").first() {
            if self.route_is_us(first) {
                msg.remove_first_value("route");
            }
        }
        let method = msg.method().unwrap_or_default().to_string();
        if self.cfg.record_route && creates_dialog(&method) && facts.to.tag().is_none() {
            let rr = match target.transport {
                Transport::Udp => format!(
                    "<sip:{}:{};lr>",
                    self.cfg.advertised_host, self.cfg.advertised_port
                ),
                Transport::Tcp => format!(
                    "<sip:{}:{};transport=tcp;lr>",
                    self.cfg.advertised_host, self.cfg.advertised_port
                ),
            };
            msg.insert_header_first("Record-Route", rr);
        }
        msg.insert_header_first(
            "Via",
            format!(
                "SIP/2.0/{} {}:{};branch={branch};rport",
                target.transport.via_name(),
                self.cfg.advertised_host,
                self.cfg.advertised_port
            ),
        );
    }

    pub(super) fn forward_stateless(
        &mut self,
        now: Instant,
        from: Peer,
        msg: SipMessage,
        facts: &Facts,
        _ruri: &Uri,
    ) {
        let target = match self.route(from, &msg) {
            Ok(t) => t,
            Err(detail) => {
                self.refuse(403, detail, from.addr);
                return;
            }
        };
        if facts.max_forwards == Some(0) {
            self.refuse(483, "Max-Forwards 0 (ACK)".into(), from.addr);
            return;
        }
        // A stateless branch must be the same for retransmissions (§16.11): derive it from
        // the incoming branch.
        let incoming = facts.top_via().branch().unwrap_or_default();
        let hash = build::loop_hash(&msg);
        let branch = format!(
            "{}-st-{}",
            crate::sip::via::MAGIC_COOKIE,
            short_hash(&format!("{incoming}{hash}"))
        );
        let mut fwd = msg;
        self.prepare_forward(&mut fwd, facts, &branch, target);
        self.stats.forwarded_stateless += 1;
        let _ = now;
        self.send(target, fwd.to_bytes());
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_stateful(
        &mut self,
        now: Instant,
        from: Peer,
        received: SipMessage,
        mut forwarded: SipMessage,
        facts: &Facts,
        key: ServerKey,
        hash: &str,
        target: Peer,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let branch = build::new_branch(hash, id);
        self.prepare_forward(&mut forwarded, facts, &branch, target);
        let bytes = forwarded.to_bytes();
        let timers = self.cfg.timers;
        let is_invite = received.method() == Some("INVITE");
        let server = if is_invite {
            ServerTx::Invite(ServerInvite::new(
                now,
                from.transport.reliability(),
                &timers,
            ))
        } else {
            ServerTx::NonInvite(ServerNonInvite::new(
                now,
                from.transport.reliability(),
                &timers,
            ))
        };
        let client = if is_invite {
            ClientTx::Invite(ClientInvite::new(
                now,
                bytes,
                target.transport.reliability(),
                &timers,
            ))
        } else {
            ClientTx::NonInvite(ClientNonInvite::new(
                now,
                bytes,
                target.transport.reliability(),
                &timers,
            ))
        };
        let response_via = response_via(facts, from);
        let trying = is_invite.then(|| {
            build::response_to(&received, 100, "Trying", Some(&response_via), None).to_bytes()
        });
        let mut ctx = Context {
            server,
            client: Some(client),
            cancel: None,
            response_via,
            reply_to: self.reply_peer(facts, from),
            received: Some(received),
            forwarded: Some(forwarded),
            target,
            server_key: key.clone(),
            branch: branch.clone(),
            provisional_seen: false,
            final_sent: false,
            cancel_pending: false,
            to_tag: format!("ss{id:x}"),
            scheduled: None,
        };
        if let Some(trying) = trying {
            // A proxy answers 100 Trying at once (§16.2), well within the 200 ms of §17.2.1.
            ctx.server.send_response(now, 100, trying);
        }
        self.stats.forwarded += 1;
        self.contexts.insert(id, ctx);
        self.by_server.insert(key, id);
        self.by_branch.insert(branch, id);
        self.mark(id, now);
    }
}

fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}
