//! The writer's scheduling policy (pure) and the store on a real SQLite file.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::writer::{Op, Scheduler};
use super::{Clock, SqliteStore, WriterSettings};
use crate::store::{
    APPLICATION, Attempt, Link, NewJob, Queue, QueueCounts, Remembered, Store, StoreError, Want,
};

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
        destination: match queue {
            Queue::Deliver => APPLICATION.into(),
            _ => "test".into(),
        },
        conversation_key: None,
        dedupe_key: dedupe.map(str::to_string),
        payload: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        run_at: 0,
    }
}

/// A `deliver` job in conversation `conv`.
fn in_conv(id: &str, conv: &str) -> NewJob {
    NewJob {
        conversation_key: Some(conv.into()),
        ..job(id, Queue::Deliver, None)
    }
}

/// Up to `limit` jobs for the application.
fn app(limit: u32) -> Vec<Want> {
    vec![Want {
        destination: APPLICATION.into(),
        limit,
    }]
}

/// Up to `limit` jobs of the `inbound` log.
fn log(limit: u32) -> Vec<Want> {
    vec![Want {
        destination: String::new(),
        limit,
    }]
}

fn ids(jobs: &[crate::store::Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

/// Claims up to `limit` jobs for the application at `now`; their ids.
async fn claim_app(store: &SqliteStore, limit: u32, now: i64) -> Vec<String> {
    let claimed = store
        .claim(Queue::Deliver, app(limit), now, 60_000)
        .await
        .expect("claim");
    claimed.into_iter().map(|j| j.id).collect()
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
            Ok(()) => assert_ne!(id, "taken"),
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
    let claimed = store
        .claim(Queue::Inbound, log(10), 1, 60_000)
        .await
        .unwrap();
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
    assert_eq!(counts(&store, Queue::Outbound).await.pending, sent);
    assert_eq!(counts(&store, Queue::Deliver).await.pending, 1);
}

#[tokio::test]
async fn pruning_deletes_old_finished_jobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(std::sync::atomic::AtomicI64::new(1_000));
    let at = |t: i64| now.store(t, std::sync::atomic::Ordering::SeqCst);
    let store = store_at(&dir, now.clone()).await;
    let old = |id: &str| job(id, Queue::Inbound, Some(id));
    store
        .add(vec![
            old("old-done"),
            old("old-dead"),
            old("old-pending"),
            old("done-late"),
        ])
        .await
        .unwrap();
    store
        .claim(Queue::Inbound, log(10), 1_000, 60_000)
        .await
        .unwrap();
    store.complete("old-done", vec![]).await.unwrap();
    store.bury("old-dead", "refused", vec![]).await.unwrap();
    at(3_000);
    // Created before the cutoff but finished after it: kept.
    store.complete("done-late", vec![]).await.unwrap();
    store.add(vec![old("new-done")]).await.unwrap();
    store
        .claim(Queue::Inbound, log(10), 3_000, 60_000)
        .await
        .unwrap();
    store.complete("new-done", vec![]).await.unwrap();

    let deleted = crate::workers::retention::prune(store.as_ref(), 2_000).await;
    assert_eq!(deleted, 1, "only the job finished before the cutoff");
    let inbound = counts(&store, Queue::Inbound).await;
    assert_eq!((inbound.pending, inbound.done, inbound.dead), (1, 2, 1));
    assert_eq!(store.dead_letters(10).await.unwrap().len(), 1);
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
    let cutoff = crate::clock::system_now_ms();
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
    assert_eq!(counts(&store, Queue::Inbound).await.pending, stored);

    // The writer is still there.
    store
        .add(vec![job("after", Queue::Inbound, None)])
        .await
        .unwrap();
    assert_eq!(counts(&store, Queue::Inbound).await.pending, stored + 1);
}

// ---- the queue model: heads, destinations, dedupe, clock injected -----------

/// A store whose writer stamps rows with a clock the test sets.
async fn store_at(
    dir: &tempfile::TempDir,
    now: Arc<std::sync::atomic::AtomicI64>,
) -> Arc<SqliteStore> {
    let clock = Clock::from_fn(move || now.load(std::sync::atomic::Ordering::SeqCst));
    Arc::new(
        SqliteStore::open_with_clock(
            &dir.path().join("patchbay.db"),
            WriterSettings::default(),
            true,
            clock,
        )
        .await
        .expect("open store"),
    )
}

#[tokio::test]
async fn a_conversation_hands_out_one_job_at_a_time_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(&dir, Arc::default()).await;
    store
        .add(vec![
            in_conv("a1", "a"),
            in_conv("b1", "b"),
            in_conv("a2", "a"),
            in_conv("a3", "a"),
            in_conv("b2", "b"),
        ])
        .await
        .unwrap();
    let first = store
        .claim(Queue::Deliver, app(10), 1, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["a1", "b1"], "one head per conversation");
    assert!(claim_app(&store, 10, 2).await.is_empty());

    store.complete("a1", vec![]).await.unwrap();
    assert_eq!(claim_app(&store, 10, 3).await, ["a2"]);
    // A retry keeps the head: b2 waits while b1 backs off.
    store
        .retry("b1", 100, "503", Attempt::Counted)
        .await
        .unwrap();
    assert!(claim_app(&store, 10, 50).await.is_empty());
    assert_eq!(
        store
            .next_due(Queue::Deliver, vec![APPLICATION.into()], 50)
            .await
            .unwrap(),
        Some(100)
    );
    let again = store
        .claim(Queue::Deliver, app(10), 100, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&again), ["b1"]);
    assert_eq!(again[0].attempts, 2);
    // A dead letter does not block its conversation.
    store.bury("b1", "refused", vec![]).await.unwrap();
    store.complete("a2", vec![]).await.unwrap();
    let next = store
        .claim(Queue::Deliver, app(10), 101, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&next), ["a3", "b2"], "longest ready first, then oldest");
}

