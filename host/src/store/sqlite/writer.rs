//! The writer: one thread owning the only write connection, group commit.
//!
//! It takes every write waiting in its channel (up to `max_batch`), runs them
//! in one transaction and only then answers the callers — a caller that got
//! `Ok` knows its write is on disk, and a burst of N webhooks costs one fsync
//! rather than N.
//!
//! The thread talks to SQLite directly (rusqlite, prepared statements cached
//! on the connection): a statement is a function call, not a message to
//! another thread, so a turn's cost is SQLite's own work and its fsync.
//!
//! **Acknowledgements and workers share every turn.** Accepting a webhook or
//! an application message is what a caller outside is waiting on; workers'
//! claims and completions are not, but they are what moves messages on. A
//! turn takes every acknowledgement waiting (up to `max_batch`) and, oldest
//! first, the workers' writes up to a budget of rows (`background_rows`,
//! at least one write); the rest wait for the next turn. So an
//! acknowledgement never waits behind more than a budget's worth of the
//! workers' work, and the workers progress in every turn however hard
//! webhooks arrive. The policy is [`Scheduler`].
//!
//! **Only what someone was told waits for the disk.** A turn holding a write
//! that a caller outside is answered about is synced before the answer; the
//! workers' turns are not, and are synced together a little later. The
//! policy is [`Durability`].

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::event_ids::EventIds;
use super::jobs::{self, End, execute};
use super::{Clock, WriterStats};
use crate::store::{
    Accepted, Attempt, Job, Link, NewJob, Outcome, Pruned, Queue, Remembered, StoreError, Want,
};

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, with where to send its result once the transaction commits.
pub(super) enum Op {
    Add(Vec<NewJob>, Reply<()>),
    Claim {
        queue: Queue,
        wants: Vec<Want>,
        now: i64,
        lease_ms: i64,
        reply: Reply<Vec<Job>>,
    },
    /// Jobs done, each with the jobs that follow from it; answers how many
    /// were duplicates.
    Complete(Vec<(String, Vec<NewJob>)>, Reply<usize>),
    /// Parsed webhooks from the acknowledgement log.
    RecordAccepted {
        parsed: Vec<(Accepted, Outcome)>,
        reply: Reply<usize>,
    },
    /// Whether the database commits and syncs (its turn is a synced one).
    Ping(Reply<()>),
    Progress(String, Vec<u8>, Reply<()>),
    Retry {
        id: String,
        run_at: i64,
        error: String,
        attempt: Attempt,
        reply: Reply<()>,
    },
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
    Link(Vec<Link>, i64, Reply<()>),
    Outbox {
        channel: String,
        conversation: String,
        body: Vec<u8>,
        at: i64,
        reply: Reply<i64>,
    },
    Prune(Option<i64>, i64, u32, Reply<Pruned>),
    Forget(Aged, i64, u32, Reply<u64>),
    /// Panics in the writer, to test that a turn's panic is contained.
    #[cfg(test)]
    Panic(Reply<()>),
}

impl Op {
    /// Whether a caller outside the process is waiting on this write (a webhook
    /// or an application message being accepted).
    fn acknowledges(&self) -> bool {
        matches!(self, Op::Add(..) | Op::Remember { .. })
    }

    /// Roughly how many rows the op writes: what a turn's budget counts.
    fn rows(&self) -> usize {
        let jobs = |jobs: &[NewJob]| jobs.len();
        match self {
            Op::Add(j, _) => j.len(),
            Op::Claim { wants, .. } => wants.iter().map(|w| w.limit as usize).sum(),
            Op::Complete(done, _) => done.iter().map(|(_, f)| 1 + jobs(f)).sum(),
            Op::RecordAccepted { parsed, .. } => parsed
                .iter()
                .map(|(_, o)| match o {
                    Outcome::Done(f) => jobs(f),
                    _ => 1,
                })
                .sum(),
            Op::Bury(_, _, f, _) => 1 + jobs(f),
            Op::Remember { jobs: j, .. } => 1 + jobs(j),
            Op::Prune(_, _, limit, _) | Op::Forget(_, _, limit, _) => *limit as usize,
            _ => 1,
        }
        .max(1)
    }

