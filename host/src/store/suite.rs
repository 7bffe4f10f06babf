//! The store's behaviour, one suite run against both backends: SQLite on a
//! real file, PostgreSQL on a real server (a throwaway cluster, or the one
//! `PATCHBAY_TEST_DATABASE_URL` names — see `tests/support/postgres.rs`).
//! Each test gets a fresh store and a clock it sets.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::clock::Clock;
use crate::store::{
    APPLICATION, Accepted, Attempt, Job, JobState, Link, NewJob, Outcome, PostgresSettings,
    PostgresStore, Queue, QueueCounts, Remembered, SqliteStore, Store, StoreError, Want,
    WriterSettings,
};

#[path = "../../../tests/support/postgres.rs"]
pub(crate) mod test_postgres;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh store's home (a directory or a database) and the clock its rows
/// are stamped with.
pub(crate) struct Env {
    backend: Backend,
    dir: tempfile::TempDir,
    postgres: Option<test_postgres::TestPostgres>,
    now: Arc<AtomicI64>,
}

impl Env {
    pub(crate) async fn new(backend: Backend) -> Env {
        let postgres = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(test_postgres::TestPostgres::start().await),
        };
        Env {
            backend,
            dir: tempfile::tempdir().expect("temp dir"),
            postgres,
            now: Arc::default(),
        }
    }

    /// Sets the store's clock (ms).
    pub(crate) fn at(&self, now: i64) {
        self.now.store(now, Ordering::SeqCst);
    }

    /// The database URL (PostgreSQL only).
    pub(crate) fn url(&self) -> &str {
        self.postgres.as_ref().expect("a PostgreSQL test").url()
    }

    /// Stops the PostgreSQL server (a fast shutdown).
    pub(crate) fn stop_database(&mut self) {
        self.postgres.as_mut().expect("a PostgreSQL test").stop();
    }

    /// Starts the stopped server again.
    pub(crate) fn restart_database(&mut self) {
        self.postgres.as_mut().expect("a PostgreSQL test").restart();
    }

    /// Opens the store (again: what a restart does).
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        let now = self.now.clone();
        let clock = Clock::from_fn(move || now.load(Ordering::SeqCst));
        match self.backend {
            Backend::Sqlite => Arc::new(
                SqliteStore::open_with_clock(
                    &self.dir.path().join("patchbay.db"),
                    WriterSettings::default(),
                    true,
                    clock,
                )
                .await
                .expect("open the SQLite store"),
            ),
            Backend::Postgres => Arc::new(
                PostgresStore::open(self.url(), PostgresSettings::default(), clock)
                    .await
                    .expect("open the PostgreSQL store"),
            ),
        }
    }
}

pub(crate) fn job(id: &str, queue: Queue, dedupe: Option<&str>) -> NewJob {
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
pub(crate) fn in_conv(id: &str, conv: &str) -> NewJob {
    NewJob {
        conversation_key: Some(conv.into()),
        ..job(id, Queue::Deliver, None)
    }
}

/// Up to `limit` jobs for the application.
pub(crate) fn app(limit: u32) -> Vec<Want> {
    vec![Want {
        destination: APPLICATION.into(),
        limit,
    }]
}

/// Up to `limit` jobs of the `inbound` log.
pub(crate) fn log(limit: u32) -> Vec<Want> {
    vec![Want {
        destination: String::new(),
        limit,
    }]
}

pub(crate) fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

/// Claims up to `limit` jobs for the application at `now`; their ids.
pub(crate) async fn claim_app(store: &dyn Store, limit: u32, now: i64) -> Vec<String> {
    let claimed = store
        .claim(Queue::Deliver, app(limit), now, 60_000)
        .await
        .expect("claim");
    claimed.into_iter().map(|j| j.id).collect()
}

/// `queue`'s counts; every call also checks that the unfinished jobs'
/// counts (what `/metrics` reads) agree with them.
pub(crate) async fn counts(store: &dyn Store, queue: Queue) -> QueueCounts {
    let of = |all: Vec<(Queue, QueueCounts)>| {
        all.into_iter()
            .find(|(q, _)| *q == queue)
            .map(|(_, c)| c)
            .unwrap_or_default()
    };
    let counts = of(store.counts().await.expect("counts"));
    let open = of(store.open_counts().await.expect("open counts"));
    assert_eq!(
        open,
        QueueCounts {
            done: 0,
            ..counts.clone()
        },
        "{queue:?}"
    );
    counts
}

/// Accepted webhooks `ids` (event id = the id), appended to the log.
pub(crate) async fn accept_all(store: &dyn Store, ids: &[&str]) {
    for id in ids {
        store
            .accept(job(id, Queue::Inbound, Some(id)))
            .await
            .expect("accept");
    }
}

/// Each accepted webhook parsed into one message, `m-<id>`, of one conversation.
pub(crate) fn parsed_into_messages(read: Vec<Accepted>) -> Vec<(Accepted, Outcome)> {
    read.into_iter()
        .map(|a| {
            let follow = vec![in_conv(&format!("m-{}", a.job.id), "conv")];
            (a, Outcome::Done(follow))
        })
        .collect()
}

/// Runs each named test on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Env::new(super::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Env::new(super::Backend::Postgres).await).await
                }
            )*
        }
    };
}

