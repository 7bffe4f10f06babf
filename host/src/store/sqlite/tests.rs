//! The writer's scheduling policy (pure) and the store on a real SQLite file.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::writer::{Op, Scheduler};
use super::{Clock, SqliteStore, WriterSettings};
use crate::store::suite::{accept_all, app, claim_app, counts, ids, in_conv, job, log};
use crate::store::{NewJob, Queue, QueueCounts, Remembered, Store, StoreError, Want};

fn add_op() -> Op {
    Op::Add(vec![], oneshot::channel().0)
}

fn claim_op() -> Op {
    Op::Claim {
        queue: Queue::Deliver,
        wants: vec![],
        now: 0,
        lease_ms: 0,
        reply: oneshot::channel().0,
    }
}

fn kinds(turn: &[Op]) -> Vec<&'static str> {
    turn.iter()
        .map(|op| match op {
            Op::Add(..) => "add",
            Op::Claim { .. } => "claim",
            _ => "other",
        })
        .collect()
}

const DELAY: usize = 128;

fn complete_op(n: usize) -> Op {
    Op::Complete(
        (0..n).map(|i| (format!("j{i}"), vec![])).collect(),
        oneshot::channel().0,
    )
}

#[test]
fn a_background_write_alone_runs_at_once() {
    let mut scheduler = Scheduler::new(DELAY);
    let turn = scheduler.next_turn(&mut vec![claim_op()], false);
    assert_eq!(kinds(&turn), ["claim"]);
    assert!(scheduler.is_empty());
}

#[test]
fn every_turn_takes_all_acknowledgements_and_workers_writes_up_to_the_budget() {
    let mut scheduler = Scheduler::new(100);
    // 40 + 40 rows fit; the next 40 would not and wait for the next turn.
    let mut incoming = vec![
        add_op(),
        complete_op(40),
        complete_op(40),
        add_op(),
        complete_op(40),
    ];
    let turn = scheduler.next_turn(&mut incoming, false);
    assert_eq!(kinds(&turn), ["add", "add", "other", "other"]);
    assert!(!scheduler.is_empty());
    // Webhooks keep coming: the held write goes with them, oldest first.
    let turn = scheduler.next_turn(&mut vec![add_op(), complete_op(40)], false);
    assert_eq!(kinds(&turn), ["add", "other", "other"]);
    assert!(scheduler.is_empty());
}

#[test]
fn a_write_larger_than_the_budget_still_runs_alone() {
    let mut scheduler = Scheduler::new(10);
    let turn = scheduler.next_turn(&mut vec![complete_op(500), claim_op()], false);
    assert_eq!(turn.len(), 1, "the large write, then the claim next turn");
    let turn = scheduler.next_turn(&mut vec![], false);
    assert_eq!(kinds(&turn), ["claim"]);
}

#[test]
fn closing_releases_held_writes() {
    let mut scheduler = Scheduler::new(1);
    scheduler.next_turn(
        &mut vec![add_op(), claim_op(), claim_op(), claim_op()],
        false,
    );
    let turn = scheduler.next_turn(&mut vec![add_op()], true);
    assert_eq!(kinds(&turn), ["add", "claim", "claim"]);
}

// ---- the store on a real file -------------------------------------------------

async fn store(dir: &tempfile::TempDir, budget: usize) -> Arc<SqliteStore> {
    let settings = WriterSettings {
        background_rows: budget,
        ..WriterSettings::default()
    };
    open(dir, settings).await
}

