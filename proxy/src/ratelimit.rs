//! The per-connection request rate: a token bucket.
//!
//! A bucket holds up to `rate` tokens and gains `rate` tokens per second;
//! each request takes one. A client may therefore make `rate` requests at
//! once and then `rate` per second, on one connection.

use std::time::Instant;

/// A token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens refilled at `rate` per second.
    pub fn new(rate: u32) -> TokenBucket {
        let rate = f64::from(rate.max(1));
        TokenBucket {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    /// Takes a token at `now`; false when the bucket is empty.
    pub fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        // A little slack for rounding: 5 tokens per second for 200 ms is 1.
        if self.tokens + 1e-9 >= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// Takes a token now; false when the bucket is empty.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(5);
        let start = Instant::now();
        for _ in 0..5 {
            assert!(b.try_take_at(start));
        }
        assert!(!b.try_take_at(start));
        // 200 ms later, one more token.
        let t = start + Duration::from_millis(200);
        assert!(b.try_take_at(t));
        assert!(!b.try_take_at(t));
        // Long idle: the bucket is full again, not more.
        let t = t + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(b.try_take_at(t));
        }
        assert!(!b.try_take_at(t));
    }

    #[test]
    fn clock_going_backwards_gives_nothing() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1);
        assert!(b.try_take_at(start));
        assert!(!b.try_take_at(start - Duration::from_secs(5)));
    }
}
