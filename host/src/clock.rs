//! The one source of "now": milliseconds since the Unix epoch.
//!
//! Everything that stamps or schedules work — the store, the workers, the
//! transport's token cache, the resource cache — asks a [`Clock`]. Production
//! runs on [`Clock::system`]; tests hold a [`ManualClock`] and move time
//! themselves instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use patchbay_plugin_sdk::adapter::Timestamp;

/// A source of the current time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(system_now_ms))
    }

    /// A clock that reads `now` (for tests that compute time themselves).
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// A clock standing at `start` that only the returned handle moves.
    pub fn manual(start: i64) -> (Self, ManualClock) {
        let at = Arc::new(AtomicI64::new(start));
        let reader = Arc::clone(&at);
        (
            Clock(Arc::new(move || reader.load(Ordering::SeqCst))),
            ManualClock(at),
        )
    }

    /// Milliseconds since the epoch.
    pub fn now(&self) -> i64 {
        (self.0)()
    }

    /// Now, as adapters receive it.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp(self.now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// Moves a [`Clock::manual`] clock.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// The system time in milliseconds since the epoch.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let (clock, hand) = Clock::manual(1_000);
        assert_eq!(clock.now(), 1_000);
        hand.advance(250);
        assert_eq!(clock.timestamp(), Timestamp(1_250));
        hand.set(5);
        assert_eq!(clock.clone().now(), 5);
    }
}
