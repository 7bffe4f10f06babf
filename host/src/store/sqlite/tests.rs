//! The writer's scheduling policy (pure) and the store on a real SQLite file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::writer::{Op, Scheduler};
use super::{SqliteStore, WriterSettings};
use crate::store::{Added, NewJob, Queue, QueueCounts, Remembered, Store, StoreError};

fn add_op() -> Op {
    Op::Add(vec![], oneshot::channel().0)
}

fn claim_op() -> Op {
    Op::Claim {
        queue: Queue::Deliver,
        now: 0,
        lease_ms: 0,
        limit: 1,
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

const DELAY: Duration = Duration::from_millis(20);

#[test]
fn a_background_write_alone_runs_at_once() {
    let mut scheduler = Scheduler::new(DELAY);
    let now = Instant::now();
    let turn = scheduler.next_turn(&mut vec![claim_op()], now, false);
    assert_eq!(kinds(&turn), ["claim"]);
    assert!(scheduler.is_empty());
    assert_eq!(scheduler.due_at(), None);
}

#[test]
fn background_writes_wait_while_acknowledgements_arrive_then_join_them() {
    let mut scheduler = Scheduler::new(DELAY);
    let start = Instant::now();
    let turn = scheduler.next_turn(&mut vec![add_op(), claim_op(), add_op()], start, false);
    assert_eq!(kinds(&turn), ["add", "add"], "the claim is held back");
    assert_eq!(scheduler.due_at(), Some(start + DELAY));

    // More webhooks before the deadline: they still go alone, and the deadline
    // does not move for the writes held first.
    let later = start + DELAY / 2;
    let turn = scheduler.next_turn(&mut vec![add_op(), claim_op()], later, false);
    assert_eq!(kinds(&turn), ["add"]);
    assert_eq!(scheduler.due_at(), Some(start + DELAY));

    // At the deadline everything held runs with the webhooks of that turn.
    let turn = scheduler.next_turn(&mut vec![add_op(), add_op()], start + DELAY, false);
    assert_eq!(kinds(&turn), ["add", "add", "claim", "claim"]);
    assert!(scheduler.is_empty());
}

#[test]
fn held_writes_run_as_soon_as_no_acknowledgement_is_waiting() {
    let mut scheduler = Scheduler::new(DELAY);
    let start = Instant::now();
    scheduler.next_turn(&mut vec![add_op(), claim_op()], start, false);
    // The writer found nothing waiting after that turn (light load): an empty
    // receive releases the held write at once, long before its deadline.
    let soon = start + Duration::from_millis(1);
    let turn = scheduler.next_turn(&mut vec![], soon, false);
    assert_eq!(kinds(&turn), ["claim"]);
    assert!(scheduler.is_empty());

    // So does a turn of background writes only.
    scheduler.next_turn(&mut vec![add_op(), claim_op()], soon, false);
    let turn = scheduler.next_turn(&mut vec![claim_op()], soon, false);
    assert_eq!(kinds(&turn), ["claim", "claim"]);
}

#[test]
fn closing_releases_held_writes() {
    let mut scheduler = Scheduler::new(Duration::from_secs(3600));
    let start = Instant::now();
    scheduler.next_turn(&mut vec![add_op(), claim_op()], start, false);
    let turn = scheduler.next_turn(&mut vec![add_op()], start, true);
    assert_eq!(kinds(&turn), ["add", "claim"]);
}

#[test]
fn zero_delay_keeps_each_arrival_batch_together() {
    let mut scheduler = Scheduler::new(Duration::ZERO);
    let turn = scheduler.next_turn(&mut vec![add_op(), claim_op()], Instant::now(), false);
    assert_eq!(kinds(&turn), ["add", "claim"]);
}

// ---- the store on a real file -------------------------------------------------

async fn store(dir: &tempfile::TempDir, delay: Duration) -> Arc<SqliteStore> {
    let settings = WriterSettings {
        background_delay: delay,
        ..WriterSettings::default()
    };
    Arc::new(
        SqliteStore::open(&dir.path().join("patchbay.db"), settings, true)
            .await
            .expect("open store"),
    )
}

fn job(id: &str, queue: Queue, dedupe: Option<&str>) -> NewJob {
    NewJob {
        id: id.into(),
        queue,
        channel: "test".into(),
        conversation_key: None,
        dedupe_key: dedupe.map(str::to_string),
        payload: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        run_at: 0,
    }
}

async fn counts(store: &SqliteStore, queue: Queue) -> QueueCounts {
    store
        .counts()
        .await
        .expect("counts")
        .into_iter()
        .find(|(q, _)| *q == queue)
        .map(|(_, c)| c)
        .unwrap_or_default()
}

#[tokio::test]
async fn one_add_tells_stored_from_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    let added = store
        .add(vec![
            job("a", Queue::Inbound, Some("k1")),
            job("b", Queue::Inbound, Some("k1")),
            job("c", Queue::Inbound, None),
        ])
        .await
        .unwrap();
    assert_eq!(
        added,
        [
            Added::Stored("a".into()),
            Added::Duplicate,
            Added::Stored("c".into())
        ]
    );
    let again = store
        .add(vec![job("d", Queue::Inbound, Some("k1"))])
        .await
        .unwrap();
    assert_eq!(again, [Added::Duplicate]);
    // The same key on another queue is another job.
    let other = store
        .add(vec![job("e", Queue::Outbound, Some("k1"))])
        .await
        .unwrap();
    assert_eq!(other, [Added::Stored("e".into())]);
    assert_eq!(counts(&store, Queue::Inbound).await.pending, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_are_each_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400 {
        let store = store.clone();
        tasks.spawn(async move {
            let key = format!("k{}", i % 100);
            store
                .add(vec![job(&format!("j{i}"), Queue::Inbound, Some(&key))])
                .await
                .unwrap()
        });
    }
    let mut stored = 0;
    while let Some(added) = tasks.join_next().await {
        if matches!(added.unwrap()[..], [Added::Stored(_)]) {
            stored += 1;
        }
    }
    assert_eq!(stored, 100, "one per dedupe key");
    assert_eq!(counts(&store, Queue::Inbound).await.pending, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_add_does_not_fail_the_adds_committed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    store
        .add(vec![job("taken", Queue::Inbound, None)])
        .await
        .unwrap();
    // Sent together so they share turns: one reuses an existing id.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.spawn(async move {
            let id = if i == 25 {
                "taken".to_string()
            } else {
                format!("j{i}")
            };
            (
                id.clone(),
                store.add(vec![job(&id, Queue::Inbound, None)]).await,
            )
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (id, result) = done.unwrap();
        match result {
            Ok(added) => {
                assert_ne!(id, "taken");
                assert_eq!(added, [Added::Stored(id)]);
            }
            Err(e) => {
                assert_eq!(id, "taken", "only the bad add fails: {e}");
                assert!(matches!(e, StoreError::Database(_)), "{e}");
            }
        }
    }
    assert_eq!(counts(&store, Queue::Inbound).await.pending, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_and_its_follow_ups_stand_or_fall_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    store
        .add(vec![
            job("webhook", Queue::Inbound, None),
            job("existing", Queue::Deliver, None),
        ])
        .await
        .unwrap();
    let claimed = store.claim(Queue::Inbound, 1, 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);

    // A follow-up whose id is taken fails the whole completion.
    let failed = store
        .complete(
            "webhook",
            vec![
                job("m1", Queue::Deliver, None),
                job("existing", Queue::Deliver, None),
            ],
        )
        .await;
    assert!(failed.is_err());
    assert_eq!(counts(&store, Queue::Inbound).await.pending, 1);
    assert_eq!(counts(&store, Queue::Deliver).await.pending, 1, "m1 undone");

    store
        .complete(
            "webhook",
            vec![
                job("m1", Queue::Deliver, None),
                job("m2", Queue::Deliver, None),
            ],
        )
        .await
        .unwrap();
    let inbound = counts(&store, Queue::Inbound).await;
    assert_eq!((inbound.pending, inbound.done), (0, 1));
    assert_eq!(counts(&store, Queue::Deliver).await.pending, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_writes_go_through_while_webhooks_keep_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, Duration::from_millis(50)).await;
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
        let claimed = store.claim(Queue::Inbound, 1, 60_000, 10).await.unwrap();
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
    assert_eq!(counts(&store, Queue::Outbound).await.pending, sent);
    assert_eq!(counts(&store, Queue::Deliver).await.pending, 1);
}

#[tokio::test]
async fn pruning_deletes_old_finished_jobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    let at = |id: &str, run_at: i64, dedupe: &str| NewJob {
        run_at,
        ..job(id, Queue::Inbound, Some(dedupe))
    };
    store
        .add(vec![
            at("old-done", 1_000, "k-old-done"),
            at("old-dead", 1_000, "k-old-dead"),
            at("old-pending", 1_000, "k-old-pending"),
            at("new-done", 5_000, "k-new-done"),
        ])
        .await
        .unwrap();
    let claimed = store
        .claim(Queue::Inbound, 6_000, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    store.complete("old-done", vec![]).await.unwrap();
    store.complete("new-done", vec![]).await.unwrap();
    store.bury("old-dead", "refused", vec![]).await.unwrap();

    let deleted = crate::workers::retention::prune(store.as_ref(), 2_000).await;
    assert_eq!(deleted, 1, "only the finished job due before the cutoff");
    let inbound = counts(&store, Queue::Inbound).await;
    assert_eq!((inbound.pending, inbound.done, inbound.dead), (1, 1, 1));
    assert_eq!(store.dead_letters(10).await.unwrap().len(), 1);

    // Its dedupe key is free again; the kept jobs' keys still catch duplicates.
    let again = store
        .add(vec![
            at("old-done-again", 7_000, "k-old-done"),
            at("new-done-again", 7_000, "k-new-done"),
        ])
        .await
        .unwrap();
    assert_eq!(
        again,
        [Added::Stored("old-done-again".into()), Added::Duplicate]
    );
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
        let claimed = store.claim(Queue::Deliver, 1, 60_000, 2_000).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        ids.extend(claimed.into_iter().map(|j| (j.id, vec![])));
    }
    store.complete_many(ids).await.unwrap();
    let deleted = crate::workers::retention::prune(store.as_ref(), i64::MAX).await;
    assert_eq!(deleted, 12_000);
    assert_eq!(counts(&store, Queue::Deliver).await, QueueCounts::default());
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
async fn under_light_load_a_held_write_runs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Held writes would wait an hour for their deadline: only the writer's
    // finding nothing more to acknowledge can let them through.
    let store = store(&dir, Duration::from_secs(3600)).await;
    for i in 0..20 {
        let webhook = store.add(vec![job(&format!("w{i}"), Queue::Inbound, None)]);
        let claim = store.claim(Queue::Deliver, 1, 60_000, 1);
        let (added, claimed) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(webhook, claim)
        })
        .await
        .expect("a worker's write waited for its deadline");
        added.unwrap();
        claimed.unwrap();
    }
}

