//! The queue's statements on PostgreSQL, run inside one transaction each.
//!
//! The same model as SQLite's (`store::sqlite::jobs`): jobs of a conversation
//! are a list (`jobs.next_seq`), `heads` holds each waiting conversation's
//! head and when it is ready. Replicas run these concurrently, so every
//! statement that changes a conversation first locks its `heads` row
//! (`FOR UPDATE`) and only then the job rows: the same lock order
//! everywhere, and a claim that finds a head locked skips it
//! (`SKIP LOCKED`) rather than waiting. A conversation's next job is never
//! handed out while another replica holds, retries or records an earlier one.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::store::dedupe::KeyHash;
use crate::store::{Accepted, Attempt, Job, NewJob, Outcome, Pruned, Queue, Remembered, Want};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The channel `NOTIFY` wakes replicas on; the payload is the queue's name.
pub const WAKE_CHANNEL: &str = "patchbay_jobs";

async fn rows(tx: &Transaction<'_>, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query(&statement, params).await
}

async fn row(tx: &Transaction<'_>, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query_opt(&statement, params).await
}

/// Runs a statement; how many rows it changed.
pub(super) async fn exec(tx: &Transaction<'_>, sql: &str, params: Params<'_>) -> Result<u64> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await
}

fn in_conversations(queue: Queue) -> bool {
    queue != Queue::Inbound
}

/// The conversation a new job joins, if its queue has conversations (one
/// without a key is a conversation of its own).
fn conversation_of(job: &NewJob) -> Option<(Queue, &str)> {
    in_conversations(job.queue).then(|| {
        (
            job.queue,
            job.conversation_key.as_deref().unwrap_or(job.id.as_str()),
        )
    })
}

/// What every transaction that adds or finishes jobs does first:
///
/// - takes, in one order for every transaction, a transaction-scoped lock on
///   each conversation it will change — the conversations of `jobs` (new) and
///   of the existing jobs `ids` — so transactions that change several
///   conversations (a parsed batch, grouped completions) never wait on each
///   other in a cycle; row locks are only taken under these;
/// - notifies the queues `jobs` join, once each (PostgreSQL delivers it at
///   commit, and not at all if the transaction rolls back).
pub(super) async fn prepare(tx: &Transaction<'_>, jobs: &[&NewJob], ids: &[&str]) -> Result<()> {
    let mut keys: Vec<i64> = jobs
        .iter()
        .filter_map(|job| conversation_of(job))
        .map(|(queue, key)| conversation_lock(queue, key))
        .collect();
    if !ids.is_empty() {
        for r in rows(
            tx,
            "SELECT queue, conversation_key FROM jobs
             WHERE id = ANY($1) AND conversation_key IS NOT NULL AND queue <> 'inbound'",
            &[&ids],
        )
        .await?
        {
            if let Some(queue) = Queue::parse(r.get(0)) {
                keys.push(conversation_lock(queue, r.get(1)));
            }
        }
    }
    let mut queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    queues.sort_unstable();
    queues.dedup();
    if !queues.is_empty() {
        exec(
            tx,
            "SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q",
            &[&WAKE_CHANNEL, &queues],
        )
        .await?;
    }
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    exec(
        tx,
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
        &[&keys],
    )
    .await
    .map(drop)
}

/// A conversation's advisory lock key (the single-bigint form, apart from
/// the `locks` module's pairs).
fn conversation_lock(queue: Queue, key: &str) -> i64 {
    KeyHash::of(queue.as_str(), key).slot
}

