//! Deleting finished jobs and application `Idempotency-Key`s once `[store]
//! keep_done_hours` have passed, so the database stays the size of its
//! retention window rather than of its history.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::runtime::Runtime;
use crate::store::{Store, StoreError};

/// How often old jobs are looked for.
const EVERY: Duration = Duration::from_secs(300);

/// Jobs deleted per write, so no one write keeps the writer long.
const CHUNK: u32 = 1_000;

/// Prunes at start and every `EVERY` until shutdown; returns at once if
/// `keep` is zero (keep everything).
pub async fn run(rt: Arc<Runtime>, keep: Duration, mut shutdown: watch::Receiver<bool>) {
    if keep.is_zero() {
        return;
    }
    loop {
        prune(rt.store.as_ref(), rt.clock.now() - keep.as_millis() as i64).await;
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// Deletes what is older than `before` (ms since the epoch): the finished jobs
/// of every queue, the provider event ids, the degraded menus and the
/// idempotency keys; returns how many jobs.
pub async fn prune(store: &dyn Store, before: i64) -> u64 {
    let mut jobs = 0;
    let mut from = None;
    loop {
        match store.prune(from, before, CHUNK).await {
            Ok(pruned) => {
                jobs += pruned.deleted;
                match pruned.next {
                    Some(next) => from = Some(next),
                    None => break,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning finished jobs failed; will try again");
                break;
            }
        }
    }
    if jobs > 0 {
        tracing::info!(jobs, "pruned finished jobs");
    }
    let dedupe = in_chunks("dedupe keys", |limit| store.forget_dedupe(before, limit)).await;
    if dedupe > 0 {
        tracing::info!(
            keys = dedupe,
            "forgot provider event ids older than the retention window"
        );
    }
    let links = in_chunks("upstream links", |limit| store.forget_links(before, limit)).await;
    if links > 0 {
        tracing::info!(
            links,
            "forgot upstream message links older than the retention window"
        );
    }
    let outbox = in_chunks("web chat outboxes", |limit| {
        store.forget_outbox(before, limit)
    })
    .await;
    if outbox > 0 {
        tracing::info!(
            entries = outbox,
            "forgot web chat outbox entries older than the retention window"
        );
    }
    let menus = in_chunks("menus", |limit| store.forget_menus(before, limit)).await;
    if menus > 0 {
        tracing::info!(
            menus,
            "forgot degraded menus older than the retention window"
        );
    }
    let keys = in_chunks("idempotency keys", |limit| {
        store.forget_idempotency(before, limit)
    })
    .await;
    if keys > 0 {
        tracing::info!(
            keys,
            "forgot idempotency keys older than the retention window"
        );
    }
    jobs
}

/// Runs `delete` [`CHUNK`] at a time until it deletes fewer; returns the total.
async fn in_chunks<F, Fut>(what: &str, mut delete: F) -> u64
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        match delete(CHUNK).await {
            Ok(n) => {
                total += n;
                if n < u64::from(CHUNK) {
                    return total;
                }
            }
            Err(e) => {
                tracing::warn!(what, error = %e, "pruning failed; will try again");
                return total;
            }
        }
    }
}
