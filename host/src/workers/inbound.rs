//! Parsing stored webhooks into canonical messages.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use patchbay_core::menu::Menu;
use patchbay_plugin_sdk::adapter::{InboundRequest, StepOutput};
use patchbay_plugin_sdk::message::{Content, Message};

use super::{conversation_key, deliver_job, idle_sleep, new_id, next_after};
use crate::runtime::{Runtime, persist};
use crate::store::{Accepted, Job, NewJob, Outcome, Queue, StoreError, Want};
use crate::upstreams::webhook::ensure_trace;

/// A `(channel, event id)` pair.
type EventKey = (String, String);

/// How many log batches may run before the `inbound` table's due retries
/// and replays get a turn.
const TABLE_EVERY: u32 = 8;

/// Parses stored webhooks in arrival order, `batch` at a time, until
/// `shutdown`: fresh ones from the acknowledgement log first, then retries
/// and replays from the `inbound` table. Each batch's outcome is recorded in
/// one store operation while the next batch is read and parsed; a batch is
/// recorded only once the one before it is, so a store that fails for a
/// while delays webhooks but never reorders them.
pub async fn run(
    rt: Arc<Runtime>,
    batch: u32,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let batch = batch.max(1);
    let want = vec![Want {
        destination: String::new(),
        limit: batch,
    }];
    // How far the log has been read (`None`: from what is recorded).
    let mut read_to: Option<i64> = None;
    // The batch being recorded, and the event ids it carries.
    let mut recording: Option<(JoinHandle<()>, HashSet<EventKey>)> = None;
    // Log batches since the `inbound` table was last looked at: under a
    // steady stream the log is never empty, and retries due must still run.
    let mut log_batches = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let mut log_had_work = false;
        match rt.store.accepted(read_to, batch).await {
            Ok(accepted) if !accepted.is_empty() => {
                let upto = accepted.last().map_or(0, |a| a.seq);
                let (seqs, jobs): (Vec<i64>, Vec<Job>) =
                    accepted.into_iter().map(|a| (a.seq, a.job)).unzip();
                let in_flight = recording.as_ref().map(|(_, keys)| keys);
                let (parsed, keys) = parse_batch(&rt, jobs, in_flight).await;
                let parsed = seqs
                    .into_iter()
                    .zip(parsed)
                    .map(|(seq, (job, outcome))| (Accepted { seq, job }, outcome))
                    .collect();
                if let Some((previous, _)) = recording.take() {
                    let _ = previous.await;
                }
                recording = Some((tokio::spawn(record_log(rt.clone(), parsed)), keys));
                read_to = Some(upto);
                log_batches += 1;
                if log_batches < TABLE_EVERY {
                    continue;
                }
                log_had_work = true;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "reading accepted webhooks failed"),
        }
        log_batches = 0;
        match rt
            .store
            .claim(Queue::Inbound, want.clone(), rt.clock.now(), rt.lease_ms)
            .await
        {
            Ok(jobs) if !jobs.is_empty() => {
                let in_flight = recording.as_ref().map(|(_, keys)| keys);
                let (parsed, keys) = parse_batch(&rt, jobs, in_flight).await;
                let mut done = Vec::with_capacity(parsed.len());
                for (job, outcome) in parsed {
                    if let Some(follow_ups) = rt.settle(&job, outcome).await {
                        done.push((job.id, follow_ups));
                    }
                }
                if let Some((previous, _)) = recording.take() {
                    let _ = previous.await;
                }
                if !done.is_empty() {
                    recording = Some((tokio::spawn(record(rt.clone(), done)), keys));
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "claiming webhooks failed"),
        }
        if log_had_work {
            continue;
        }
        if let Some((previous, _)) = recording.take() {
            let _ = previous.await;
        }
        let sleep = idle_sleep(&rt, Queue::Inbound, vec![], None).await;
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
        }
    }
    if let Some((previous, _)) = recording.take() {
        let _ = previous.await;
    }
    tracing::debug!("inbound worker stopped");
}