    /// Whether its answer tells someone the write is stored for good: an
    /// accepted message, an idempotent send, a replayed dead letter, a web
    /// chat message shown to its customer at its position (a position lost
    /// with the power would be given again to the next message, which the
    /// customer's widget would then skip), the readiness probe. Such a turn
    /// is synced before it is answered.
    fn must_sync(&self) -> bool {
        matches!(
            self,
            Op::Add(..) | Op::Remember { .. } | Op::Replay(..) | Op::Outbox { .. } | Op::Ping(..)
        )
    }

    /// Where the op runs in its turn. Any order is valid (the ops of a turn
    /// were submitted concurrently): acknowledgements first, claims last so
    /// they see this turn's completions.
    fn place(&self) -> u8 {
        match self {
            Op::Add(..) | Op::Remember { .. } => 0,
            Op::Claim { .. } => 2,
            _ => 1,
        }
    }
}

/// Rows that age out with the retention window, by table.
#[derive(Debug, Clone, Copy)]
pub(super) enum Aged {
    /// Application `Idempotency-Key`s.
    IdempotencyKeys,
    /// Provider event ids.
    EventIds,
    /// Menus degraded to numbers.
    Menus,
    /// Upstream links.
    Links,
    /// Web chat outbox entries.
    Outbox,
}

impl Aged {
    /// Deletes up to `?2` rows older than `?1`, oldest first, through the
    /// table's age index.
    fn delete_oldest(self) -> &'static str {
        match self {
            Aged::IdempotencyKeys => {
                "DELETE FROM idempotency WHERE rowid IN (
                     SELECT rowid FROM idempotency WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)"
            }
            Aged::EventIds => {
                "DELETE FROM dedupe WHERE slot IN (
                     SELECT slot FROM dedupe WHERE seen_at < ?1 ORDER BY seen_at LIMIT ?2)"
            }
            Aged::Menus => {
                "DELETE FROM menus WHERE rowid IN (
                     SELECT rowid FROM menus WHERE updated_at < ?1 ORDER BY updated_at LIMIT ?2)"
            }
            Aged::Links => {
                "DELETE FROM links WHERE rowid IN (
                     SELECT rowid FROM links WHERE updated_at < ?1 ORDER BY updated_at LIMIT ?2)"
            }
            Aged::Outbox => {
                "DELETE FROM outbox WHERE seq IN (
                     SELECT seq FROM outbox WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)"
            }
        }
    }
}

/// Sends a result after the commit: the op's own result, or the commit's failure.
type Finisher = Box<dyn FnOnce(Option<&str>) + Send>;

fn finisher<T, E>(reply: Reply<T>, result: Result<T, E>) -> Finisher
where
    T: Send + 'static,
    E: Into<StoreError> + Send + 'static,
{
    Box::new(move |commit_error| {
        let result = match commit_error {
            Some(e) => Err(StoreError::Commit(e.to_string())),
            None => result.map_err(Into::into),
        };
        // The caller may have gone away (request cancelled); the write stands.
        let _ = reply.send(result);
    })
}

/// Starts the writer thread on `conn`; it stops once every sender is dropped
/// and what they sent is written.
pub(super) fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<Op>,
    max_batch: usize,
    scheduler: Scheduler,
    durability: Durability,
    env: Env,
) -> std::io::Result<()> {
    // Its own thread and runtime: the writer's turn comes when the database
    // answers, not when the HTTP tasks ahead of it in a shared queue are done.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("patchbay-store".into())
        .spawn(move || {
            runtime.block_on(write_loop(conn, rx, max_batch, scheduler, durability, env))
        })?;
    Ok(())
}

