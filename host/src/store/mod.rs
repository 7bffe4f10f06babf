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
//! the dead-letter list, replayable). Finishing a job and creating the jobs
//! that follow from it happen in one transaction, so a crash never loses or
//! doubles a step.
//!
//! # The queue model: costs that do not grow with the table
//!
//! - **Accepting appends.** An accepted webhook is one appended row and a
//!   share of a group commit. Its provider event id is *not* checked on the
//!   acknowledgement path: duplicates get the same acknowledgement anyway.
//!   The key is checked when the parsed webhook is recorded (the jobs it
//!   produces and its key in one transaction, a parser batch at a time), so
//!   a duplicate is never delivered twice and the random keys of a retention
//!   window cost the acknowledgement nothing. SQLite keeps the recent keys in
//!   memory and in an append-only table, and merges them into the window's
//!   table in large sorted batches (see `sqlite/event_ids.rs`). See [`dedupe`].
//! - **Conversation heads.** Jobs of one conversation (`deliver`, `outbound`)
//!   form a list; a small table holds each waiting conversation's head and
//!   when it is ready. A claim reads ready heads from an index, so it costs
//!   the same with 10 or 100,000 jobs waiting behind them, and a conversation's
//!   next job is never handed out while an earlier one is leased, backing off,
//!   or being recorded. The `inbound` queue is a log, claimed in arrival order.
//! - **Destinations.** Each job is bound for a destination (the application,
//!   or one channel's provider). Claims ask per destination, so a destination
//!   the workers have paused (see `patchbay_core::breaker`) costs nothing while
//!   its backlog grows, and resumes from the same index.
//!
//! Two implementations, one behaviour (`suite.rs` runs the same tests on
//! both):
//!
//! - [`sqlite`], the embedded default. It **group-commits**: one writer, on
//!   its own thread, drains every pending write into one transaction, so many
//!   requests share one fsync and nothing is acknowledged before its commit;
//!   accepted webhooks go to a log file with a writer of its own.
//! - [`postgres`], one database shared by several replicas: the same tables,
//!   acknowledgements group-committed per replica, one parser at a time
//!   (an advisory lock), heads claimed with `FOR UPDATE SKIP LOCKED`,
//!   wake-ups by `LISTEN/NOTIFY`, and pauses shared through the store.

pub mod dedupe;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use async_trait::async_trait;
use serde::Serialize;

pub use postgres::{PostgresSettings, PostgresStore};
pub use sqlite::{SqliteStore, WriterSettings};

/// Store failures. Messages never contain payloads.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed a read or a write (the backend's own message).
    #[error("database error: {0}")]
    Database(String),
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

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting, or leased by a worker.
    Pending,
    /// Finished.
    Done,
    /// Given up (a dead letter).
    Dead,
}

impl JobState {
    /// The name the store writes.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [JobState::Pending, JobState::Done, JobState::Dead]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
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

    /// The queue named `s`.
    pub fn parse(s: &str) -> Option<Queue> {
        Some(match s {
            "inbound" => Queue::Inbound,
            "deliver" => Queue::Deliver,
            "outbound" => Queue::Outbound,
            _ => return None,
        })
    }
}

/// The destination of `deliver` jobs of channels served by the 0.1
/// `[application]`: its upstream's name.
pub const APPLICATION: &str = crate::config::LEGACY_UPSTREAM;

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id (a UUIDv7 string).
    pub id: String,
    /// Its queue.
    pub queue: Queue,
    /// The channel it concerns.
    pub channel: String,
    /// Where it goes: [`APPLICATION`] for `deliver` jobs, the channel for
    /// `outbound` ones. Claims ask per destination.
    pub destination: String,
    /// Jobs with the same key run one at a time, in creation order. A
    /// `deliver` or `outbound` job without one is a conversation of its own;
    /// `inbound` jobs run in arrival order regardless.
    pub conversation_key: Option<String>,
    /// A provider's event id: of the jobs with the same `(channel, dedupe_key)`,
    /// only the first one completed produces follow-ups (see [`dedupe`]).
    pub dedupe_key: Option<String>,
    /// The payload, JSON.
    pub payload: Vec<u8>,
    /// Earliest time to run, ms since the epoch.
    pub run_at: i64,
}

