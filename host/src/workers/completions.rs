//! Finished jobs recorded in groups.
//!
//! A worker that has delivered a message hands its completion to a
//! [`Completer`] and takes its next job at once; one task per queue writes
//! whatever completions are waiting as one store operation, so a busy queue
//! costs one write per writer turn instead of one per job, and a worker's slot
//! is not held for a commit. Until its completion commits, a job stays leased:
//! its conversation's next job is not handed out, so order holds, and a crash
//! before the commit delivers it again (at least once, with the same
//! `X-Patchbay-Message-Id`).

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, watch};

use crate::runtime::persist;
use crate::store::{NewJob, Store, StoreError};

/// Most completions in one store operation: about a writer turn's budget.
const BATCH: usize = 128;

/// Where a queue's workers hand in finished jobs.
#[derive(Debug, Clone)]
pub struct Completer {
    tx: mpsc::UnboundedSender<(String, Vec<NewJob>)>,
}

/// The receiving end, for [`run`].
#[derive(Debug)]
pub struct Pending(mpsc::UnboundedReceiver<(String, Vec<NewJob>)>);

impl Completer {
    /// A completer and the queue [`run`] drains.
    pub fn new() -> (Completer, Pending) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Completer { tx }, Pending(rx))
    }

    /// Records `id` as done with its follow-ups, soon.
    pub fn complete(&self, id: String, follow_ups: Vec<NewJob>) {
        if self.tx.send((id, follow_ups)).is_err() {
            // Only after shutdown: the lease brings the job back after restart.
            tracing::warn!("completion after shutdown; the job will run again");
        }
    }
}

/// Writes waiting completions until `stop` turns true and nothing waits;
/// after each write, wakes `wake` (the workers whose jobs may now be ready).
pub async fn run(
    store: Arc<dyn Store>,
    Pending(mut rx): Pending,
    wake: Vec<Arc<Notify>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = *stop.borrow();
        if stopping {
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
        } else {
            tokio::select! {
                _ = rx.recv_many(&mut batch, BATCH) => {}
                _ = stop.changed() => continue,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let count = batch.len();
        let written = persist("recording finished jobs", || {
            store.complete_many(batch.clone())
        })
        .await;
        match written {
            Ok(_) => wake.iter().for_each(|w| w.notify_one()),
            Err(StoreError::Closed) => return,
            // The jobs stay leased; after the lease they run again.
            Err(e) => tracing::error!(jobs = count, error = %e, "recording finished jobs failed"),
        }
        batch.clear();
    }
}
