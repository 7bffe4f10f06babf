//! Every destination's breaker (see [`patchbay_core::breaker`]), shared by the
//! worker tasks that send to it: the application for the `deliver` queue,
//! each channel's provider for the `outbound` queue.

use std::collections::HashMap;
use std::sync::Mutex;

use patchbay_core::breaker::{Admit, Breaker, BreakerSettings, Verdict};

/// Breakers by destination name.
#[derive(Debug, Default)]
pub struct Destinations {
    settings: BreakerSettings,
    breakers: Mutex<HashMap<String, Breaker>>,
}

impl Destinations {
    /// Breakers that trip and pause as `settings` say.
    pub fn new(settings: BreakerSettings) -> Destinations {
        Destinations {
            settings,
            breakers: Mutex::default(),
        }
    }

    fn with<T>(&self, destination: &str, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breakers = self
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let breaker = breakers
            .entry(destination.to_string())
            .or_insert_with(|| Breaker::new(self.settings));
        f(breaker)
    }

    /// What may be claimed for `destination` at `now`.
    pub fn admit(&self, destination: &str, now: i64) -> Admit {
        self.with(destination, |b| b.admit(now))
    }

    /// The probe admitted for `destination` found nothing to send.
    pub fn probe_unused(&self, destination: &str, now: i64) {
        self.with(destination, |b| b.probe_unused(now));
    }

    /// `destination` answered.
    pub fn succeeded(&self, destination: &str) {
        let was_open = self.with(destination, |b| {
            let was_open = b.is_open();
            b.succeeded();
            was_open
        });
        if was_open {
            tracing::info!(destination, "destination answers again; resuming");
        }
    }

    /// An attempt of `job` to `destination` failed in a way worth retrying.
    pub fn failed(
        &self,
        destination: &str,
        job: &str,
        retry_after_ms: Option<u64>,
        now: i64,
    ) -> Verdict {
        let (opened, verdict) = self.with(destination, |b| {
            let was_open = b.is_open();
            let verdict = b.failed(job, retry_after_ms, now);
            (!was_open && b.is_open(), verdict)
        });
        if opened {
            tracing::warn!(
                destination,
                "destination failing; pausing it and probing until it answers"
            );
        }
        verdict
    }
}