impl NewJob {
    /// The job as a worker holds it on its first attempt.
    pub fn into_claimed(self) -> Job {
        Job {
            id: self.id,
            queue: self.queue,
            channel: self.channel,
            destination: self.destination,
            payload: self.payload,
            attempts: 1,
            dedupe_key: self.dedupe_key,
        }
    }
}

/// Up to `limit` jobs bound for `destination`, for [`Store::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The destination.
    pub destination: String,
    /// Most jobs to lease for it.
    pub limit: u32,
}

/// Whether a failed attempt counts towards the job's `max_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// It counts: the job itself failed.
    Counted,
    /// It does not: the destination was down (a paused destination's
    /// failures say nothing about the job).
    Refunded,
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
    /// Where it goes.
    pub destination: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The provider's event id, if it gave one.
    pub dedupe_key: Option<String>,
}

impl Job {
    /// This webhook as a job of the `inbound` table, to run at `run_at`: what
    /// a webhook from the acknowledgement log becomes when parsing it failed.
    pub fn to_inbound(&self, run_at: i64) -> NewJob {
        NewJob {
            id: self.id.clone(),
            queue: Queue::Inbound,
            channel: self.channel.clone(),
            destination: self.destination.clone(),
            conversation_key: None,
            dedupe_key: self.dedupe_key.clone(),
            payload: self.payload.clone(),
            run_at,
        }
    }
}

/// A webhook in the acknowledgement log, not parsed yet.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its position in the log.
    pub seq: i64,
    /// The webhook, as an `inbound` job on its first attempt.
    pub job: Job,
}

/// What parsing an accepted webhook came to, recorded with
/// [`Store::record_accepted`].
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Parsed: these jobs follow (none for a duplicate).
    Done(Vec<NewJob>),
    /// Failed for now: an `inbound` job to try again at `run_at`.
    Retry {
        /// When.
        run_at: i64,
        /// Why it failed.
        error: String,
    },
    /// Given up: a dead letter.
    Dead(String),
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

/// A conversation with recent traffic, for the admin console.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecentConversation {
    /// The channel it is on.
    pub channel: String,
    /// The conversation's id on that channel.
    pub conversation: String,
    /// Messages and receipts of it among the most recent jobs.
    pub jobs: u64,
    /// When its latest job was created, ms since the epoch.
    pub last_at: i64,
}

impl RecentConversation {
    /// From a stored conversation key (`channel` US `conversation`).
    fn from_key(key: &str, jobs: u64, last_at: i64) -> RecentConversation {
        let (channel, conversation) = key.split_once('\u{1f}').unwrap_or(("", key));
        RecentConversation {
            channel: channel.to_string(),
            conversation: conversation.to_string(),
            jobs,
            last_at,
        }
    }
}

/// One message or receipt of a conversation (see [`Store::conversation_jobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationJob {
    /// `deliver` (to the upstream) or `outbound` (to the customer).
    pub queue: Queue,
    /// Where it is.
    pub state: JobState,
    /// When it was stored, ms since the epoch.
    pub created_at: i64,
    /// The stored payload: a canonical message, or an outbound job's.
    pub payload: Vec<u8>,
}

/// Rows of `(queue, state, created_at, payload)`, newest first, as
/// [`ConversationJob`]s oldest first.
fn conversation_jobs_from(rows: Vec<(String, String, i64, Vec<u8>)>) -> Vec<ConversationJob> {
    let mut jobs: Vec<ConversationJob> = rows
        .into_iter()
        .filter_map(|(queue, state, created_at, payload)| {
            Some(ConversationJob {
                queue: Queue::parse(&queue)?,
                state: JobState::parse(&state)?,
                created_at,
                payload,
            })
        })
        .collect();
    jobs.reverse();
    jobs
}