/// What the writer's statements read besides their ops: the clock, where
/// to count their work, and the recent event ids.
pub(super) struct Env {
    pub(super) clock: Clock,
    pub(super) stats: std::sync::Arc<WriterStats>,
    pub(super) ids: std::cell::RefCell<EventIds>,
}

async fn write_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    max_batch: usize,
    mut scheduler: Scheduler,
    mut durability: Durability,
    env: Env,
) {
    let mut incoming = Vec::with_capacity(max_batch);
    loop {
        let mut closing = false;
        if scheduler.is_empty() {
            // Idle: wait for writes, but not past the moment the last
            // unsynced ones must reach the disk.
            let arrived = match durability.deadline() {
                Some(at) => tokio::time::timeout_at(at, rx.recv_many(&mut incoming, max_batch))
                    .await
                    .ok(),
                None => Some(rx.recv_many(&mut incoming, max_batch).await),
            };
            match arrived {
                Some(0) => break,
                Some(_) => {}
                None => {
                    durability.sync(&conn, &env);
                    continue;
                }
            }
        }
        // Take what has arrived meanwhile, without waiting.
        while incoming.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => incoming.push(op),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closing = true;
                    break;
                }
            }
        }
        let turn = scheduler.next_turn(&mut incoming, closing);
        if !turn.is_empty() {
            durability.run(&conn, turn, &env);
        }
    }
    durability.sync(&conn, &env);
}

/// When the main database's commits reach the disk.
///
/// A turn holding a write whose answer tells someone it is stored for good
/// ([`Op::must_sync`]) commits with `synchronous = FULL`: the answer waits
/// for the fsync. The workers' turns — parsed batches, claims, completions,
/// retries — commit with `NORMAL`: in WAL mode they survive the process
/// being killed, but not the machine losing power, until a later commit
/// syncs the log; that comes with the next turn that must sync, or at most
/// `interval` after the first unsynced commit, by a turn of its own. Every
/// synced turn also changes the `syncs` row, so it writes (and fsyncs) even
/// when its ops changed nothing.
///
/// Nothing acknowledged depends on an unsynced commit: a webhook stays in
/// the acknowledgement log until the parsed batch holding it is synced
/// (`on_synced` is told the recorded log position only then), and a claim
/// or completion lost with the power is a delivery made again — as after
/// any crash — with the same message id. The workers, meanwhile, no longer
/// wait for an fsync per turn: on this machine a synced commit took 3–4 ms
/// under load (with its share of checkpoints), most of the writer's time.
pub(super) struct Durability {
    interval: Duration,
    /// The connection's `synchronous` setting: FULL or NORMAL.
    full: bool,
    /// When the oldest commit not yet synced was made.
    unsynced_since: Option<Instant>,
    /// The last log position handed to `on_synced`.
    told: i64,
    on_synced: Box<dyn Fn(i64) + Send>,
}

impl Durability {
    pub(super) fn new(interval: Duration, on_synced: Box<dyn Fn(i64) + Send>) -> Durability {
        Durability {
            interval,
            full: true,
            unsynced_since: None,
            told: 0,
            on_synced,
        }
    }

    /// When the commits not yet synced must be.
    fn deadline(&self) -> Option<Instant> {
        self.unsynced_since.map(|since| since + self.interval)
    }

    /// Runs `turn`, synced if one of its ops must be or the unsynced
    /// commits are due.
    fn run(&mut self, conn: &Connection, turn: Vec<Op>, env: &Env) {
        let overdue = self.deadline().is_some_and(|at| at <= Instant::now());
        let sync = overdue || turn.iter().any(Op::must_sync);
        if sync != self.full {
            let mode = if sync { "full" } else { "normal" };
            if let Err(e) = conn.pragma_update(None, "synchronous", mode) {
                tracing::error!(error = %e, "cannot set the store's sync mode");
                let why = e.to_string();
                turn.into_iter().for_each(|op| fail(op, &why));
                return;
            }
            self.full = sync;
        }
        let changes = conn.total_changes();
        if run_contained(conn, turn, sync, env) {
            // A turn that changed nothing (an idle worker's claim) leaves
            // nothing to sync.
            let changed = conn.total_changes() != changes;
            self.committed(conn, sync, changed);
        }
    }