/// Parses a batch: each webhook with what it came to, and the event ids
/// parsed. Redeliveries — of a webhook already recorded, being recorded
/// (`in_flight`), or earlier in this batch — are not parsed again.
async fn parse_batch(
    rt: &Runtime,
    jobs: Vec<Job>,
    in_flight: Option<&HashSet<EventKey>>,
) -> (Vec<(Job, Outcome)>, HashSet<EventKey>) {
    let already = already_parsed(rt, &jobs).await;
    let mut parsed_now = HashSet::new();
    let mut parsed = Vec::with_capacity(jobs.len());
    for (job, already) in jobs.into_iter().zip(already) {
        let key = job.dedupe_key.clone().map(|k| (job.channel.clone(), k));
        let repeated = key
            .as_ref()
            .is_some_and(|k| parsed_now.contains(k) || in_flight.is_some_and(|f| f.contains(k)));
        if already || repeated {
            // Recorded as done with nothing to deliver (no provider calls).
            parsed.push((job, Outcome::Done(vec![])));
            continue;
        }
        let span = tracing::info_span!(
            "inbound",
            job = %job.id,
            channel = %job.channel,
            trace_id = tracing::field::Empty
        );
        let outcome = parse(rt, &job).instrument(span).await;
        // Parsing rarely waits on anything: give the requests queued on this
        // runtime thread (acknowledgements) their turn between webhooks.
        tokio::task::yield_now().await;
        if matches!(outcome, Outcome::Done(_)) {
            parsed_now.extend(key);
        }
        parsed.push((job, outcome));
    }
    (parsed, parsed_now)
}

/// Records a parsed batch from the log, trying until it is written (or the
/// store closes).
async fn record_log(rt: Arc<Runtime>, parsed: Vec<(Accepted, Outcome)>) {
    for (Accepted { job, .. }, outcome) in &parsed {
        match outcome {
            Outcome::Dead(error) => {
                tracing::warn!(job = %job.id, queue = "inbound", channel = %job.channel, %error, "dead-lettered");
                metrics::counter!("patchbay_dead_letters_total", "queue" => "inbound").increment(1);
            }
            Outcome::Retry { error, .. } => {
                tracing::debug!(job = %job.id, channel = %job.channel, %error, "webhook will be parsed again");
                metrics::counter!("patchbay_retries_total", "queue" => "inbound").increment(1);
            }
            Outcome::Done(_) => {}
        }
    }
    let count = parsed.len();
    until_written(&rt, count, || rt.store.record_accepted(parsed.clone())).await;
}

/// Records a parsed batch of `inbound` jobs, trying until it is written (or
/// the store closes).
async fn record(rt: Arc<Runtime>, done: Vec<(String, Vec<NewJob>)>) {
    let count = done.len();
    until_written(&rt, count, || rt.store.complete_many(done.clone())).await;
}

/// Runs a batch's record until it is written (or the store closes), then
/// wakes the workers its messages are for.
async fn until_written<F, Fut>(rt: &Runtime, webhooks: usize, mut write: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, StoreError>>,
{
    loop {
        match persist("recording parsed webhooks", &mut write).await {
            Ok(duplicates) => {
                rt.wake.deliver.notify_one();
                // Platform webhooks become outbound messages.
                rt.wake.outbound.notify_one();
                tracing::debug!(webhooks, duplicates, "webhooks parsed");
                return;
            }
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::error!(error = %e, "recording parsed webhooks keeps failing; still trying")
            }
        }
    }
}

