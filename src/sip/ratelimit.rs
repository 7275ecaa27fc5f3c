//! Per-source token buckets against scanners and floods (like Kamailio's `pike`).
//!
//! Pure: told the time. Memory is bounded: at most `max_sources` buckets; when full, buckets
//! that have refilled completely (idle sources) are forgotten first, and if none has, the
//! new source is refused (a flood of spoofed sources must not grow memory or evict the
//! busy trunk).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    /// Tokens added per second per source; `0` disables the limiter.
    pub per_sec: f64,
    /// Bucket size: the burst a source may send at once.
    pub burst: u32,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateLimitConfig,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> RateLimiter {
        RateLimiter {
            cfg,
            buckets: HashMap::new(),
        }
    }

    pub fn tracked_sources(&self) -> usize {
        self.buckets.len()
    }

    /// May `ip` send one more message now?
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.cfg.per_sec <= 0.0 {
            return true;
        }
        let burst = f64::from(self.cfg.burst.max(1));
        let per_sec = self.cfg.per_sec;
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.cfg.max_sources {
            self.buckets.retain(|_, b| {
                let t = b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_sec;
                t < burst
            });
            if self.buckets.len() >= self.cfg.max_sources {
                return false;
            }
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(burst);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(per_sec: f64, burst: u32, max_sources: usize) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            per_sec,
            burst,
            max_sources,
        })
    }

    #[test]
    fn burst_then_refill() {
        let mut l = limiter(10.0, 5, 100);
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!((0..10).filter(|_| l.allow(ip, t0)).count(), 5);
        // 0.5 s later, 5 more tokens.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| l.allow(ip, t1)).count(), 5);
        // Another source is not affected.
        assert!(l.allow("192.0.2.2".parse().unwrap(), t1));
    }

    #[test]
    fn disabled_allows_everything() {
        let mut l = limiter(0.0, 1, 1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..1000).all(|_| l.allow(ip, Instant::now())));
    }

    #[test]
    fn memory_is_bounded() {
        let mut l = limiter(1.0, 2, 3);
        let t0 = Instant::now();
        for i in 0..3u8 {
            assert!(l.allow(IpAddr::from([10, 0, 0, i]), t0));
        }
        // Table full of busy sources: a new one is refused, nothing grows.
        assert!(!l.allow(IpAddr::from([10, 0, 0, 9]), t0));
        assert_eq!(l.tracked_sources(), 3);
        // Later the old buckets have refilled (idle) and make room.
        assert!(l.allow(IpAddr::from([10, 0, 0, 9]), t0 + Duration::from_secs(10)));
        assert!(l.tracked_sources() <= 3);
    }
}
