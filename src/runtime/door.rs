//! The door between the socket readers and the core: every message read is sorted into the
//! dialog lane or the new-request lane ([`crate::sip::proxy::overload`]), and while the core
//! is behind, new requests are answered 503 here, in the reader, without reaching it.
//!
//! The readers run beside the core task, so refusing at the door costs the core nothing: a
//! flood of new INVITEs from the trunk is answered at the rate the readers can parse, and the
//! dialogs of calls already admitted keep their place in front.

use crate::sip::proxy::overload::{lane, shed_reply, too_long_a_wait, Lane};
use crate::sip::proxy::Peer;
use bytes::Bytes;
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How many new requests may wait for the core (at 6,000 calls/s, about 0.7 s of INVITEs:
/// longer than [`crate::sip::proxy::overload::SHED_ABOVE`], so the queueing delay decides,
/// not the length); more are refused at the door at once.
pub const NEW_LANE: usize = 4096;
/// The bytes those requests may hold together (a flood of 64 KB messages stays bounded).
pub const NEW_LANE_BYTES: usize = 8 << 20;

/// A new request waiting for the core, with the moment it was read.
pub struct NewRequest {
    pub from: Peer,
    pub bytes: Bytes,
    pub at: Instant,
}

/// What a reader does with a message.
pub enum Sorted {
    /// Hand it to the core in the dialog lane (the reader waits if that lane is full).
    Dialog(Bytes),
    /// Queued in the new lane.
    Queued,
    /// Refused at the door: send this answer (none: dropped in silence).
    Refused(Option<(Peer, Bytes)>),
}

/// Counters of the door (since start).
#[derive(Debug, Default)]
pub struct DoorCounters {
    /// New requests answered 503 in a reader.
    pub shed: AtomicU64,
    /// New-lane messages dropped in a reader while shedding (ACKs of shed requests,
    /// garbage, untrusted sources).
    pub dropped: AtomicU64,
}

/// A snapshot of the door's counters, for the stop summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DoorStats {
    pub shed_at_door: u64,
    pub dropped_at_door: u64,
}

/// Shared by the readers (sorting, refusing) and the core (which says when to shed).
pub struct Door {
    trusted: Vec<IpNet>,
    /// The core's time per new request under backlog, in µs (0: not measured yet).
    pace_us: AtomicU64,
    /// Requests now in the new lane.
    queued: AtomicUsize,
    new_lane: mpsc::Sender<NewRequest>,
    /// Bytes of the requests now in the new lane.
    queued_bytes: AtomicUsize,
    pub counters: DoorCounters,
}