async fn open(dir: &tempfile::TempDir, settings: WriterSettings) -> Arc<SqliteStore> {
    Arc::new(
        SqliteStore::open(&dir.path().join("patchbay.db"), settings, true)
            .await
            .expect("open store"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_writes_go_through_while_webhooks_keep_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, 16).await;
    store
        .add(vec![job("first", Queue::Inbound, None)])
        .await
        .unwrap();
    // A steady stream of webhooks from several callers.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..8 {
        let (store, stop) = (store.clone(), stop.clone());
        senders.spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("s{s}-{i}");
                store
                    .add(vec![job(&id, Queue::Outbound, None)])
                    .await
                    .unwrap();
                i += 1;
            }
            i
        });
    }
    // Held back at most the delay, never starved: a hang here is the failure.
    let worker = async {
        let claimed = store
            .claim(Queue::Inbound, log(10), 1, 60_000)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        store
            .complete("first", vec![job("reply", Queue::Deliver, None)])
            .await
            .unwrap();
    };
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("the worker's writes were starved");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    while let Some(n) = senders.join_next().await {
        sent += n.unwrap();
    }
    assert_eq!(counts(store.as_ref(), Queue::Outbound).await.pending, sent);
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 1);
}

#[tokio::test]
async fn pruning_goes_through_large_backlogs_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    let jobs: Vec<NewJob> = (0..12_000)
        .map(|i| job(&format!("j{i}"), Queue::Deliver, None))
        .collect();
    for chunk in jobs.chunks(1_000) {
        store.add(chunk.to_vec()).await.unwrap();
    }
    let mut ids = Vec::new();
    loop {
        let claimed = store
            .claim(Queue::Deliver, app(2_000), 1, 60_000)
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        ids.extend(claimed.into_iter().map(|j| (j.id, vec![])));
    }
    store.complete_many(ids).await.unwrap();
    let deleted = crate::workers::retention::prune(store.as_ref(), i64::MAX).await;
    assert_eq!(deleted, 12_000);
    assert_eq!(
        counts(store.as_ref(), Queue::Deliver).await,
        QueueCounts::default()
    );
}

#[tokio::test]
async fn a_menu_is_found_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    assert_eq!(store.menu("c1").await.unwrap(), None);
    store.set_menu("c1", Some("{\"m\":1}"), 1).await.unwrap();
    assert_eq!(
        store.menu("c1").await.unwrap().as_deref(),
        Some("{\"m\":1}")
    );
    drop(store);

    // A new process knows from the file that menus exist.
    let reopened = self::store(&dir, DELAY).await;
    assert_eq!(
        reopened.menu("c1").await.unwrap().as_deref(),
        Some("{\"m\":1}")
    );
    reopened.set_menu("c1", None, 2).await.unwrap();
    assert_eq!(reopened.menu("c1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_write_sent_with_a_webhook_is_answered_with_it() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest budget: still one worker's write per turn.
    let store = store(&dir, 1).await;
    for i in 0..20 {
        let webhook = store.add(vec![job(&format!("w{i}"), Queue::Inbound, None)]);
        let claim = store.claim(Queue::Deliver, app(1), 1, 60_000);
        let (added, claimed) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(webhook, claim)
        })
        .await
        .expect("a worker's write was left waiting");
        added.unwrap();
        claimed.unwrap();
    }
}

#[tokio::test]
async fn a_file_from_before_idempotency_ages_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("patchbay.db");
    {
        // The idempotency table as earlier versions created it, with a record.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE idempotency (scope TEXT NOT NULL, key TEXT NOT NULL,
                 value TEXT NOT NULL, PRIMARY KEY (scope, key));
             INSERT INTO idempotency VALUES ('api', 'order-1', '[\"m1\"]');",
        )
        .unwrap();
    }
    let opened_at = crate::clock::system_now_ms();
    let store = Arc::new(
        SqliteStore::open(&path, WriterSettings::default(), true)
            .await
            .unwrap(),
    );
    // The old record counts from the upgrade: a prune up to just before it keeps it.
    crate::workers::retention::prune(store.as_ref(), opened_at - 1).await;
    let replayed = store
        .remember(
            "api",
            "order-1",
            "[\"m2\"]",
            vec![job("m2", Queue::Outbound, None)],
        )
        .await
        .unwrap();
    assert_eq!(replayed, Remembered::Existing("[\"m1\"]".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_turn_is_rolled_back_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    // Webhooks sent together with a write that panics: whichever share its turn
    // fail, and a failed one is not stored.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .add(vec![job(&format!("j{i}"), Queue::Inbound, None)])
                .await
                .is_ok()
        });
    }
    let panicked = store.call(super::writer::Op::Panic).await;
    assert!(panicked.is_err());
    let mut stored = 0;
    while let Some(ok) = tasks.join_next().await {
        stored += u64::from(ok.unwrap());
    }
    assert_eq!(counts(store.as_ref(), Queue::Inbound).await.pending, stored);

    // The writer is still there.
    store
        .add(vec![job("after", Queue::Inbound, None)])
        .await
        .unwrap();
    assert_eq!(
        counts(store.as_ref(), Queue::Inbound).await.pending,
        stored + 1
    );
}