/// Appends jobs; a `deliver` or `outbound` job joins the end of its
/// conversation. (Waking the replicas is [`prepare`]'s.)
pub(super) async fn insert(tx: &Transaction<'_>, jobs: &[NewJob], now: i64) -> Result<()> {
    for job in jobs {
        let key = conversation_of(job).map(|(_, key)| key);
        let seq: i64 = row(
            tx,
            "INSERT INTO jobs (id, queue, channel, destination, conversation_key, dedupe_key,
                               run_at, created_at, updated_at, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING seq",
            &[
                &job.id,
                &job.queue.as_str(),
                &job.channel,
                &job.destination,
                &key,
                &job.dedupe_key,
                &job.run_at,
                &now,
                &job.payload,
            ],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or_default();
        if let Some(key) = key {
            link(tx, job.queue, key, &job.destination, seq, job.run_at).await?;
        }
    }
    Ok(())
}

/// Puts job `seq` at the end of its conversation, or makes it the head of a
/// conversation with nothing waiting.
async fn link(
    tx: &Transaction<'_>,
    queue: Queue,
    key: &str,
    destination: &str,
    seq: i64,
    run_at: i64,
) -> Result<()> {
    loop {
        let tail = row(
            tx,
            "SELECT tail_seq FROM heads WHERE queue = $1 AND conversation_key = $2 FOR UPDATE",
            &[&queue.as_str(), &key],
        )
        .await?;
        if let Some(tail) = tail {
            let tail: i64 = tail.get(0);
            exec(
                tx,
                "UPDATE jobs SET next_seq = $1 WHERE seq = $2",
                &[&seq, &tail],
            )
            .await?;
            exec(
                tx,
                "UPDATE heads SET tail_seq = $1 WHERE queue = $2 AND conversation_key = $3",
                &[&seq, &queue.as_str(), &key],
            )
            .await?;
            return Ok(());
        }
        // No head: start one, unless another replica just did (then join it).
        let started = exec(
            tx,
            "INSERT INTO heads (queue, conversation_key, destination, head_seq, tail_seq, ready_at)
             VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (queue, conversation_key) DO NOTHING",
            &[&queue.as_str(), &key, &destination, &seq, &run_at],
        )
        .await?;
        if started == 1 {
            return Ok(());
        }
    }
}

fn job_from(row: &Row, queue: Queue) -> Job {
    Job {
        id: row.get("id"),
        queue,
        channel: row.get("channel"),
        destination: row.get("destination"),
        payload: row.get("payload"),
        attempts: row.get::<_, i32>("attempts") as u32,
        dedupe_key: row.get("dedupe_key"),
    }
}

/// Leases what `wants` asks for (see [`Store::claim`](crate::store::Store::claim)):
/// ready heads, longest ready first, skipping any another replica is changing.
pub(super) async fn claim(
    tx: &Transaction<'_>,
    queue: Queue,
    wants: &[Want],
    now: i64,
    lease_ms: i64,
) -> Result<Vec<Job>> {
    let lease_until = now.saturating_add(lease_ms);
    if !in_conversations(queue) {
        let limit: i64 = wants.iter().map(|w| i64::from(w.limit)).sum();
        let mut claimed = rows(
            tx,
            "UPDATE jobs SET lease_until = $1, attempts = attempts + 1, updated_at = $2
             WHERE seq IN (
                 SELECT seq FROM jobs
                 WHERE queue = 'inbound' AND state = 'pending' AND run_at <= $2 AND lease_until <= $2
                 ORDER BY run_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING seq, id, channel, destination, payload, attempts, dedupe_key",
            &[&lease_until, &now, &limit],
        )
        .await?;
        claimed.sort_by_key(|r| r.get::<_, i64>("seq"));
        return Ok(claimed.iter().map(|r| job_from(r, queue)).collect());
    }
    let mut jobs = Vec::new();
    for want in wants.iter().filter(|w| w.limit > 0) {
        let mut claimed = rows(
            tx,
            "WITH ready AS (
                 SELECT queue, conversation_key, head_seq, ready_at FROM heads
                 WHERE queue = $1 AND destination = $2 AND ready_at <= $3
                 ORDER BY ready_at, head_seq LIMIT $4
                 FOR UPDATE SKIP LOCKED),
             leased AS (
                 UPDATE heads h SET ready_at = $5 FROM ready r
                 WHERE h.queue = r.queue AND h.conversation_key = r.conversation_key
                 RETURNING r.head_seq, r.ready_at AS was_ready)
             UPDATE jobs j SET lease_until = $5, attempts = j.attempts + 1, updated_at = $3
             FROM leased l WHERE j.seq = l.head_seq AND j.state = 'pending'
             RETURNING j.seq, j.id, j.channel, j.destination, j.payload, j.attempts,
                       j.dedupe_key, l.was_ready",
            &[
                &queue.as_str(),
                &want.destination,
                &now,
                &i64::from(want.limit),
                &lease_until,
            ],
        )
        .await?;
        claimed.sort_by_key(|r| (r.get::<_, i64>("was_ready"), r.get::<_, i64>("seq")));
        jobs.extend(claimed.iter().map(|r| job_from(r, queue)));
    }
    Ok(jobs)
}

/// Replaces a job's payload.
pub(super) async fn save_progress(tx: &Transaction<'_>, id: &str, payload: &[u8]) -> Result<()> {
    exec(
        tx,
        "UPDATE jobs SET payload = $1 WHERE id = $2",
        &[&payload, &id],
    )
    .await
    .map(drop)
}

/// Locks the `heads` row of the conversation job `id` is in, if it is a
/// pending job of a conversation: what every change to a job's place takes
/// first.
async fn lock_conversation(tx: &Transaction<'_>, id: &str) -> Result<Option<(Queue, String)>> {
    let Some(job) = row(
        tx,
        "SELECT queue, conversation_key FROM jobs WHERE id = $1 AND state = 'pending'",
        &[&id],
    )
    .await?
    else {
        return Ok(None);
    };
    let (Some(queue), Some(key)) = (
        Queue::parse(job.get("queue")),
        job.get::<_, Option<String>>("conversation_key"),
    ) else {
        return Ok(None);
    };
    if !in_conversations(queue) {
        return Ok(None);
    }
    row(
        tx,
        "SELECT head_seq FROM heads WHERE queue = $1 AND conversation_key = $2 FOR UPDATE",
        &[&queue.as_str(), &key],
    )
    .await?;
    Ok(Some((queue, key)))
}

/// How a job ended.
pub(super) enum End<'a> {
    Done,
    Dead(&'a str),
}

/// Ends a pending job, adds its follow-ups and moves its conversation's head
/// on; whether it was a duplicate (see `sqlite::jobs::finish`).
pub(super) async fn finish(
    tx: &Transaction<'_>,
    id: &str,
    end: End<'_>,
    follow_ups: &[NewJob],
    now: i64,
) -> Result<bool> {
    let (state, error) = match end {
        End::Done => ("done", None),
        End::Dead(error) => ("dead", Some(error)),
    };
    let conversation = lock_conversation(tx, id).await?;
    let Some(ended) = row(
        tx,
        "UPDATE jobs SET state = $1, lease_until = 0, last_error = COALESCE($2, last_error),
             updated_at = $3
         WHERE id = $4 AND state = 'pending'
         RETURNING seq, channel, next_seq, dedupe_key",
        &[&state, &error, &now, &id],
    )
    .await?
    else {
        return Ok(false);
    };
    if let Some((queue, key)) = conversation {
        advance(
            tx,
            queue,
            &key,
            ended.get("seq"),
            ended.get("next_seq"),
            now,
        )
        .await?;
    }
    let duplicate = match ended.get::<_, Option<String>>("dedupe_key") {
        Some(key) if state == "done" => {
            !remember_key(tx, KeyHash::of(ended.get("channel"), &key), now).await?
        }
        _ => false,
    };
    if !duplicate && !follow_ups.is_empty() {
        insert(tx, follow_ups, now).await?;
    }
    Ok(duplicate)
}

/// Moves a conversation's head from `seq` to `next`, or drops it when nothing
/// waits; the new head is ready at its run time but not before `now` (a
/// backlog drains round-robin across conversations).
async fn advance(
    tx: &Transaction<'_>,
    queue: Queue,
    key: &str,
    seq: i64,
    next: Option<i64>,
    now: i64,
) -> Result<()> {
    match next {
        Some(next) => {
            exec(
                tx,
                "UPDATE heads SET head_seq = $1,
                     ready_at = GREATEST((SELECT run_at FROM jobs WHERE seq = $1), $5)
                 WHERE queue = $2 AND conversation_key = $3 AND head_seq = $4",
                &[&next, &queue.as_str(), &key, &seq, &now],
            )
            .await?
        }
        None => {
            exec(
                tx,
                "DELETE FROM heads WHERE queue = $1 AND conversation_key = $2 AND head_seq = $3",
                &[&queue.as_str(), &key, &seq],
            )
            .await?
        }
    };
    Ok(())
}

/// Records a dedupe key; false if it was recorded before.
async fn remember_key(tx: &Transaction<'_>, hash: KeyHash, now: i64) -> Result<bool> {
    let stored = exec(
        tx,
        "INSERT INTO dedupe (slot, check_hash, seen_at) VALUES ($1, $2, $3)
         ON CONFLICT (slot) DO NOTHING",
        &[&hash.slot, &hash.check, &now],
    )
    .await?;
    if stored == 1 {
        return Ok(true);
    }
    let check: Option<i64> = row(
        tx,
        "SELECT check_hash FROM dedupe WHERE slot = $1",
        &[&hash.slot],
    )
    .await?
    .map(|r| r.get(0));
    Ok(check != Some(hash.check))
}

/// Releases a job to run at `run_at`; it stays its conversation's head.
pub(super) async fn retry(
    tx: &Transaction<'_>,
    id: &str,
    run_at: i64,
    error: &str,
    attempt: Attempt,
    now: i64,
) -> Result<()> {
    let refund = i32::from(attempt == Attempt::Refunded);
    let conversation = lock_conversation(tx, id).await?;
    let released = row(
        tx,
        "UPDATE jobs SET run_at = $1, lease_until = 0, last_error = $2, updated_at = $3,
             attempts = GREATEST(attempts - $4, 0)
         WHERE id = $5 AND state = 'pending'
         RETURNING seq",
        &[&run_at, &error, &now, &refund, &id],
    )
    .await?;
    if let (Some(released), Some((queue, key))) = (released, conversation) {
        let seq: i64 = released.get(0);
        exec(
            tx,
            "UPDATE heads SET ready_at = $1
             WHERE queue = $2 AND conversation_key = $3 AND head_seq = $4",
            &[&run_at, &queue.as_str(), &key, &seq],
        )
        .await?;
    }
    Ok(())
}

/// Puts a dead letter back, at the end of its conversation.
pub(super) async fn replay(tx: &Transaction<'_>, id: &str, now: i64) -> Result<bool> {
    let Some(revived) = row(
        tx,
        "UPDATE jobs SET state = 'pending', attempts = 0, run_at = $1, lease_until = 0,
             next_seq = NULL, updated_at = $1
         WHERE id = $2 AND state = 'dead'
         RETURNING seq, queue, conversation_key, destination",
        &[&now, &id],
    )
    .await?
    else {
        return Ok(false);
    };
    let queue = Queue::parse(revived.get("queue"));
    let key: Option<String> = revived.get("conversation_key");
    if let (Some(queue), Some(key)) = (queue, key)
        && in_conversations(queue)
    {
        let destination: String = revived.get("destination");
        link(tx, queue, &key, &destination, revived.get("seq"), now).await?;
    }
    if let Some(queue) = queue {
        exec(
            tx,
            "SELECT pg_notify($1, $2)",
            &[&WAKE_CHANNEL, &queue.as_str()],
        )
        .await?;
    }
    Ok(true)
}

/// Stores an idempotency record and its jobs unless the key is known.
pub(super) async fn remember(
    tx: &Transaction<'_>,
    scope: &str,
    key: &str,
    value: &str,
    jobs: &[NewJob],
    now: i64,
) -> Result<Remembered> {
    let stored = exec(
        tx,
        "INSERT INTO idempotency (scope, key, value, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (scope, key) DO NOTHING",
        &[&scope, &key, &value, &now],
    )
    .await?;
    if stored == 0 {
        let existing = row(
            tx,
            "SELECT value FROM idempotency WHERE scope = $1 AND key = $2",
            &[&scope, &key],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or_default();
        return Ok(Remembered::Existing(existing));
    }
    insert(tx, jobs, now).await?;
    Ok(Remembered::New)
}

/// Records parsed webhooks from the acknowledgement log (see
/// [`Store::record_accepted`](crate::store::Store::record_accepted)): those
/// past the recorded position, which moves to the last of them; the log
/// rows recorded are deleted. Returns how many were duplicates.
pub(super) async fn record_accepted(
    tx: &Transaction<'_>,
    parsed: &[(Accepted, Outcome)],
    now: i64,
) -> Result<usize> {
    let cursor: i64 = row(tx, "SELECT seq FROM ack_cursor FOR UPDATE", &[])
        .await?
        .map(|r| r.get(0))
        .unwrap_or_default();
    let fresh: Vec<&(Accepted, Outcome)> = parsed.iter().filter(|(a, _)| a.seq > cursor).collect();
    let Some(upto) = fresh.iter().map(|(a, _)| a.seq).max() else {
        return Ok(0);
    };
    let mut duplicates = 0;
    let mut done: i64 = 0;
    for (accepted, outcome) in fresh {
        let job = &accepted.job;
        match outcome {
            Outcome::Done(follow_ups) => {
                done += 1;
                let duplicate = match &job.dedupe_key {
                    Some(key) => !remember_key(tx, KeyHash::of(&job.channel, key), now).await?,
                    None => false,
                };
                if duplicate {
                    duplicates += 1;
                } else if !follow_ups.is_empty() {
                    insert(tx, follow_ups, now).await?;
                }
            }
            Outcome::Retry { run_at, error } => {
                insert(tx, &[job.to_inbound(*run_at)], now).await?;
                exec(
                    tx,
                    "UPDATE jobs SET attempts = 1, last_error = $1 WHERE id = $2",
                    &[error, &job.id],
                )
                .await?;
            }
            Outcome::Dead(error) => {
                insert(tx, &[job.to_inbound(now)], now).await?;
                exec(
                    tx,
                    "UPDATE jobs SET attempts = 1, state = 'dead', last_error = $1 WHERE id = $2",
                    &[error, &job.id],
                )
                .await?;
            }
        }
    }
    exec(tx, "UPDATE ack_cursor SET seq = $1", &[&upto]).await?;
    exec(tx, "DELETE FROM accepted WHERE seq <= $1", &[&upto]).await?;
    if done > 0 {
        exec(
            tx,
            "INSERT INTO parsed_counts (minute, parsed) VALUES ($1, $2)
             ON CONFLICT (minute) DO UPDATE SET parsed = parsed_counts.parsed + excluded.parsed",
            &[&(now / 60_000), &done],
        )
        .await?;
    }
    Ok(duplicates)
}

/// One step of retention: jobs looked at in creation order. One replica
/// prunes at a time; the others' steps do nothing.
pub(super) async fn prune(
    tx: &Transaction<'_>,
    from: Option<i64>,
    before: i64,
    limit: u32,
) -> Result<Pruned> {
    let ours: bool = row(
        tx,
        "SELECT pg_try_advisory_xact_lock($1, $2)",
        &[&super::locks::RETENTION.0, &super::locks::RETENTION.1],
    )
    .await?
    .is_some_and(|r| r.get(0));
    if !ours {
        return Ok(Pruned {
            deleted: 0,
            next: None,
        });
    }
    let looked = rows(
        tx,
        "SELECT seq, state, created_at, updated_at FROM jobs WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&from.unwrap_or(0), &i64::from(limit)],
    )
    .await?;
    exec(
        tx,
        "DELETE FROM parsed_counts WHERE minute < $1",
        &[&(before / 60_000)],
    )
    .await?;
    let mut next = (looked.len() == limit as usize)
        .then(|| looked.last().map(|r| r.get::<_, i64>("seq")))
        .flatten();
    let mut finished = Vec::new();
    for r in &looked {
        if r.get::<_, i64>("created_at") >= before {
            next = None;
            break;
        }
        if r.get::<_, &str>("state") == "done" && r.get::<_, i64>("updated_at") < before {
            finished.push(r.get::<_, i64>("seq"));
        }
    }
    let deleted = exec(tx, "DELETE FROM jobs WHERE seq = ANY($1)", &[&finished]).await?;
    Ok(Pruned { deleted, next })
}
