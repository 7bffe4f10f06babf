//! The acknowledgement log: webhooks accepted but not yet parsed, in a file
//! of their own (`<database>.acks`) written by a thread of its own.
//!
//! Accepting a webhook is one row appended at the end of this log and a share
//! of one group commit (every append waiting is written in one transaction,
//! one fsync, before any of them is answered). It shares no transaction and
//! no lock with the workers' writes in the main database, so an
//! acknowledgement never waits for a claim, a completion or a retention pass.
//!
//! The parser reads the log in order and records each batch's outcome in the
//! main database together with the log position it reached (`ack_cursor`),
//! in one transaction: a webhook is parsed into the main database exactly
//! once however the process stops. Rows at or below the cursor are deleted
//! here afterwards, in the next append turn.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::readers::Readers;
use crate::store::{Accepted, Job, NewJob, Queue, StoreError};

enum AckOp {
    Append(NewJob, oneshot::Sender<Result<i64, StoreError>>),
    /// Deletes the rows up to this sequence number (already parsed).
    Forget(i64),
}

/// The log's writer (none when opened for inspection) and readers.
#[derive(Debug)]
pub(super) struct AckLog {
    tx: Option<mpsc::Sender<AckOp>>,
    readers: Readers,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accepted (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    channel TEXT NOT NULL,
    dedupe_key TEXT,
    payload BLOB NOT NULL,
    received_at INTEGER NOT NULL
);";

/// The log beside the database at `path`.
pub(super) fn path_for(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_os_string();
    name.push(".acks");
    PathBuf::from(name)
}

impl AckLog {
    /// Opens (creating if needed) the log of the database at `database`,
    /// whose cursor stands at `parsed`: rows up to it are gone, and new rows
    /// number above it even if the log file was lost.
    pub(super) fn open(
        database: &Path,
        parsed: i64,
        max_batch: usize,
    ) -> Result<AckLog, StoreError> {
        let path = path_for(database);
        let conn = Connection::open(&path)?;
        super::tune(&conn)?;
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(None, "synchronous", "full")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute("DELETE FROM accepted WHERE seq <= ?1", [parsed])?;
        let next: Option<i64> = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'accepted'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match next {
            Some(seq) if seq >= parsed => {}
            Some(_) => {
                conn.execute(
                    "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'accepted'",
                    [parsed],
                )?;
            }
            None => {
                conn.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('accepted', ?1)",
                    [parsed],
                )?;
            }
        }
        let (tx, rx) = mpsc::channel(max_batch * 4);
        std::thread::Builder::new()
            .name("patchbay-acks".into())
            .spawn(move || write_loop(conn, rx, max_batch))
            .map_err(StoreError::Writer)?;
        Ok(AckLog {
            tx: Some(tx),
            readers: Readers::new(path, 2),
        })
    }

    /// The log of the database at `database`, to read only (`patchbay
    /// status` beside a serving process): no writer, nothing changed.
    pub(super) fn inspect(database: &Path) -> AckLog {
        AckLog {
            tx: None,
            readers: Readers::new(path_for(database), 1),
        }
    }

    /// Appends `job`; `Ok` once it is on disk.
    pub(super) async fn append(&self, job: NewJob) -> Result<i64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(AckOp::Append(job, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets the rows up to `seq` go; done with a later append turn.
    pub(super) fn forget_upto(&self, seq: i64) {
        // A full channel only postpones it: the next record names a later seq.
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(AckOp::Forget(seq));
        }
    }

    /// Up to `limit` rows after `seq`, in order.
    pub(super) async fn after(&self, seq: i64, limit: u32) -> Result<Vec<Accepted>, StoreError> {
        self.readers
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT seq, id, channel, dedupe_key, payload FROM accepted
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = statement.query_map(params![seq, limit], |r| {
                    Ok(Accepted {
                        seq: r.get(0)?,
                        job: Job {
                            id: r.get(1)?,
                            queue: Queue::Inbound,
                            destination: r.get(2)?,
                            channel: r.get(2)?,
                            dedupe_key: r.get(3)?,
                            payload: r.get(4)?,
                            attempts: 1,
                        },
                    })
                })?;
                rows.collect()
            })
            .await
    }

    /// How many rows wait after `seq` (none when there is no log yet).
    pub(super) async fn count_after(&self, seq: i64) -> Result<u64, StoreError> {
        if self.tx.is_none() && !self.readers.path().exists() {
            return Ok(0);
        }
        self.readers
            .read(move |conn| {
                conn.query_row("SELECT COUNT(*) FROM accepted WHERE seq > ?1", [seq], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await
            .map(|n| n as u64)
    }

    /// When the oldest webhook after `seq` arrived, ms since the epoch.
    pub(super) async fn oldest_after(&self, seq: i64) -> Result<Option<i64>, StoreError> {
        if self.tx.is_none() && !self.readers.path().exists() {
            return Ok(None);
        }
        self.readers
            .read(move |conn| {
                conn.query_row(
                    "SELECT received_at FROM accepted WHERE seq > ?1 ORDER BY seq LIMIT 1",
                    [seq],
                    |r| r.get(0),
                )
                .optional()
            })
            .await
    }
}

/// Takes every op waiting (up to `max_batch`), writes them in one
/// transaction, answers the appends once it has committed.
fn write_loop(conn: Connection, mut rx: mpsc::Receiver<AckOp>, max_batch: usize) {
    let mut ops = Vec::with_capacity(max_batch);
    while rx.blocking_recv_many(&mut ops, max_batch) > 0 {
        let mut forget = None;
        let mut appends = Vec::with_capacity(ops.len());
        for op in ops.drain(..) {
            match op {
                AckOp::Append(job, reply) => appends.push((job, reply)),
                AckOp::Forget(seq) => forget = forget.max(Some(seq)),
            }
        }
        let written = write_turn(&conn, &appends, forget);
        match written {
            Ok(seqs) => {
                for ((_, reply), seq) in appends.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "acknowledgement log write failed");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                let why = e.to_string();
                for (_, reply) in appends {
                    let _ = reply.send(Err(StoreError::Commit(why.clone())));
                }
            }
        }
    }
}

fn write_turn(
    conn: &Connection,
    appends: &[(NewJob, oneshot::Sender<Result<i64, StoreError>>)],
    forget: Option<i64>,
) -> rusqlite::Result<Vec<i64>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut seqs = Vec::with_capacity(appends.len());
    {
        let mut insert = conn.prepare_cached(
            "INSERT INTO accepted (id, channel, dedupe_key, payload, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (job, _) in appends {
            insert.execute(params![
                job.id,
                job.channel,
                job.dedupe_key,
                job.payload,
                job.run_at
            ])?;
            seqs.push(conn.last_insert_rowid());
        }
    }
    if let Some(seq) = forget {
        conn.prepare_cached("DELETE FROM accepted WHERE seq <= ?1")?
            .execute([seq])?;
    }
    super::commit(conn, "acks", true)?;
    Ok(seqs)
}
