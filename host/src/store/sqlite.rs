//! The embedded SQLite store: one file, WAL, `synchronous=FULL`, group commit.
//!
//! Writes go through one writer that owns the only write connection and runs on
//! its own thread, so its turns never queue behind HTTP connections. It takes
//! every write waiting in its channel (up to `max_batch`), runs them in one
//! transaction and only then answers the callers — a caller that got `Ok` knows
//! its write is on disk, and a burst of N webhooks costs one fsync rather than N.
//!
//! Two things keep the writer's turns short, because each turn is what every
//! waiting webhook waits for:
//!
//! - **Few statements per turn.** The ops of a turn were all submitted
//!   concurrently (each caller awaits its answer), so any order is a valid one:
//!   a turn runs all inserts as one multi-row `INSERT`, all completions as one
//!   `UPDATE`, then the rest. A turn of webhooks alone is one `INSERT`, which
//!   SQLite commits by itself — one trip to the database thread.
//! - **Acknowledgements first.** Accepting a webhook or an application message
//!   is what a caller is waiting on; workers' claims and completions are not.
//!   Once the writer is busy (many acknowledgements arriving at once),
//!   background writes are held back while acknowledgements keep arriving (at
//!   most `background_delay`) and then run together in one turn. Under lighter
//!   load nothing waits, so workers keep their pace.
//!
//! Reads use a separate small pool (WAL lets them run beside the writer).

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

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

/// The jobs of one `Add` op and where its answer goes.
type AddOp = (Vec<NewJob>, Reply<Vec<Added>>);

/// The jobs one `Complete`/`CompleteMany` op finishes, each with its
/// follow-ups, and where its answer goes.
type CompleteOp = (Vec<(String, Vec<NewJob>)>, Reply<()>);

impl Op {
    /// A completion in one shape, whether of one job or many.
    fn into_completion(self) -> Result<CompleteOp, Op> {
        match self {
            Op::Complete(id, jobs, reply) => Ok((vec![(id, jobs)], reply)),
            Op::CompleteMany(done, reply) => Ok((done, reply)),
            op => Err(op),
        }
    }
}

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
    Prune(Queue, i64, u32, Reply<u64>),
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