/// How many of the newest jobs [`Store::recent_conversations`] looks at.
pub const RECENT_JOBS: i64 = 2_000;

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

/// Every queue's counts from `(queue, state, jobs)` rows of the jobs table,
/// with the acknowledgement log's webhooks added to `inbound`: those
/// `waiting` in it are pending, those `parsed` straight from it (no job row)
/// done.
fn tally(
    rows: impl IntoIterator<Item = (String, String, u64)>,
    waiting: u64,
    parsed: u64,
) -> Vec<(Queue, QueueCounts)> {
    let mut out: Vec<(Queue, QueueCounts)> = Queue::ALL
        .into_iter()
        .map(|q| (q, QueueCounts::default()))
        .collect();
    for (queue, state, n) in rows {
        let (Some(queue), Some(state)) = (Queue::parse(&queue), JobState::parse(&state)) else {
            continue;
        };
        if let Some((_, counts)) = out.iter_mut().find(|(q, _)| *q == queue) {
            match state {
                JobState::Pending => counts.pending = n,
                JobState::Done => counts.done = n,
                JobState::Dead => counts.dead = n,
            }
        }
    }
    if let Some((_, counts)) = out.iter_mut().find(|(q, _)| *q == Queue::Inbound) {
        counts.pending += waiting;
        counts.done += parsed;
    }
    out
}