// ---- the queue model: heads, destinations, dedupe, clock injected -----------

/// Accepts a webhook per `(webhook id, event id)`, parses each into a message
/// and records them; how many were duplicates.
async fn receive(store: &SqliteStore, webhooks: &[(&str, &str)]) -> usize {
    for (id, event) in webhooks {
        store
            .accept(job(id, Queue::Inbound, Some(event)))
            .await
            .unwrap();
    }
    let read = store.accepted(None, 100).await.unwrap();
    store
        .record_accepted(crate::store::suite::parsed_into_messages(read))
        .await
        .unwrap()
}

/// Rows of `table` in the file (after the writer's commits).
fn rows(dir: &tempfile::TempDir, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.path().join("patchbay.db")).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_are_recognised_across_merges_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let settings = WriterSettings {
        event_ids_per_merge: 4,
        ..WriterSettings::default()
    };
    let store = open(&dir, settings).await;
    let first: Vec<(String, String)> = (0..6)
        .map(|i| (format!("w{i}"), format!("Ev{i}")))
        .collect();
    let first: Vec<(&str, &str)> = first.iter().map(|(w, e)| (&**w, &**e)).collect();
    assert_eq!(receive(&store, &first).await, 0);
    assert_eq!((rows(&dir, "dedupe"), rows(&dir, "dedupe_recent")), (0, 6));
    // Six gathered, four make a batch: the next turn merges the six first.
    assert_eq!(receive(&store, &[("n1", "New1"), ("n2", "New2")]).await, 0);
    assert_eq!((rows(&dir, "dedupe"), rows(&dir, "dedupe_recent")), (6, 2));

    let again = [("r0", "Ev0"), ("r5", "Ev5"), ("r-n1", "New1")];
    assert_eq!(receive(&store, &again).await, 3, "merged and recent alike");
    let hint = store
        .seen(vec![
            ("test".into(), "Ev3".into()),
            ("test".into(), "New2".into()),
            ("test".into(), "Never".into()),
        ])
        .await
        .unwrap();
    // The hint looks in memory only: a merged id is left to the record.
    assert_eq!(hint, [false, true, false]);

    drop(store);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store = open(&dir, settings).await;
    assert_eq!(
        receive(&store, &[("again-n2", "New2"), ("again-3", "Ev3")]).await,
        2,
        "read back after a restart"
    );
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 8);
}

/// The SQLite VM steps one claim of `limit` jobs costs with `waiting` jobs
/// queued behind 1,000 conversations (all ready), plus `waiting` jobs bound
/// for a paused destination that the claim does not ask for.
async fn claim_steps(waiting: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    let jobs: Vec<NewJob> = (0..waiting)
        .flat_map(|i| {
            let to_app = in_conv(&format!("d{i}"), &format!("c{}", i % 1_000));
            let to_paused = NewJob {
                destination: "paused".into(),
                ..in_conv(&format!("p{i}"), &format!("p{i}"))
            };
            [to_app, to_paused]
        })
        .collect();
    for chunk in jobs.chunks(5_000) {
        store.add(chunk.to_vec()).await.unwrap();
    }
    let before = store
        .stats()
        .claim_steps
        .load(std::sync::atomic::Ordering::Relaxed);
    let claimed = store
        .claim(Queue::Deliver, app(32), 1, 60_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 32);
    store
        .stats()
        .claim_steps
        .load(std::sync::atomic::Ordering::Relaxed)
        - before
}

