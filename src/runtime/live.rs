//! What the running process looks like now, for the admin server: the SIP core publishes a
//! snapshot of its counters a few times a second (it owns them; readers never lock the core),
//! and says whether it is ready.

use crate::asr::AsrCapacity;
use crate::runtime::calls::CallStats;
use crate::runtime::door::DoorStats;
use crate::runtime::tcp_limits::TcpStats;
use crate::sip::proxy::ProxyStats;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// Whether scamscreen takes calls (`/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Loading the speech model and the rules; not listening for SIP yet.
    Loading = 0,
    Ready = 1,
    /// `when_unscreened = "503"` and the speech model cannot take another call in time.
    Saturated = 2,
    /// Stopping (SIGTERM): no new calls.
    Draining = 3,
    /// Device mode: the router holds no binding for us, so it cannot send us calls.
    Unregistered = 4,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Loading => "loading",
            Health::Ready => "ready",
            Health::Saturated => "saturated",
            Health::Draining => "draining",
            Health::Unregistered => "not registered",
        }
    }

    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Ready,
            2 => Health::Saturated,
            3 => Health::Draining,
            4 => Health::Unregistered,
            _ => Health::Loading,
        }
    }
}

/// The latest snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub proxy: ProxyStats,
    pub door: DoorStats,
    pub tcp: TcpStats,
    /// Accepted TCP connections open now.
    pub tcp_open: usize,
    pub calls: Option<CallStats>,
    pub asr: Option<AsrCapacity>,
    /// Whether the upstream answers (probes).
    pub upstream_up: bool,
    /// Device mode's registration.
    pub device: Option<crate::runtime::device::DeviceSnapshot>,
}

/// Shared between the core (writer) and the admin server (reader).
#[derive(Debug, Default)]
pub struct Live {
    health: AtomicU8,
    snapshot: Mutex<Snapshot>,
}

impl Live {
    pub fn new() -> Live {
        Live::default()
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    pub fn set_health(&self, h: Health) {
        self.health.store(h as u8, Ordering::Relaxed);
    }

    pub fn publish(&self, s: Snapshot) {
        if let Ok(mut g) = self.snapshot.lock() {
            *g = s;
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().map(|g| g.clone()).unwrap_or_default()
    }
}
