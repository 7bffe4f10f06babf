//! The PostgreSQL store: one database shared by several `patchbay serve`
//! replicas.
//!
//! The same queue model as SQLite (see [`crate::store`]), with what sharing
//! needs:
//!
//! - **Acknowledgements group-commit.** Accepted webhooks wait in a channel;
//!   one task appends all that are waiting in one transaction (one round trip
//!   per batch and one WAL flush) and answers them after the commit. Appends
//!   take a transaction-scoped advisory lock, so log positions become
//!   visible in the order they were taken and the parser never passes one
//!   still committing.
//! - **One parser at a time.** The replica holding a session advisory lock
//!   reads the log, keeping arrival order across replicas; should it die,
//!   PostgreSQL drops its lock with its connection and another replica
//!   takes over from the recorded position. Records are per log position, so
//!   a replica that lost the lock mid-batch records nothing twice.
//! - **Claims skip what others hold.** Conversation heads are claimed
//!   `FOR UPDATE SKIP LOCKED`; a leased head is not ready until its lease
//!   ends, so no replica starts a conversation's next job while an earlier
//!   one is leased elsewhere, and a dead replica's leases simply run out.
//! - **Wake-ups by `LISTEN/NOTIFY`.** Transactions that add work notify
//!   `patchbay_jobs` with the queue's name; every replica listens.
//! - **Pauses are shared.** A destination paused by one replica (failing,
//!   or `Retry-After`) is paused for all (the `pauses` table).
//!
//! Any statement PostgreSQL aborts as a deadlock or a serialization failure
//! is retried as a whole transaction.

mod locks;
mod queue;
pub mod schema;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use crate::clock::Clock;

use super::dedupe::KeyHash;
use super::{
    Accepted, Attempt, ConversationJob, DeadLetter, Job, Link, NewJob, Outcome, Pruned, Queue,
    QueueCounts, RecentConversation, Remembered, Store, StoreError, Want,
};
use queue::End;

/// How the PostgreSQL store connects and batches.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// Most connections this replica opens (besides the parser's and the
    /// listener's).
    pub pool_size: usize,
    /// Most webhooks committed in one transaction.
    pub max_batch: usize,
    /// How long to wait for a connection before a request fails (503).
    pub connect_timeout: Duration,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            pool_size: 16,
            max_batch: 512,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A webhook waiting for the next append, with where to answer.
type Waiting = (NewJob, oneshot::Sender<Result<(), String>>);

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    connect: Connector,
    acks: mpsc::Sender<Waiting>,
    parser: Arc<tokio::sync::Mutex<ParserLock>>,
    wakers: Arc<Mutex<Vec<Waker>>>,
    clock: Clock,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No connection string: it may hold a password.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

type Waker = Box<dyn Fn(Queue) + Send + Sync>;

/// Opens connections outside the pool (the parser's, the listener's).
#[derive(Clone)]
struct Connector {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl Connector {
    async fn connect(&self) -> Result<(Client, Connection), StoreError> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        Ok((client, Box::new(connection)))
    }
}

type Connection = Box<
    tokio_postgres::Connection<
        tokio_postgres::Socket,
        <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
    >,
>;

/// The parser's advisory lock, held by a connection of its own (kept open
/// while another replica parses, to ask again on it).
#[derive(Default)]
struct ParserLock {
    client: Option<Client>,
    held: bool,
    /// When taking it last failed: others hold it, ask again later.
    refused_at: Option<Instant>,
}

/// How often a replica that does not parse asks for the parser's lock.
const PARSER_RETRY: Duration = Duration::from_millis(500);

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database(format!("no database connection: {e}"))
    }
}

/// Whether PostgreSQL aborted a transaction that may simply run again.
fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

