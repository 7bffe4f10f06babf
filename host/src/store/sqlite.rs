//! The embedded SQLite store: one file, WAL, `synchronous=FULL`, group commit.
//!
//! Writes go through `writer`: one thread owning the only write connection,
//! which commits each batch of waiting writes in one transaction before it
//! answers them. Reads use a few read-only connections (`readers`) on
//! blocking threads, which WAL lets run beside the writer. One driver,
//! rusqlite, for both.

mod acklog;
mod event_ids;
mod jobs;
mod readers;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use rusqlite::config::DbConfig;
use rusqlite::{OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

pub use crate::clock::Clock;

use super::dedupe::KeyHash;
use super::{
    Accepted, Attempt, ConversationJob, DeadLetter, Job, Link, NewJob, Outcome, Pruned, Queue,
    QueueCounts, RecentConversation, Remembered, Store, StoreError, Want,
};
use readers::Readers;
use writer::{Aged, Durability, Env, Op, Reply, Scheduler};

/// The schema this version writes; `PRAGMA user_version` holds it.
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL DEFAULT '',
    conversation_key TEXT,
    next_seq INTEGER,
    dedupe_key TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_log ON jobs(run_at, seq) WHERE queue = 'inbound' AND state = 'pending';
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs(updated_at) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS jobs_open ON jobs(queue, state) WHERE state != 'done';
CREATE TABLE IF NOT EXISTS payloads (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS heads (
    queue TEXT NOT NULL,
    conversation_key TEXT NOT NULL,
    destination TEXT NOT NULL,
    head_seq INTEGER NOT NULL,
    tail_seq INTEGER NOT NULL,
    ready_at INTEGER NOT NULL,
    PRIMARY KEY (queue, conversation_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS heads_ready ON heads(queue, destination, ready_at, head_seq);
CREATE TABLE IF NOT EXISTS dedupe (
    slot INTEGER PRIMARY KEY,
    check_hash INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dedupe_age ON dedupe(seen_at);
CREATE TABLE IF NOT EXISTS dedupe_recent (
    id INTEGER PRIMARY KEY,
    slot INTEGER NOT NULL,
    check_hash INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency(created_at);
CREATE TABLE IF NOT EXISTS menus (
    conversation_key TEXT PRIMARY KEY,
    menu TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS menus_age ON menus(updated_at);
CREATE TABLE IF NOT EXISTS links (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS links_age ON links(updated_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    conversation TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_conversation ON outbox(channel, conversation, seq);
CREATE INDEX IF NOT EXISTS outbox_age ON outbox(created_at);
CREATE TABLE IF NOT EXISTS ack_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO ack_cursor (id, seq) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS syncs (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL
);
INSERT OR IGNORE INTO syncs (id, count) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS parsed_counts (
    minute INTEGER PRIMARY KEY,
    parsed INTEGER NOT NULL
);
"#;

/// Counters of the writer's work.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// SQLite VM steps spent finding jobs to claim: rows touched, not time.
    pub claim_steps: AtomicU64,
    /// Commits synced to disk (the others are synced by a later one).
    pub syncs: AtomicU64,
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Op>,
    readers: Arc<Readers>,
    /// Accepted webhooks, in a file and a writer of their own.
    acks: Arc<acklog::AckLog>,
    /// Whether any conversation may have a menu: until a channel degrades one,
    /// inbound messages skip the lookup (this process is the file's only writer).
    menus: Arc<AtomicBool>,
    /// Event ids recorded since the last merge (see `event_ids.rs`).
    recent_ids: event_ids::Recent,
    stats: Arc<WriterStats>,
}

/// How the writer batches; see `writer.rs`.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// Most acknowledgements in one transaction.
    pub max_batch: usize,
    /// Rows of workers' writes (claims, completions) each transaction takes
    /// beside its acknowledgements; see `writer.rs`.
    pub background_rows: usize,
    /// Longest a workers' commit waits to be synced; see `Durability` in
    /// `writer.rs`.
    pub sync_interval: Duration,
    /// Provider event ids gathered in memory before they are merged into the
    /// retention window's table in one sorted batch; see `event_ids.rs`.
    pub event_ids_per_merge: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            max_batch: 512,
            background_rows: 128,
            sync_interval: Duration::from_millis(100),
            event_ids_per_merge: 65_536,
        }
    }
}

/// Statements the writer keeps prepared.
const STATEMENT_CACHE: usize = 64;

/// Read-only connections kept for queries outside the writer.
const READERS: usize = 4;

/// The writer's page cache (SQLite's default is 2 MiB): the hot ends of the
/// tables and the dedupe keys' upper levels. Larger measured no faster and
/// costs every commit a longer page-cache sweep.
const CACHE_KIB: i64 = 16 * 1024;

/// WAL pages after which a commit copies the WAL into the database (SQLite's
/// default is 1,000, 4 MB). A page changed again and again between two
/// checkpoints — a random event-id page, a conversation's head, the ends of
/// the tables — is copied once per checkpoint however often it was
/// committed, so a longer WAL writes less to the disk (the sustained
/// benchmark: 13% fewer bytes per accepted webhook, more accepted and
/// delivered under full load; see the README's performance section).
const CHECKPOINT_PAGES: i64 = 8_000;

/// Event ids a writer turn inserts into the retention window's table while
/// a merge is under way (see `event_ids.rs`): a few milliseconds of the
/// turn, so that a merge of 65,536 holds no turn up for long.
const MERGE_CHUNK: usize = 4_096;

/// The unfinished jobs by queue and state, read from the `jobs_open` index
/// alone (its `WHERE` is the index's).
const OPEN_COUNTS: &str =
    "SELECT queue, state, COUNT(*) FROM jobs WHERE state != 'done' GROUP BY queue, state";

/// What every connection to either file is opened with. The query planner
/// stability guarantee keeps a statement's plan whatever values are bound:
/// without it SQLite compiles a statement with a bound `LIMIT` (a claim, a
/// read of the acknowledgement log) again each time the value changes.
fn tune(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Commits the transaction open on `conn`, one of `file`'s (`acks` or
/// `database`), and times it for `/metrics`: the fsync when `synced`, and
/// any checkpoint SQLite runs with it.
fn commit(conn: &rusqlite::Connection, file: &'static str, synced: bool) -> rusqlite::Result<()> {
    let started = std::time::Instant::now();
    conn.execute_batch("COMMIT")?;
    crate::metrics::store_commit(file, synced, started.elapsed());
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// One serving Patchbay process per file: with `release_leases` (what `serve`
    /// does) leases left by a previous process are released, so its unfinished
    /// jobs run again at once, and the acknowledgement log is opened for
    /// writing. Inspection commands open without it: the log is only read.
    pub async fn open(
        path: &Path,
        settings: WriterSettings,
        release_leases: bool,
    ) -> Result<SqliteStore, StoreError> {
        Self::open_with_clock(path, settings, release_leases, Clock::system()).await
    }

    /// [`open`](Self::open) with the clock the writer stamps rows with.
    pub async fn open_with_clock(
        path: &Path,
        settings: WriterSettings,
        release_leases: bool,
        clock: Clock,
    ) -> Result<SqliteStore, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        tune(&conn)?;
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        conn.pragma_update(None, "synchronous", "full")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        upgrade(&conn, clock.now())?;
        if release_leases {
            jobs::release_leases(&conn)?;
        }
        let menus: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM menus)", [], |r| r.get(0))?;
        let parsed: i64 = conn.query_row("SELECT seq FROM ack_cursor", [], |r| r.get(0))?;
        let readers = Arc::new(Readers::new(path.to_path_buf(), READERS));
        let max_batch = settings.max_batch.max(1);
        // Inspection commands beside a serving process only read the log.
        let acks = Arc::new(if release_leases {
            acklog::AckLog::open(path, parsed, max_batch)?
        } else {
            acklog::AckLog::inspect(path)
        });
        let (tx, rx) = mpsc::channel(max_batch * 4);
        let scheduler = Scheduler::new(settings.background_rows);
        let stats = Arc::new(WriterStats::default());
        let ids = event_ids::EventIds::load(&conn, settings.event_ids_per_merge, MERGE_CHUNK)?;
        let recent_ids = ids.recent();
        let env = Env {
            clock,
            stats: stats.clone(),
            ids: std::cell::RefCell::new(ids),
        };
        // The acknowledgement log forgets what the main database holds on disk.
        let log = acks.clone();
        let durability = Durability::new(
            settings.sync_interval,
            Box::new(move |recorded| log.forget_upto(recorded)),
        );
        writer::spawn(conn, rx, max_batch, scheduler, durability, env)
            .map_err(StoreError::Writer)?;
        Ok(SqliteStore {
            writer: tx,
            readers,
            acks,
            menus: Arc::new(AtomicBool::new(menus)),
            recent_ids,
            stats,
        })
    }

    /// Every queue's counts: with `done` (every job), or of the unfinished
    /// jobs only (the `jobs_open` index), `done` left at 0.
    async fn tally_jobs(&self, done: bool) -> Result<Vec<(Queue, QueueCounts)>, StoreError> {
        let jobs = if done {
            "SELECT queue, state, COUNT(*) FROM jobs GROUP BY queue, state"
        } else {
            OPEN_COUNTS
        };
        // Webhooks parsed straight from the acknowledgement log leave no job
        // row: those waiting are pending, those parsed in the retention
        // window done.
        let (rows, cursor, parsed) = self
            .readers
            .read(move |conn| {
                let rows: Vec<(String, String, i64)> = conn
                    .prepare_cached(jobs)?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let (cursor, parsed): (i64, i64) = conn.query_row(
                    "SELECT (SELECT seq FROM ack_cursor),
                            CASE WHEN ?1 THEN (SELECT COALESCE(SUM(parsed), 0) FROM parsed_counts)
                                 ELSE 0 END",
                    [done],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Ok((rows, cursor, parsed))
            })
            .await?;
        let waiting = self.acks.count_after(cursor).await?;
        Ok(super::tally(
            rows.into_iter().map(|(q, s, n)| (q, s, n as u64)),
            waiting,
            parsed as u64,
        ))
    }

    /// The last acknowledgement-log position recorded as parsed.
    async fn ack_cursor(&self) -> Result<i64, StoreError> {
        self.readers
            .read(|conn| conn.query_row("SELECT seq FROM ack_cursor", [], |r| r.get(0)))
            .await
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Creates the schema, or brings a file written by an earlier version up to
/// it, in one transaction.
fn upgrade(conn: &rusqlite::Connection, now: i64) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        // Every statement is IF NOT EXISTS: an index added since is created.
        return conn.execute_batch(SCHEMA);
    }
    let has_column = |table: &str, column: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            [table, column],
            |r| r.get(0),
        )
    };
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let upgraded = (|| {
        let had_jobs = has_column("jobs", "id")?;
        let had_heads = has_column("jobs", "next_seq")?;
        let had_ages = has_column("idempotency", "created_at")?;
        let had_idempotency = has_column("idempotency", "key")?;
        if had_jobs && !had_heads {
            // Schema 1: no destinations, no conversation lists.
            conn.execute_batch(
                "ALTER TABLE jobs ADD COLUMN destination TEXT NOT NULL DEFAULT '';
                 ALTER TABLE jobs ADD COLUMN next_seq INTEGER;
                 UPDATE jobs SET destination = CASE queue WHEN 'deliver' THEN 'application' ELSE channel END;
                 DROP INDEX IF EXISTS jobs_dedupe;
                 DROP INDEX IF EXISTS jobs_conversation;
                 DROP INDEX IF EXISTS jobs_due;
                 CREATE TABLE payloads (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);
                 INSERT INTO payloads (seq, payload) SELECT seq, payload FROM jobs;
                 ALTER TABLE jobs DROP COLUMN payload;",
            )?;
        }
        if had_idempotency && !had_ages {
            // Records from before had no age: they count from now, so none is
            // forgotten sooner than `keep_done_hours` after the upgrade.
            conn.execute(
                "ALTER TABLE idempotency ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0",
                [],
            )?;
            conn.execute("UPDATE idempotency SET created_at = ?1", [now])?;
        }
        conn.execute_batch(SCHEMA)?;
        if had_jobs && !had_heads {
            jobs::link_existing(conn)?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
    })();
    match upgraded {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn add(&self, jobs: Vec<NewJob>) -> Result<(), StoreError> {
        self.call(|r| Op::Add(jobs, r)).await
    }

    async fn accept(&self, job: NewJob) -> Result<(), StoreError> {
        self.acks.append(job).await.map(drop)
    }

    async fn accepted(&self, after: Option<i64>, limit: u32) -> Result<Vec<Accepted>, StoreError> {
        let after = match after {
            Some(seq) => seq,
            None => self.ack_cursor().await?,
        };
        self.acks.after(after, limit).await
    }

    async fn record_accepted(&self, parsed: Vec<(Accepted, Outcome)>) -> Result<usize, StoreError> {
        // The log forgets them once the writer has synced this record.
        self.call(|reply| Op::RecordAccepted { parsed, reply })
            .await
    }

    async fn claim(
        &self,
        queue: Queue,
        wants: Vec<Want>,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<Job>, StoreError> {
        self.call(|reply| Op::Claim {
            queue,
            wants,
            now,
            lease_ms,
            reply,
        })
        .await
    }

    async fn complete_many(&self, done: Vec<(String, Vec<NewJob>)>) -> Result<usize, StoreError> {
        self.call(|r| Op::Complete(done, r)).await
    }

    async fn seen(&self, keys: Vec<(String, String)>) -> Result<Vec<bool>, StoreError> {
        // The ids in memory only (those recorded since the last merge): a
        // redelivery comes seconds after the original, and a lookup in the
        // window's table would cost every webhook a random page read to
        // spare the rare duplicate its parse. Recording drops the rest.
        let recent = event_ids::lock(&self.recent_ids);
        Ok(keys
            .iter()
            .map(|(channel, key)| {
                let hash = KeyHash::of(channel, key);
                recent.get(&hash.slot).map(|r| r.check) == Some(hash.check)
            })
            .collect())
    }

    async fn save_progress(&self, id: &str, payload: Vec<u8>) -> Result<(), StoreError> {
        self.call(|r| Op::Progress(id.to_string(), payload, r))
            .await
    }

    async fn retry(
        &self,
        id: &str,
        run_at: i64,
        error: &str,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let (id, error) = (id.to_string(), error.to_string());
        self.call(|reply| Op::Retry {
            id,
            run_at,
            error,
            attempt,
            reply,
        })
        .await
    }

    async fn bury(&self, id: &str, error: &str, follow_ups: Vec<NewJob>) -> Result<(), StoreError> {
        self.call(|r| Op::Bury(id.to_string(), error.to_string(), follow_ups, r))
            .await
    }

    async fn next_due(
        &self,
        queue: Queue,
        destinations: Vec<String>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        // The next *future* time only: what is ready now is claimed on wake-ups.
        self.readers
            .read(move |conn| {
                if queue == Queue::Inbound {
                    return conn
                        .prepare_cached(
                            "SELECT run_at FROM jobs
                             WHERE queue = 'inbound' AND state = 'pending' AND run_at > ?1
                             ORDER BY run_at LIMIT 1",
                        )?
                        .query_row([now], |r| r.get(0))
                        .optional();
                }
                let mut query = conn.prepare_cached(
                    "SELECT ready_at FROM heads WHERE queue = ?1 AND destination = ?2 AND ready_at > ?3
                     ORDER BY ready_at LIMIT 1",
                )?;
                let mut next: Option<i64> = None;
                for destination in destinations {
                    let due: Option<i64> = query
                        .query_row(rusqlite::params![queue.as_str(), destination, now], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    next = match (next, due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Ok(next)
            })
            .await
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.readers
            .read(move |conn| {
                let mut query = conn.prepare_cached(
                    "SELECT id, queue, channel, attempts, last_error, created_at, updated_at FROM jobs
                     WHERE state = 'dead' ORDER BY updated_at DESC, seq DESC LIMIT ?1",
                )?;
                let rows = query.query_map([limit as i64], |row| {
                    Ok((
                        row.get::<_, String>(1)?,
                        DeadLetter {
                            id: row.get(0)?,
                            queue: Queue::Deliver,
                            channel: row.get(2)?,
                            attempts: row.get::<_, i64>(3)? as u32,
                            last_error: row.get(4)?,
                            created_at: row.get(5)?,
                            updated_at: row.get(6)?,
                        },
                    ))
                })?;
                let mut letters = Vec::new();
                for row in rows {
                    let (queue, mut letter) = row?;
                    if let Some(queue) = Queue::parse(&queue) {
                        letter.queue = queue;
                        letters.push(letter);
                    }
                }
                Ok(letters)
            })
            .await
    }

    async fn replay(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        self.call(|r| Op::Replay(id.to_string(), now, r)).await
    }

    async fn waiting_destinations(&self, queue: Queue) -> Result<Vec<(String, u64)>, StoreError> {
        let queue = queue.as_str();
        self.readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT destination, COUNT(*) FROM heads WHERE queue = ?1 GROUP BY destination",
                )?
                .query_map([queue], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect()
            })
            .await
    }

    async fn counts(&self) -> Result<Vec<(Queue, QueueCounts)>, StoreError> {
        self.tally_jobs(true).await
    }

    async fn open_counts(&self) -> Result<Vec<(Queue, QueueCounts)>, StoreError> {
        self.tally_jobs(false).await
    }

    async fn remember(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        jobs: Vec<NewJob>,
    ) -> Result<Remembered, StoreError> {
        let (scope, key, value) = (scope.to_string(), key.to_string(), value.to_string());
        self.call(|reply| Op::Remember {
            scope,
            key,
            value,
            jobs,
            reply,
        })
        .await
    }

    async fn menu(&self, conversation_key: &str) -> Result<Option<String>, StoreError> {
        if !self.menus.load(Ordering::Acquire) {
            return Ok(None);
        }
        let key = conversation_key.to_string();
        self.readers
            .read(move |conn| {
                conn.prepare_cached("SELECT menu FROM menus WHERE conversation_key = ?1")?
                    .query_row([key], |r| r.get(0))
                    .optional()
            })
            .await
    }

    async fn prune(
        &self,
        from: Option<i64>,
        before: i64,
        limit: u32,
    ) -> Result<Pruned, StoreError> {
        self.call(|r| Op::Prune(from, before, limit, r)).await
    }

    async fn forget_idempotency(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.call(|r| Op::Forget(Aged::IdempotencyKeys, before, limit, r))
            .await
    }

    async fn forget_dedupe(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.call(|r| Op::Forget(Aged::EventIds, before, limit, r))
            .await
    }

    async fn forget_menus(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.call(|r| Op::Forget(Aged::Menus, before, limit, r))
            .await
    }

    async fn forget_links(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.call(|r| Op::Forget(Aged::Links, before, limit, r))
            .await
    }

    async fn outbox_push(
        &self,
        channel: &str,
        conversation: &str,
        body: Vec<u8>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let (channel, conversation) = (channel.to_string(), conversation.to_string());
        self.call(|reply| Op::Outbox {
            channel,
            conversation,
            body,
            at: now,
            reply,
        })
        .await
    }

    async fn outbox_read(
        &self,
        channel: &str,
        conversation: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let (channel, conversation) = (channel.to_string(), conversation.to_string());
        self.readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT seq, body FROM outbox
                     WHERE channel = ?1 AND conversation = ?2 AND seq > ?3
                     ORDER BY seq LIMIT ?4",
                )?
                .query_map(params![channel, conversation, after, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            })
            .await
    }

    async fn forget_outbox(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.call(|r| Op::Forget(Aged::Outbox, before, limit, r))
            .await
    }

    async fn link(&self, links: Vec<Link>, now: i64) -> Result<(), StoreError> {
        if links.is_empty() {
            return Ok(());
        }
        self.call(|r| Op::Link(links, now, r)).await
    }

    async fn linked(&self, scope: &str, key: &str) -> Result<Option<String>, StoreError> {
        let (scope, key) = (scope.to_string(), key.to_string());
        self.readers
            .read(move |conn| {
                conn.prepare_cached("SELECT value FROM links WHERE scope = ?1 AND key = ?2")?
                    .query_row([scope, key], |r| r.get(0))
                    .optional()
            })
            .await
    }

    async fn set_menu(
        &self,
        conversation_key: &str,
        menu: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (key, menu) = (conversation_key.to_string(), menu.map(str::to_string));
        if menu.is_some() {
            // Before the write, so a lookup that can see the menu knows to look.
            self.menus.store(true, Ordering::Release);
        }
        self.call(|r| Op::SetMenu(key, menu, now, r)).await
    }

    async fn oldest_due(&self, queue: Queue, now: i64) -> Result<Option<i64>, StoreError> {
        let (name, log) = (queue.as_str(), queue == Queue::Inbound);
        let (cursor, table): (i64, Option<i64>) = self
            .readers
            .read(move |conn| {
                let cursor = conn.query_row("SELECT seq FROM ack_cursor", [], |r| r.get(0))?;
                let oldest = if log {
                    conn.query_row(
                        "SELECT min(run_at) FROM jobs WHERE queue = 'inbound' AND state = 'pending'
                         AND run_at <= ?1 AND lease_until <= ?1",
                        [now],
                        |r| r.get(0),
                    )?
                } else {
                    conn.query_row(
                        "SELECT min(ready_at) FROM heads WHERE queue = ?1 AND ready_at <= ?2",
                        rusqlite::params![name, now],
                        |r| r.get(0),
                    )?
                };
                Ok((cursor, oldest))
            })
            .await?;
        if !log {
            return Ok(table);
        }
        let waiting = self.acks.oldest_after(cursor).await?;
        Ok([table, waiting].into_iter().flatten().min())
    }

    async fn recent_conversations(
        &self,
        limit: u32,
    ) -> Result<Vec<RecentConversation>, StoreError> {
        let rows: Vec<(String, i64, i64)> = self
            .readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT conversation_key, COUNT(*), MAX(created_at) FROM (
                         SELECT conversation_key, created_at FROM jobs
                         WHERE queue != 'inbound' ORDER BY seq DESC LIMIT ?1)
                     GROUP BY conversation_key ORDER BY MAX(created_at) DESC LIMIT ?2",
                )?
                .query_map(rusqlite::params![super::RECENT_JOBS, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(key, n, at)| RecentConversation::from_key(&key, n as u64, at))
            .collect())
    }

    async fn conversation_jobs(
        &self,
        conversation_key: &str,
        limit: u32,
    ) -> Result<Vec<ConversationJob>, StoreError> {
        let key = conversation_key.to_string();
        let rows: Vec<(String, String, i64, Vec<u8>)> = self
            .readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT j.queue, j.state, j.created_at, p.payload FROM (
                         SELECT seq, queue, state, created_at, conversation_key FROM jobs
                         WHERE queue != 'inbound' ORDER BY seq DESC LIMIT ?1) j
                     JOIN payloads p ON p.seq = j.seq
                     WHERE j.conversation_key = ?2 ORDER BY j.seq DESC LIMIT ?3",
                )?
                .query_map(params![super::RECENT_JOBS, key, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect()
            })
            .await?;
        Ok(super::conversation_jobs_from(rows))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.call(Op::Ping).await
    }
}

#[cfg(test)]
mod tests;
