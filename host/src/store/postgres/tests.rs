//! What only a shared database has: several replicas on one PostgreSQL.
//! (The behaviour both backends share is `store::suite`.)

use std::sync::Arc;
use std::time::Duration;

use crate::store::suite::{Backend, Env, accept_all, app, claim_app, ids, in_conv, job};
use crate::store::{Accepted, Outcome, PostgresSettings, PostgresStore, Queue, Store};

async fn replica(env: &Env) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::open(
            env.url(),
            PostgresSettings::default(),
            crate::clock::Clock::from_fn(|| 1_000),
        )
        .await
        .expect("open"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_replica_starts_a_conversations_next_job_while_another_holds_one() {
    let env = Env::new(Backend::Postgres).await;
    let (a, b) = (replica(&env).await, replica(&env).await);
    a.add(vec![
        in_conv("a1", "c"),
        in_conv("a2", "c"),
        in_conv("x1", "x"),
    ])
    .await
    .unwrap();
    // (The replicas' clocks read 1,000.)
    assert_eq!(claim_app(a.as_ref(), 1, 1_000).await, ["a1"]);
    // B sees only the other conversation; c's next waits for a1.
    assert_eq!(claim_app(b.as_ref(), 10, 1_000).await, ["x1"]);
    assert!(claim_app(b.as_ref(), 10, 1_001).await.is_empty());
    a.complete("a1", vec![]).await.unwrap();
    assert_eq!(claim_app(b.as_ref(), 10, 1_002).await, ["a2"]);
    // A replica that dies holding a job: its lease runs out, another takes it.
    drop(b);
    assert!(claim_app(a.as_ref(), 10, 1_003).await.is_empty());
    let after_lease = 1_002 + 60_000;
    let again = a
        .claim(Queue::Deliver, app(10), after_lease, 60_000)
        .await
        .unwrap();
    assert_eq!(ids(&again), ["x1", "a2"], "both of B's leases ran out");
    assert_eq!(again[1].attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_by_replicas_hand_each_head_to_one_of_them() {
    let env = Env::new(Backend::Postgres).await;
    let replicas = [
        replica(&env).await,
        replica(&env).await,
        replica(&env).await,
    ];
    let jobs = (0..300)
        .map(|i| in_conv(&format!("m{i}"), &format!("c{}", i % 100)))
        .collect();
    replicas[0].add(jobs).await.unwrap();
    let mut claims = tokio::task::JoinSet::new();
    for r in &replicas {
        for _ in 0..4 {
            let r = r.clone();
            claims.spawn(async move { claim_app(r.as_ref(), 20, 1).await });
        }
    }
    let mut claimed = Vec::new();
    while let Some(c) = claims.join_next().await {
        claimed.extend(c.unwrap());
    }
    claimed.sort();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!(before, claimed.len(), "a job handed out twice");
    assert_eq!(claimed.len(), 100, "one head per conversation, all of them");
    assert!(
        claimed
            .iter()
            .all(|id| id[1..].parse::<u32>().unwrap() < 100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_parses_the_log_and_another_takes_over_when_it_goes() {
    let env = Env::new(Backend::Postgres).await;
    let (a, b) = (replica(&env).await, replica(&env).await);
    accept_all(b.as_ref(), &["w1", "w2", "w3"]).await;
    let read = a.accepted(None, 2).await.unwrap();
    assert_eq!(read.len(), 2, "the first to ask parses");
    assert!(
        b.accepted(None, 10).await.unwrap().is_empty(),
        "one parser at a time"
    );
    // A records w1 only, then goes.
    let first = read.into_iter().next().unwrap();
    a.record_accepted(vec![(first, Outcome::Done(vec![in_conv("m-w1", "c")]))])
        .await
        .unwrap();
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rest = loop {
        let rest = b.accepted(None, 10).await.unwrap();
        if !rest.is_empty() || std::time::Instant::now() > deadline {
            break rest;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rest_ids: Vec<&str> = rest.iter().map(|a| a.job.id.as_str()).collect();
    assert_eq!(rest_ids, ["w2", "w3"], "from the recorded position on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_a_replica_that_lost_the_parser_is_not_applied_twice() {
    let env = Env::new(Backend::Postgres).await;
    let store = replica(&env).await;
    accept_all(store.as_ref(), &["w1", "w2"]).await;
    let read = store.accepted(None, 10).await.unwrap();
    let parsed = |read: &[Accepted]| -> Vec<(Accepted, Outcome)> {
        read.iter()
            .map(|a| {
                let m = in_conv(&format!("m-{}-{}", a.job.id, a.seq), "c");
                (a.clone(), Outcome::Done(vec![m]))
            })
            .collect()
    };
    // The new parser recorded w1; the old one's record of w1 and w2 comes late.
    store.record_accepted(parsed(&read[..1])).await.unwrap();
    let late: Vec<(Accepted, Outcome)> = parsed(&read)
        .into_iter()
        .map(|(a, _)| {
            let m = in_conv(&format!("late-{}", a.job.id), "c");
            (a, Outcome::Done(vec![m]))
        })
        .collect();
    store.record_accepted(late).await.unwrap();
    let mut delivered = Vec::new();
    for t in 1_000..1_004 {
        for j in store
            .claim(Queue::Deliver, app(1), t, 60_000)
            .await
            .unwrap()
        {
            store.complete(&j.id, vec![]).await.unwrap();
            delivered.push(j.id);
        }
    }
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert!(delivered[0].starts_with("m-w1"));
    assert_eq!(delivered[1], "late-w2", "w2 once, from the late record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_from_many_callers_share_commits_and_keep_their_order() {
    let env = Env::new(Backend::Postgres).await;
    let store = replica(&env).await;
    let mut accepts = tokio::task::JoinSet::new();
    for i in 0..500 {
        let store = store.clone();
        accepts.spawn(async move {
            store
                .accept(job(
                    &format!("w{i}"),
                    Queue::Inbound,
                    Some(&format!("e{i}")),
                ))
                .await
        });
    }
    while let Some(accepted) = accepts.join_next().await {
        accepted.unwrap().unwrap();
    }
    let read = store.accepted(None, 1_000).await.unwrap();
    assert_eq!(read.len(), 500);
    assert!(read.windows(2).all(|w| w[0].seq < w[1].seq));
    let client = store.pool.get().await.unwrap();
    let transactions: i64 = client
        .query_one("SELECT count(DISTINCT xmin::text) FROM accepted", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        transactions < 500,
        "500 webhooks in {transactions} transactions: no group commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrate_one_at_a_time_and_refuse_a_newer_schema() {
    let env = Env::new(Backend::Postgres).await;
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let url = env.url().to_string();
        opens.spawn(async move {
            PostgresStore::open(
                &url,
                PostgresSettings::default(),
                crate::clock::Clock::system(),
            )
            .await
        });
    }
    while let Some(opened) = opens.join_next().await {
        opened.unwrap().expect("every replica starts");
    }
    let store = replica(&env).await;
    let client = store.pool.get().await.unwrap();
    let version: i64 = client
        .query_one("SELECT version FROM patchbay_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, super::schema::VERSION);
    client
        .execute("UPDATE patchbay_schema SET version = version + 1", &[])
        .await
        .unwrap();
    let refused = PostgresStore::open(
        env.url(),
        PostgresSettings::default(),
        crate::clock::Clock::system(),
    )
    .await
    .expect_err("a newer schema");
    assert!(refused.to_string().contains("newer"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_one_replica_publishes_is_seen_by_the_others_until_it_ends() {
    let env = Env::new(Backend::Postgres).await;
    let (a, b) = (replica(&env).await, replica(&env).await);
    a.pause("application", 5_000, "failing").await.unwrap();
    b.pause("application", 3_000, "failing").await.unwrap();
    assert_eq!(
        b.paused(1_000).await.unwrap(),
        [("application".to_string(), 5_000)],
        "the longer pause holds"
    );
    assert!(b.paused(5_000).await.unwrap().is_empty(), "over by itself");
    b.resume("application").await.unwrap();
    assert!(a.paused(1_000).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_added_by_one_replica_wakes_the_others() {
    let env = Env::new(Backend::Postgres).await;
    let (a, b) = (replica(&env).await, replica(&env).await);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    b.on_work(Box::new(move |queue| {
        let _ = tx.send(queue);
    }));
    // The listener connects in the background: add until it hears.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        let mut i = 0;
        loop {
            i += 1;
            a.add(vec![in_conv(&format!("m{i}"), "c")]).await.unwrap();
            if let Ok(Some(queue)) =
                tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
            {
                break queue;
            }
        }
    })
    .await
    .expect("woken within 10 s");
    assert_eq!(heard, Queue::Deliver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_fails_writes_and_they_work_again_when_it_returns() {
    let mut env = Env::new(Backend::Postgres).await;
    let store = replica(&env).await;
    store.ready().await.expect("ready");
    env.stop_database();
    assert!(store.accept(job("w1", Queue::Inbound, None)).await.is_err());
    assert!(store.ready().await.is_err());
    env.restart_database();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.ready().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store
        .accept(job("w2", Queue::Inbound, None))
        .await
        .expect("accepted once the database is back");
    let read = store.accepted(None, 10).await.unwrap();
    assert_eq!(
        ids(&read.into_iter().map(|a| a.job).collect::<Vec<_>>()),
        ["w2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_at_the_previous_version_is_migrated_and_keeps_its_jobs() {
    let env = Env::new(Backend::Postgres).await;
    let store = replica(&env).await;
    store.add(vec![in_conv("kept", "c1")]).await.unwrap();
    // As version 1 (before web chat outboxes and the unfinished jobs' index)
    // left it.
    let client = store.pool.get().await.unwrap();
    client
        .batch_execute(
            "DROP TABLE outbox; DROP INDEX jobs_open; UPDATE patchbay_schema SET version = 1",
        )
        .await
        .unwrap();
    drop(client);
    drop(store);

    let store = replica(&env).await;
    let client = store.pool.get().await.unwrap();
    let version: i64 = client
        .query_one("SELECT version FROM patchbay_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, super::schema::VERSION);
    let indexed: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'jobs_open')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(indexed);
    let seq = store
        .outbox_push("web", "c1", b"{}".to_vec(), 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.outbox_read("web", "c1", 0, 10).await.unwrap(),
        vec![(seq, b"{}".to_vec())]
    );
    let claimed = claim_app(store.as_ref(), 10, 2_000).await;
    assert_eq!(claimed, ["kept"], "the job from before is still there");
}