/// Runs `$body` (using the transaction `$tx`) and commits, running it again
/// should PostgreSQL abort it as a deadlock; evaluates to the body's value.
macro_rules! transaction {
    ($store:expr, $tx:ident => $body:expr) => {{
        let mut tries = 0u32;
        loop {
            let mut client = $store.pool.get().await?;
            let $tx = client.transaction().await?;
            match $body {
                Ok(value) => {
                    $tx.commit()
                        .await
                        .map_err(|e| StoreError::Commit(e.to_string()))?;
                    break Ok::<_, StoreError>(value);
                }
                Err(e) if retryable(&e) && tries < 8 => {
                    tries += 1;
                    let why = e.as_db_error().map(|d| d.message().to_string());
                    tracing::debug!(error = why, "store transaction aborted; running it again");
                }
                Err(e) => break Err(StoreError::from(e)),
            }
        }
    }};
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL) and brings its
    /// schema up to date. Rows are stamped with `clock`.
    pub async fn open(
        url: &str,
        settings: PostgresSettings,
        clock: Clock,
    ) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            StoreError::Database("the store URL is not a valid postgres:// URL".into())
        })?;
        config.connect_timeout(settings.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("patchbay");
        }
        crate::transport::install_crypto_provider();
        use rustls_platform_verifier::ConfigVerifierExt as _;
        let tls_config = rustls::ClientConfig::with_platform_verifier()
            .map_err(|e| StoreError::Database(format!("TLS setup: {e}")))?;
        let connect = Connector {
            config: config.clone(),
            tls: MakeRustlsConnect::new(tls_config),
        };
        let manager = Manager::from_config(
            config,
            connect.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(settings.connect_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .build()
            .map_err(|e| StoreError::Database(format!("connection pool: {e}")))?;
        {
            let mut client = pool.get().await?;
            schema::migrate(&mut client).await?;
        }
        let (acks, waiting) = mpsc::channel(settings.max_batch.max(1) * 4);
        tokio::spawn(append_accepted(
            pool.clone(),
            waiting,
            settings.max_batch.max(1),
            clock.clone(),
        ));
        Ok(PostgresStore {
            pool,
            connect,
            acks,
            parser: Arc::default(),
            wakers: Arc::default(),
            clock,
        })
    }

    /// Whether this replica holds the parser's lock, taking it if it is free
    /// (asking at most every [`PARSER_RETRY`]).
    async fn parses(&self) -> Result<bool, StoreError> {
        let mut parser = self.parser.lock().await;
        if parser.client.as_ref().is_some_and(Client::is_closed) {
            if parser.held {
                tracing::warn!(
                    "lost the parser's database connection; another replica parses, or this one again later"
                );
            }
            *parser = ParserLock::default();
        }
        if parser.held {
            return Ok(true);
        }
        if parser
            .refused_at
            .is_some_and(|at| at.elapsed() < PARSER_RETRY)
        {
            return Ok(false);
        }
        if parser.client.is_none() {
            let (client, connection) = self.connect.connect().await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            parser.client = Some(client);
        }
        let Some(client) = &parser.client else {
            return Ok(false);
        };
        let taken: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&locks::PARSER.0, &locks::PARSER.1],
            )
            .await?
            .get(0);
        if taken {
            tracing::info!("this replica parses the acknowledgement log");
        }
        parser.held = taken;
        parser.refused_at = (!taken).then(Instant::now);
        Ok(taken)
    }

    /// Listens for work added by any replica and calls the wakers; reconnects
    /// when the connection drops (then wakes every queue: notifications may
    /// have been missed).
    fn listen(&self) {
        let (connect, wakers) = (self.connect.clone(), self.wakers.clone());
        let wake = Arc::new(move |queue: Queue| {
            let wakers = wakers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            wakers.iter().for_each(|w| w(queue));
        });
        tokio::spawn(async move {
            let mut first = true;
            loop {
                match connect.connect().await {
                    Ok((client, mut connection)) => {
                        let notified = wake.clone();
                        let messages = tokio::spawn(async move {
                            while let Some(message) =
                                std::future::poll_fn(|cx| connection.poll_message(cx)).await
                            {
                                match message {
                                    Ok(AsyncMessage::Notification(n)) => {
                                        if let Some(queue) = Queue::parse(n.payload()) {
                                            notified(queue);
                                        }
                                    }
                                    Ok(_) => {}
                                    Err(_) => break,
                                }
                            }
                        });
                        let listening = client
                            .batch_execute(&format!("LISTEN {}", queue::WAKE_CHANNEL))
                            .await;
                        if listening.is_ok() {
                            if !first {
                                Queue::ALL.into_iter().for_each(|q| wake(q));
                            }
                            first = false;
                            let _ = messages.await;
                        } else {
                            messages.abort();
                        }
                        tracing::warn!(
                            "lost the database connection listening for work; reconnecting"
                        );
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot listen for work yet"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// Appends accepted webhooks, every one waiting in one transaction, and
/// answers them after the commit.
async fn append_accepted(
    pool: Pool,
    mut waiting: mpsc::Receiver<Waiting>,
    max_batch: usize,
    clock: Clock,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while waiting.recv_many(&mut batch, max_batch).await > 0 {
        let (jobs, replies): (Vec<NewJob>, Vec<_>) = batch.drain(..).unzip();
        let result = append(&pool, &jobs, clock.now())
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, webhooks = jobs.len(), "appending accepted webhooks failed");
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}

async fn append(pool: &Pool, jobs: &[NewJob], now: i64) -> Result<(), StoreError> {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let channels: Vec<&str> = jobs.iter().map(|j| j.channel.as_str()).collect();
    let destinations: Vec<&str> = jobs.iter().map(|j| j.destination.as_str()).collect();
    let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.dedupe_key.as_deref()).collect();
    let payloads: Vec<&[u8]> = jobs.iter().map(|j| j.payload.as_slice()).collect();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&locks::ACK_LOG.0, &locks::ACK_LOG.1],
    )
    .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO accepted (id, channel, destination, dedupe_key, payload, accepted_at)
             SELECT id, channel, destination, dedupe_key, payload, $6
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[])
                  WITH ORDINALITY AS t(id, channel, destination, dedupe_key, payload, n)
             ORDER BY n",
        )
        .await?;
    tx.execute(
        &insert,
        &[&ids, &channels, &destinations, &keys, &payloads, &now],
    )
    .await?;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&queue::WAKE_CHANNEL, &Queue::Inbound.as_str()],
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| StoreError::Commit(e.to_string()))
}