/// How the writer batches; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// Most writes in one transaction.
    pub max_batch: usize,
    /// Longest a background write (a worker's claim or completion) waits while
    /// acknowledgements keep arriving in numbers. Zero runs everything in
    /// arrival batches.
    pub background_delay: Duration,
    /// Acknowledgements arriving together that count as a busy writer and
    /// start holding background writes.
    pub busy_at: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            max_batch: 512,
            background_delay: Duration::from_millis(20),
            busy_at: 16,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// One serving Patchbay process per file: with `release_leases` (what `serve`
    /// does) leases left by a previous process are released, so its unfinished
    /// jobs run again at once. Inspection commands open without it.
    pub async fn open(
        path: &Path,
        settings: WriterSettings,
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
        let max_batch = settings.max_batch.max(1);
        let (writer, rx) = mpsc::channel(max_batch * 4);
        // Its own thread and runtime: the writer's turn comes when the database
        // answers, not when the HTTP tasks ahead of it in a shared queue are done.
        let thread = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(StoreError::Writer)?;
        let scheduler = Scheduler::new(settings.background_delay, settings.busy_at.max(1));
        std::thread::Builder::new()
            .name("patchbay-store".into())
            .spawn(move || thread.block_on(write_loop(conn, rx, max_batch, scheduler)))
            .map_err(StoreError::Writer)?;
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

async fn write_loop(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Op>,
    max_batch: usize,
    mut scheduler: Scheduler,
) {
    let mut incoming = Vec::with_capacity(max_batch);
    loop {
        let open = match scheduler.due_at() {
            None => rx.recv_many(&mut incoming, max_batch).await > 0,
            // Held writes fall due even if nothing else arrives.
            Some(due) => {
                match tokio::time::timeout_at(due.into(), rx.recv_many(&mut incoming, max_batch))
                    .await
                {
                    Ok(received) => received > 0,
                    Err(_due) => true,
                }
            }
        };
        if !open && scheduler.is_empty() {
            break;
        }
        let mut turn = scheduler.next_turn(&mut incoming, Instant::now(), !open);
        if turn.is_empty() {
            continue;
        }
        if let Some(adds) = only_adds(&mut turn) {
            // Webhooks alone: one multi-row INSERT is atomic by itself, so it runs
            // (and commits, and syncs) without BEGIN/COMMIT.
            for finish in add_many(&mut conn, adds).await {
                finish(None);
            }
            continue;
        }
        let (finishers, commit_error) = transaction(&mut conn, turn).await;
        for finish in finishers {
            finish(commit_error.as_deref());
        }
    }
}

/// Decides which writes run in the writer's next turn. Acknowledgements run
/// at once. When many arrive together (the writer is what callers are waiting
/// on), background writes start being held: for as long as acknowledgements
/// keep coming, at most `delay`, then they all run in one turn. Under lighter
/// load nothing is held. Pure, so its policy is tested without a database.
struct Scheduler {
    delay: Duration,
    /// Acknowledgements in one receive that start holding background writes.
    busy_at: usize,
    held: Vec<Op>,
    held_since: Instant,
}

impl Scheduler {
    fn new(delay: Duration, busy_at: usize) -> Scheduler {
        Scheduler {
            delay,
            busy_at,
            held: Vec::new(),
            held_since: Instant::now(),
        }
    }

    fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// When the held writes must run, if any are held.
    fn due_at(&self) -> Option<Instant> {
        (!self.held.is_empty()).then(|| self.held_since + self.delay)
    }

    /// The ops to run now, taken from `incoming` and the held ones. `closing`
    /// (no more writes will come) releases everything.
    fn next_turn(&mut self, incoming: &mut Vec<Op>, now: Instant, closing: bool) -> Vec<Op> {
        let (mut turn, background): (Vec<Op>, Vec<Op>) =
            incoming.drain(..).partition(Op::acknowledges);
        let holding = !self.held.is_empty();
        if !holding && turn.len() < self.busy_at {
            turn.extend(background);
            return turn;
        }
        if !holding {
            self.held_since = now;
        }
        self.held.extend(background);
        let release = turn.is_empty() || closing || now >= self.held_since + self.delay;
        if release {
            turn.append(&mut self.held);
        }
        turn
    }
}

impl Op {
    /// Whether a caller outside the process is waiting on this write (a webhook
    /// or an application message being accepted).
    fn acknowledges(&self) -> bool {
        matches!(self, Op::Add(..) | Op::Remember { .. })
    }
}

/// Takes the turn if it holds only adds that fit one INSERT statement.
fn only_adds(turn: &mut Vec<Op>) -> Option<Vec<AddOp>> {
    let mut rows = 0;
    for op in turn.iter() {
        match op {
            Op::Add(jobs, _) => rows += jobs.len(),
            _ => return None,
        }
    }
    if rows > INSERT_CHUNK {
        return None;
    }
    Some(
        turn.drain(..)
            .filter_map(|op| match op {
                Op::Add(jobs, reply) => Some((jobs, reply)),
                _ => None,
            })
            .collect(),
    )
}

/// Runs a turn in one `BEGIN IMMEDIATE` transaction, grouped by kind (any
/// order is valid for concurrent ops): inserts, completions, the rest, then
/// claims (which so see this turn's completions). Returns what answers the
/// callers and the commit's error, if any.
async fn transaction(
    conn: &mut SqliteConnection,
    turn: Vec<Op>,
) -> (Vec<Finisher>, Option<String>) {
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        let e = e.to_string();
        tracing::error!(error = %e, "store transaction failed to begin");
        let finishers = turn.into_iter().map(|op| fail_op(op, &e)).collect();
        return (finishers, Some(e));
    }
    let mut adds = Vec::new();
    let mut completions = Vec::new();
    let mut claims = Vec::new();
    let mut rest = Vec::new();
    for op in turn {
        match op {
            Op::Add(jobs, reply) => adds.push((jobs, reply)),
            op @ Op::Claim { .. } => claims.push(op),
            op => match op.into_completion() {
                Ok(completion) => completions.push(completion),
                Err(op) => rest.push(op),
            },
        }
    }
    let mut finishers: Vec<Finisher> = Vec::with_capacity(adds.len() + 8);
    if !adds.is_empty() {
        finishers.extend(add_many(conn, adds).await);
    }
    if !completions.is_empty() {
        finishers.extend(complete_group(conn, completions).await);
    }
    for op in rest.into_iter().chain(claims) {
        finishers.push(run_one(conn, op).await);
    }
    let commit_error = match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "store transaction failed to commit");
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Some(e.to_string())
        }
    };
    (finishers, commit_error)
}