on_both_backends!(
    a_failing_add_does_not_fail_the_adds_committed_with_it,
    a_completion_and_its_follow_ups_stand_or_fall_together,
    pruning_deletes_old_finished_jobs_only,
    idempotency_keys_are_forgotten_after_the_retention_window,
    a_conversation_hands_out_one_job_at_a_time_in_order,
    a_job_whose_completion_failed_keeps_its_place_at_the_head,
    a_refunded_attempt_is_not_counted_and_the_job_keeps_its_place,
    claims_ask_per_destination_so_a_paused_backlog_is_not_walked,
    dedupe_keys_hold_across_restarts_until_the_retention_window_ends,
    replay_puts_a_dead_letter_behind_what_its_conversation_has_waiting,
    redelivered_webhooks_are_accepted_but_only_the_first_is_parsed_into_messages,
    a_backlog_drains_round_robin_across_conversations,
    old_menus_are_forgotten_with_the_retention_window,
    waiting_destinations_count_conversations_per_upstream_and_links_round_trip,
    accepted_webhooks_are_read_in_order_and_recorded_once_across_restarts,
    a_redelivery_in_the_log_is_recorded_as_a_duplicate,
    failures_from_the_log_become_inbound_jobs_to_retry_or_replay,
    recent_conversations_are_newest_first,
    an_outbox_is_read_in_order_per_conversation_across_restarts_until_retention,
);

pub(super) async fn a_failing_add_does_not_fail_the_adds_committed_with_it(env: Env) {
    let store = env.open().await;
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
    assert_eq!(counts(store.as_ref(), Queue::Inbound).await.pending, 50);
}

pub(super) async fn a_completion_and_its_follow_ups_stand_or_fall_together(env: Env) {
    let store = env.open().await;
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
    assert_eq!(counts(store.as_ref(), Queue::Inbound).await.pending, 1);
    assert_eq!(
        counts(store.as_ref(), Queue::Deliver).await.pending,
        1,
        "m1 undone"
    );

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
    let inbound = counts(store.as_ref(), Queue::Inbound).await;
    assert_eq!((inbound.pending, inbound.done), (0, 1));
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 3);
}

pub(super) async fn pruning_deletes_old_finished_jobs_only(env: Env) {
    let at = |t: i64| env.at(t);
    at(1_000);
    let store = env.open().await;
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
    let inbound = counts(store.as_ref(), Queue::Inbound).await;
    assert_eq!((inbound.pending, inbound.done, inbound.dead), (1, 2, 1));
    assert_eq!(store.dead_letters(10).await.unwrap().len(), 1);
}