    /// Notes a turn's commit; after a synced one, tells `on_synced` the log
    /// position now on disk.
    fn committed(&mut self, conn: &Connection, synced: bool, changed: bool) {
        if !synced {
            if changed {
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
            return;
        }
        self.unsynced_since = None;
        let recorded = conn
            .prepare_cached("SELECT seq FROM ack_cursor")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)));
        match recorded {
            Ok(seq) if seq > self.told => {
                self.told = seq;
                (self.on_synced)(seq);
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot read the recorded log position"),
        }
    }

    /// Syncs what is committed, in a turn of its own, if anything waits.
    fn sync(&mut self, conn: &Connection, env: &Env) {
        if self.unsynced_since.is_none() {
            return;
        }
        self.run(conn, vec![Op::Ping(oneshot::channel().0)], env);
    }
}

/// Runs a turn; should it panic (a bug), its transaction is rolled back and
/// the writer goes on. The turn's callers, whose answers went with the
/// unwinding, see the store as unavailable; nothing of the turn is stored.
/// Returns whether the turn committed.
fn run_contained(conn: &Connection, turn: Vec<Op>, sync: bool, env: &Env) -> bool {
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_turn(conn, turn, sync, env)
    }));
    ran.unwrap_or_else(|_| {
        tracing::error!("store writer panicked; its turn was rolled back");
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
        env.ids.borrow_mut().aborted();
        false
    })
}

/// Decides which writes run in the writer's next turn: every
/// acknowledgement, and the oldest workers' writes up to `budget` rows (at
/// least one). Pure, so its policy is tested without a database.
pub(super) struct Scheduler {
    budget: usize,
    held: VecDeque<Op>,
}

impl Scheduler {
    pub(super) fn new(budget: usize) -> Scheduler {
        Scheduler {
            budget: budget.max(1),
            held: VecDeque::new(),
        }
    }

    /// Whether no worker's write is waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The ops to run now, taken from `incoming` and the held ones.
    /// `closing` (no more writes will come) releases everything.
    pub(super) fn next_turn(&mut self, incoming: &mut Vec<Op>, closing: bool) -> Vec<Op> {
        let (mut turn, background): (Vec<Op>, Vec<Op>) =
            incoming.drain(..).partition(Op::acknowledges);
        self.held.extend(background);
        let mut rows = 0;
        while let Some(op) = self.held.front() {
            let next = rows + op.rows();
            if !closing && rows > 0 && next > self.budget {
                break;
            }
            rows = next;
            turn.extend(self.held.pop_front());
        }
        turn
    }
}