#[async_trait]
impl Store for PostgresStore {
    async fn add(&self, jobs: Vec<NewJob>) -> Result<(), StoreError> {
        let now = self.clock.now();
        let new: Vec<&NewJob> = jobs.iter().collect();
        transaction!(self, tx => async {
            queue::prepare(&tx, &new, &[]).await?;
            queue::insert(&tx, &jobs, now).await
        }.await)
    }

    async fn accept(&self, job: NewJob) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.acks
            .send((job, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer
            .await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Commit)
    }

    async fn accepted(&self, after: Option<i64>, limit: u32) -> Result<Vec<Accepted>, StoreError> {
        if !self.parses().await? {
            return Ok(vec![]);
        }
        let client = self.pool.get().await?;
        let read = client
            .prepare_cached(
                "SELECT seq, id, channel, destination, dedupe_key, payload FROM accepted
                 WHERE seq > GREATEST($1, (SELECT seq FROM ack_cursor))
                 ORDER BY seq LIMIT $2",
            )
            .await?;
        let rows = client
            .query(&read, &[&after.unwrap_or(0), &i64::from(limit)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Accepted {
                seq: r.get("seq"),
                job: Job {
                    id: r.get("id"),
                    queue: Queue::Inbound,
                    channel: r.get("channel"),
                    destination: r.get("destination"),
                    payload: r.get("payload"),
                    attempts: 1,
                    dedupe_key: r.get("dedupe_key"),
                },
            })
            .collect())
    }