/// Inserts the jobs of several `Add` ops with one statement; if that fails,
/// op by op, so one bad op does not fail the others.
async fn add_many(conn: &mut SqliteConnection, adds: Vec<AddOp>) -> Vec<Finisher> {
    let all: Vec<&NewJob> = adds.iter().flat_map(|(jobs, _)| jobs.iter()).collect();
    let merged = insert_jobs(conn, &all).await;
    drop(all);
    match merged {
        Ok(added) => {
            let mut added = added.into_iter();
            adds.into_iter()
                .map(|(jobs, reply)| finisher(reply, Ok(added.by_ref().take(jobs.len()).collect())))
                .collect()
        }
        Err(e) => match <[AddOp; 1]>::try_from(adds) {
            Ok([(_, reply)]) => vec![finisher(reply, Err(StoreError::Database(e)))],
            // Again one by one, so only the bad op fails.
            Err(adds) => {
                let mut finishers = Vec::with_capacity(adds.len());
                for (jobs, reply) in adds {
                    let result = add(conn, &jobs).await.map_err(StoreError::Database);
                    finishers.push(finisher(reply, result));
                }
                finishers
            }
        },
    }
}

/// Completes the jobs of several `Complete`/`CompleteMany` ops with one update
/// and one insert, inside one savepoint.
async fn complete_group(conn: &mut SqliteConnection, group: Vec<CompleteOp>) -> Vec<Finisher> {
    let mut ids: Vec<String> = Vec::new();
    let mut follow_ups: Vec<NewJob> = Vec::new();
    let mut replies = Vec::with_capacity(group.len());
    for (done, reply) in group {
        for (id, jobs) in done {
            ids.push(id);
            follow_ups.extend(jobs);
        }
        replies.push(reply);
    }
    let result = finish_with_follow_ups(conn, &ids, &follow_ups).await;
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
        Op::Prune(_, _, _, r) => f(r, why),
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
        // A turn groups these itself; here they take the same path alone.
        Op::Add(jobs, reply) => (all(add_many(conn, vec![(jobs, reply)]).await), true),
        Op::Complete(id, jobs, reply) => (
            all(complete_group(conn, vec![(vec![(id, jobs)], reply)]).await),
            true,
        ),
        Op::CompleteMany(done, reply) => {
            (all(complete_group(conn, vec![(done, reply)]).await), true)
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
        Op::Prune(queue, before, limit, reply) => {
            // `run_at` is when a job last fell due, at most its finishing time, so
            // the due index finds old finished jobs without a scan.
            let r = sqlx::query(
                "DELETE FROM jobs WHERE seq IN (
                     SELECT seq FROM jobs WHERE queue = ?1 AND state = 'done' AND run_at < ?2
                     ORDER BY run_at LIMIT ?3)",
            )
            .bind(queue.as_str())
            .bind(before)
            .bind(limit as i64)
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected());
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
    insert_jobs(conn, &refs).await
}

/// Rows per INSERT: a whole batch of webhooks in one statement. Parameters are
/// anonymous `?`, which binding looks up in constant time (numbered ones are
/// searched linearly, quadratic in the row count).
const INSERT_CHUNK: usize = 512;

