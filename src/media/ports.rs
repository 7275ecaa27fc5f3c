//! The pool of local RTP/RTCP port pairs for anchored calls.
//!
//! RTP goes on an even port and RTCP on the next odd one (RFC 3550 §11; RFC 3605 §1 notes
//! that peers assume RTP+1 when no `a=rtcp` is given, and scamscreen never sends one).
//! Pairs are handed out least-recently-used first (a FIFO of free pairs), so a pair freed by
//! a call that just ended is reused last: late packets of the old call do not land in a new
//! one. The pool only keeps books; binding is the runtime's job, which reports ports it
//! could not bind with [`PortPool::mark_unusable`].

use std::collections::VecDeque;
use std::ops::RangeInclusive;

/// A bad port range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("RTP port range {start}-{end} holds no even/odd port pair")]
    NoPairs { start: u16, end: u16 },
    #[error("RTP port range may not include port 0")]
    ZeroPort,
}

/// One call leg's local ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpPorts {
    pub rtp: u16,
    pub rtcp: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    InUse,
    Unusable,
}

/// Even/odd port pairs from a configured range.
#[derive(Debug, Clone)]
pub struct PortPool {
    /// RTP port of slot 0.
    first: u16,
    slots: Vec<Slot>,
    /// Exactly the free slots, least recently released first.
    free: VecDeque<usize>,
    in_use: usize,
}

impl PortPool {
    /// A pool over every even port `p` in `range` with `p + 1` also in it.
    pub fn new(range: RangeInclusive<u16>) -> Result<PortPool, PortError> {
        let (start, end) = (*range.start(), *range.end());
        if start == 0 {
            return Err(PortError::ZeroPort);
        }
        let first = start.checked_add(start % 2);
        let pairs = match first {
            Some(first) if first < end => usize::from((end - first - 1) / 2 + 1),
            _ => return Err(PortError::NoPairs { start, end }),
        };
        Ok(PortPool {
            first: first.unwrap_or(start),
            slots: vec![Slot::Free; pairs],
            free: (0..pairs).collect(),
            in_use: 0,
        })
    }

    fn ports(&self, slot: usize) -> RtpPorts {
        // slot < pairs, so this stays inside the validated range.
        let rtp = self.first + 2 * slot as u16;
        RtpPorts { rtp, rtcp: rtp + 1 }
    }

    fn slot_of(&self, rtp: u16) -> Option<usize> {
        let offset = rtp.checked_sub(self.first)?;
        let slot = usize::from(offset / 2);
        (offset % 2 == 0 && slot < self.slots.len()).then_some(slot)
    }

    /// The least recently used free pair, or `None` when every pair is taken.
    pub fn allocate(&mut self) -> Option<RtpPorts> {
        let slot = self.free.pop_front()?;
        self.slots[slot] = Slot::InUse;
        self.in_use += 1;
        Some(self.ports(slot))
    }

    /// Give a pair back. False (and nothing changes) if it was not allocated: releasing
    /// twice is harmless.
    pub fn release(&mut self, rtp: u16) -> bool {
        match self.slot_of(rtp) {
            Some(slot) if self.slots[slot] == Slot::InUse => {
                self.slots[slot] = Slot::Free;
                self.free.push_back(slot);
                self.in_use -= 1;
                true
            }
            _ => false,
        }
    }

    /// Take a pair out of circulation because the runtime could not bind it (another
    /// program holds it). Works whether the pair is allocated (it is released into the
    /// unusable set) or free. False for ports outside the pool.
    pub fn mark_unusable(&mut self, rtp: u16) -> bool {
        let Some(slot) = self.slot_of(rtp) else {
            return false;
        };
        match self.slots[slot] {
            Slot::InUse => self.in_use -= 1,
            Slot::Free => self.free.retain(|&s| s != slot),
            Slot::Unusable => {}
        }
        self.slots[slot] = Slot::Unusable;
        true
    }

    /// Put every unusable pair back at the end of the free list (to retry binding them,
    /// e.g. now and then, since the other program may have let go). Returns how many.
    pub fn retry_unusable(&mut self) -> usize {
        let mut n = 0;
        for slot in 0..self.slots.len() {
            if self.slots[slot] == Slot::Unusable {
                self.slots[slot] = Slot::Free;
                self.free.push_back(slot);
                n += 1;
            }
        }
        n
    }

    /// Pairs allocated and not released.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Pairs that could be allocated now.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Pairs marked unusable.
    pub fn unusable(&self) -> usize {
        self.slots.len() - self.in_use - self.free.len()
    }

