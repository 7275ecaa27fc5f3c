//! Device mode in the SIP core: the registration machine ([`crate::sip::register`]) on the
//! core's own UDP socket (so the router sends the screened calls to the address the core
//! listens on), its responses picked out before the proxy sees them, its state published
//! for `/healthz` and `/metrics`.

use crate::sip::msg::SipMessage;
use crate::sip::register::{Outgoing, RegEvent, Registration, RegistrationConfig};
use std::time::Instant;
use tracing::info;

/// What the admin server shows of the registration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceSnapshot {
    /// The router holds our binding now (calls can reach us).
    pub registered: bool,
    /// Registrations (and refreshes) the router accepted.
    pub registrations: u64,
    /// Attempts that failed (timeouts, refusals, rejected credentials).
    pub failures: u64,
    /// Why the last attempt failed, while it is the latest word.
    pub last_failure: Option<String>,
}

pub struct Device {
    reg: Registration,
    snapshot: DeviceSnapshot,
}

impl Device {
    pub fn new(cfg: RegistrationConfig, now: Instant) -> Device {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new()
            .hash_one((std::process::id(), std::time::SystemTime::now()));
        info!(
            registrar = %cfg.registrar,
            user = %cfg.aor_user,
            contact = %cfg.contact,
            "device mode: registering as an IP phone"
        );
        Device {
            reg: Registration::new(cfg, seed, now),
            snapshot: DeviceSnapshot::default(),
        }
    }

    /// Take `bytes` if they are a response to our REGISTER; the proxy gets everything else.
    pub fn takes(&mut self, bytes: &[u8], now: Instant) -> bool {
        if !bytes.starts_with(b"SIP/2.0 ") {
            return false;
        }
        let Ok(msg) = SipMessage::parse(bytes) else {
            return false;
        };
        self.reg.is_response_ours(&msg) && self.reg.handle_response(&msg, now)
    }

    /// ICMP says the router cannot be reached: fail the REGISTER out now rather than after
    /// Timer F (32 s), and retry on the back-off.
    pub fn unreachable(&mut self, now: Instant, addr: std::net::SocketAddr) {
        if addr == self.reg.config().registrar
            && self.reg.status() == crate::sip::register::RegStatus::Registering
        {
            self.reg.handle_transport_error(now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reg.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.reg.handle_timeout(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.reg.poll_transmit()
    }

    /// Log what happened and keep the snapshot current.
    pub fn events(&mut self, now: Instant) {
        while let Some(ev) = self.reg.poll_event() {
            match ev {
                // The machine logs registrations, failures and the un-REGISTER itself.
                RegEvent::Registered { .. } => {
                    self.snapshot.registrations += 1;
                    self.snapshot.last_failure = None;
                }
                RegEvent::Failed { reason, .. } => {
                    self.snapshot.failures += 1;
                    self.snapshot.last_failure = Some(reason.to_string());
                }
                RegEvent::BindingExpired | RegEvent::Unregistered { .. } => {}
            }
        }
        self.snapshot.registered = self.reg.bound_until().is_some_and(|t| t > now);
    }

    pub fn snapshot(&self) -> DeviceSnapshot {
        self.snapshot.clone()
    }

    /// Whether the un-REGISTER is done (answered, or given up).
    pub fn unregistered(&self) -> bool {
        self.reg.status() == crate::sip::register::RegStatus::Unregistered
    }

    /// Remove our binding (at shutdown): one un-REGISTER.
    pub fn unregister(&mut self, now: Instant) {
        self.reg.unregister(now);
    }
}
