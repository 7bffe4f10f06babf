//! Back-pressure per destination: when the application (or one channel's
//! provider) is down, stop sending it job after job; pause it as a whole,
//! probe it with one job, and resume everything the moment it answers.
//!
//! A [`Breaker`] is one destination's state. Workers ask it what they may
//! claim ([`Breaker::admit`]) and tell it how each attempt went.
//!
//! - **Closed** (normal): everything may be claimed. A failure counts against
//!   its job (the job backs off on its own schedule) — unless it is the
//!   `trip_after`-th failure in a row, spread over at least two jobs, or
//!   the destination said `Retry-After`: then the breaker opens.
//!   One message the application keeps refusing with 500 does not pause the
//!   others; it is retried and dead-lettered on its own.
//! - **Open**: nothing is claimed until the pause ends (`Retry-After` if the
//!   destination gave one, else `min_pause` doubling up to `max_pause`).
//!   Failures now are the destination's, not the jobs': their attempts are
//!   refunded and they stay ready, so an outage of any length sends nothing
//!   to the dead-letter list and loses no conversation's place.
//! - **Probing**: the pause is over; one job is claimed. Its success closes
//!   the breaker (every waiting conversation is claimed at once); its failure
//!   opens it again, and that job waits out the pause so the next probe is
//!   another conversation's.
//!
//! Any success closes the breaker. Times are milliseconds, passed in.

/// How a breaker trips and pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures in a row (over at least two jobs) that open the breaker.
    pub trip_after: u32,
    /// The first pause, ms.
    pub min_pause_ms: u64,
    /// The longest pause without a `Retry-After`, ms: how soon after a
    /// destination recovers its backlog resumes, at worst.
    pub max_pause_ms: u64,
    /// A probe with no outcome after this long (its worker went away) is
    /// given up and another one is sent, ms.
    pub probe_timeout_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            trip_after: 3,
            min_pause_ms: 100,
            max_pause_ms: 1_000,
            probe_timeout_ms: 60_000,
        }
    }
}

/// What a worker may claim for a destination now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// As much as it has room for.
    All,
    /// One job: the probe.
    Probe,
    /// Nothing before `until` (ms); `None` while a probe is out.
    Paused {
        /// When to ask again.
        until: Option<i64>,
    },
}

/// What becomes of a job whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The job failed: it counts, and the job backs off on its own schedule.
    Counted,
    /// The destination failed: the attempt is refunded and the job is ready
    /// again at `ready_at` (ms).
    Refunded {
        /// When the job may run again.
        ready_at: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: i64 },
    Probing { since: i64 },
}