#[tokio::test]
async fn a_job_whose_completion_failed_keeps_its_place_at_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(&dir, Arc::default()).await;
    store
        .add(vec![
            in_conv("m1", "c"),
            in_conv("m2", "c"),
            job("taken", Queue::Outbound, None),
        ])
        .await
        .unwrap();
    let claimed = store
        .claim(Queue::Deliver, app(10), 1, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["m1"]);
    // Recording it fails (here: a follow-up whose id is taken).
    let failed = store
        .complete("m1", vec![job("taken", Queue::Outbound, None)])
        .await;
    assert!(failed.is_err());
    // Nothing newer of the conversation is handed out meanwhile…
    assert!(claim_app(&store, 10, 2).await.is_empty());
    // …and once the write goes through, m2 follows at once.
    store.complete("m1", vec![]).await.unwrap();
    assert_eq!(claim_app(&store, 10, 3).await, ["m2"]);
    // Completing again (a retried write that had in fact committed) is harmless.
    store
        .complete("m1", vec![in_conv("m-dup", "c")])
        .await
        .unwrap();
    assert_eq!(counts(&store, Queue::Deliver).await.pending, 1);
}

#[tokio::test]
async fn a_refunded_attempt_is_not_counted_and_the_job_keeps_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(&dir, Arc::default()).await;
    store
        .add(vec![in_conv("m1", "c"), in_conv("m2", "c")])
        .await
        .unwrap();
    for round in 1..=5 {
        let claimed = store
            .claim(Queue::Deliver, app(10), round, 60_000)
            .await
            .unwrap();
        assert_eq!(ids(&claimed), ["m1"]);
        assert_eq!(claimed[0].attempts, 1, "refunded attempts do not add up");
        store
            .retry("m1", round, "application down", Attempt::Refunded)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn claims_ask_per_destination_so_a_paused_backlog_is_not_walked() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    let outbound = |id: String, channel: &str| NewJob {
        channel: channel.into(),
        destination: channel.into(),
        conversation_key: Some(format!("{channel}-{id}")),
        ..job(&id, Queue::Outbound, None)
    };
    store
        .add(
            (0..50)
                .map(|i| outbound(format!("sms{i}"), "sms"))
                .collect(),
        )
        .await
        .unwrap();
    store
        .add(vec![outbound("slack0".into(), "slack")])
        .await
        .unwrap();
    let slack_only = vec![Want {
        destination: "slack".into(),
        limit: 10,
    }];
    let claimed = store
        .claim(Queue::Outbound, slack_only, 1, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["slack0"]);
    assert_eq!(claimed[0].destination, "slack");
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
async fn dedupe_keys_hold_across_restarts_until_the_retention_window_ends() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(std::sync::atomic::AtomicI64::new(1_000));
    let parse = |store: Arc<SqliteStore>, id: &'static str, at: i64| async move {
        store
            .add(vec![job(id, Queue::Inbound, Some("evt-1"))])
            .await
            .unwrap();
        let claimed = store
            .claim(Queue::Inbound, log(1), at, 60_000)
            .await
            .unwrap();
        assert_eq!(ids(&claimed), [id]);
        store
            .complete_many(vec![(id.into(), vec![in_conv(&format!("m-{id}"), "c")])])
            .await
            .unwrap()
    };
    let store = store_at(&dir, now.clone()).await;
    assert_eq!(parse(store.clone(), "first", 1_000).await, 0);
    drop(store);

    now.store(5_000, std::sync::atomic::Ordering::SeqCst);
    let store = store_at(&dir, now.clone()).await;
    assert_eq!(
        parse(store.clone(), "again", 5_000).await,
        1,
        "a duplicate after a restart"
    );
    // Retention forgets keys seen before the cutoff; a later redelivery is new.
    crate::workers::retention::prune(store.as_ref(), 2_000).await;
    assert_eq!(parse(store.clone(), "late", 5_000).await, 0);
    assert_eq!(counts(&store, Queue::Deliver).await.pending, 2);
}