impl Door {
    pub fn new(trusted: Vec<IpNet>, new_lane: mpsc::Sender<NewRequest>) -> Door {
        Door {
            trusted,
            pace_us: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            new_lane,
            queued_bytes: AtomicUsize::new(0),
            counters: DoorCounters::default(),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The core took a request of `len` bytes from the new lane; how many still wait.
    pub fn taken(&self, len: usize) -> usize {
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        self.queued
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1)
    }

    /// The core's measured time per new request under backlog.
    pub fn set_pace(&self, pace: Option<Duration>) {
        let us = pace.map_or(0, |p| p.as_micros().max(1) as u64);
        self.pace_us.store(us, Ordering::Relaxed);
    }

    fn pace(&self) -> Option<Duration> {
        match self.pace_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Sort one message just read.
    pub fn sort(&self, from: Peer, bytes: Bytes) -> Sorted {
        if lane(self.trusted(from.addr.ip()), &bytes) == Lane::Dialog {
            return Sorted::Dialog(bytes);
        }
        let len = bytes.len();
        let room = self.queued_bytes.load(Ordering::Relaxed) + len <= NEW_LANE_BYTES;
        let ahead = self.queued.load(Ordering::Relaxed);
        if room && !too_long_a_wait(ahead, self.pace()) {
            let req = NewRequest {
                from,
                bytes,
                at: Instant::now(),
            };
            match self.new_lane.try_send(req) {
                Ok(()) => {
                    self.queued_bytes.fetch_add(len, Ordering::Relaxed);
                    self.queued.fetch_add(1, Ordering::Relaxed);
                    return Sorted::Queued;
                }
                Err(mpsc::error::TrySendError::Full(req)) => {
                    return self.refuse(req.from, &req.bytes)
                }
                // The core is gone: nothing to do.
                Err(mpsc::error::TrySendError::Closed(_)) => return Sorted::Refused(None),
            }
        }
        self.refuse(from, &bytes)
    }

    fn refuse(&self, from: Peer, bytes: &[u8]) -> Sorted {
        // Only trusted sources get an answer: a stranger's flood is not worth one.
        let answer = if self.trusted(from.addr.ip()) {
            shed_reply(bytes, from)
        } else {
            None
        };
        let counter = match answer {
            Some(_) => &self.counters.shed,
            None => &self.counters.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Sorted::Refused(answer)
    }

    pub fn stats(&self) -> DoorStats {
        DoorStats {
            shed_at_door: self.counters.shed.load(Ordering::Relaxed),
            dropped_at_door: self.counters.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const INVITE: &str = "INVITE sip:100@pbx SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:a@b>;tag=a1\r\n\
        To: <sip:100@pbx>\r\n\
        Call-ID: c1\r\n\
        CSeq: 1 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    fn door(cap: usize) -> (Door, mpsc::Receiver<NewRequest>) {
        let (tx, rx) = mpsc::channel(cap);
        (Door::new(vec!["127.0.0.0/8".parse().unwrap()], tx), rx)
    }

    fn peer(s: &str) -> Peer {
        Peer::udp(s.parse::<SocketAddr>().unwrap())
    }

    #[tokio::test]
    async fn queues_new_requests_and_refuses_when_full() {
        let (door, mut rx) = door(1);
        let trunk = peer("127.0.0.1:5070");
        let invite = Bytes::from_static(INVITE.as_bytes());
        assert!(matches!(door.sort(trunk, invite.clone()), Sorted::Queued));
        // Lane full: a 503 to the Via's port.
        match door.sort(trunk, invite.clone()) {
            Sorted::Refused(Some((to, b))) => {
                assert_eq!(to.addr, trunk.addr);
                assert!(b.starts_with(b"SIP/2.0 503"));
            }
            _ => panic!("expected a 503"),
        }
        assert!(rx.try_recv().is_ok());
        assert_eq!(door.taken(invite.len()), 0, "none left waiting");
        // Responses and in-dialog requests always pass.
        let resp = Bytes::from_static(b"SIP/2.0 180 Ringing\r\n\r\n");
        assert!(matches!(door.sort(trunk, resp), Sorted::Dialog(_)));
        // A stranger gets nothing when refused.
        assert!(matches!(
            door.sort(peer("192.0.2.9:5060"), invite.clone()),
            Sorted::Queued
        ));
        assert!(matches!(
            door.sort(peer("192.0.2.9:5060"), invite),
            Sorted::Refused(None)
        ));
        assert_eq!(
            door.stats(),
            DoorStats {
                shed_at_door: 1,
                dropped_at_door: 1
            }
        );
    }

    #[tokio::test]
    async fn refuses_what_would_wait_too_long_at_the_cores_pace() {
        let (door, _rx) = door(64);
        let trunk = peer("127.0.0.1:5070");
        let invite = Bytes::from_static(INVITE.as_bytes());
        // 300 ms per new request: the second and third in line wait 300 and 600 ms.
        door.set_pace(Some(Duration::from_millis(300)));
        assert!(matches!(door.sort(trunk, invite.clone()), Sorted::Queued));
        assert!(matches!(door.sort(trunk, invite.clone()), Sorted::Queued));
        assert!(matches!(
            door.sort(trunk, invite.clone()),
            Sorted::Refused(Some(_))
        ));
        // The core caught up: taken, room again.
        door.taken(invite.len());
        assert!(matches!(door.sort(trunk, invite), Sorted::Queued));
    }
}