    /// All pairs in the range (in use, free or unusable).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_validation() {
        assert_eq!(PortPool::new(0..=100).map(|_| ()), Err(PortError::ZeroPort));
        let (start, end) = (20000, 10000);
        assert!(matches!(
            PortPool::new(start..=end),
            Err(PortError::NoPairs { .. })
        ));
        for bad in [10001..=10001, 10000..=10000, 10001..=10002, 65535..=65535] {
            assert!(
                matches!(PortPool::new(bad.clone()), Err(PortError::NoPairs { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(PortPool::new(10000..=10001).expect("one").capacity(), 1);
        assert_eq!(
            PortPool::new(10001..=10004).expect("odd start").capacity(),
            1
        );
        assert_eq!(PortPool::new(10000..=10004).expect("odd end").capacity(), 2);
        assert_eq!(PortPool::new(10000..=20000).expect("big").capacity(), 5000);
        let mut top = PortPool::new(65534..=65535).expect("top");
        assert_eq!(
            top.allocate(),
            Some(RtpPorts {
                rtp: 65534,
                rtcp: 65535
            })
        );
        assert_eq!(PortPool::new(1..=65535).expect("all").capacity(), 32767);
    }

    #[test]
    fn pairs_are_even_odd_and_exhaustion_returns_none() {
        let mut pool = PortPool::new(10001..=10008).expect("pool");
        let got: Vec<RtpPorts> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(
            got.iter().map(|p| p.rtp).collect::<Vec<_>>(),
            vec![10002, 10004, 10006]
        );
        assert!(got
            .iter()
            .all(|p| p.rtp % 2 == 0 && p.rtcp == p.rtp + 1 && p.rtcp <= 10008));
        assert_eq!(pool.allocate(), None);
        assert_eq!(pool.in_use(), 3);
        assert!(pool.release(10004));
        assert_eq!(
            pool.allocate(),
            Some(RtpPorts {
                rtp: 10004,
                rtcp: 10005
            })
        );
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn freed_pairs_are_reused_last() {
        let mut pool = PortPool::new(20000..=20009).expect("pool");
        let a = pool.allocate().expect("a");
        assert!(pool.release(a.rtp));
        let b = pool.allocate().expect("b");
        assert_ne!(a, b, "a just-freed pair is not handed out again at once");
        // The freed pair comes back only after all the others.
        let rest: Vec<u16> = std::iter::from_fn(|| pool.allocate())
            .map(|p| p.rtp)
            .collect();
        assert_eq!(rest.last(), Some(&a.rtp));
    }

    #[test]
    fn bad_releases_and_unusable_ports() {
        let mut pool = PortPool::new(30000..=30007).expect("pool");
        let a = pool.allocate().expect("a");
        assert!(!pool.release(a.rtcp), "odd port");
        assert!(!pool.release(29998), "below");
        assert!(!pool.release(30008), "above");
        assert!(!pool.release(30002), "not allocated");
        assert!(pool.release(a.rtp));
        assert!(!pool.release(a.rtp), "double release");
        // The runtime could not bind an allocated pair, and a free one is known busy.
        let b = pool.allocate().expect("b");
        assert!(pool.mark_unusable(b.rtp));
        assert!(pool.mark_unusable(30006));
        assert!(!pool.mark_unusable(1));
        assert_eq!(
            (pool.in_use(), pool.unusable(), pool.available()),
            (0, 2, 2)
        );
        assert!(!pool.release(b.rtp), "unusable is not in use");
        let got: Vec<u16> = std::iter::from_fn(|| pool.allocate())
            .map(|p| p.rtp)
            .collect();
        assert_eq!(got.len(), 2);
        assert!(!got.contains(&b.rtp) && !got.contains(&30006));
        assert_eq!(pool.retry_unusable(), 2);
        assert_eq!(pool.allocate().map(|p| p.rtp), Some(b.rtp));
        assert_eq!(pool.allocate().map(|p| p.rtp), Some(30006));
        assert_eq!(pool.allocate(), None);
        assert_eq!(pool.in_use(), 4);
    }

    #[test]
    fn no_leaks_under_churn() {
        let mut pool = PortPool::new(40000..=40199).expect("pool");
        let mut held: Vec<u16> = Vec::new();
        let mut s: u32 = 7;
        for _ in 0..10_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            if !s.is_multiple_of(3) {
                if let Some(p) = pool.allocate() {
                    assert!(!held.contains(&p.rtp), "pair handed out twice");
                    held.push(p.rtp);
                } else {
                    assert_eq!(held.len(), pool.capacity());
                }
            } else if !held.is_empty() {
                let p = held.swap_remove(s as usize % held.len());
                assert!(pool.release(p));
            }
            assert_eq!(pool.in_use(), held.len());
            assert_eq!(pool.in_use() + pool.available(), pool.capacity());
        }
        for p in held.drain(..) {
            assert!(pool.release(p));
        }
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.available(), pool.capacity());
    }
}