#[tokio::test]
async fn replay_puts_a_dead_letter_behind_what_its_conversation_has_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(&dir, Arc::default()).await;
    store
        .add(vec![in_conv("m1", "c"), in_conv("m2", "c")])
        .await
        .unwrap();
    store
        .claim(Queue::Deliver, app(10), 1, 60_000)
        .await
        .unwrap();
    store.bury("m1", "refused", vec![]).await.unwrap();
    assert!(store.replay("m1", 2).await.unwrap());
    assert!(
        !store.replay("m1", 2).await.unwrap(),
        "no longer a dead letter"
    );
    let order: Vec<String> = {
        let mut order = vec![];
        for t in 3..6 {
            for j in store
                .claim(Queue::Deliver, app(10), t, 60_000)
                .await
                .unwrap()
            {
                store.complete(&j.id, vec![]).await.unwrap();
                order.push(j.id);
            }
        }
        order
    };
    assert_eq!(order, ["m2", "m1"]);
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
    assert_eq!(claim_app(&store, 10, 3).await, ["d2"]);
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
    assert_eq!(counts(&store, Queue::Deliver).await.pending, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_webhooks_are_accepted_but_only_the_first_is_parsed_into_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    // 400 webhooks from concurrent callers, each event id sent four times.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400 {
        let store = store.clone();
        tasks.spawn(async move {
            let key = format!("k{}", i % 100);
            store
                .add(vec![job(&format!("j{i}"), Queue::Inbound, Some(&key))])
                .await
        });
    }
    while let Some(added) = tasks.join_next().await {
        added.unwrap().unwrap();
    }
    assert_eq!(counts(&store, Queue::Inbound).await.pending, 400);
    // The parser records them a batch at a time, each with one message.
    let mut duplicates = 0;
    loop {
        let batch = store
            .claim(Queue::Inbound, log(64), 1, 60_000)
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        let done = batch
            .iter()
            .map(|j| (j.id.clone(), vec![in_conv(&format!("m-{}", j.id), "c")]))
            .collect();
        duplicates += store.complete_many(done).await.unwrap();
    }
    assert_eq!(duplicates, 300);
    assert_eq!(
        counts(&store, Queue::Deliver).await.pending,
        100,
        "one per event id"
    );
    assert_eq!(counts(&store, Queue::Inbound).await.done, 400);
}