pub(super) async fn idempotency_keys_are_forgotten_after_the_retention_window(env: Env) {
    env.at(1_000);
    let store = env.open().await;
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
    let cutoff = 2_000;
    env.at(3_000);
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

pub(super) async fn a_conversation_hands_out_one_job_at_a_time_in_order(env: Env) {
    let store = env.open().await;
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
    assert!(claim_app(store.as_ref(), 10, 2).await.is_empty());

    store.complete("a1", vec![]).await.unwrap();
    assert_eq!(claim_app(store.as_ref(), 10, 3).await, ["a2"]);
    // A retry keeps the head: b2 waits while b1 backs off.
    store
        .retry("b1", 100, "503", Attempt::Counted)
        .await
        .unwrap();
    assert!(claim_app(store.as_ref(), 10, 50).await.is_empty());
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

pub(super) async fn a_job_whose_completion_failed_keeps_its_place_at_the_head(env: Env) {
    let store = env.open().await;
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
    assert!(claim_app(store.as_ref(), 10, 2).await.is_empty());
    // …and once the write goes through, m2 follows at once.
    store.complete("m1", vec![]).await.unwrap();
    assert_eq!(claim_app(store.as_ref(), 10, 3).await, ["m2"]);
    // Completing again (a retried write that had in fact committed) is harmless.
    store
        .complete("m1", vec![in_conv("m-dup", "c")])
        .await
        .unwrap();
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 1);
}

pub(super) async fn a_refunded_attempt_is_not_counted_and_the_job_keeps_its_place(env: Env) {
    let store = env.open().await;
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

pub(super) async fn claims_ask_per_destination_so_a_paused_backlog_is_not_walked(env: Env) {
    let store = env.open().await;
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

pub(super) async fn dedupe_keys_hold_across_restarts_until_the_retention_window_ends(env: Env) {
    env.at(1_000);
    let parse = |store: Arc<dyn Store>, id: &'static str, at: i64| async move {
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
    let store = env.open().await;
    assert_eq!(parse(store.clone(), "first", 1_000).await, 0);
    drop(store);

    env.at(5_000);
    let store = env.open().await;
    assert_eq!(
        parse(store.clone(), "again", 5_000).await,
        1,
        "a duplicate after a restart"
    );
    // Retention forgets keys seen before the cutoff; a later redelivery is new.
    crate::workers::retention::prune(store.as_ref(), 2_000).await;
    assert_eq!(parse(store.clone(), "late", 5_000).await, 0);
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 2);
}

pub(super) async fn replay_puts_a_dead_letter_behind_what_its_conversation_has_waiting(env: Env) {
    let store = env.open().await;
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

pub(super) async fn redelivered_webhooks_are_accepted_but_only_the_first_is_parsed_into_messages(
    env: Env,
) {
    let store = env.open().await;
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
    assert_eq!(counts(store.as_ref(), Queue::Inbound).await.pending, 400);
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
        counts(store.as_ref(), Queue::Deliver).await.pending,
        100,
        "one per event id"
    );
    assert_eq!(counts(store.as_ref(), Queue::Inbound).await.done, 400);
}

pub(super) async fn a_backlog_drains_round_robin_across_conversations(env: Env) {
    let store = env.open().await;
    // A long conversation queued first, then two short ones.
    let mut jobs: Vec<NewJob> = (1..=3).map(|i| in_conv(&format!("a{i}"), "a")).collect();
    jobs.extend([in_conv("b1", "b"), in_conv("c1", "c")]);
    store.add(jobs).await.unwrap();
    let mut order = vec![];
    for t in 1..=5 {
        env.at(t);
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

pub(super) async fn old_menus_are_forgotten_with_the_retention_window(env: Env) {
    let store = env.open().await;
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

pub(super) async fn an_outbox_is_read_in_order_per_conversation_across_restarts_until_retention(
    env: Env,
) {
    let store = env.open().await;
    let mut positions = Vec::new();
    for (i, conversation) in ["ann", "bo", "ann", "ann"].iter().enumerate() {
        let body = format!("{conversation}-{i}").into_bytes();
        let at = 1_000 * (i as i64 + 1);
        positions.push(
            store
                .outbox_push("web", conversation, body, at)
                .await
                .unwrap(),
        );
    }
    store
        .outbox_push("other", "ann", b"x".to_vec(), 9_000)
        .await
        .unwrap();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let read = |after, limit| {
        let store = store.clone();
        async move {
            let entries = store.outbox_read("web", "ann", after, limit).await.unwrap();
            entries
                .into_iter()
                .map(|(seq, body)| (seq, String::from_utf8(body).unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let all = read(0, 10).await;
    assert_eq!(
        all.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(),
        ["ann-0", "ann-2", "ann-3"],
        "only this channel's and this conversation's, oldest first"
    );
    // Resuming after what the customer saw gives only what is newer.
    let after_first = read(all[0].0, 10).await;
    assert_eq!(after_first, all[1..].to_vec());
    assert_eq!(read(all[0].0, 1).await, all[1..2].to_vec(), "limit");
    drop(store);
    let store = env.open().await;
    let reopened = store.outbox_read("web", "ann", 0, 10).await.unwrap();
    assert_eq!(reopened.len(), 3, "kept across a restart");
    crate::workers::retention::prune(store.as_ref(), 3_500).await;
    let kept = store.outbox_read("web", "ann", 0, 10).await.unwrap();
    assert_eq!(
        kept.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [all[2].0]
    );
    let next = store
        .outbox_push("web", "ann", b"later".to_vec(), 10_000)
        .await
        .unwrap();
    assert!(
        next > all[2].0,
        "positions never go back, even after pruning"
    );
}

pub(super) async fn waiting_destinations_count_conversations_per_upstream_and_links_round_trip(
    env: Env,
) {
    let store = env.open().await;
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

pub(super) async fn accepted_webhooks_are_read_in_order_and_recorded_once_across_restarts(
    env: Env,
) {
    let store = env.open().await;
    accept_all(store.as_ref(), &["a", "b", "c"]).await;
    assert_eq!(counts(store.as_ref(), Queue::Inbound).await.pending, 3);
    let read = store.accepted(None, 2).await.unwrap();
    assert_eq!(
        read.iter().map(|a| a.job.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let (first, upto) = (read[0].seq, read[1].seq);
    let parsed = parsed_into_messages(read);
    assert_eq!(store.record_accepted(parsed).await.unwrap(), 0);
    // Recording the same position again changes nothing.
    let again = vec![(
        Accepted {
            seq: first,
            job: job("a", Queue::Inbound, Some("a")).into_claimed(),
        },
        Outcome::Done(vec![in_conv("m-a-again", "conv")]),
    )];
    assert_eq!(store.record_accepted(again).await.unwrap(), 0);
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 2);
    let inbound = counts(store.as_ref(), Queue::Inbound).await;
    assert_eq!((inbound.pending, inbound.done), (1, 2));
    drop(store);

    // After a restart the parser starts after what was recorded.
    let store = env.open().await;
    let rest = store.accepted(None, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|a| a.job.id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    assert!(rest[0].seq > upto);
}

pub(super) async fn a_redelivery_in_the_log_is_recorded_as_a_duplicate(env: Env) {
    let store = env.open().await;
    accept_all(store.as_ref(), &["evt"]).await;
    store
        .accept(job("evt-again", Queue::Inbound, Some("evt")))
        .await
        .unwrap();
    let read = store.accepted(None, 10).await.unwrap();
    let parsed = parsed_into_messages(read);
    assert_eq!(store.record_accepted(parsed).await.unwrap(), 1);
    assert_eq!(counts(store.as_ref(), Queue::Deliver).await.pending, 1);
}

pub(super) async fn failures_from_the_log_become_inbound_jobs_to_retry_or_replay(env: Env) {
    let store = env.open().await;
    accept_all(store.as_ref(), &["later", "never"]).await;
    let read = store.accepted(None, 10).await.unwrap();
    let mut read = read.into_iter();
    let (later, never) = (read.next().unwrap(), read.next().unwrap());
    let parsed = vec![
        (
            later,
            Outcome::Retry {
                run_at: 5_000,
                error: "provider timed out".into(),
            },
        ),
        (never, Outcome::Dead("unreadable".into())),
    ];
    store.record_accepted(parsed).await.unwrap();
    assert!(store.accepted(None, 10).await.unwrap().is_empty());
    let inbound = counts(store.as_ref(), Queue::Inbound).await;
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

pub(super) async fn recent_conversations_are_newest_first(env: Env) {
    let store = env.open().await;
    for (t, id, conv) in [
        (1_000, "a1", "web\u{1f}a"),
        (2_000, "b1", "web\u{1f}b"),
        (3_000, "a2", "web\u{1f}a"),
    ] {
        env.at(t);
        store.add(vec![in_conv(id, conv)]).await.unwrap();
    }
    let recent = store.recent_conversations(10).await.unwrap();
    let seen: Vec<(&str, &str, u64, i64)> = recent
        .iter()
        .map(|c| {
            (
                c.channel.as_str(),
                c.conversation.as_str(),
                c.jobs,
                c.last_at,
            )
        })
        .collect();
    assert_eq!(seen, [("web", "a", 2, 3_000), ("web", "b", 1, 2_000)]);
    assert_eq!(store.recent_conversations(1).await.unwrap().len(), 1);

    // A conversation's messages, oldest first, payloads included.
    let jobs = store.conversation_jobs("web\u{1f}a", 10).await.unwrap();
    let seen: Vec<(i64, JobState)> = jobs.iter().map(|j| (j.created_at, j.state)).collect();
    assert_eq!(
        seen,
        [(1_000, JobState::Pending), (3_000, JobState::Pending)]
    );
    assert!(
        jobs.iter()
            .all(|j| j.queue == Queue::Deliver && !j.payload.is_empty())
    );
    let last = store.conversation_jobs("web\u{1f}a", 1).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].created_at, 3_000, "the newest, when limited");
    assert!(
        store
            .conversation_jobs("web\u{1f}z", 10)
            .await
            .unwrap()
            .is_empty()
    );
}