#[tokio::test]
async fn idempotency_keys_are_forgotten_after_the_retention_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    let first = store
        .remember(
            "api",
            "order-1",
            "[\"m1\"]",
            vec![job("m1", Queue::Outbound, None)],
        )
        .await
        .unwrap();
    assert_eq!(first, Remembered::New);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = crate::store::sqlite::now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = store
        .remember(
            "api",
            "order-2",
            "[\"m2\"]",
            vec![job("m2", Queue::Outbound, None)],
        )
        .await
        .unwrap();
    assert_eq!(later, Remembered::New);

    // Stored before the cutoff: only order-1 goes (the retention task does this).
    crate::workers::retention::prune(store.as_ref(), cutoff).await;
    let again = store
        .remember(
            "api",
            "order-1",
            "[\"m3\"]",
            vec![job("m3", Queue::Outbound, None)],
        )
        .await
        .unwrap();
    assert_eq!(again, Remembered::New, "a forgotten key stores anew");
    let kept = store
        .remember("api", "order-2", "[\"m4\"]", vec![])
        .await
        .unwrap();
    assert_eq!(kept, Remembered::Existing("[\"m2\"]".into()));
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
    let opened_at = crate::store::sqlite::now_ms();
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
    let store = store(&dir, Duration::ZERO).await;
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
    assert_eq!(counts(&store, Queue::Inbound).await.pending, stored);

    // The writer is still there.
    store
        .add(vec![job("after", Queue::Inbound, None)])
        .await
        .unwrap();
    assert_eq!(counts(&store, Queue::Inbound).await.pending, stored + 1);
}
