//! The embedded SQLite store: one file, WAL, `synchronous=FULL`, group commit.
//!
//! Writes go through one writer task that owns the only write connection. It
//! takes every write waiting in its channel (up to `max_batch`), runs each inside
//! a savepoint of one `BEGIN IMMEDIATE` transaction, commits once, and only then
//! answers the callers — so a caller that got `Ok` knows its write is on disk,
//! and a burst of N webhooks costs one fsync rather than N. Reads use a separate
//! small pool (WAL lets them run beside the writer).

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{Added, DeadLetter, Job, NewJob, Queue, QueueCounts, Remembered, Store, StoreError};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    channel TEXT NOT NULL,
    conversation_key TEXT,
    dedupe_key TEXT,
    payload BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedupe ON jobs(queue, channel, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(queue, state, run_at, seq);
CREATE INDEX IF NOT EXISTS jobs_conversation ON jobs(queue, conversation_key, state, seq) WHERE conversation_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS menus (
    conversation_key TEXT PRIMARY KEY,
    menu TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
"#;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, with where to send its result once the transaction commits.
enum Op {
    Add(Vec<NewJob>, Reply<Vec<Added>>),
    Claim {
        queue: Queue,
        now: i64,
        lease_ms: i64,
        limit: u32,
        reply: Reply<Vec<Job>>,
    },
    Complete(String, Vec<NewJob>, Reply<()>),
    CompleteMany(Vec<(String, Vec<NewJob>)>, Reply<()>),
    Progress(String, Vec<u8>, Reply<()>),
    Retry(String, i64, String, Reply<()>),
    Bury(String, String, Vec<NewJob>, Reply<()>),
    Replay(String, i64, Reply<bool>),
    Remember {
        scope: String,
        key: String,
        value: String,
        jobs: Vec<NewJob>,
        reply: Reply<Remembered>,
    },
    SetMenu(String, Option<String>, i64, Reply<()>),
}

/// Sends a result after the commit: the op's own result, or the commit's failure.
type Finisher = Box<dyn FnOnce(Option<&str>) + Send>;

fn finisher<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Finisher {
    Box::new(move |commit_error| {
        let result = match commit_error {
            Some(e) => Err(StoreError::Commit(e.to_string())),
            None => result,
        };
        // The caller may have gone away (request cancelled); the write stands.
        let _ = reply.send(result);
    })
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Op>,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// One serving Patchbay process per file: with `release_leases` (what `serve`
    /// does) leases left by a previous process are released, so its unfinished
    /// jobs run again at once. Inspection commands open without it.
    pub async fn open(
        path: &Path,
        max_batch: usize,
        release_leases: bool,
    ) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::raw_sql(SCHEMA).execute(&mut conn).await?;
        if release_leases {
            sqlx::query(
                "UPDATE jobs SET lease_until = 0 WHERE state = 'pending' AND lease_until > 0",
            )
            .execute(&mut conn)
            .await?;
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (writer, rx) = mpsc::channel(max_batch.max(1) * 4);
        tokio::spawn(write_loop(conn, rx, max_batch.max(1)));
        Ok(SqliteStore { writer, reader })
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

async fn write_loop(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Op>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let mut finishers: Vec<Finisher> = Vec::with_capacity(batch.len());
        let commit_error = match sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await {
            Err(e) => Some(e.to_string()),
            Ok(_) => {
                let mut ops = batch.drain(..).peekable();
                while let Some(op) = ops.next() {
                    match op {
                        // Consecutive adds (a burst of webhooks) become one multi-row insert.
                        Op::Add(jobs, reply) => {
                            let mut adds = vec![(jobs, reply)];
                            while let Some(Op::Add(..)) = ops.peek() {
                                if let Some(Op::Add(jobs, reply)) = ops.next() {
                                    adds.push((jobs, reply));
                                }
                            }
                            finishers.extend(add_many(&mut conn, adds).await);
                        }
                        // Consecutive completions (workers finishing jobs) become one update.
                        Op::Complete(..) | Op::CompleteMany(..) => {
                            let mut group = vec![op];
                            while let Some(Op::Complete(..) | Op::CompleteMany(..)) = ops.peek() {
                                if let Some(next) = ops.next() {
                                    group.push(next);
                                }
                            }
                            finishers.extend(complete_group(&mut conn, group).await);
                        }
                        op => finishers.push(run_one(&mut conn, op).await),
                    }
                }
                match sqlx::query("COMMIT").execute(&mut conn).await {
                    Ok(_) => None,
                    Err(e) => {
                        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
                        Some(e.to_string())
                    }
                }
            }
        };
        if let Some(e) = &commit_error {
            tracing::error!(error = %e, "store transaction failed");
            // Ops never started (BEGIN failed) still get an answer.
            for op in batch.drain(..) {
                finishers.push(fail_op(op, e));
            }
        }
        for finish in finishers {
            finish(commit_error.as_deref());
        }
    }
}

/// Inserts the jobs of several `Add` ops with as few statements as possible.
async fn add_many(
    conn: &mut SqliteConnection,
    adds: Vec<(Vec<NewJob>, Reply<Vec<Added>>)>,
) -> Vec<Finisher> {
    let all: Vec<&NewJob> = adds.iter().flat_map(|(jobs, _)| jobs.iter()).collect();
    match insert_jobs(conn, &all).await {
        Ok(stored) => adds
            .into_iter()
            .map(|(jobs, reply)| {
                let result = jobs
                    .iter()
                    .map(|j| {
                        if stored.contains(&j.id) {
                            Added::Stored(j.id.clone())
                        } else {
                            Added::Duplicate
                        }
                    })
                    .collect();
                finisher(reply, Ok(result))
            })
            .collect(),
        Err(e) => {
            let why = e.to_string();
            adds.into_iter()
                .map(|(_, reply)| finisher(reply, Err(StoreError::Commit(why.clone()))))
                .collect()
        }
    }
}

/// Completes the jobs of several `Complete`/`CompleteMany` ops with one update
/// and one insert, inside one savepoint.
async fn complete_group(conn: &mut SqliteConnection, group: Vec<Op>) -> Vec<Finisher> {
    let mut ids: Vec<String> = Vec::new();
    let mut follow_ups: Vec<NewJob> = Vec::new();
    let mut replies = Vec::with_capacity(group.len());
    for op in group {
        match op {
            Op::Complete(id, jobs, reply) => {
                ids.push(id);
                follow_ups.extend(jobs);
                replies.push(reply);
            }
            Op::CompleteMany(done, reply) => {
                for (id, jobs) in done {
                    ids.push(id);
                    follow_ups.extend(jobs);
                }
                replies.push(reply);
            }
            _ => unreachable!("complete_group takes completions only"),
        }
    }
    let result = async {
        sqlx::query("SAVEPOINT op").execute(&mut *conn).await?;
        let r = async {
            finish_jobs(conn, &ids, "done", None).await?;
            let refs: Vec<&NewJob> = follow_ups.iter().collect();
            insert_jobs(conn, &refs).await.map(drop)
        }
        .await;
        let end = if r.is_ok() {
            "RELEASE op"
        } else {
            "ROLLBACK TO op; RELEASE op"
        };
        sqlx::raw_sql(end).execute(&mut *conn).await?;
        r
    }
    .await;
    let why = result.as_ref().err().map(|e| e.to_string());
    replies
        .into_iter()
        .map(|reply| match &why {
            None => finisher(reply, Ok(())),
            Some(why) => finisher(reply, Err(StoreError::Commit(why.clone()))),
        })
        .collect()
}

/// Runs one op; multi-statement ops run in a savepoint so a failure does not
/// undo their batch-mates (a single statement is atomic by itself).
async fn run_one(conn: &mut SqliteConnection, op: Op) -> Finisher {
    let needs_savepoint = matches!(op, Op::Bury(..) | Op::Remember { .. });
    if !needs_savepoint {
        return run_op(conn, op).await.0;
    }
    if let Err(e) = sqlx::query("SAVEPOINT op").execute(&mut *conn).await {
        return fail_op(op, &e.to_string());
    }
    let (finish, ok) = run_op(conn, op).await;
    let end = if ok {
        "RELEASE op"
    } else {
        "ROLLBACK TO op; RELEASE op"
    };
    if let Err(e) = sqlx::raw_sql(end).execute(&mut *conn).await {
        tracing::error!(error = %e, "savepoint release failed");
    }
    finish
}

fn fail_op(op: Op, why: &str) -> Finisher {
    fn f<T: Send + 'static>(reply: Reply<T>, why: &str) -> Finisher {
        finisher(reply, Err(StoreError::Commit(why.to_string())))
    }
    match op {
        Op::Add(_, r) => f(r, why),
        Op::Claim { reply, .. } => f(reply, why),
        Op::Complete(_, _, r)
        | Op::Progress(_, _, r)
        | Op::Retry(_, _, _, r)
        | Op::Bury(_, _, _, r) => f(r, why),
        Op::CompleteMany(_, r) => f(r, why),
        Op::Replay(_, _, r) => f(r, why),
        Op::Remember { reply, .. } => f(reply, why),
        Op::SetMenu(_, _, _, r) => f(r, why),
    }
}

/// One finisher that runs several.
fn all(finishers: Vec<Finisher>) -> Finisher {
    Box::new(move |commit_error| finishers.into_iter().for_each(|f| f(commit_error)))
}

async fn run_op(conn: &mut SqliteConnection, op: Op) -> (Finisher, bool) {
    fn done<T: Send + 'static>(reply: Reply<T>, r: Result<T, sqlx::Error>) -> (Finisher, bool) {
        let ok = r.is_ok();
        (finisher(reply, r.map_err(StoreError::Database)), ok)
    }
    match op {
        // The write loop coalesces these; one arriving alone takes the same path.
        Op::Add(jobs, reply) => (all(add_many(conn, vec![(jobs, reply)]).await), true),
        op @ (Op::Complete(..) | Op::CompleteMany(..)) => {
            (all(complete_group(conn, vec![op]).await), true)
        }
        Op::Claim {
            queue,
            now,
            lease_ms,
            limit,
            reply,
        } => done(reply, claim(conn, queue, now, lease_ms, limit).await),
        Op::Progress(id, payload, reply) => {
            let r = sqlx::query("UPDATE jobs SET payload = ?1 WHERE id = ?2")
                .bind(payload)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map(drop);
            done(reply, r)
        }
        Op::Retry(id, run_at, error, reply) => {
            let r = sqlx::query(
                "UPDATE jobs SET run_at = ?1, lease_until = 0, last_error = ?2, updated_at = ?3 WHERE id = ?4",
            )
            .bind(run_at)
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *conn)
            .await
            .map(drop);
            done(reply, r)
        }
        Op::Bury(id, error, follow_ups, reply) => {
            let r = async {
                finish_jobs(conn, std::slice::from_ref(&id), "dead", Some(&error)).await?;
                add(conn, &follow_ups).await.map(drop)
            }
            .await;
            done(reply, r)
        }
        Op::Replay(id, now, reply) => {
            let r = sqlx::query(
                "UPDATE jobs SET state = 'pending', attempts = 0, run_at = ?1, lease_until = 0, updated_at = ?1
                 WHERE id = ?2 AND state = 'dead'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected() == 1);
            done(reply, r)
        }
        Op::Remember {
            scope,
            key,
            value,
            jobs,
            reply,
        } => {
            let r = async {
                let existing: Option<String> = sqlx::query_scalar(
                    "SELECT value FROM idempotency WHERE scope = ?1 AND key = ?2",
                )
                .bind(&scope)
                .bind(&key)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(value) = existing {
                    return Ok(Remembered::Existing(value));
                }
                sqlx::query("INSERT INTO idempotency (scope, key, value) VALUES (?1, ?2, ?3)")
                    .bind(&scope)
                    .bind(&key)
                    .bind(&value)
                    .execute(&mut *conn)
                    .await?;
                add(conn, &jobs).await?;
                Ok(Remembered::New)
            }
            .await;
            done(reply, r)
        }
        Op::SetMenu(key, menu, now, reply) => {
            let r = match menu {
                Some(menu) => sqlx::query(
                    "INSERT INTO menus (conversation_key, menu, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (conversation_key) DO UPDATE SET menu = excluded.menu, updated_at = excluded.updated_at",
                )
                .bind(key)
                .bind(menu)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map(drop),
                None => sqlx::query("DELETE FROM menus WHERE conversation_key = ?1")
                    .bind(key)
                    .execute(&mut *conn)
                    .await
                    .map(drop),
            };
            done(reply, r)
        }
    }
}