#[tokio::test]
async fn a_backlog_drains_round_robin_across_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let store = store_at(&dir, now.clone()).await;
    // A long conversation queued first, then two short ones.
    let mut jobs: Vec<NewJob> = (1..=3).map(|i| in_conv(&format!("a{i}"), "a")).collect();
    jobs.extend([in_conv("b1", "b"), in_conv("c1", "c")]);
    store.add(jobs).await.unwrap();
    let mut order = vec![];
    for t in 1..=5 {
        now.store(t, std::sync::atomic::Ordering::SeqCst);
        let claimed = store
            .claim(Queue::Deliver, app(1), t, 60_000)
            .await
            .unwrap();
        for j in claimed {
            store.complete(&j.id, vec![]).await.unwrap();
            order.push(j.id);
        }
    }
    assert_eq!(order, ["a1", "b1", "c1", "a2", "a3"]);
}

#[tokio::test]
async fn old_menus_are_forgotten_with_the_retention_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    store
        .set_menu("old", Some("{\"m\":1}"), 1_000)
        .await
        .unwrap();
    store
        .set_menu("recent", Some("{\"m\":2}"), 5_000)
        .await
        .unwrap();
    crate::workers::retention::prune(store.as_ref(), 2_000).await;
    assert_eq!(
        store.menu("old").await.unwrap(),
        None,
        "a \"2\" weeks later is text"
    );
    assert!(store.menu("recent").await.unwrap().is_some());
}

#[tokio::test]
async fn waiting_destinations_count_conversations_per_upstream_and_links_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, 128).await;
    let for_upstream = |id: &str, conv: &str, upstream: &str| NewJob {
        destination: upstream.into(),
        ..in_conv(id, conv)
    };
    store
        .add(vec![
            for_upstream("a1", "c1", "genesys"),
            for_upstream("a2", "c1", "genesys"),
            for_upstream("a3", "c2", "genesys"),
            for_upstream("b1", "c3", "old-name"),
        ])
        .await
        .unwrap();
    let mut waiting = store.waiting_destinations(Queue::Deliver).await.unwrap();
    waiting.sort();
    assert_eq!(
        waiting,
        vec![("genesys".to_string(), 2), ("old-name".to_string(), 1)]
    );
    assert!(
        store
            .waiting_destinations(Queue::Outbound)
            .await
            .unwrap()
            .is_empty()
    );

    let link = |key: &str, value: &str| Link {
        scope: "message:genesys".into(),
        key: key.into(),
        value: value.into(),
    };
    store.link(vec![link("p-1", "g-1")], 1_000).await.unwrap();
    store.link(vec![link("p-1", "g-2")], 2_000).await.unwrap();
    assert_eq!(
        store
            .linked("message:genesys", "p-1")
            .await
            .unwrap()
            .as_deref(),
        Some("g-2"),
        "a link is replaced, not doubled"
    );
    assert_eq!(store.linked("message:other", "p-1").await.unwrap(), None);
    assert_eq!(store.forget_links(1_500, 10).await.unwrap(), 0);
    assert_eq!(store.forget_links(2_500, 10).await.unwrap(), 1);
    assert_eq!(store.linked("message:genesys", "p-1").await.unwrap(), None);
}

// ---- the acknowledgement log -------------------------------------------------

/// Accepted webhooks `ids` (event id = the id), appended to the log.
async fn accept_all(store: &SqliteStore, ids: &[&str]) {
    for id in ids {
        store
            .accept(job(id, Queue::Inbound, Some(id)))
            .await
            .expect("accept");
    }
}

/// Each accepted webhook parsed into one message, `m-<id>`, of one conversation.
fn parsed_into_messages(
    read: Vec<crate::store::Accepted>,
) -> Vec<(crate::store::Job, crate::store::Outcome)> {
    read.into_iter()
        .map(|a| {
            let follow = vec![in_conv(&format!("m-{}", a.job.id), "conv")];
            (a.job, crate::store::Outcome::Done(follow))
        })
        .collect()
}