/// Durable queues.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends jobs in one transaction (the group commit). Dedupe keys are
    /// checked at completion, not here.
    async fn add(&self, jobs: Vec<NewJob>) -> Result<(), StoreError>;

    /// Appends an accepted webhook (an `inbound` job) to the acknowledgement
    /// log: `Ok` once it is durable. It shares no transaction with other
    /// writes; [`accepted`](Store::accepted) hands it to the parser.
    async fn accept(&self, job: NewJob) -> Result<(), StoreError>;

    /// Up to `limit` accepted webhooks after log position `after` (`None`:
    /// after the last one recorded), in arrival order.
    async fn accepted(&self, after: Option<i64>, limit: u32) -> Result<Vec<Accepted>, StoreError>;

    /// Records what parsing accepted webhooks came to, in log order, and the
    /// log position they reach, atomically: their follow-ups (dropped for a
    /// dedupe key already completed — see [`complete_many`](Store::complete_many)),
    /// retries and dead letters as `inbound` jobs. Webhooks at or below the
    /// recorded position are ignored, so a record can be retried safely (or
    /// made by a replica that has since lost the parser's turn). Returns how
    /// many were duplicates.
    async fn record_accepted(&self, parsed: Vec<(Accepted, Outcome)>) -> Result<usize, StoreError>;

    /// Leases ready jobs of `queue` and counts the attempt: for each [`Want`],
    /// up to its limit of the heads of conversations bound for its destination,
    /// longest ready first. The `inbound` queue is a log: its jobs come in
    /// arrival order, up to the sum of the limits, whatever their destination.
    async fn claim(
        &self,
        queue: Queue,
        wants: Vec<Want>,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<Job>, StoreError>;

    /// Marks a job done and adds the jobs that follow from it, atomically.
    async fn complete(&self, id: &str, follow_ups: Vec<NewJob>) -> Result<(), StoreError> {
        self.complete_many(vec![(id.to_string(), follow_ups)])
            .await
            .map(drop)
    }

    /// Completes several jobs and adds their follow-ups, in order, atomically.
    /// A job whose dedupe key an earlier completed job had is a duplicate: it
    /// is marked done and its follow-ups are dropped. Returns how many were.
    /// Completing a job that is no longer pending changes nothing, so a
    /// completion can be retried safely.
    async fn complete_many(&self, done: Vec<(String, Vec<NewJob>)>) -> Result<usize, StoreError>;

    /// Which of these `(channel, dedupe key)` pairs a completed job already
    /// had: a hint that spares parsing a redelivery. It may answer from the
    /// recent ids only (SQLite looks in memory): the check that decides is
    /// the one recording the parse ([`complete_many`](Store::complete_many),
    /// [`record_accepted`](Store::record_accepted)).
    async fn seen(&self, keys: Vec<(String, String)>) -> Result<Vec<bool>, StoreError>;

    /// Replaces a leased job's payload (progress of a multi-part send).
    async fn save_progress(&self, id: &str, payload: Vec<u8>) -> Result<(), StoreError>;

    /// Releases a job to run again at `run_at`, recording the error; it stays
    /// the head of its conversation. A refunded attempt is not counted.
    async fn retry(
        &self,
        id: &str,
        run_at: i64,
        error: &str,
        attempt: Attempt,
    ) -> Result<(), StoreError>;

    /// Gives up on a job (dead letter), adding follow-ups (such as a `Failed` receipt).
    async fn bury(&self, id: &str, error: &str, follow_ups: Vec<NewJob>) -> Result<(), StoreError>;

    /// The earliest time after `now` at which a job of `queue` bound for one
    /// of `destinations` becomes ready (the `inbound` queue ignores them), for
    /// sleeping until then.
    async fn next_due(
        &self,
        queue: Queue,
        destinations: Vec<String>,
        now: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// Dead letters, newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;

    /// Puts a dead letter back in its queue with its attempts reset, behind
    /// what its conversation has waiting; false if no dead letter has that id.
    async fn replay(&self, id: &str, now: i64) -> Result<bool, StoreError>;

    /// Counts by queue and state.
    async fn counts(&self) -> Result<Vec<(Queue, QueueCounts)>, StoreError>;

    /// Counts by queue of the jobs not finished: `pending` and `dead` as in
    /// [`counts`](Store::counts), `done` left at 0. What `/metrics` reads at
    /// every scrape: only an index of the unfinished jobs, so a scrape costs
    /// what waits, not the retention window's finished jobs.
    async fn open_counts(&self) -> Result<Vec<(Queue, QueueCounts)>, StoreError>;

    /// The destinations conversations of `queue` wait for, with how many
    /// conversations wait for each (from the heads: cheap at any size).
    async fn waiting_destinations(&self, queue: Queue) -> Result<Vec<(String, u64)>, StoreError>;

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

    /// Looks at up to `limit` jobs in the order they were created, from just
    /// after `from` (a [`Pruned::next`], or `None` to start at the oldest),
    /// and deletes those finished (`done`) before `before` (ms since the
    /// epoch). Dead letters and pending jobs are kept.
    async fn prune(&self, from: Option<i64>, before: i64, limit: u32)
    -> Result<Pruned, StoreError>;

    /// Deletes up to `limit` dedupe keys recorded before `before`; returns how
    /// many. A redelivery of a forgotten key is delivered again.
    async fn forget_dedupe(&self, before: i64, limit: u32) -> Result<u64, StoreError>;

    /// Deletes up to `limit` idempotency records (application `Idempotency-Key`s)
    /// stored before `before` (ms since the epoch); returns how many. The same
    /// key afterwards stores a new message.
    async fn forget_idempotency(&self, before: i64, limit: u32) -> Result<u64, StoreError>;

    /// Deletes up to `limit` degraded menus last set before `before`; returns
    /// how many. A customer's "2" long after no longer picks from them.
    async fn forget_menus(&self, before: i64, limit: u32) -> Result<u64, StoreError>;

    /// Records links (upserting), in one transaction: upstream mappings such
    /// as a Patchbay message id → the platform's id for it.
    async fn link(&self, links: Vec<Link>, now: i64) -> Result<(), StoreError>;

    /// The value linked from `key` in `scope`, if any.
    async fn linked(&self, scope: &str, key: &str) -> Result<Option<String>, StoreError>;

    /// Deletes up to `limit` links last set before `before`; returns how many.
    async fn forget_links(&self, before: i64, limit: u32) -> Result<u64, StoreError>;

    /// Appends an entry to a conversation's outbox (what web chat customers
    /// read; see [`patchbay_plugin_sdk::adapter::OutboxPush`]) and returns
    /// its position. Positions grow within a conversation: its outbound jobs
    /// run one at a time.
    async fn outbox_push(
        &self,
        channel: &str,
        conversation: &str,
        body: Vec<u8>,
        now: i64,
    ) -> Result<i64, StoreError>;

    /// Up to `limit` outbox entries of a conversation after position `after`,
    /// oldest first, as `(position, body)`.
    async fn outbox_read(
        &self,
        channel: &str,
        conversation: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError>;

    /// Deletes up to `limit` outbox entries stored before `before`; returns
    /// how many. A customer reconnecting later no longer sees them.
    async fn forget_outbox(&self, before: i64, limit: u32) -> Result<u64, StoreError>;

    /// Records (or with `None` clears) a conversation's degraded menu.
    async fn set_menu(
        &self,
        conversation_key: &str,
        menu: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// When the job of `queue` that has waited longest while due became due
    /// (ms since the epoch); `None` when nothing due waits. Leased and
    /// backing-off jobs are not due.
    async fn oldest_due(&self, queue: Queue, now: i64) -> Result<Option<i64>, StoreError>;

    /// Up to `limit` conversations with the newest jobs (messages and
    /// receipts, either way), newest first; only the newest
    /// [`RECENT_JOBS`] jobs are looked at.
    async fn recent_conversations(&self, limit: u32)
    -> Result<Vec<RecentConversation>, StoreError>;

    /// The newest `limit` messages and receipts (`deliver` and `outbound`
    /// jobs, payloads included) of the conversation with key
    /// `conversation_key`, oldest first; only the newest [`RECENT_JOBS`]
    /// jobs are looked at.
    async fn conversation_jobs(
        &self,
        conversation_key: &str,
        limit: u32,
    ) -> Result<Vec<ConversationJob>, StoreError>;

    /// The backend's name, for operators: `sqlite` or `postgresql`.
    fn backend(&self) -> &'static str;

    /// Whether the store can commit now (what `/readyz` reports): a real
    /// write for SQLite, a writable primary for PostgreSQL.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Calls `wake` when work for a queue is added by *another* process
    /// sharing the database. A store only one process writes has nothing
    /// to report.
    fn on_work(&self, wake: Box<dyn Fn(Queue) + Send + Sync>) {
        let _ = wake;
    }

    /// Pauses `destination` for every process sharing the store until
    /// `until` (ms since the epoch), or longer if it is paused longer.
    /// A store only one process writes keeps pauses in memory instead.
    async fn pause(&self, destination: &str, until: i64, reason: &str) -> Result<(), StoreError> {
        let _ = (destination, until, reason);
        Ok(())
    }

    /// Ends a shared pause of `destination` (it answers again).
    async fn resume(&self, destination: &str) -> Result<(), StoreError> {
        let _ = destination;
        Ok(())
    }

    /// Destinations paused past `now`, with until when.
    async fn paused(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let _ = now;
        Ok(vec![])
    }
}

/// One mapping kept for an upstream (see `crate::upstreams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// What kind of key: `message:<upstream>`, `structured:<upstream>`.
    pub scope: String,
    /// The key.
    pub key: String,
    /// What it maps to.
    pub value: String,
}

/// What one [`Store::prune`] step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Jobs deleted.
    pub deleted: u64,
    /// Where the next step goes on from; `None` once the jobs looked at
    /// were created after the cutoff (or there are no more).
    pub next: Option<i64>,
}

/// The result of [`Store::remember`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// New: the value and its jobs were stored.
    New,
    /// A value existed; nothing was stored. Here it is.
    Existing(String),
}
