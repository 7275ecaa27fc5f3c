//! What a TCP peer may hold: only trusted sources get a connection at all (the trust check
//! is made at accept, before a byte is read), each source at most `per_source` connections
//! and everyone together at most `total`, and a connection that sits idle or dribbles a
//! message too slowly is closed. Without these, idle connections from any address up to the
//! file-descriptor limit left no descriptor for the RTP sockets of a screened call (every
//! withheld call got 503, issue 13). Anchors: Kamailio's `tcp_max_connections`,
//! `tcp_connection_lifetime` and its read timeouts.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Limits for accepted TCP connections.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    /// Sources allowed to connect at all (the proxy's trusted networks).
    pub trusted: Vec<IpNet>,
    /// Connections one source address may hold at once.
    pub per_source: usize,
    /// Accepted connections at once, all sources together.
    pub total: usize,
    /// A connection with nothing in flight is closed after this long without a byte.
    pub idle: Duration,
    /// A message begun must be complete (headers and body) within this long.
    pub message: Duration,
}

impl TcpLimits {
    /// Defaults sized for a PBX's trunk: a few connections per SBC address, a thousand in all.
    pub fn new(trusted: Vec<IpNet>, idle: Duration) -> TcpLimits {
        TcpLimits {
            trusted,
            per_source: DEFAULT_PER_SOURCE,
            total: DEFAULT_TOTAL,
            idle,
            message: DEFAULT_MESSAGE,
        }
    }
}

pub const DEFAULT_PER_SOURCE: usize = 32;
pub const DEFAULT_TOTAL: usize = 1024;
pub const DEFAULT_MESSAGE: Duration = Duration::from_secs(10);

/// Why a connection was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Untrusted,
    SourceFull,
    AllFull,
}

/// Counters of refused and timed-out connections.
#[derive(Debug, Default)]
pub struct TcpCounters {
    pub refused_untrusted: AtomicU64,
    pub refused_over_cap: AtomicU64,
    pub closed_idle: AtomicU64,
    pub closed_slow: AtomicU64,
}

impl TcpCounters {
    pub fn snapshot(&self) -> TcpStats {
        TcpStats {
            tcp_refused_untrusted: self.refused_untrusted.load(Ordering::Relaxed),
            tcp_refused_over_cap: self.refused_over_cap.load(Ordering::Relaxed),
            tcp_closed_idle: self.closed_idle.load(Ordering::Relaxed),
            tcp_closed_slow: self.closed_slow.load(Ordering::Relaxed),
        }
    }
}

/// The counters at one moment (part of the shutdown stats line).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TcpStats {
    pub tcp_refused_untrusted: u64,
    pub tcp_refused_over_cap: u64,
    pub tcp_closed_idle: u64,
    pub tcp_closed_slow: u64,
}

/// The accepted connections now, by source.
#[derive(Debug)]
pub struct ConnTable {
    limits: TcpLimits,
    held: Mutex<Held>,
    pub counters: TcpCounters,
}

#[derive(Debug, Default)]
struct Held {
    by_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// One accepted connection's place in the table; given back when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    table: Arc<ConnTable>,
    ip: IpAddr,
}

impl ConnTable {
    pub fn new(limits: TcpLimits) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            limits,
            held: Mutex::new(Held::default()),
            counters: TcpCounters::default(),
        })
    }

    pub fn limits(&self) -> &TcpLimits {
        &self.limits
    }

    /// A place for a new connection from `ip`, or why not (counted).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refusal> {
        let ip = ip.to_canonical();
        if !self.limits.trusted.iter().any(|n| n.contains(&ip)) {
            self.counters
                .refused_untrusted
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Untrusted);
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.total >= self.limits.total {
            self.counters
                .refused_over_cap
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::AllFull);
        }
        let n = held.by_source.entry(ip).or_insert(0);
        if *n >= self.limits.per_source {
            self.counters
                .refused_over_cap
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::SourceFull);
        }
        *n += 1;
        held.total += 1;
        Ok(ConnSlot {
            table: self.clone(),
            ip,
        })
    }

    /// Connections held now (all sources, and from `ip`).
    pub fn held(&self, ip: IpAddr) -> (usize, usize) {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        (
            held.total,
            held.by_source.get(&ip.to_canonical()).copied().unwrap_or(0),
        )
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut held = self.table.held.lock().unwrap_or_else(|p| p.into_inner());
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_source.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.by_source.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(per_source: usize, total: usize) -> Arc<ConnTable> {
        let mut l = TcpLimits::new(
            vec!["10.0.0.0/8".parse().unwrap()],
            Duration::from_secs(300),
        );
        l.per_source = per_source;
        l.total = total;
        ConnTable::new(l)
    }

    #[test]
    fn untrusted_sources_get_no_connection() {
        let t = table(4, 8);
        assert_eq!(
            t.admit("192.0.2.1".parse().unwrap()).err(),
            Some(Refusal::Untrusted)
        );
        assert_eq!(t.held("192.0.2.1".parse().unwrap()), (0, 0));
        assert_eq!(t.counters.snapshot().tcp_refused_untrusted, 1);
        // A v4-mapped trusted address is the trusted address.
        assert!(t.admit("::ffff:10.1.2.3".parse().unwrap()).is_ok());
    }

    #[test]
    fn caps_per_source_and_in_total_and_slots_come_back() {
        let t = table(2, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = t.admit(a).unwrap();
        let _s2 = t.admit(a).unwrap();
        assert_eq!(t.admit(a).err(), Some(Refusal::SourceFull));
        let _s3 = t.admit(b).unwrap();
        assert_eq!(t.admit(b).err(), Some(Refusal::AllFull));
        assert_eq!(t.held(a), (3, 2));
        drop(s1);
        assert_eq!(t.held(a), (2, 1));
        assert!(t.admit(b).is_ok());
        assert_eq!(t.counters.snapshot().tcp_refused_over_cap, 2);
    }
}
