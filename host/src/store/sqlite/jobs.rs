//! The queue's statements, run by the writer inside its transaction.
//!
//! Jobs of one conversation are a list: `jobs.next_seq` links each to the
//! next, and `heads` holds one row per conversation with pending jobs — its
//! head, its tail, its destination and when the head is ready (its run time,
//! or the end of its lease while a worker holds it). Every statement here
//! touches a bounded number of rows: claims read ready heads from
//! `heads_ready`, finishing a job moves its conversation's head one link on.

use rusqlite::{Connection, OptionalExtension, Statement, StatementStatus, params};

use super::event_ids::EventIds;
use crate::store::dedupe::KeyHash;
use crate::store::{Accepted, Attempt, Job, NewJob, Outcome, Pruned, Queue, Remembered, Want};

/// Runs a cached statement; returns how many rows it changed.
pub(super) fn execute(
    conn: &Connection,
    sql: &str,
    values: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(values)
}

/// Runs `f` in a savepoint: should it fail, what it wrote is undone and the
/// rest of the transaction stands.
pub(super) fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    execute(conn, "SAVEPOINT step", [])?;
    let result = f(conn);
    if result.is_err() {
        execute(conn, "ROLLBACK TO step", [])?;
    }
    execute(conn, "RELEASE step", [])?;
    result
}

/// Whether jobs of `queue` wait in conversations (the `inbound` log does not).
fn in_conversations(queue: Queue) -> bool {
    queue != Queue::Inbound
}

/// Appends jobs; a `deliver` or `outbound` job joins the end of its
/// conversation (a job without a conversation key is one of its own).
pub(super) fn insert(conn: &Connection, jobs: &[NewJob], now: i64) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO jobs (id, queue, channel, destination, conversation_key, dedupe_key,
                           run_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    )?;
    let mut keep = conn.prepare_cached("INSERT INTO payloads (seq, payload) VALUES (?1, ?2)")?;
    for job in jobs {
        let key = match (&job.conversation_key, in_conversations(job.queue)) {
            (Some(key), _) => Some(key.as_str()),
            (None, true) => Some(job.id.as_str()),
            (None, false) => None,
        };
        insert.execute(params![
            job.id,
            job.queue.as_str(),
            job.channel,
            job.destination,
            key,
            job.dedupe_key,
            job.run_at,
            now,
        ])?;
        let seq = conn.last_insert_rowid();
        keep.execute(params![seq, job.payload])?;
        if in_conversations(job.queue)
            && let Some(key) = key
        {
            link(conn, job.queue, key, &job.destination, seq, job.run_at)?;
        }
    }
    Ok(())
}

/// Puts job `seq` at the end of its conversation, or makes it the head of a
/// conversation with nothing waiting.
fn link(
    conn: &Connection,
    queue: Queue,
    key: &str,
    destination: &str,
    seq: i64,
    run_at: i64,
) -> rusqlite::Result<()> {
    let tail: Option<i64> = conn
        .prepare_cached("SELECT tail_seq FROM heads WHERE queue = ?1 AND conversation_key = ?2")?
        .query_row(params![queue.as_str(), key], |r| r.get(0))
        .optional()?;
    match tail {
        Some(tail) => {
            execute(
                conn,
                "UPDATE jobs SET next_seq = ?1 WHERE seq = ?2",
                params![seq, tail],
            )?;
            execute(
                conn,
                "UPDATE heads SET tail_seq = ?1 WHERE queue = ?2 AND conversation_key = ?3",
                params![seq, queue.as_str(), key],
            )?;
        }
        None => {
            execute(
                conn,
                "INSERT INTO heads (queue, conversation_key, destination, head_seq, tail_seq, ready_at)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                params![queue.as_str(), key, destination, seq, run_at],
            )?;
        }
    }
    Ok(())
}

/// Adds a statement's virtual-machine steps since its last count to `steps`:
/// the rows it touched, whatever the clock says.
fn count_steps(statement: &Statement<'_>, steps: &mut u64) {
    *steps += statement.reset_status(StatementStatus::VmStep).max(0) as u64;
}

