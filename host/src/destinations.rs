//! Every destination's breaker (see [`patchbay_core::breaker`]), shared by the
//! worker tasks that send to it: the application for the `deliver` queue,
//! each channel's provider for the `outbound` queue.
//!
//! Replicas sharing a store share pauses too: a breaker that opens publishes
//! its pause ([`Store::pause`]), every replica reads the others' pauses at
//! most every [`REFRESH_MS`] and claims nothing for a destination paused
//! elsewhere, and the replica whose probe gets an answer ends the pause for all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use patchbay_core::breaker::{Admit, Breaker, BreakerSettings, Verdict};

use crate::store::Store;

/// How often a replica reads the pauses other replicas published.
pub const REFRESH_MS: i64 = 1_000;

/// Breakers by destination name.
#[derive(Default)]
pub struct Destinations {
    settings: BreakerSettings,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Pauses published to the store, by destination: until when.
    elsewhere: Mutex<HashMap<String, i64>>,
    refreshed_at: AtomicI64,
    store: Option<Arc<dyn Store>>,
}

impl std::fmt::Debug for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destinations")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Destinations {
    /// Breakers that trip and pause as `settings` say.
    pub fn new(settings: BreakerSettings) -> Destinations {
        Destinations {
            settings,
            ..Destinations::default()
        }
    }

    /// Publishes pauses to `store` and honours those other replicas publish.
    pub fn shared_through(mut self, store: Arc<dyn Store>) -> Destinations {
        self.store = Some(store);
        self
    }

    /// Reads the pauses published in the store, unless read within the last
    /// [`REFRESH_MS`].
    pub async fn refresh(&self, now: i64) {
        let Some(store) = &self.store else { return };
        let last = self.refreshed_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < REFRESH_MS {
            return;
        }
        self.refreshed_at.store(now, Ordering::Relaxed);
        match store.paused(now).await {
            Ok(paused) => {
                *self
                    .elsewhere
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    paused.into_iter().collect();
            }
            Err(e) => tracing::debug!(error = %e, "reading shared pauses failed"),
        }
    }

    fn paused_elsewhere(&self, destination: &str, now: i64) -> Option<i64> {
        self.elsewhere
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(destination)
            .copied()
            .filter(|until| *until > now)
    }

    fn publish(&self, destination: &str, pause: Option<i64>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let destination = destination.to_string();
        tokio::spawn(async move {
            let written = match pause {
                Some(until) => store.pause(&destination, until, "failing").await,
                None => store.resume(&destination).await,
            };
            if let Err(e) = written {
                tracing::warn!(destination, error = %e, "sharing a pause with other replicas failed");
            }
        });
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

    /// Whether `destination` is paused (or being probed) here or elsewhere:
    /// for showing, without taking a probe as [`admit`](Self::admit) does.
    pub fn is_paused(&self, destination: &str, now: i64) -> bool {
        let here = self
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(destination)
            .is_some_and(Breaker::is_open);
        here || self.paused_elsewhere(destination, now).is_some()
    }

    /// What may be claimed for `destination` at `now`.
    pub fn admit(&self, destination: &str, now: i64) -> Admit {
        let admit = self.with(destination, |b| b.admit(now));
        match (admit, self.paused_elsewhere(destination, now)) {
            (Admit::All, Some(until)) => Admit::Paused { until: Some(until) },
            (admit, _) => admit,
        }
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
        let shared = self
            .elsewhere
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(destination)
            .is_some();
        if was_open {
            tracing::info!(destination, "destination answers again; resuming");
            metrics::gauge!("patchbay_destination_paused", "destination" => destination.to_string())
                .set(0.0);
        }
        if was_open || shared {
            self.publish(destination, None);
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
        let (opened, verdict, pause) = self.with(destination, |b| {
            let (was_open, paused) = (b.is_open(), b.paused_until());
            let verdict = b.failed(job, retry_after_ms, now);
            let pause = b.paused_until().filter(|until| paused != Some(*until));
            (!was_open && b.is_open(), verdict, pause)
        });
        if pause.is_some() {
            self.publish(destination, pause);
        }
        if opened {
            metrics::gauge!("patchbay_destination_paused", "destination" => destination.to_string())
                .set(1.0);
            tracing::warn!(
                destination,
                "destination failing; pausing it and probing until it answers"
            );
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::{Backend, Env};

    /// Until `check` holds, reading published pauses afresh each time.
    async fn eventually(
        d: &Destinations,
        now: &mut i64,
        check: impl Fn(&Destinations, i64) -> bool,
    ) {
        for _ in 0..100 {
            *now += REFRESH_MS;
            d.refresh(*now).await;
            if check(d, *now) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the shared pause never showed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pause_one_replica_sees_holds_every_replica_until_a_probe_answers() {
        let env = Env::new(Backend::Postgres).await;
        let (a, b) = (
            Destinations::default().shared_through(env.open().await),
            Destinations::default().shared_through(env.open().await),
        );
        let mut now = 1_000;
        assert_eq!(b.admit("sms", now), Admit::All);
        // The provider says "come back in a minute" to replica A.
        a.failed("sms", "job-1", Some(60_000), now);
        eventually(&b, &mut now, |b, now| {
            matches!(b.admit("sms", now), Admit::Paused { until: Some(_) })
        })
        .await;
        assert_eq!(b.admit("slack", now), Admit::All, "only that destination");
        // After the pause A probes; its answer ends the pause for B too.
        let after = 1_000 + 60_000;
        assert_eq!(a.admit("sms", after), Admit::Probe);
        a.succeeded("sms");
        let mut now = after;
        eventually(&b, &mut now, |b, now| b.admit("sms", now) == Admit::All).await;
    }

    #[test]
    fn without_a_shared_store_breakers_stay_in_the_process() {
        let d = Destinations::default();
        d.failed("app", "job-1", Some(5_000), 0);
        assert!(matches!(d.admit("app", 1), Admit::Paused { .. }));
    }

    #[test]
    fn looking_at_a_pause_does_not_take_its_probe() {
        let d = Destinations::default();
        assert!(!d.is_paused("app", 0));
        d.failed("app", "job-1", Some(5_000), 0);
        // The pause is over: still shown as paused until the probe answers,
        // and looking leaves the probe to the workers.
        assert!(d.is_paused("app", 6_000));
        assert!(d.is_paused("app", 6_000));
        assert_eq!(d.admit("app", 6_000), Admit::Probe);
    }
}