    async fn record_accepted(&self, parsed: Vec<(Accepted, Outcome)>) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let new: Vec<&NewJob> = parsed
            .iter()
            .flat_map(|(_, outcome)| match outcome {
                Outcome::Done(follow_ups) => follow_ups.iter().collect(),
                _ => vec![],
            })
            .collect();
        transaction!(self, tx => async {
            queue::prepare(&tx, &new, &[]).await?;
            queue::record_accepted(&tx, &parsed, now).await
        }.await)
    }

    async fn claim(
        &self,
        queue: Queue,
        wants: Vec<Want>,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<Job>, StoreError> {
        transaction!(self, tx => queue::claim(&tx, queue, &wants, now, lease_ms).await)
    }

    async fn complete_many(&self, done: Vec<(String, Vec<NewJob>)>) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let new: Vec<&NewJob> = done.iter().flat_map(|(_, f)| f).collect();
        let ids: Vec<&str> = done.iter().map(|(id, _)| id.as_str()).collect();
        transaction!(self, tx => async {
            queue::prepare(&tx, &new, &ids).await?;
            let mut duplicates = 0;
            for (id, follow_ups) in &done {
                let duplicate = queue::finish(&tx, id, End::Done, follow_ups, now).await?;
                duplicates += usize::from(duplicate);
            }
            Ok(duplicates)
        }.await)
    }

    async fn seen(&self, keys: Vec<(String, String)>) -> Result<Vec<bool>, StoreError> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let hashes: Vec<KeyHash> = keys.iter().map(|(c, k)| KeyHash::of(c, k)).collect();
        let slots: Vec<i64> = hashes.iter().map(|h| h.slot).collect();
        let client = self.pool.get().await?;
        let found: std::collections::HashSet<(i64, i64)> = client
            .query(
                "SELECT slot, check_hash FROM dedupe WHERE slot = ANY($1)",
                &[&slots],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(hashes
            .iter()
            .map(|h| found.contains(&(h.slot, h.check)))
            .collect())
    }

    async fn save_progress(&self, id: &str, payload: Vec<u8>) -> Result<(), StoreError> {
        transaction!(self, tx => queue::save_progress(&tx, id, &payload).await)
    }

    async fn retry(
        &self,
        id: &str,
        run_at: i64,
        error: &str,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        transaction!(self, tx => async {
            queue::prepare(&tx, &[], &[id]).await?;
            queue::retry(&tx, id, run_at, error, attempt, now).await
        }.await)
    }

    async fn bury(&self, id: &str, error: &str, follow_ups: Vec<NewJob>) -> Result<(), StoreError> {
        let now = self.clock.now();
        let new: Vec<&NewJob> = follow_ups.iter().collect();
        transaction!(self, tx => async {
            queue::prepare(&tx, &new, &[id]).await?;
            queue::finish(&tx, id, End::Dead(error), &follow_ups, now).await.map(drop)
        }.await)
    }

    async fn next_due(
        &self,
        queue: Queue,
        destinations: Vec<String>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let client = self.pool.get().await?;
        let row = if queue == Queue::Inbound {
            client
                .query_one(
                    "SELECT min(run_at) FROM jobs
                     WHERE queue = 'inbound' AND state = 'pending' AND run_at > $1",
                    &[&now],
                )
                .await?
        } else {
            client
                .query_one(
                    "SELECT min(ready_at) FROM heads
                     WHERE queue = $1 AND destination = ANY($2) AND ready_at > $3",
                    &[&queue.as_str(), &destinations, &now],
                )
                .await?
        };
        Ok(row.get(0))
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, queue, channel, attempts, last_error, created_at, updated_at FROM jobs
                 WHERE state = 'dead' ORDER BY updated_at DESC, seq DESC LIMIT $1",
                &[&i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(DeadLetter {
                    id: r.get("id"),
                    queue: Queue::parse(r.get("queue"))?,
                    channel: r.get("channel"),
                    attempts: r.get::<_, i32>("attempts") as u32,
                    last_error: r.get("last_error"),
                    created_at: r.get("created_at"),
                    updated_at: r.get("updated_at"),
                })
            })
            .collect())
    }

    async fn replay(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        transaction!(self, tx => async {
            queue::prepare(&tx, &[], &[id]).await?;
            queue::replay(&tx, id, now).await
        }.await)
    }

    async fn counts(&self) -> Result<Vec<(Queue, QueueCounts)>, StoreError> {
        self.tally_jobs(true).await
    }

    async fn open_counts(&self) -> Result<Vec<(Queue, QueueCounts)>, StoreError> {
        self.tally_jobs(false).await
    }

    async fn waiting_destinations(&self, queue: Queue) -> Result<Vec<(String, u64)>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                "SELECT destination, count(*) FROM heads WHERE queue = $1 GROUP BY destination",
                &[&queue.as_str()],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn remember(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        jobs: Vec<NewJob>,
    ) -> Result<Remembered, StoreError> {
        let now = self.clock.now();
        let new: Vec<&NewJob> = jobs.iter().collect();
        transaction!(self, tx => async {
            queue::prepare(&tx, &new, &[]).await?;
            queue::remember(&tx, scope, key, value, &jobs, now).await
        }.await)
    }

    async fn menu(&self, conversation_key: &str) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT menu FROM menus WHERE conversation_key = $1")
            .await?;
        Ok(client
            .query_opt(&statement, &[&conversation_key])
            .await?
            .map(|r| r.get(0)))
    }

    async fn prune(
        &self,
        from: Option<i64>,
        before: i64,
        limit: u32,
    ) -> Result<Pruned, StoreError> {
        transaction!(self, tx => queue::prune(&tx, from, before, limit).await)
    }

    async fn forget_dedupe(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.forget(
            "DELETE FROM dedupe WHERE slot IN (
                 SELECT slot FROM dedupe WHERE seen_at < $1 ORDER BY seen_at LIMIT $2)",
            before,
            limit,
        )
        .await
    }

    async fn forget_idempotency(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.forget(
            "DELETE FROM idempotency WHERE (scope, key) IN (
                 SELECT scope, key FROM idempotency WHERE created_at < $1
                 ORDER BY created_at LIMIT $2)",
            before,
            limit,
        )
        .await
    }

    async fn forget_menus(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.forget(
            "DELETE FROM menus WHERE conversation_key IN (
                 SELECT conversation_key FROM menus WHERE updated_at < $1
                 ORDER BY updated_at LIMIT $2)",
            before,
            limit,
        )
        .await
    }

    async fn link(&self, links: Vec<Link>, now: i64) -> Result<(), StoreError> {
        if links.is_empty() {
            return Ok(());
        }
        transaction!(self, tx => async {
            for link in &links {
                queue::exec(
                    &tx,
                    "INSERT INTO links (scope, key, value, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (scope, key) DO UPDATE
                     SET value = excluded.value, updated_at = excluded.updated_at",
                    &[&link.scope, &link.key, &link.value, &now],
                )
                .await?;
            }
            Ok(())
        }.await)
    }

    async fn linked(&self, scope: &str, key: &str) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT value FROM links WHERE scope = $1 AND key = $2")
            .await?;
        Ok(client
            .query_opt(&statement, &[&scope, &key])
            .await?
            .map(|r| r.get(0)))
    }

    async fn forget_links(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.forget(
            "DELETE FROM links WHERE (scope, key) IN (
                 SELECT scope, key FROM links WHERE updated_at < $1 ORDER BY updated_at LIMIT $2)",
            before,
            limit,
        )
        .await
    }

    async fn outbox_push(
        &self,
        channel: &str,
        conversation: &str,
        body: Vec<u8>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO outbox (channel, conversation, body, created_at)
                 VALUES ($1, $2, $3, $4) RETURNING seq",
            )
            .await?;
        let row = client
            .query_one(&statement, &[&channel, &conversation, &body, &now])
            .await?;
        Ok(row.get(0))
    }

    async fn outbox_read(
        &self,
        channel: &str,
        conversation: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT seq, body FROM outbox
                 WHERE channel = $1 AND conversation = $2 AND seq > $3
                 ORDER BY seq LIMIT $4",
            )
            .await?;
        let rows = client
            .query(
                &statement,
                &[&channel, &conversation, &after, &i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn forget_outbox(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.forget(
            "DELETE FROM outbox WHERE seq IN (
                 SELECT seq FROM outbox WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
            before,
            limit,
        )
        .await
    }

    async fn set_menu(
        &self,
        conversation_key: &str,
        menu: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        match menu {
            Some(menu) => {
                client
                    .execute(
                        "INSERT INTO menus (conversation_key, menu, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (conversation_key) DO UPDATE
                         SET menu = excluded.menu, updated_at = excluded.updated_at",
                        &[&conversation_key, &menu, &now],
                    )
                    .await?
            }
            None => {
                client
                    .execute(
                        "DELETE FROM menus WHERE conversation_key = $1",
                        &[&conversation_key],
                    )
                    .await?
            }
        };
        Ok(())
    }

    async fn oldest_due(&self, queue: Queue, now: i64) -> Result<Option<i64>, StoreError> {
        let client = self.pool.get().await?;
        let row = if queue == Queue::Inbound {
            client
                .query_one(
                    "SELECT LEAST(
                         (SELECT min(accepted_at) FROM accepted
                          WHERE seq > (SELECT seq FROM ack_cursor)),
                         (SELECT min(run_at) FROM jobs WHERE queue = 'inbound' AND state = 'pending'
                          AND run_at <= $1 AND lease_until <= $1))",
                    &[&now],
                )
                .await?
        } else {
            client
                .query_one(
                    "SELECT min(ready_at) FROM heads WHERE queue = $1 AND ready_at <= $2",
                    &[&queue.as_str(), &now],
                )
                .await?
        };
        Ok(row.get(0))
    }

    async fn recent_conversations(
        &self,
        limit: u32,
    ) -> Result<Vec<RecentConversation>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                "SELECT conversation_key, count(*), max(created_at) FROM (
                     SELECT conversation_key, created_at FROM jobs
                     WHERE queue <> 'inbound' ORDER BY seq DESC LIMIT $1) recent
                 GROUP BY conversation_key ORDER BY max(created_at) DESC LIMIT $2",
                &[&super::RECENT_JOBS, &i64::from(limit)],
            )
            .await?
            .iter()
            .map(|r| RecentConversation::from_key(r.get(0), r.get::<_, i64>(1) as u64, r.get(2)))
            .collect())
    }

    async fn conversation_jobs(
        &self,
        conversation_key: &str,
        limit: u32,
    ) -> Result<Vec<ConversationJob>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT queue, state, created_at, payload FROM (
                     SELECT seq, queue, state, created_at, conversation_key, payload FROM jobs
                     WHERE queue <> 'inbound' ORDER BY seq DESC LIMIT $1) recent
                 WHERE conversation_key = $2 ORDER BY seq DESC LIMIT $3",
                &[&super::RECENT_JOBS, &conversation_key, &i64::from(limit)],
            )
            .await?;
        Ok(super::conversation_jobs_from(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect(),
        ))
    }

    fn backend(&self) -> &'static str {
        "postgresql"
    }

    fn on_work(&self, wake: Box<dyn Fn(Queue) + Send + Sync>) {
        let first = {
            let mut wakers = self
                .wakers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            wakers.push(wake);
            wakers.len() == 1
        };
        if first {
            self.listen();
        }
    }

    async fn pause(&self, destination: &str, until: i64, reason: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO pauses (destination, until_ms, reason) VALUES ($1, $2, $3)
                 ON CONFLICT (destination) DO UPDATE
                 SET until_ms = GREATEST(pauses.until_ms, excluded.until_ms), reason = excluded.reason",
                &[&destination, &until, &reason],
            )
            .await?;
        Ok(())
    }

    async fn resume(&self, destination: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute("DELETE FROM pauses WHERE destination = $1", &[&destination])
            .await?;
        Ok(())
    }

    async fn paused(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                "SELECT destination, until_ms FROM pauses WHERE until_ms > $1",
                &[&now],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let writable: bool = client
            .query_one("SELECT NOT pg_is_in_recovery()", &[])
            .await?
            .get(0);
        if writable {
            Ok(())
        } else {
            Err(StoreError::Database(
                "the database is a read-only standby".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests;

impl PostgresStore {
    /// Every queue's counts: with `done` (the whole table), or of the
    /// unfinished jobs only (the `jobs_open` index), `done` left at 0.
    async fn tally_jobs(&self, done: bool) -> Result<Vec<(Queue, QueueCounts)>, StoreError> {
        let client = self.pool.get().await?;
        let jobs = if done {
            "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state"
        } else {
            "SELECT queue, state, count(*) FROM jobs WHERE state <> 'done' GROUP BY queue, state"
        };
        let rows = client.query(jobs, &[]).await?;
        let log = client
            .query_one(
                "SELECT (SELECT count(*) FROM accepted WHERE seq > (SELECT seq FROM ack_cursor)),
                        CASE WHEN $1 THEN (SELECT COALESCE(sum(parsed), 0)::BIGINT FROM parsed_counts)
                             ELSE 0 END",
                &[&done],
            )
            .await?;
        Ok(super::tally(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64)),
            log.get::<_, i64>(0) as u64,
            log.get::<_, i64>(1) as u64,
        ))
    }

    async fn forget(&self, sql: &str, before: i64, limit: u32) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client.execute(sql, &[&before, &i64::from(limit)]).await?)
    }
}