/// Leases what `wants` asks for (see [`Store::claim`](crate::store::Store::claim)).
/// Adds the VM steps of its reads to `steps` (what tests bound).
pub(super) fn claim(
    conn: &Connection,
    queue: Queue,
    wants: &[Want],
    now: i64,
    lease_ms: i64,
    steps: &mut u64,
) -> rusqlite::Result<Vec<Job>> {
    let lease_until = now.saturating_add(lease_ms);
    if !in_conversations(queue) {
        let limit: u32 = wants.iter().map(|w| w.limit).sum();
        return claim_log(conn, queue, now, lease_until, limit, steps);
    }
    let mut jobs = Vec::new();
    for want in wants.iter().filter(|w| w.limit > 0) {
        let mut ready = conn.prepare_cached(
            "SELECT conversation_key, head_seq FROM heads
             WHERE queue = ?1 AND destination = ?2 AND ready_at <= ?3
             ORDER BY ready_at, head_seq LIMIT ?4",
        )?;
        count_steps(&ready, &mut 0);
        let heads: Vec<(String, i64)> = ready
            .query_map(
                params![queue.as_str(), want.destination, now, want.limit],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        count_steps(&ready, steps);
        for (key, seq) in heads {
            // The lease is the head's readiness: it comes back by itself
            // when the lease runs out.
            execute(
                conn,
                "UPDATE heads SET ready_at = ?1 WHERE queue = ?2 AND conversation_key = ?3",
                params![lease_until, queue.as_str(), key],
            )?;
            let job = conn
                .prepare_cached(
                    "UPDATE jobs SET lease_until = ?1, attempts = attempts + 1, updated_at = ?2
                     WHERE seq = ?3 AND state = 'pending'
                     RETURNING id, channel, destination, attempts, dedupe_key",
                )?
                .query_row(params![lease_until, now, seq], |r| {
                    Ok(Job {
                        id: r.get(0)?,
                        queue,
                        channel: r.get(1)?,
                        destination: r.get(2)?,
                        payload: Vec::new(),
                        attempts: r.get(3)?,
                        dedupe_key: r.get(4)?,
                    })
                })
                .optional()?
                .map(|job| with_payload(conn, seq, job))
                .transpose()?;
            match job {
                Some(job) => jobs.push(job),
                None => {
                    // A head whose job is finished or gone (a bug): move on to
                    // the job after it, so the conversation does not wait for ever.
                    tracing::error!(
                        queue = queue.as_str(),
                        "conversation head without a pending job; moved on"
                    );
                    let next: Option<i64> = conn
                        .prepare_cached("SELECT next_seq FROM jobs WHERE seq = ?1")?
                        .query_row([seq], |r| r.get(0))
                        .optional()?
                        .flatten();
                    advance(conn, queue, &key, seq, next, now)?;
                }
            }
        }
    }
    Ok(jobs)
}

/// The `inbound` log: due jobs in arrival order.
fn claim_log(
    conn: &Connection,
    queue: Queue,
    now: i64,
    lease_until: i64,
    limit: u32,
    steps: &mut u64,
) -> rusqlite::Result<Vec<Job>> {
    let mut claim = conn.prepare_cached(
        "UPDATE jobs SET lease_until = ?1, attempts = attempts + 1, updated_at = ?2
         WHERE seq IN (
             SELECT seq FROM jobs INDEXED BY jobs_log
             WHERE queue = 'inbound' AND state = 'pending' AND run_at <= ?2 AND lease_until <= ?2
             ORDER BY run_at, seq LIMIT ?3)
         RETURNING seq, id, channel, destination, attempts, dedupe_key",
    )?;
    count_steps(&claim, &mut 0);
    let mut jobs = claim
        .query_map(params![lease_until, now, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Job {
                    id: r.get(1)?,
                    queue,
                    channel: r.get(2)?,
                    destination: r.get(3)?,
                    payload: Vec::new(),
                    attempts: r.get(4)?,
                    dedupe_key: r.get(5)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    count_steps(&claim, steps);
    jobs.sort_by_key(|(seq, _)| *seq);
    jobs.into_iter()
        .map(|(seq, job)| with_payload(conn, seq, job))
        .collect()
}

/// Fills in a claimed job's payload, which lives apart from the job's state
/// (see `payloads` in the schema).
fn with_payload(conn: &Connection, seq: i64, mut job: Job) -> rusqlite::Result<Job> {
    job.payload = conn
        .prepare_cached("SELECT payload FROM payloads WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))?;
    Ok(job)
}

/// Replaces a job's payload.
pub(super) fn save_progress(conn: &Connection, id: &str, payload: &[u8]) -> rusqlite::Result<()> {
    execute(
        conn,
        "UPDATE payloads SET payload = ?1 WHERE seq = (SELECT seq FROM jobs WHERE id = ?2)",
        params![payload, id],
    )
    .map(drop)
}

/// Records parsed webhooks from the acknowledgement log (see
/// [`Store::record_accepted`](crate::store::Store::record_accepted)): those
/// past the recorded position, which moves to the last of them. Returns how
/// many were duplicates.
pub(super) fn record_accepted(
    conn: &Connection,
    ids: &mut EventIds,
    parsed: &[(Accepted, Outcome)],
    now: i64,
) -> rusqlite::Result<usize> {
    let cursor: i64 = conn
        .prepare_cached("SELECT seq FROM ack_cursor")?
        .query_row([], |r| r.get(0))?;
    let fresh: Vec<&(Accepted, Outcome)> = parsed.iter().filter(|(a, _)| a.seq > cursor).collect();
    let Some(upto) = fresh.iter().map(|(a, _)| a.seq).max() else {
        return Ok(0);
    };
    execute(conn, "UPDATE ack_cursor SET seq = ?1", [upto])?;
    let mut duplicates = 0;
    let mut done = 0;
    for (accepted, outcome) in fresh {
        let job = &accepted.job;
        match outcome {
            Outcome::Done(follow_ups) => {
                done += 1;
                let duplicate = match &job.dedupe_key {
                    Some(key) => !ids.remember(conn, KeyHash::of(&job.channel, key), now)?,
                    None => false,
                };
                if duplicate {
                    duplicates += 1;
                } else if !follow_ups.is_empty() {
                    insert(conn, follow_ups, now)?;
                }
            }
            // Now a job of the `inbound` table, on the usual retry path.
            Outcome::Retry { run_at, error } => {
                insert(conn, &[job.to_inbound(*run_at)], now)?;
                execute(
                    conn,
                    "UPDATE jobs SET attempts = 1, last_error = ?1 WHERE id = ?2",
                    params![error, job.id],
                )?;
            }
            Outcome::Dead(error) => {
                insert(conn, &[job.to_inbound(now)], now)?;
                execute(
                    conn,
                    "UPDATE jobs SET attempts = 1, state = 'dead', last_error = ?1 WHERE id = ?2",
                    params![error, job.id],
                )?;
            }
        }
    }
    if done > 0 {
        execute(
            conn,
            "INSERT INTO parsed_counts (minute, parsed) VALUES (?1, ?2)
             ON CONFLICT (minute) DO UPDATE SET parsed = parsed + excluded.parsed",
            params![now / 60_000, done],
        )?;
    }
    Ok(duplicates)
}

/// One step of retention (see [`Store::prune`](crate::store::Store::prune)):
/// jobs are looked at in creation order, so the oldest come first without an
/// index that every state change would have to keep up to date.
pub(super) fn prune(
    conn: &Connection,
    from: Option<i64>,
    before: i64,
    limit: u32,
) -> rusqlite::Result<Pruned> {
    let rows: Vec<(i64, String, i64, i64)> = conn
        .prepare_cached(
            "SELECT seq, state, created_at, updated_at FROM jobs WHERE seq > ?1
             ORDER BY seq LIMIT ?2",
        )?
        .query_map(params![from.unwrap_or(0), limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    // Counts of webhooks parsed from the acknowledgement log age out too.
    execute(
        conn,
        "DELETE FROM parsed_counts WHERE minute < ?1",
        [before / 60_000],
    )?;
    let mut delete_job = conn.prepare_cached("DELETE FROM jobs WHERE seq = ?1")?;
    let mut delete_payload = conn.prepare_cached("DELETE FROM payloads WHERE seq = ?1")?;
    let mut deleted = 0;
    let mut next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.0))
        .flatten();
    for (seq, state, created_at, updated_at) in rows {
        if created_at >= before {
            next = None;
            break;
        }
        if state == "done" && updated_at < before {
            delete_job.execute([seq])?;
            delete_payload.execute([seq])?;
            deleted += 1;
        }
    }
    Ok(Pruned { deleted, next })
}

/// How a job ended.
pub(super) enum End<'a> {
    Done,
    Dead(&'a str),
}

/// Ends a pending job and adds its follow-ups; moves its conversation's head
/// on. Returns whether it was a duplicate (done, with a dedupe key an earlier
/// job had: its follow-ups are dropped). A job no longer pending is left alone.
pub(super) fn finish(
    conn: &Connection,
    ids: &mut EventIds,
    id: &str,
    end: End<'_>,
    follow_ups: &[NewJob],
    now: i64,
) -> rusqlite::Result<bool> {
    let (state, error) = match end {
        End::Done => ("done", None),
        End::Dead(error) => ("dead", Some(error)),
    };
    let ended = conn
        .prepare_cached(
            "UPDATE jobs SET state = ?1, lease_until = 0, last_error = COALESCE(?2, last_error),
                 updated_at = ?3
             WHERE id = ?4 AND state = 'pending'
             RETURNING seq, queue, channel, conversation_key, next_seq, dedupe_key",
        )?
        .query_row(params![state, error, now, id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .optional()?;
    let Some((seq, queue, channel, key, next, dedupe_key)) = ended else {
        return Ok(false);
    };
    if let (Some(queue), Some(key)) = (Queue::parse(&queue), key)
        && in_conversations(queue)
    {
        advance(conn, queue, &key, seq, next, now)?;
    }
    let duplicate = match dedupe_key {
        Some(key) if state == "done" => !ids.remember(conn, KeyHash::of(&channel, &key), now)?,
        _ => false,
    };
    if !duplicate && !follow_ups.is_empty() {
        insert(conn, follow_ups, now)?;
    }
    Ok(duplicate)
}

/// Moves a conversation's head from `seq` to `next`, or drops the head when
/// nothing waits behind it. The new head is ready at its run time but not
/// before `now`: a conversation that just had a turn queues behind the ones
/// already waiting, so a backlog drains round-robin across conversations
/// rather than one long conversation first.
fn advance(
    conn: &Connection,
    queue: Queue,
    key: &str,
    seq: i64,
    next: Option<i64>,
    now: i64,
) -> rusqlite::Result<()> {
    match next {
        Some(next) => execute(
            conn,
            "UPDATE heads SET head_seq = ?1,
                 ready_at = MAX((SELECT run_at FROM jobs WHERE seq = ?1), ?5)
             WHERE queue = ?2 AND conversation_key = ?3 AND head_seq = ?4",
            params![next, queue.as_str(), key, seq, now],
        )?,
        None => execute(
            conn,
            "DELETE FROM heads WHERE queue = ?1 AND conversation_key = ?2 AND head_seq = ?3",
            params![queue.as_str(), key, seq],
        )?,
    };
    Ok(())
}

/// Releases a job to run at `run_at`; it stays its conversation's head.
pub(super) fn retry(
    conn: &Connection,
    id: &str,
    run_at: i64,
    error: &str,
    attempt: Attempt,
    now: i64,
) -> rusqlite::Result<()> {
    let refund = i64::from(attempt == Attempt::Refunded);
    let released = conn
        .prepare_cached(
            "UPDATE jobs SET run_at = ?1, lease_until = 0, last_error = ?2, updated_at = ?3,
                 attempts = MAX(attempts - ?4, 0)
             WHERE id = ?5 AND state = 'pending'
             RETURNING seq, queue, conversation_key",
        )?
        .query_row(params![run_at, error, now, refund, id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()?;
    if let Some((seq, queue, Some(key))) = released
        && Queue::parse(&queue).is_some_and(in_conversations)
    {
        execute(
            conn,
            "UPDATE heads SET ready_at = ?1 WHERE queue = ?2 AND conversation_key = ?3 AND head_seq = ?4",
            params![run_at, queue, key, seq],
        )?;
    }
    Ok(())
}

/// Puts a dead letter back, at the end of its conversation.
pub(super) fn replay(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<bool> {
    let revived = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'pending', attempts = 0, run_at = ?1, lease_until = 0,
                 next_seq = NULL, updated_at = ?1
             WHERE id = ?2 AND state = 'dead'
             RETURNING seq, queue, conversation_key, destination",
        )?
        .query_row(params![now, id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?;
    let Some((seq, queue, key, destination)) = revived else {
        return Ok(false);
    };
    if let (Some(queue), Some(key)) = (Queue::parse(&queue), key)
        && in_conversations(queue)
    {
        link(conn, queue, &key, &destination, seq, now)?;
    }
    Ok(true)
}

/// Stores an idempotency record and its jobs unless the key is known.
pub(super) fn remember(
    conn: &Connection,
    scope: &str,
    key: &str,
    value: &str,
    jobs: &[NewJob],
    now: i64,
) -> rusqlite::Result<Remembered> {
    let existing: Option<String> = conn
        .prepare_cached("SELECT value FROM idempotency WHERE scope = ?1 AND key = ?2")?
        .query_row(params![scope, key], |row| row.get(0))
        .optional()?;
    if let Some(value) = existing {
        return Ok(Remembered::Existing(value));
    }
    execute(
        conn,
        "INSERT INTO idempotency (scope, key, value, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![scope, key, value, now],
    )?;
    insert(conn, jobs, now)?;
    Ok(Remembered::New)
}

/// Makes every conversation's head ready at its own run time again: what a
/// previous process had leased runs at once (used at start by `serve`).
pub(super) fn release_leases(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE jobs SET lease_until = 0 WHERE state = 'pending' AND lease_until > 0",
        [],
    )?;
    conn.execute(
        "UPDATE heads SET ready_at = (SELECT run_at FROM jobs WHERE jobs.seq = heads.head_seq)",
        [],
    )?;
    Ok(())
}

/// Links the pending jobs of a file from before conversation heads (schema 1)
/// into their conversations, oldest first, and keeps the dedupe keys of its
/// finished webhooks.
pub(super) fn link_existing(conn: &Connection) -> rusqlite::Result<()> {
    let pending: Vec<(i64, String, Option<String>, String, String, i64)> = conn
        .prepare(
            "SELECT seq, queue, conversation_key, id, destination, run_at FROM jobs
             WHERE state = 'pending' AND queue != 'inbound' ORDER BY seq",
        )?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (seq, queue, key, id, destination, run_at) in pending {
        let Some(queue) = Queue::parse(&queue) else {
            continue;
        };
        let key = key.unwrap_or(id);
        execute(
            conn,
            "UPDATE jobs SET conversation_key = ?1 WHERE seq = ?2",
            params![key, seq],
        )?;
        link(conn, queue, &key, &destination, seq, run_at)?;
    }
    let keys: Vec<(String, String, i64)> = conn
        .prepare(
            "SELECT channel, dedupe_key, updated_at FROM jobs
             WHERE dedupe_key IS NOT NULL AND state = 'done'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut insert = conn.prepare(
        "INSERT INTO dedupe (slot, check_hash, seen_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (slot) DO NOTHING",
    )?;
    for (channel, key, seen_at) in keys {
        let hash = KeyHash::of(&channel, &key);
        insert.execute(params![hash.slot, hash.check, seen_at])?;
    }
    Ok(())
}