/// Which webhooks of a batch carry an event id a parsed webhook had. Only a
/// hint to save work: recording the batch is what drops duplicates.
async fn already_parsed(rt: &Runtime, jobs: &[Job]) -> Vec<bool> {
    let keys: Vec<(String, String)> = jobs
        .iter()
        .filter_map(|j| Some((j.channel.clone(), j.dedupe_key.clone()?)))
        .collect();
    let seen: HashSet<(String, String)> = match rt.store.seen(keys.clone()).await {
        Ok(seen) => keys
            .into_iter()
            .zip(seen)
            .filter_map(|(k, s)| s.then_some(k))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "looking up event ids failed");
            HashSet::new()
        }
    };
    jobs.iter()
        .map(|j| {
            j.dedupe_key
                .as_ref()
                .is_some_and(|k| seen.contains(&(j.channel.clone(), k.clone())))
        })
        .collect()
}

/// Parses one webhook into `deliver` jobs, or says why it must wait or be
/// given up.
async fn parse(rt: &Runtime, job: &Job) -> Outcome {
    if let Some(upstream) = platform_of(&job.channel) {
        return super::platform::decode(rt, job, upstream).await;
    }
    let Some(channel) = rt.channels.get(&job.channel).cloned() else {
        return Outcome::Dead("channel is no longer configured".into());
    };
    let request: InboundRequest = match serde_json::from_slice(&job.payload) {
        Ok(r) => r,
        Err(e) => return Outcome::Dead(format!("stored request is unreadable: {e}")),
    };
    let adapter = channel.adapter.clone();
    // Adapters run behind `plugins::contained`: a panic comes back as a
    // transient failure.
    let step = adapter.parse_inbound(&request, rt.clock.timestamp());
    let outcome = rt
        .transport
        .drive(&channel.id, adapter.as_ref(), step)
        .await;
    let messages = match outcome {
        Ok(StepOutput::Messages { messages }) => messages,
        Ok(other) => {
            return Outcome::Dead(format!("adapter returned {other:?} from parse_inbound"));
        }
        Err(error) => {
            tracing::warn!(error = %error, attempt = job.attempts, "parsing webhook failed");
            return next_after(&rt.outbound_retry, job.attempts, &error, rt.clock.now())
                .outcome(error.message());
        }
    };
    // An adapter's bug must not reach the application as a malformed message.
    if let Some(e) = messages.iter().find_map(|m| m.validate().err()) {
        return Outcome::Dead(format!("adapter produced an invalid message: {e}"));
    }
    let mut follow_ups = Vec::with_capacity(messages.len());
    for mut message in messages {
        message.id = new_id();
        message.channel = channel.id.clone();
        ensure_trace(&mut message.trace);
        let trace_id = crate::telemetry::trace_id(&message.trace);
        tracing::Span::current().record("trace_id", trace_id);
        tracing::info!(message_id = %message.id, trace_id, "message parsed");
        map_menu_reply(rt, &mut message).await;
        match deliver_job(&message, &channel.upstream, rt.clock.now()) {
            Ok(j) => follow_ups.push(j),
            Err(e) => tracing::error!(error = %e, "cannot encode message"),
        }
    }
    Outcome::Done(follow_ups)
}

/// The `channel` of a stored platform webhook: `upstream:<name>` (channel
/// ids cannot hold a `:`).
pub fn platform_job_channel(upstream: &str) -> String {
    format!("upstream:{upstream}")
}

/// The upstream whose webhook a job holds, if it holds one.
fn platform_of(job_channel: &str) -> Option<&str> {
    job_channel.strip_prefix("upstream:")
}

/// A customer's "2" after a menu that was degraded to numbers becomes the
/// postback of item 2, as if they had pressed the button.
async fn map_menu_reply(rt: &Runtime, message: &mut Message) {
    let Content::Text { text, .. } = &message.content else {
        return;
    };
    let key = conversation_key(&message.channel, &message.conversation.id);
    let menu = match rt.store.menu(&key).await {
        Ok(Some(menu)) => menu,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading menu failed; passing the reply as text");
            return;
        }
    };
    let Ok(menu) = serde_json::from_str::<Menu>(&menu) else {
        return;
    };
    if let Some(option) = menu.resolve(text) {
        message.content = Content::Postback {
            payload: option.payload.clone(),
            text: Some(text.clone()),
        };
    }
}