async fn add(conn: &mut SqliteConnection, jobs: &[NewJob]) -> Result<Vec<Added>, sqlx::Error> {
    let refs: Vec<&NewJob> = jobs.iter().collect();
    let stored = insert_jobs(conn, &refs).await?;
    Ok(jobs
        .iter()
        .map(|j| {
            if stored.contains(&j.id) {
                Added::Stored(j.id.clone())
            } else {
                Added::Duplicate
            }
        })
        .collect())
}

/// Rows per INSERT: wide enough to amortise the statement, narrow enough that
/// binding (which looks parameters up by position) stays cheap.
const INSERT_CHUNK: usize = 64;

/// Inserts jobs, skipping dedupe-key duplicates; returns the ids stored.
async fn insert_jobs(
    conn: &mut SqliteConnection,
    jobs: &[&NewJob],
) -> Result<HashSet<String>, sqlx::Error> {
    let now = now_ms();
    let mut stored = HashSet::with_capacity(jobs.len());
    if jobs.is_empty() {
        return Ok(stored);
    }
    for chunk in jobs.chunks(INSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO jobs (id, queue, channel, conversation_key, dedupe_key, payload, run_at, created_at, updated_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let b = i * 8;
            sql.push_str(&format!(
                "(?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 8
            ));
        }
        sql.push_str(" ON CONFLICT (queue, channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id");
        // Built only from placeholders; every value is bound.
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for job in chunk {
            query = query
                .bind(&job.id)
                .bind(job.queue.as_str())
                .bind(&job.channel)
                .bind(&job.conversation_key)
                .bind(&job.dedupe_key)
                .bind(&job.payload)
                .bind(job.run_at)
                .bind(now);
        }
        stored.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(stored)
}

async fn claim(
    conn: &mut SqliteConnection,
    queue: Queue,
    now: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<Job>, sqlx::Error> {
    // At most one job per conversation: a job waits while an older job of its
    // conversation is still pending (queued, leased or backing off).
    let rows = sqlx::query(
        "UPDATE jobs SET lease_until = ?1, attempts = attempts + 1, updated_at = ?2
         WHERE seq IN (
             SELECT j.seq FROM jobs j
             WHERE j.queue = ?3 AND j.state = 'pending' AND j.run_at <= ?2 AND j.lease_until <= ?2
               AND (j.conversation_key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM jobs e
                   WHERE e.queue = j.queue AND e.conversation_key = j.conversation_key
                     AND e.state = 'pending' AND e.seq < j.seq))
             ORDER BY j.run_at, j.seq LIMIT ?4)
         RETURNING seq, id, channel, payload, attempts",
    )
    .bind(now + lease_ms)
    .bind(now)
    .bind(queue.as_str())
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    let mut jobs: Vec<(i64, Job)> = rows
        .into_iter()
        .map(|row| {
            (
                row.get::<i64, _>("seq"),
                Job {
                    id: row.get("id"),
                    queue,
                    channel: row.get("channel"),
                    payload: row.get("payload"),
                    attempts: row.get::<i64, _>("attempts") as u32,
                },
            )
        })
        .collect();
    jobs.sort_by_key(|(seq, _)| *seq);
    Ok(jobs.into_iter().map(|(_, job)| job).collect())
}

/// Sets the state of many jobs in one statement.
async fn finish_jobs(
    conn: &mut SqliteConnection,
    ids: &[String],
    state: &str,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "UPDATE jobs SET state = ?1, lease_until = 0, last_error = COALESCE(?2, last_error), updated_at = ?3
         WHERE id IN (SELECT value FROM json_each(?4))",
    )
    .bind(state)
    .bind(error)
    .bind(now_ms())
    .bind(ids)
    .execute(&mut *conn)
    .await
    .map(drop)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[async_trait]
impl Store for SqliteStore {
    async fn add(&self, jobs: Vec<NewJob>) -> Result<Vec<Added>, StoreError> {
        self.call(|r| Op::Add(jobs, r)).await
    }

    async fn claim(
        &self,
        queue: Queue,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.call(|reply| Op::Claim {
            queue,
            now,
            lease_ms,
            limit,
            reply,
        })
        .await
    }

    async fn complete(&self, id: &str, follow_ups: Vec<NewJob>) -> Result<(), StoreError> {
        self.call(|r| Op::Complete(id.to_string(), follow_ups, r))
            .await
    }

    async fn complete_many(&self, done: Vec<(String, Vec<NewJob>)>) -> Result<(), StoreError> {
        self.call(|r| Op::CompleteMany(done, r)).await
    }

    async fn save_progress(&self, id: &str, payload: Vec<u8>) -> Result<(), StoreError> {
        self.call(|r| Op::Progress(id.to_string(), payload, r))
            .await
    }

    async fn retry(&self, id: &str, run_at: i64, error: &str) -> Result<(), StoreError> {
        self.call(|r| Op::Retry(id.to_string(), run_at, error.to_string(), r))
            .await
    }

    async fn bury(&self, id: &str, error: &str, follow_ups: Vec<NewJob>) -> Result<(), StoreError> {
        self.call(|r| Op::Bury(id.to_string(), error.to_string(), follow_ups, r))
            .await
    }

    async fn next_due(&self, queue: Queue) -> Result<Option<i64>, StoreError> {
        // The next *future* run time only: jobs already due but blocked (leased, or
        // behind an older job of their conversation) are picked up on wake-ups.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT run_at FROM jobs WHERE queue = ?1 AND state = 'pending' AND run_at > ?2
             ORDER BY run_at LIMIT 1",
        )
        .bind(queue.as_str())
        .bind(now_ms())
        .fetch_optional(&self.reader)
        .await?;
        Ok(due)
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, queue, channel, attempts, last_error, created_at, updated_at FROM jobs
             WHERE state = 'dead' ORDER BY updated_at DESC, seq DESC LIMIT ?1",
        )
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(DeadLetter {
                    id: row.get("id"),
                    queue: Queue::parse(row.get::<&str, _>("queue"))?,
                    channel: row.get("channel"),
                    attempts: row.get::<i64, _>("attempts") as u32,
                    last_error: row.get("last_error"),
                    created_at: row.get("created_at"),
                    updated_at: row.get("updated_at"),
                })
            })
            .collect())
    }

    async fn replay(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        self.call(|r| Op::Replay(id.to_string(), now, r)).await
    }

    async fn counts(&self) -> Result<Vec<(Queue, QueueCounts)>, StoreError> {
        let rows =
            sqlx::query("SELECT queue, state, COUNT(*) AS n FROM jobs GROUP BY queue, state")
                .fetch_all(&self.reader)
                .await?;
        let mut out: Vec<(Queue, QueueCounts)> = [Queue::Inbound, Queue::Deliver, Queue::Outbound]
            .into_iter()
            .map(|q| (q, QueueCounts::default()))
            .collect();
        for row in rows {
            let Some(queue) = Queue::parse(row.get::<&str, _>("queue")) else {
                continue;
            };
            let n = row.get::<i64, _>("n") as u64;
            if let Some((_, counts)) = out.iter_mut().find(|(q, _)| *q == queue) {
                match row.get::<&str, _>("state") {
                    "pending" => counts.pending = n,
                    "done" => counts.done = n,
                    "dead" => counts.dead = n,
                    _ => {}
                }
            }
        }
        Ok(out)
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
        Ok(
            sqlx::query_scalar("SELECT menu FROM menus WHERE conversation_key = ?1")
                .bind(conversation_key)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn set_menu(
        &self,
        conversation_key: &str,
        menu: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (key, menu) = (conversation_key.to_string(), menu.map(str::to_string));
        self.call(|r| Op::SetMenu(key, menu, now, r)).await
    }
}
