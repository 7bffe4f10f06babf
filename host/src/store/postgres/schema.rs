//! The PostgreSQL schema and its migrations.
//!
//! Migrations are numbered; `patchbay_schema` holds the number applied. Every
//! replica runs `migrate` at start: one at a time (a transaction-scoped
//! advisory lock), each migration in the transaction that records it, so a
//! replica that dies half-way leaves the previous version intact.

use tokio_postgres::Client;

use super::locks;
use crate::store::StoreError;

/// The migrations, in order: index + 1 is the version each one brings.
const MIGRATIONS: &[&str] = &[
    // 1: the queue model of the SQLite store (see `store::sqlite`): jobs in
    // conversation lists with one head row each, the acknowledgement log
    // with its cursor, dedupe keys, and what the API and upstreams keep.
    r#"
CREATE TABLE jobs (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    conversation_key TEXT,
    next_seq BIGINT,
    dedupe_key TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    payload BYTEA NOT NULL
);
CREATE INDEX jobs_log ON jobs (run_at, seq) WHERE queue = 'inbound' AND state = 'pending';
CREATE INDEX jobs_dead ON jobs (updated_at) WHERE state = 'dead';
CREATE TABLE heads (
    queue TEXT NOT NULL,
    conversation_key TEXT NOT NULL,
    destination TEXT NOT NULL,
    head_seq BIGINT NOT NULL,
    tail_seq BIGINT NOT NULL,
    ready_at BIGINT NOT NULL,
    PRIMARY KEY (queue, conversation_key)
);
CREATE INDEX heads_ready ON heads (queue, destination, ready_at, head_seq);
CREATE TABLE accepted (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    dedupe_key TEXT,
    payload BYTEA NOT NULL,
    accepted_at BIGINT NOT NULL
);
CREATE TABLE ack_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO ack_cursor (id, seq) VALUES (1, 0);
CREATE TABLE parsed_counts (
    minute BIGINT PRIMARY KEY,
    parsed BIGINT NOT NULL
);
CREATE TABLE dedupe (
    slot BIGINT PRIMARY KEY,
    check_hash BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);
CREATE INDEX dedupe_age ON dedupe (seen_at);
CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_age ON idempotency (created_at);
CREATE TABLE menus (
    conversation_key TEXT PRIMARY KEY,
    menu TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX menus_age ON menus (updated_at);
CREATE TABLE links (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX links_age ON links (updated_at);
CREATE TABLE pauses (
    destination TEXT PRIMARY KEY,
    until_ms BIGINT NOT NULL,
    reason TEXT NOT NULL
);
"#,
    // 2: web chat outboxes.
    r#"
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    conversation TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbox_conversation ON outbox (channel, conversation, seq);
CREATE INDEX outbox_age ON outbox (created_at);
"#,
    // 3: the unfinished jobs, for `/metrics` (`Store::open_counts`).
    r#"
CREATE INDEX jobs_open ON jobs (queue, state) WHERE state <> 'done';
"#,
];

/// The version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`], one replica at a time; refuses a
/// database a newer Patchbay has migrated past this version.
pub(super) async fn migrate(client: &mut Client) -> Result<i64, StoreError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&locks::MIGRATIONS.0, &locks::MIGRATIONS.1],
    )
    .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS patchbay_schema (version BIGINT NOT NULL)")
        .await?;
    let current: i64 = match tx
        .query_opt("SELECT version FROM patchbay_schema", &[])
        .await?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO patchbay_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    if current > VERSION {
        return Err(StoreError::Database(format!(
            "the database is at schema version {current}, newer than this Patchbay's \
             ({VERSION}); run the newer version"
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(migration).await?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    tx.execute("UPDATE patchbay_schema SET version = $1", &[&VERSION])
        .await?;
    tx.commit().await?;
    Ok(current)
}
