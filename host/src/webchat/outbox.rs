//! Conversations' outboxes: stored first, then announced to the sockets of
//! this process. Sockets also look every second, for entries another
//! replica stored.

use std::sync::Arc;

use patchbay_plugin_sdk::adapter::{OutboxPush, ProviderResponse};
use patchbay_plugin_sdk::error::AdapterError;
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// A conversation whose outbox has a new entry: `(channel, conversation)`.
pub type Changed = Arc<(String, String)>;

/// Every conversation's outbox.
#[derive(Clone)]
pub struct Outboxes {
    store: Arc<dyn Store>,
    changed: broadcast::Sender<Changed>,
    clock: Clock,
}

impl std::fmt::Debug for Outboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outboxes").finish_non_exhaustive()
    }
}

impl Outboxes {
    /// Outboxes kept in `store`.
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        // A socket that falls this far behind re-reads its outbox anyway.
        let (changed, _) = broadcast::channel(1024);
        Outboxes {
            store,
            changed,
            clock,
        }
    }

    /// Stores an entry, then wakes the conversation's sockets. A store that
    /// cannot commit is a transient failure: the outbound job is retried.
    pub async fn push(
        &self,
        channel: &str,
        push: OutboxPush,
    ) -> Result<ProviderResponse, AdapterError> {
        let seq = self
            .store
            .outbox_push(channel, &push.conversation, push.body, self.clock.now())
            .await
            .map_err(|e| {
                AdapterError::transient(format!("storing the outbox entry failed: {e}"))
            })?;
        let _ = self
            .changed
            .send(Arc::new((channel.to_string(), push.conversation)));
        Ok(ProviderResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::json!({ "seq": seq }).to_string().into_bytes(),
        })
    }

    /// Entries of a conversation after `after`, oldest first.
    pub async fn read(
        &self,
        channel: &str,
        conversation: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        self.store
            .outbox_read(channel, conversation, after, limit)
            .await
    }

    /// Announcements of new entries in this process.
    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.changed.subscribe()
    }
}