/// Values bound per job row (`now` twice: created and updated).
const INSERT_SQL: &str = "INSERT INTO jobs (id, queue, channel, conversation_key, dedupe_key, payload, run_at, created_at, updated_at) VALUES ";
const ROW_SQL: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
const ON_DUPLICATE_SQL: &str =
    " ON CONFLICT (queue, channel, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING";

/// Appends an INSERT of `rows` jobs, skipping dedupe-key duplicates, to `sql`.
fn push_insert(sql: &mut String, rows: usize) {
    sql.push_str(INSERT_SQL);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(ROW_SQL);
    }
    sql.push_str(ON_DUPLICATE_SQL);
}

/// Binds the values of [`push_insert`]'s rows.
fn bind_jobs<'q>(mut query: SqliteQuery<'q>, jobs: &[&'q NewJob], now: i64) -> SqliteQuery<'q> {
    for job in jobs {
        query = query
            .bind(&job.id)
            .bind(job.queue.as_str())
            .bind(&job.channel)
            .bind(&job.conversation_key)
            .bind(&job.dedupe_key)
            .bind(&job.payload)
            .bind(job.run_at)
            .bind(now)
            .bind(now);
    }
    query
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Inserts jobs, skipping dedupe-key duplicates; says which were stored.
async fn insert_jobs(
    conn: &mut SqliteConnection,
    jobs: &[&NewJob],
) -> Result<Vec<Added>, sqlx::Error> {
    let now = now_ms();
    let mut added = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(INSERT_CHUNK) {
        let mut sql = String::with_capacity(INSERT_SQL.len() + chunk.len() * 28 + 90);
        push_insert(&mut sql, chunk.len());
        // Built only from placeholders; every value is bound.
        let query = bind_jobs(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk, now);
        let inserted = query.execute(&mut *conn).await?.rows_affected() as usize;
        if inserted == chunk.len() {
            added.extend(chunk.iter().map(|j| Added::Stored(j.id.clone())));
            continue;
        }
        // Some were duplicates. The ids present now are the ones just stored: an id
        // that already existed would have failed the whole statement.
        let ids = serde_json::to_string(&chunk.iter().map(|j| &j.id).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into());
        let present: HashSet<String> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(ids)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
        added.extend(chunk.iter().map(|j| {
            if present.contains(&j.id) {
                Added::Stored(j.id.clone())
            } else {
                Added::Duplicate
            }
        }));
    }
    Ok(added)
}

/// Marks jobs done and inserts what follows from them, atomically.
async fn finish_with_follow_ups(
    conn: &mut SqliteConnection,
    ids: &[String],
    follow_ups: &[NewJob],
) -> Result<(), sqlx::Error> {
    if follow_ups.is_empty() {
        // One statement is atomic by itself.
        return finish_jobs(conn, ids, "done", None).await;
    }
    sqlx::query("SAVEPOINT op").execute(&mut *conn).await?;
    let result = async {
        finish_jobs(conn, ids, "done", None).await?;
        let refs: Vec<&NewJob> = follow_ups.iter().collect();
        insert_jobs(conn, &refs).await.map(drop)
    }
    .await;
    let end = if result.is_ok() {
        "RELEASE op"
    } else {
        "ROLLBACK TO op; RELEASE op"
    };
    sqlx::raw_sql(end).execute(&mut *conn).await?;
    result
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

/// Sets the state of the jobs in a JSON array of ids (bound as the 4th value).
const FINISH_SQL: &str = "UPDATE jobs SET state = ?, lease_until = 0, last_error = COALESCE(?, last_error), updated_at = ?
     WHERE id IN (SELECT value FROM json_each(?))";

fn json_ids(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
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
    sqlx::query(FINISH_SQL)
        .bind(state)
        .bind(error)
        .bind(now_ms())
        .bind(json_ids(ids))
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
        let mut out: Vec<(Queue, QueueCounts)> = Queue::ALL
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

    async fn prune(&self, queue: Queue, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.call(|r| Op::Prune(queue, before, limit, r)).await
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

#[cfg(test)]
mod tests;
