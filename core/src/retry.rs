//! The retry schedule: exponential backoff with jitter, capped, honouring a
//! provider's `Retry-After`. The caller supplies the jitter so results are
//! reproducible.

use std::time::Duration;

use serde::Deserialize;

/// When to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; then the message is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds.
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u64,
    /// Longest delay between attempts, in milliseconds.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
}

fn default_max_attempts() -> u32 {
    8
}
fn default_base_delay_ms() -> u64 {
    1_000
}
fn default_max_delay_ms() -> u64 {
    300_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_max_attempts(),
            base_delay_ms: default_base_delay_ms(),
            max_delay_ms: default_max_delay_ms(),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this long.
    RetryIn(Duration),
    /// Stop: attempts are exhausted.
    GiveUp,
}

impl RetryPolicy {
    /// The decision after `attempts` failed attempts (1 after the first failure).
    ///
    /// `jitter` in `[0, 1)` spreads the delay over `[d/2, d)` so retries of many
    /// messages do not arrive together; a provider's `retry_after` is honoured as a
    /// floor.
    ///
    /// ```
    /// use std::time::Duration;
    /// use patchbay_core::retry::{RetryDecision, RetryPolicy};
    /// let p = RetryPolicy { max_attempts: 3, base_delay_ms: 100, max_delay_ms: 1_000 };
    /// assert_eq!(p.after_failure(1, 0.0, None), RetryDecision::RetryIn(Duration::from_millis(50)));
    /// assert_eq!(p.after_failure(2, 0.0, Some(5_000)), RetryDecision::RetryIn(Duration::from_millis(5_000)));
    /// assert_eq!(p.after_failure(3, 0.5, None), RetryDecision::GiveUp);
    /// ```
    pub fn after_failure(
        &self,
        attempts: u32,
        jitter: f64,
        retry_after_ms: Option<u64>,
    ) -> RetryDecision {
        if attempts >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let exp = attempts.saturating_sub(1).min(32);
        let full = self
            .base_delay_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_delay_ms);
        let jitter = jitter.clamp(0.0, 0.999_999);
        let spread = (full as f64 * (0.5 + jitter / 2.0)) as u64;
        let delay = spread.max(retry_after_ms.unwrap_or(0));
        RetryDecision::RetryIn(Duration::from_millis(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delay_is_bounded_and_grows(attempt in 1u32..7, jitter in 0.0f64..1.0) {
            let p = RetryPolicy { max_attempts: 10, base_delay_ms: 100, max_delay_ms: 60_000 };
            let RetryDecision::RetryIn(d) = p.after_failure(attempt, jitter, None) else { panic!() };
            let full = 100u64 << (attempt - 1);
            prop_assert!(d.as_millis() as u64 >= full / 2 && (d.as_millis() as u64) < full.max(1));
            let RetryDecision::RetryIn(next) = p.after_failure(attempt + 1, jitter, None) else { panic!() };
            prop_assert!(next >= d);
        }
    }

    #[test]
    fn cap_applies_before_retry_after() {
        let p = RetryPolicy {
            max_attempts: 100,
            base_delay_ms: 1_000,
            max_delay_ms: 2_000,
        };
        assert_eq!(
            p.after_failure(50, 0.99, None),
            RetryDecision::RetryIn(Duration::from_millis(1_990))
        );
        assert_eq!(
            p.after_failure(50, 0.0, Some(30_000)),
            RetryDecision::RetryIn(Duration::from_secs(30))
        );
    }
}