#[tokio::test]
async fn a_claims_work_does_not_grow_with_the_backlog() {
    let small = claim_steps(2_000).await;
    let large = claim_steps(100_000).await;
    // Rows touched, not time: the same 32 heads are read from the index either way.
    assert!(small > 0);
    assert!(
        large <= small + small / 4,
        "claim work grew with the backlog: {small} → {large}"
    );
}

#[tokio::test]
async fn leases_of_a_previous_process_are_released_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    store.add(vec![in_conv("m1", "c")]).await.unwrap();
    assert_eq!(
        store
            .claim(Queue::Deliver, app(1), 1, 60_000)
            .await
            .unwrap()
            .len(),
        1
    );
    drop(store);
    let store = self::store(&dir, DELAY).await;
    let claimed = store
        .claim(Queue::Deliver, app(1), 2, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["m1"]);
}

#[tokio::test]
async fn a_file_from_before_conversation_heads_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("patchbay.db");
    {
        // Schema 1, with a conversation of two pending deliveries, a finished
        // webhook with its event id, and a pending outbound message.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                 queue TEXT NOT NULL, channel TEXT NOT NULL, conversation_key TEXT, dedupe_key TEXT,
                 payload BLOB NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
                 attempts INTEGER NOT NULL DEFAULT 0, run_at INTEGER NOT NULL,
                 lease_until INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                 created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
             CREATE UNIQUE INDEX jobs_dedupe ON jobs(queue, channel, dedupe_key) WHERE dedupe_key IS NOT NULL;
             CREATE INDEX jobs_due ON jobs(queue, state, run_at, seq);
             CREATE INDEX jobs_conversation ON jobs(queue, conversation_key, state, seq) WHERE conversation_key IS NOT NULL;
             CREATE TABLE idempotency (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                 created_at INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (scope, key));
             CREATE TABLE menus (conversation_key TEXT PRIMARY KEY, menu TEXT NOT NULL, updated_at INTEGER NOT NULL);
             INSERT INTO jobs (id, queue, channel, conversation_key, dedupe_key, payload, state, run_at, created_at, updated_at) VALUES
                 ('w1', 'inbound', 'test', NULL, 'evt-1', x'7b7d', 'done', 1, 1, 1),
                 ('d1', 'deliver', 'test', 'test-c', NULL, x'7b7d', 'pending', 1, 1, 1),
                 ('d2', 'deliver', 'test', 'test-c', NULL, x'7b7d', 'pending', 1, 1, 1),
                 ('o1', 'outbound', 'test', 'test-o', NULL, x'7b7d', 'pending', 1, 1, 1);",
        )
        .unwrap();
    }
    let clock = Clock::from_fn(|| 2);
    let store = Arc::new(
        SqliteStore::open_with_clock(&path, WriterSettings::default(), true, clock)
            .await
            .unwrap(),
    );
    let first = store
        .claim(Queue::Deliver, app(10), 2, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["d1"]);
    store.complete("d1", vec![]).await.unwrap();
    assert_eq!(claim_app(store.as_ref(), 10, 3).await, ["d2"]);
    let to_test = vec![Want {
        destination: "test".into(),
        limit: 10,
    }];
    assert_eq!(
        ids(&store
            .claim(Queue::Outbound, to_test, 3, 60_000)
            .await
            .unwrap()),
        ["o1"]
    );
    // The finished webhook's event id still catches a redelivery.
    store
        .add(vec![job("w2", Queue::Inbound, Some("evt-1"))])
        .await
        .unwrap();
    store
        .claim(Queue::Inbound, log(1), 3, 60_000)
        .await
        .unwrap();
    let dup = store
        .complete_many(vec![("w2".into(), vec![in_conv("m", "x")])])
        .await
        .unwrap();
    assert_eq!(dup, 1);
    drop(store);
    // Opening again changes nothing.
    let store = Arc::new(
        SqliteStore::open(&path, WriterSettings::default(), true)
            .await
            .unwrap(),
    );
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 1);
}

