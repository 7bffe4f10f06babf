//! Deleting finished jobs once `[store] keep_done_hours` have passed, so the
//! database stays the size of its retention window rather than of its history.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::runtime::Runtime;
use crate::store::sqlite::now_ms;
use crate::store::{Queue, Store};

/// How often old jobs are looked for.
const EVERY: Duration = Duration::from_secs(300);

/// Jobs deleted per write, so no one write keeps the writer long.
const CHUNK: u32 = 5_000;

/// Prunes at start and every [`EVERY`] until shutdown; returns at once if
/// `keep` is zero (keep everything).
pub async fn run(rt: Arc<Runtime>, keep: Duration, mut shutdown: watch::Receiver<bool>) {
    if keep.is_zero() {
        return;
    }
    loop {
        prune(rt.store.as_ref(), now_ms() - keep.as_millis() as i64).await;
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// Deletes the jobs of every queue finished before `before` (ms since the
/// epoch); returns how many.
pub async fn prune(store: &dyn Store, before: i64) -> u64 {
    let mut total = 0;
    for queue in Queue::ALL {
        loop {
            match store.prune(queue, before, CHUNK).await {
                Ok(n) => {
                    total += n;
                    if n < u64::from(CHUNK) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = queue.as_str(), error = %e, "pruning finished jobs failed; will try again");
                    break;
                }
            }
        }
    }
    if total > 0 {
        tracing::info!(jobs = total, "pruned finished jobs");
    }
    total
}
