//! Durable queues behind one [`Store`] trait.
//!
//! Everything Patchbay must not lose is a **job** in one of three queues:
//!
//! | queue | payload | produced by | consumed by |
//! |---|---|---|---|
//! | `inbound` | a raw verified webhook ([`InboundRequest`](patchbay_plugin_sdk::adapter::InboundRequest)) | ingress | inbound worker (parse) |
//! | `deliver` | a canonical message or receipt for the application | inbound and outbound workers | delivery worker |
//! | `outbound` | a canonical message from the application | application API | outbound worker |
//!
//! A job is `pending` until a worker finishes it (`done`) or gives up (`dead`:
//! the dead-letter list, replayable). Workers *lease* jobs so a crashed worker's
//! job is taken up again; jobs with the same conversation key are handed out one
//! at a time, in order. Finishing a job and creating the jobs that follow from it
//! happen in one transaction, so a crash never loses or doubles a step.
//!
//! The SQLite implementation is the embedded default. It **group-commits**: one
//! writer, on its own thread, drains every pending write (accepted webhooks,
//! claims, completions) into one transaction, so many requests share one fsync
//! and nothing is acknowledged before its commit; in a burst, acknowledgements
//! go before workers' writes (see [`sqlite`]). The trait is written so a
//! PostgreSQL implementation (`FOR UPDATE SKIP LOCKED` claims) can follow.

pub mod sqlite;

use async_trait::async_trait;
use serde::Serialize;

pub use sqlite::{SqliteStore, WriterSettings};

/// Store failures. Messages never contain payloads.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed a write.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The database failed a read.
    #[error("database error: {0}")]
    Read(#[from] sqlx::Error),
    /// The transaction holding this write failed to commit.
    #[error("commit failed: {0}")]
    Commit(String),
    /// The writer thread could not be started.
    #[error("cannot start the store writer: {0}")]
    Writer(std::io::Error),
    /// The store is shutting down.
    #[error("the store is shutting down")]
    Closed,
}

/// A queue name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    /// Raw webhooks awaiting parsing.
    Inbound,
    /// Messages and receipts awaiting delivery to the application.
    Deliver,
    /// Application messages awaiting delivery to a provider.
    Outbound,
}

impl Queue {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Inbound => "inbound",
            Queue::Deliver => "deliver",
            Queue::Outbound => "outbound",
        }
    }

    /// Every queue.
    pub const ALL: [Queue; 3] = [Queue::Inbound, Queue::Deliver, Queue::Outbound];

    fn parse(s: &str) -> Option<Queue> {
        Some(match s {
            "inbound" => Queue::Inbound,
            "deliver" => Queue::Deliver,
            "outbound" => Queue::Outbound,
            _ => return None,
        })
    }
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id (a UUIDv7 string).
    pub id: String,
    /// Its queue.
    pub queue: Queue,
    /// The channel it concerns.
    pub channel: String,
    /// Jobs with the same key run one at a time, in creation order.
    pub conversation_key: Option<String>,
    /// Jobs with the same `(queue, channel, dedupe_key)` are stored once.
    pub dedupe_key: Option<String>,
    /// The payload, JSON.
    pub payload: Vec<u8>,
    /// Earliest time to run, ms since the epoch.
    pub run_at: i64,
}

/// The outcome of adding one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Stored under this id.
    Stored(String),
    /// A job with the same dedupe key exists; nothing was stored.
    Duplicate,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// Its queue.
    pub queue: Queue,
    /// Its channel.
    pub channel: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// A dead-lettered job, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its id.
    pub id: String,
    /// Its queue.
    pub queue: Queue,
    /// Its channel.
    pub channel: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was created, ms since the epoch.
    pub created_at: i64,
    /// When it was given up, ms since the epoch.
    pub updated_at: i64,
}

/// Queue counts by state, for `status`.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting or in progress.
    pub pending: u64,
    /// Finished.
    pub done: u64,
    /// Given up.
    pub dead: u64,
}

/// Durable queues.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Adds jobs in one transaction (the group commit), deduplicating.
    async fn add(&self, jobs: Vec<NewJob>) -> Result<Vec<Added>, StoreError>;

    /// Leases up to `limit` runnable jobs of `queue`, oldest first, at most one per
    /// conversation key, and counts the attempt.
    async fn claim(
        &self,
        queue: Queue,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError>;

    /// Marks a job done and adds the jobs that follow from it, atomically.
    async fn complete(&self, id: &str, follow_ups: Vec<NewJob>) -> Result<(), StoreError>;

    /// Completes several jobs and adds their follow-ups, in order, atomically.
    async fn complete_many(&self, done: Vec<(String, Vec<NewJob>)>) -> Result<(), StoreError>;

    /// Replaces a leased job's payload (progress of a multi-part send).
    async fn save_progress(&self, id: &str, payload: Vec<u8>) -> Result<(), StoreError>;

    /// Releases a job to run again at `run_at`, recording the error.
    async fn retry(&self, id: &str, run_at: i64, error: &str) -> Result<(), StoreError>;

    /// Gives up on a job (dead letter), adding follow-ups (such as a `Failed` receipt).
    async fn bury(&self, id: &str, error: &str, follow_ups: Vec<NewJob>) -> Result<(), StoreError>;

    /// The earliest future `run_at` of pending jobs in `queue`, for sleeping until then.
    async fn next_due(&self, queue: Queue) -> Result<Option<i64>, StoreError>;

    /// Dead letters, newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;

    /// Puts a dead letter back in its queue with its attempts reset; false if no
    /// dead letter has that id.
    async fn replay(&self, id: &str, now: i64) -> Result<bool, StoreError>;

    /// Counts by queue and state.
    async fn counts(&self) -> Result<Vec<(Queue, QueueCounts)>, StoreError>;

    /// Stores an idempotency record unless one exists; returns the stored value.
    async fn remember(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        jobs: Vec<NewJob>,
    ) -> Result<Remembered, StoreError>;

    /// The menu last degraded to numbers in a conversation (JSON), if any.
    async fn menu(&self, conversation_key: &str) -> Result<Option<String>, StoreError>;

    /// Deletes up to `limit` finished (`done`) jobs of `queue` last due before
    /// `before` (ms since the epoch); returns how many. Dead letters and pending
    /// jobs are kept. A deleted job's dedupe key no longer catches a redelivery.
    async fn prune(&self, queue: Queue, before: i64, limit: u32) -> Result<u64, StoreError>;

    /// Deletes up to `limit` idempotency records (application `Idempotency-Key`s)
    /// stored before `before` (ms since the epoch); returns how many. The same
    /// key afterwards stores a new message.
    async fn forget_idempotency(&self, before: i64, limit: u32) -> Result<u64, StoreError>;

    /// Records (or with `None` clears) a conversation's degraded menu.
    async fn set_menu(
        &self,
        conversation_key: &str,
        menu: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;
}

/// The result of [`Store::remember`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// New: the value and its jobs were stored.
    New,
    /// A value existed; nothing was stored. Here it is.
    Existing(String),
}