#[tokio::test]
async fn accepted_webhooks_are_read_in_order_and_recorded_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    accept_all(&store, &["a", "b", "c"]).await;
    assert_eq!(counts(&store, Queue::Inbound).await.pending, 3);
    let read = store.accepted(None, 2).await.unwrap();
    assert_eq!(
        read.iter().map(|a| a.job.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let upto = read[1].seq;
    let parsed = parsed_into_messages(read);
    assert_eq!(store.record_accepted(upto, parsed).await.unwrap(), 0);
    // Recording the same position again changes nothing.
    let again = vec![(
        job("a", Queue::Inbound, Some("a")).into_claimed(),
        crate::store::Outcome::Done(vec![in_conv("m-a-again", "conv")]),
    )];
    assert_eq!(store.record_accepted(upto, again).await.unwrap(), 0);
    assert_eq!(counts(&store, Queue::Deliver).await.pending, 2);
    let inbound = counts(&store, Queue::Inbound).await;
    assert_eq!((inbound.pending, inbound.done), (1, 2));
    drop(store);

    // After a restart the parser starts after what was recorded.
    let store = self::store(&dir, DELAY).await;
    let rest = store.accepted(None, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|a| a.job.id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    assert!(rest[0].seq > upto);
}

#[tokio::test]
async fn a_redelivery_in_the_log_is_recorded_as_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    accept_all(&store, &["evt"]).await;
    store
        .accept(job("evt-again", Queue::Inbound, Some("evt")))
        .await
        .unwrap();
    let read = store.accepted(None, 10).await.unwrap();
    let upto = read.last().unwrap().seq;
    let parsed = parsed_into_messages(read);
    assert_eq!(store.record_accepted(upto, parsed).await.unwrap(), 1);
    assert_eq!(counts(&store, Queue::Deliver).await.pending, 1);
}

#[tokio::test]
async fn failures_from_the_log_become_inbound_jobs_to_retry_or_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    accept_all(&store, &["later", "never"]).await;
    let read = store.accepted(None, 10).await.unwrap();
    let upto = read.last().unwrap().seq;
    let mut read = read.into_iter();
    let (later, never) = (read.next().unwrap().job, read.next().unwrap().job);
    let parsed = vec![
        (
            later,
            crate::store::Outcome::Retry {
                run_at: 5_000,
                error: "provider timed out".into(),
            },
        ),
        (never, crate::store::Outcome::Dead("unreadable".into())),
    ];
    store.record_accepted(upto, parsed).await.unwrap();
    assert!(store.accepted(None, 10).await.unwrap().is_empty());
    let inbound = counts(&store, Queue::Inbound).await;
    assert_eq!((inbound.pending, inbound.dead), (1, 1));
    assert!(
        store
            .claim(Queue::Inbound, log(10), 4_999, 60_000)
            .await
            .unwrap()
            .is_empty(),
        "not before its time"
    );
    let retried = store
        .claim(Queue::Inbound, log(10), 5_000, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&retried), ["later"]);
    assert_eq!(retried[0].attempts, 2, "the log's attempt counted");
    assert_eq!(retried[0].payload, b"{\"id\":\"later\"}");
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead[0].id, "never");
    assert!(store.replay("never", 6_000).await.unwrap());
}

#[tokio::test]
async fn a_lost_log_file_never_renumbers_what_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, DELAY).await;
    accept_all(&store, &["a", "b"]).await;
    let read = store.accepted(None, 10).await.unwrap();
    let upto = read.last().unwrap().seq;
    let parsed = read
        .into_iter()
        .map(|a| (a.job, crate::store::Outcome::Done(vec![])))
        .collect();
    store.record_accepted(upto, parsed).await.unwrap();
    drop(store);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("patchbay.db.acks{suffix}")));
    }
    let store = self::store(&dir, DELAY).await;
    accept_all(&store, &["c"]).await;
    let read = store.accepted(None, 10).await.unwrap();
    assert_eq!(read.len(), 1, "a new webhook is not taken for a parsed one");
    assert!(read[0].seq > upto);
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
    accept_all(&serving, &["a", "b"]).await;
    let store = inspect().await.expect("open");
    assert_eq!(counts(&store, Queue::Inbound).await.pending, 2);
}