/// Runs a turn in one `BEGIN IMMEDIATE` transaction and answers its callers
/// once it has committed. An op that fails is undone alone (see
/// [`atomically`]); the others commit. A turn that `sync`s also changes the
/// `syncs` row (see [`Durability`]). Returns whether it committed.
fn run_turn(conn: &Connection, mut turn: Vec<Op>, sync: bool, env: &Env) -> bool {
    turn.sort_by_key(Op::place);
    let began = exec(conn, "BEGIN IMMEDIATE").and_then(|()| {
        if sync {
            exec(conn, "UPDATE syncs SET count = count + 1")?;
        }
        Ok(())
    });
    if let Err(e) = began {
        tracing::error!(error = %e, "store transaction failed to begin");
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
        let why = e.to_string();
        turn.into_iter().for_each(|op| fail(op, &why));
        return false;
    }
    // First, while everything in it is committed: a share of merging the
    // recent event ids. A failure is undone alone; the next turn retries.
    if let Err(e) = env.ids.borrow_mut().merge_step(conn) {
        tracing::warn!(error = %e, "merging recent event ids failed; will retry");
    }
    let mut finishers = Vec::with_capacity(turn.len());
    let mut ops = turn.into_iter();
    while let Some(op) = ops.next() {
        finishers.push(run_op(conn, op, env));
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error):
            // nothing of this turn is stored, whatever the ops said.
            tracing::error!("store transaction was rolled back");
            env.ids.borrow_mut().aborted();
            let why = "the transaction was rolled back";
            finishers.into_iter().for_each(|f| f(Some(why)));
            ops.for_each(|op| fail(op, why));
            return false;
        }
    }
    let commit_error = match super::commit(conn, "database", sync) {
        Ok(()) => {
            env.ids.borrow_mut().committed();
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "store transaction failed to commit");
            let _ = exec(conn, "ROLLBACK");
            env.ids.borrow_mut().aborted();
            Some(e.to_string())
        }
    };
    let committed = commit_error.is_none();
    if committed && sync {
        env.stats.syncs.fetch_add(1, Ordering::Relaxed);
    }
    for finish in finishers {
        finish(commit_error.as_deref());
    }
    committed
}

/// Answers an op that did not run.
fn fail(op: Op, why: &str) {
    fn f<T>(reply: Reply<T>, why: &str) {
        let _ = reply.send(Err(StoreError::Commit(why.to_string())));
    }
    match op {
        Op::Claim { reply, .. } => f(reply, why),
        Op::Complete(_, r) => f(r, why),
        Op::RecordAccepted { reply, .. } => f(reply, why),
        Op::Add(_, r)
        | Op::Progress(_, _, r)
        | Op::Bury(_, _, _, r)
        | Op::SetMenu(_, _, _, r)
        | Op::Link(_, _, r)
        | Op::Ping(r) => f(r, why),
        Op::Retry { reply, .. } => f(reply, why),
        Op::Replay(_, _, r) => f(r, why),
        Op::Outbox { reply, .. } => f(reply, why),
        Op::Remember { reply, .. } => f(reply, why),
        Op::Prune(_, _, _, r) => f(r, why),
        Op::Forget(_, _, _, r) => f(r, why),
        #[cfg(test)]
        Op::Panic(r) => f(r, why),
    }
}