/// One destination's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    /// Failures in a row while closed.
    failures: u32,
    /// The job that failed first in this row, and whether another did too.
    first_failed: Option<String>,
    spread: bool,
    /// Pauses since the breaker last closed (the backoff's exponent).
    pauses: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            state: State::Closed,
            failures: 0,
            first_failed: None,
            spread: false,
            pauses: 0,
        }
    }

    /// Whether the destination is paused or being probed.
    pub fn is_open(&self) -> bool {
        self.state != State::Closed
    }

    /// When the current pause ends, while one runs (not while probing).
    pub fn paused_until(&self) -> Option<i64> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// What may be claimed at `now`. When a pause is over this returns
    /// [`Admit::Probe`] once; until that probe's outcome, nothing more.
    ///
    /// ```
    /// use patchbay_core::breaker::{Admit, Breaker, BreakerSettings, Verdict};
    /// let mut b = Breaker::new(BreakerSettings::default());
    /// assert_eq!(b.admit(0), Admit::All);
    /// // The application says "come back in 5 s".
    /// assert!(matches!(b.failed("job-1", Some(5_000), 0), Verdict::Refunded { .. }));
    /// assert_eq!(b.admit(1_000), Admit::Paused { until: Some(5_000) });
    /// assert_eq!(b.admit(5_000), Admit::Probe);
    /// b.succeeded();
    /// assert_eq!(b.admit(5_001), Admit::All);
    /// ```
    pub fn admit(&mut self, now: i64) -> Admit {
        match self.state {
            State::Closed => Admit::All,
            State::Open { until } if now < until => Admit::Paused { until: Some(until) },
            State::Open { .. } => {
                self.state = State::Probing { since: now };
                Admit::Probe
            }
            State::Probing { since }
                if now.saturating_sub(since) >= self.settings.probe_timeout_ms as i64 =>
            {
                self.state = State::Probing { since: now };
                Admit::Probe
            }
            State::Probing { .. } => Admit::Paused { until: None },
        }
    }

    /// The probe [`admit`](Self::admit) allowed found nothing to send: the
    /// next call may probe again.
    pub fn probe_unused(&mut self, now: i64) {
        if matches!(self.state, State::Probing { .. }) {
            self.state = State::Open { until: now };
        }
    }

    /// An attempt succeeded (or the destination answered, even with a refusal).
    pub fn succeeded(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
        self.first_failed = None;
        self.spread = false;
        self.pauses = 0;
    }

    /// An attempt of job `job` failed at `now` in a way worth retrying;
    /// `retry_after_ms` is the destination's `Retry-After`.
    pub fn failed(&mut self, job: &str, retry_after_ms: Option<u64>, now: i64) -> Verdict {
        match self.state {
            State::Open { .. } => Verdict::Refunded { ready_at: now },
            State::Probing { .. } => {
                let until = self.pause(retry_after_ms, now);
                Verdict::Refunded { ready_at: until }
            }
            State::Closed => {
                self.failures += 1;
                match &self.first_failed {
                    None => self.first_failed = Some(job.to_string()),
                    Some(first) if first != job => self.spread = true,
                    Some(_) => {}
                }
                let trip = retry_after_ms.is_some()
                    || (self.failures >= self.settings.trip_after && self.spread);
                if trip {
                    self.pause(retry_after_ms, now);
                    Verdict::Refunded { ready_at: now }
                } else {
                    Verdict::Counted
                }
            }
        }
    }

    /// Opens the breaker until the next pause ends; returns that time.
    fn pause(&mut self, retry_after_ms: Option<u64>, now: i64) -> i64 {
        let backoff = self
            .settings
            .min_pause_ms
            .saturating_mul(1u64 << self.pauses.min(20))
            .min(self.settings.max_pause_ms);
        let pause = retry_after_ms.map_or(backoff, |r| r.max(self.settings.min_pause_ms));
        self.pauses = self.pauses.saturating_add(1);
        let until = now.saturating_add(i64::try_from(pause).unwrap_or(i64::MAX));
        self.state = State::Open { until };
        until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            trip_after: 3,
            min_pause_ms: 100,
            max_pause_ms: 1_000,
            probe_timeout_ms: 60_000,
        })
    }

    #[test]
    fn one_job_failing_again_and_again_never_pauses_the_destination() {
        let mut b = breaker();
        for attempt in 0..10 {
            assert_eq!(b.failed("poison", None, attempt), Verdict::Counted);
            assert_eq!(b.admit(attempt), Admit::All);
        }
    }

    #[test]
    fn failures_of_several_jobs_in_a_row_pause_it() {
        let mut b = breaker();
        assert_eq!(b.failed("a", None, 0), Verdict::Counted);
        assert_eq!(b.failed("b", None, 0), Verdict::Counted);
        assert_eq!(b.failed("c", None, 10), Verdict::Refunded { ready_at: 10 });
        assert_eq!(b.admit(50), Admit::Paused { until: Some(110) });
        // Those still in flight when it opened are the destination's failures.
        assert_eq!(b.failed("d", None, 60), Verdict::Refunded { ready_at: 60 });
    }

    #[test]
    fn a_success_in_between_starts_the_count_again() {
        let mut b = breaker();
        b.failed("a", None, 0);
        b.failed("b", None, 0);
        b.succeeded();
        assert_eq!(b.failed("c", None, 0), Verdict::Counted);
        assert_eq!(b.admit(0), Admit::All);
    }

    #[test]
    fn probes_back_off_up_to_the_longest_pause_then_one_success_resumes_all() {
        let mut b = breaker();
        b.failed("a", None, 0);
        b.failed("b", None, 0);
        b.failed("c", None, 0); // open until 100
        let mut now = 0;
        let mut pauses = vec![];
        for _ in 0..6 {
            let Admit::Paused { until: Some(until) } = b.admit(now) else {
                panic!("paused");
            };
            pauses.push(until - now);
            now = until;
            assert_eq!(b.admit(now), Admit::Probe);
            assert_eq!(
                b.admit(now),
                Admit::Paused { until: None },
                "one probe at a time"
            );
            let Verdict::Refunded { ready_at } = b.failed("probe", None, now) else {
                panic!("a failed probe is refunded");
            };
            assert!(ready_at > now, "the failed probe waits out the pause");
        }
        assert_eq!(pauses, [100, 200, 400, 800, 1_000, 1_000]);
        let Admit::Paused { until: Some(until) } = b.admit(now) else {
            panic!("paused");
        };
        assert_eq!(b.admit(until), Admit::Probe);
        b.succeeded();
        assert_eq!(b.admit(until), Admit::All);
        assert!(!b.is_open());
    }

    #[test]
    fn retry_after_pauses_at_once_for_that_long() {
        let mut b = breaker();
        assert_eq!(
            b.failed("a", Some(30_000), 5),
            Verdict::Refunded { ready_at: 5 }
        );
        assert_eq!(
            b.admit(29_000),
            Admit::Paused {
                until: Some(30_005)
            }
        );
        assert_eq!(b.admit(30_005), Admit::Probe);
    }

    #[test]
    fn a_probe_that_found_nothing_or_never_came_back_is_sent_again() {
        let mut b = breaker();
        b.failed("a", Some(100), 0);
        assert_eq!(b.admit(100), Admit::Probe);
        b.probe_unused(100);
        assert_eq!(b.admit(100), Admit::Probe);
        assert_eq!(b.admit(30_000), Admit::Paused { until: None });
        assert_eq!(b.admit(60_100), Admit::Probe, "the lost probe is replaced");
    }
}