// ---- the acknowledgement log -------------------------------------------------

#[tokio::test]
async fn a_lost_log_file_never_renumbers_what_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    accept_all(store.as_ref(), &["a", "b"]).await;
    let read = store.accepted(None, 10).await.unwrap();
    let upto = read.last().unwrap().seq;
    let parsed = read
        .into_iter()
        .map(|a| (a, crate::store::Outcome::Done(vec![])))
        .collect();
    store.record_accepted(parsed).await.unwrap();
    drop(store);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("patchbay.db.acks{suffix}")));
    }
    let store = self::store(&dir, DELAY).await;
    accept_all(store.as_ref(), &["c"]).await;
    let read = store.accepted(None, 10).await.unwrap();
    assert_eq!(read.len(), 1, "a new webhook is not taken for a parsed one");
    assert!(read[0].seq > upto);
}

#[tokio::test]
async fn the_log_may_live_on_another_device_through_a_symlink() {
    // The README's way to give the acknowledgement log a disk of its own.
    let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::os::unix::fs::symlink(
        elsewhere.path().join("acks"),
        dir.path().join("patchbay.db.acks"),
    )
    .unwrap();
    let store = store(&dir, DELAY).await;
    accept_all(store.as_ref(), &["a", "b"]).await;
    // SQLite keeps the log's WAL beside the target, not beside the link.
    assert!(elsewhere.path().join("acks-wal").exists());
    assert!(!dir.path().join("patchbay.db.acks-wal").exists());
    drop(store);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store = self::store(&dir, DELAY).await;
    let waiting = store.accepted(None, 10).await.unwrap();
    assert_eq!(
        waiting.len(),
        2,
        "accepted webhooks wait there across a restart"
    );
    let inspect = SqliteStore::open(
        &dir.path().join("patchbay.db"),
        WriterSettings::default(),
        false,
    )
    .await
    .expect("open");
    assert_eq!(counts(&inspect, Queue::Inbound).await.pending, 2);
}

#[tokio::test]
async fn an_inspecting_open_counts_the_log_without_writing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("patchbay.db");
    let inspect = || SqliteStore::open(&path, WriterSettings::default(), false);
    // No log yet: nothing waits, and none is created.
    let store = inspect().await.expect("open");
    assert_eq!(counts(&store, Queue::Inbound).await.pending, 0);
    assert!(!dir.path().join("patchbay.db.acks").exists());
    assert!(matches!(
        store.accept(job("x", Queue::Inbound, None)).await,
        Err(StoreError::Closed)
    ));
    drop(store);
    let serving = self::store(&dir, DELAY).await;
    accept_all(serving.as_ref(), &["a", "b"]).await;
    let store = inspect().await.expect("open");
    assert_eq!(counts(&store, Queue::Inbound).await.pending, 2);
}

// ---- durability: what waits for the disk ------------------------------------

/// A store whose unsynced commits may wait `interval` for their sync.
async fn store_syncing_every(dir: &tempfile::TempDir, interval: Duration) -> Arc<SqliteStore> {
    let settings = WriterSettings {
        sync_interval: interval,
        ..WriterSettings::default()
    };
    open(dir, settings).await
}