fn run_op(conn: &Connection, op: Op, env: &Env) -> Finisher {
    let now = env.clock.now();
    match op {
        #[cfg(test)]
        Op::Panic(_) => panic!("a test asked the writer to panic"),
        Op::Add(jobs, reply) => {
            let several = jobs.len() > 1 || jobs.iter().any(|j| j.queue != Queue::Inbound);
            finisher(
                reply,
                atomically(conn, several, |c| jobs::insert(c, &jobs, now)),
            )
        }
        Op::Claim {
            queue,
            wants,
            now,
            lease_ms,
            reply,
        } => {
            let mut steps = 0;
            let claimed = atomically(conn, true, |c| {
                jobs::claim(c, queue, &wants, now, lease_ms, &mut steps)
            });
            env.stats.claim_steps.fetch_add(steps, Ordering::Relaxed);
            finisher(reply, claimed)
        }
        Op::Complete(done, reply) => {
            let r = with_ids(conn, env, |c, ids| {
                let mut duplicates = 0;
                for (id, follow_ups) in &done {
                    duplicates +=
                        usize::from(jobs::finish(c, ids, id, End::Done, follow_ups, now)?);
                }
                Ok(duplicates)
            });
            finisher(reply, r)
        }
        Op::RecordAccepted { parsed, reply } => {
            let r = with_ids(conn, env, |c, ids| {
                jobs::record_accepted(c, ids, &parsed, now)
            });
            finisher(reply, r)
        }
        // Its turn syncs, and a synced turn writes the `syncs` row: the
        // probe is a real write and fsync without a statement of its own.
        Op::Ping(reply) => finisher(reply, Ok::<(), rusqlite::Error>(())),
        Op::Bury(id, error, follow_ups, reply) => {
            let r = with_ids(conn, env, |c, ids| {
                jobs::finish(c, ids, &id, End::Dead(&error), &follow_ups, now).map(drop)
            });
            finisher(reply, r)
        }
        Op::Progress(id, payload, reply) => {
            finisher(reply, jobs::save_progress(conn, &id, &payload))
        }
        Op::Retry {
            id,
            run_at,
            error,
            attempt,
            reply,
        } => {
            let r = atomically(conn, true, |c| {
                jobs::retry(c, &id, run_at, &error, attempt, now)
            });
            finisher(reply, r)
        }
        Op::Replay(id, at, reply) => {
            finisher(reply, atomically(conn, true, |c| jobs::replay(c, &id, at)))
        }
        Op::Remember {
            scope,
            key,
            value,
            jobs,
            reply,
        } => {
            let r = atomically(conn, true, |c| {
                jobs::remember(c, &scope, &key, &value, &jobs, now)
            });
            finisher(reply, r)
        }
        Op::SetMenu(key, menu, at, reply) => {
            let r = match menu {
                Some(menu) => execute(
                    conn,
                    "INSERT INTO menus (conversation_key, menu, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (conversation_key) DO UPDATE
                         SET menu = excluded.menu, updated_at = excluded.updated_at",
                    params![key, menu, at],
                ),
                None => execute(
                    conn,
                    "DELETE FROM menus WHERE conversation_key = ?1",
                    params![key],
                ),
            };
            finisher(reply, r.map(drop))
        }
        Op::Link(links, at, reply) => {
            let r = atomically(conn, true, |c| {
                let mut upsert = c.prepare_cached(
                    "INSERT INTO links (scope, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (scope, key) DO UPDATE
                         SET value = excluded.value, updated_at = excluded.updated_at",
                )?;
                for link in &links {
                    upsert.execute(params![link.scope, link.key, link.value, at])?;
                }
                Ok(())
            });
            finisher(reply, r)
        }
        Op::Outbox {
            channel,
            conversation,
            body,
            at,
            reply,
        } => {
            let r = conn
                .prepare_cached(
                    "INSERT INTO outbox (channel, conversation, body, created_at)
                     VALUES (?1, ?2, ?3, ?4) RETURNING seq",
                )
                .and_then(|mut insert| {
                    insert.query_row(params![channel, conversation, body, at], |r| r.get(0))
                });
            finisher(reply, r)
        }
        Op::Forget(aged, before, limit, reply) => {
            let merged = match aged {
                // Ids this old may still wait to be merged.
                Aged::EventIds => env.ids.borrow_mut().merge_older_than(conn, before),
                _ => Ok(()),
            };
            let r = merged
                .and_then(|()| execute(conn, aged.delete_oldest(), params![before, limit]))
                .map(|deleted| deleted as u64);
            finisher(reply, r)
        }
        Op::Prune(from, before, limit, reply) => {
            let r = atomically(conn, true, |c| jobs::prune(c, from, before, limit));
            finisher(reply, r)
        }
    }
}

/// Runs a cached statement without values.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    execute(conn, sql, []).map(drop)
}

/// [`atomically`], for an op that records event ids: those it added are
/// forgotten with it when it fails.
fn with_ids<T>(
    conn: &Connection,
    env: &Env,
    f: impl FnOnce(&Connection, &mut EventIds) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let mut ids = env.ids.borrow_mut();
    let mark = ids.mark();
    let result = atomically(conn, true, |c| f(c, &mut ids));
    if result.is_err() {
        ids.undo_to(mark);
    }
    result
}

/// Runs `f`, in a savepoint when it takes `several` statements, so that a
/// failure undoes this op only (one statement is atomic by itself).
fn atomically<T>(
    conn: &Connection,
    several: bool,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    if !several {
        return Ok(f(conn)?);
    }
    Ok(jobs::in_savepoint(conn, f)?)
}