/// Waits (up to 5 s) until the acknowledgement log holds `n` webhooks.
async fn log_holds(store: &SqliteStore, n: u64) -> bool {
    for _ in 0..250 {
        if store.acks.count_after(0).await.unwrap() == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parsed_webhook_leaves_the_log_only_once_its_record_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_syncing_every(&dir, Duration::from_secs(3600)).await;
    accept_all(store.as_ref(), &["a", "b"]).await;
    let read = store.accepted(None, 10).await.unwrap();
    store
        .record_accepted(crate::store::suite::parsed_into_messages(read))
        .await
        .unwrap();
    let syncs = store
        .stats()
        .syncs
        .load(std::sync::atomic::Ordering::Relaxed);
    // Recorded, not yet on disk: the log keeps both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.acks.count_after(0).await.unwrap(), 2);
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 2);
    // Workers' writes do not sync either.
    let claimed = claim_app(store.as_ref(), 1, 1).await;
    store
        .complete_many(vec![(claimed[0].clone(), vec![])])
        .await
        .unwrap();
    assert_eq!(store.acks.count_after(0).await.unwrap(), 2);
    assert_eq!(
        store
            .stats()
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed),
        syncs
    );
    // An application's message is answered only once on disk, and syncs
    // everything before it: now the log lets the two webhooks go.
    store
        .add(vec![in_conv("from-the-app", "other")])
        .await
        .unwrap();
    assert!(
        store
            .stats()
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed)
            > syncs,
        "an acknowledged write is synced"
    );
    assert!(log_holds(&store, 0).await, "the log forgets synced records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynced_commits_are_synced_within_the_interval_with_nothing_else_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_syncing_every(&dir, Duration::from_millis(50)).await;
    accept_all(store.as_ref(), &["a"]).await;
    let read = store.accepted(None, 10).await.unwrap();
    store
        .record_accepted(crate::store::suite::parsed_into_messages(read))
        .await
        .unwrap();
    assert!(log_holds(&store, 0).await, "synced by a turn of its own");
    // And what the log forgot is in the main file for good: a new process
    // on the same files has the message, and nothing left to parse.
    drop(store);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = store_syncing_every(&dir, Duration::from_millis(50)).await;
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 1);
    assert!(store.accepted(None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_workers_claims_cost_no_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_syncing_every(&dir, Duration::from_millis(20)).await;
    let syncs = || {
        store
            .stats()
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = syncs();
    for now in 0..10 {
        assert!(claim_app(store.as_ref(), 5, now).await.is_empty());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(syncs(), before, "nothing changed, nothing synced");
    // A claim that leases something is synced within the interval.
    store.add(vec![in_conv("m", "c")]).await.unwrap();
    let after_add = syncs();
    assert_eq!(claim_app(store.as_ref(), 5, 10).await, ["m"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(syncs(), after_add + 1);
}

/// Runs `SELECT … LIMIT ?` with five different limits on a connection
/// (`tuned` as the store's are, or not); how often SQLite recompiled it.
fn recompiled_with_bound_limits(tuned: bool) -> i32 {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    if tuned {
        super::tune(&conn).unwrap();
    }
    conn.execute_batch(
        "CREATE TABLE t (a INTEGER); CREATE INDEX t_a ON t (a);
         INSERT INTO t VALUES (1), (2), (3);",
    )
    .unwrap();
    let mut query = conn
        .prepare("SELECT a FROM t WHERE a <= ?1 ORDER BY a LIMIT ?2")
        .unwrap();
    for limit in 1..=5 {
        let rows = query
            .query_map(rusqlite::params![3, limit], |r| r.get::<_, i64>(0))
            .unwrap()
            .count();
        assert_eq!(rows, limit.min(3) as usize);
    }
    query.get_status(rusqlite::StatementStatus::RePrepare)
}

#[test]
fn a_bound_limit_does_not_recompile_the_stores_statements() {
    eprintln!("untuned: {}", recompiled_with_bound_limits(false));
    assert_eq!(recompiled_with_bound_limits(true), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_unfinished_jobs_from_their_index_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir, WriterSettings::default()).await);
    let conn = rusqlite::Connection::open(dir.path().join("patchbay.db")).unwrap();
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", super::OPEN_COUNTS))
        .unwrap()
        .query_map([], |r| r.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Not the table: a scrape must not read the retention window's jobs.
    assert!(
        plan.iter()
            .any(|step| step.contains("USING COVERING INDEX jobs_open")),
        "{plan:?}"
    );
}
