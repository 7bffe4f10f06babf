//! Assembling and running the host: store, channels, workers, server, shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::channels;
use crate::channels::Registry;
use crate::clock::Clock;
use crate::config::Config;
use crate::destinations::Destinations;
use crate::resources::ResourceCache;
use crate::runtime::{Completers, Runtime, Wakers};
use crate::server::connections;
use crate::store::{PostgresSettings, PostgresStore, Queue, SqliteStore, Store, WriterSettings};
use crate::transport::Transport;
use crate::upstreams;
use crate::webchat::Outboxes;
use crate::workers;
use crate::workers::completions::{self, Completer};
use crate::workers::supervise;
use crate::workers::threads::WorkerThreads;

/// Descriptors kept for the store, provider and application connections.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Opens the configured store, stamping rows with `clock`. With SQLite,
/// `serving` releases a previous process's leases (one process per file);
/// PostgreSQL is shared by replicas, whose leases run out by themselves.
pub async fn open_store(
    config: &Config,
    serving: bool,
    clock: Clock,
) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &config.store.url {
        let settings = PostgresSettings {
            pool_size: config.store.pool_size,
            max_batch: config.store.max_batch,
            ..PostgresSettings::default()
        };
        let store = PostgresStore::open(url.expose(), settings, clock)
            .await
            .context("opening the PostgreSQL store")?;
        return Ok(Arc::new(store));
    }
    let settings = WriterSettings {
        max_batch: config.store.max_batch,
        background_rows: config.store.background_rows_per_turn,
        ..WriterSettings::default()
    };
    let store = SqliteStore::open_with_clock(&config.store.path, settings, serving, clock)
        .await
        .with_context(|| format!("opening store {}", config.store.path.display()))?;
    Ok(Arc::new(store))
}

/// Which store `config` names, for operators: the backend and where it is,
/// never a password.
pub fn describe_store(config: &Config) -> String {
    let Some(url) = &config.store.url else {
        return format!("sqlite {}", config.store.path.display());
    };
    let Ok(pg) = url.expose().parse::<tokio_postgres::Config>() else {
        return "postgresql".into();
    };
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgresql {host}:{port}/{}",
        pg.get_dbname().or(pg.get_user()).unwrap_or("")
    )
}

/// Runs until SIGTERM or Ctrl-C, then stops accepting, finishes in-flight work
/// (up to `shutdown_grace_secs`) and returns. A configuration the channels or
/// upstreams refuse is an error holding a [`ConfigError`](crate::config::ConfigError).
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let registry = channels::registry(&config).map_err(anyhow::Error::new)?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    serve_with(config, &registry, listener, shutdown_signal()).await
}

/// [`serve`] with the adapters already registered (the compiled-in ones, the
/// loaded libraries, or any an embedding program adds) on a bound listener,
/// until `shutdown` completes.
pub async fn serve_with(
    config: Config,
    registry: &Registry,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::metrics::install();
    let local = listener.local_addr()?;
    let public_url = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let channels =
        channels::build_with(&config, registry, &public_url).map_err(anyhow::Error::new)?;
    let clock = Clock::system();
    let upstreams = upstreams::build(&config, &public_url, &clock).map_err(anyhow::Error::new)?;
    let store = open_store(&config, true, clock.clone()).await?;

    let resources = ResourceCache::new(&channels);
    let (deliver_done, deliver_pending) = Completer::new();
    let (outbound_done, outbound_pending) = Completer::new();
    let destinations = Destinations::default().shared_through(store.clone());
    let outboxes = Outboxes::new(store.clone(), clock.clone());
    let rt = Arc::new(Runtime {
        store,
        channels,
        resources,
        transport: Transport::new(
            Duration::from_millis(config.providers.timeout_ms),
            clock.clone(),
        )
        .with_outboxes(outboxes.clone()),
        upstreams,
        outbound_retry: config.providers.retry,
        lease_ms: (config.store.lease_secs.saturating_mul(1000)) as i64,
        public_url: public_url.clone(),
        wake: Wakers::default(),
        destinations,
        completers: Completers {
            deliver: deliver_done,
            outbound: outbound_done,
        },
        clock,
        outboxes,
        admin_console: config.admin.is_some(),
        sockets: Arc::new(tokio::sync::Semaphore::new(config.server.max_connections)),
    });

    // Work another replica adds wakes this one's workers too.
    let wake = rt.wake.clone();
    rt.store.on_work(Box::new(move |queue| match queue {
        Queue::Inbound => wake.inbound.notify_one(),
        Queue::Deliver => wake.deliver.notify_one(),
        Queue::Outbound => wake.outbound.notify_one(),
    }));
    tracing::info!(backend = rt.store.backend(), "store open");

    let (stop_tx, stop_rx) = watch::channel(false);
    let worker_threads = WorkerThreads::start(config.workers.threads, config.workers.nice)
        .context("starting the workers' threads")?;
    // Completions are written until the workers that hand them in are done.
    let (recorded_tx, recorded_rx) = watch::channel(false);
    let mut recorders = tokio::task::JoinSet::new();
    worker_threads.spawn(
        &mut recorders,
        completions::run(
            rt.store.clone(),
            deliver_pending,
            vec![rt.wake.deliver.clone()],
            recorded_rx.clone(),
        ),
    );
    worker_threads.spawn(
        &mut recorders,
        completions::run(
            rt.store.clone(),
            outbound_pending,
            vec![rt.wake.outbound.clone(), rt.wake.deliver.clone()],
            recorded_rx,
        ),
    );
    let mut tasks = tokio::task::JoinSet::new();
    // Each loop runs supervised: should one panic (a bug), it is logged and
    // started again; its leased jobs come back when their leases end.
    let (inbound_rt, inbound_stop) = (rt.clone(), stop_rx.clone());
    worker_threads.spawn(
        &mut tasks,
        supervise("inbound", stop_rx.clone(), move || {
            workers::inbound::run(
                inbound_rt.clone(),
                // One parser keeps webhooks in arrival order; batches small
                // enough to share a store turn with acknowledgements.
                64,
                inbound_rt.wake.inbound.clone(),
                inbound_stop.clone(),
            )
        }),
    );
    // One delivery loop per upstream: each its own concurrency, and one
    // that is down never holds another's slots. New `deliver` work wakes
    // them all.
    let mut deliver_wakes = Vec::new();
    for upstream in rt.upstreams.values() {
        let (deliver_rt, deliver_stop) = (rt.clone(), stop_rx.clone());
        let (name, concurrency) = (upstream.name.clone(), upstream.concurrency);
        let wake = Arc::new(tokio::sync::Notify::new());
        deliver_wakes.push(wake.clone());
        worker_threads.spawn(
            &mut tasks,
            supervise("deliver", stop_rx.clone(), move || {
                workers::run_queue(
                    deliver_rt.clone(),
                    Queue::Deliver,
                    vec![name.clone()],
                    concurrency,
                    wake.clone(),
                    deliver_stop.clone(),
                    workers::deliver::handle,
                )
            }),
        );
    }
    worker_threads.spawn(
        &mut tasks,
        fan_out(rt.wake.deliver.clone(), deliver_wakes, stop_rx.clone()),
    );
    let (outbound_rt, outbound_stop) = (rt.clone(), stop_rx.clone());
    let outbound_concurrency = config.providers.concurrency;
    worker_threads.spawn(
        &mut tasks,
        supervise("outbound", stop_rx.clone(), move || {
            workers::run_queue(
                outbound_rt.clone(),
                Queue::Outbound,
                outbound_rt.channels.keys().cloned().collect(),
                outbound_concurrency,
                outbound_rt.wake.outbound.clone(),
                outbound_stop.clone(),
                workers::outbound::handle,
            )
        }),
    );
    let (retention_rt, retention_stop) = (rt.clone(), stop_rx.clone());
    let keep = Duration::from_secs(config.store.keep_done_hours.saturating_mul(3600));
    worker_threads.spawn(
        &mut tasks,
        supervise("retention", stop_rx.clone(), move || {
            workers::retention::run(retention_rt.clone(), keep, retention_stop.clone())
        }),
    );

    let router = crate::server::router(
        rt.clone(),
        config.server.max_body_bytes,
        Duration::from_millis(config.server.request_timeout_ms),
        config.admin.as_ref(),
    );
    match connections::raise_descriptor_limit() {
        Some(limit) if limit < config.server.max_connections as u64 + RESERVED_DESCRIPTORS => {
            tracing::warn!(
                limit,
                max_connections = config.server.max_connections,
                "the open-file limit is below server.max_connections plus what the store and \
                 providers need; raise it (ulimit -n) or lower max_connections"
            );
        }
        Some(limit) => tracing::debug!(limit, "open-file limit"),
        None => tracing::warn!("could not read or raise the open-file limit"),
    }
    if config.store.background_write_delay_ms.is_some() {
        tracing::warn!(
            "[store] background_write_delay_ms is no longer used and is ignored: \
             workers' writes now share every transaction, up to background_rows_per_turn rows"
        );
    }
    warn_of_stranded_deliveries(&rt).await;
    for upstream in rt.upstreams.values().filter(|u| u.sync_on_start) {
        tokio::spawn(sync_on_start(rt.clone(), upstream.clone()));
    }
    tracing::info!(listen = %local, public_url = %public_url, channels = rt.channels.len(), "patchbay started");
    // The one line on stdout: tests and scripts read the bound address from it.
    println!("patchbay listening on http://{local}");

    let limits = connections::Limits {
        max_connections: config.server.max_connections,
        header_timeout: Duration::from_millis(config.server.header_timeout_ms),
    };
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let shutdown = async move {
        shutdown.await;
        // Workers finish the jobs they hold and take no more, while requests
        // in progress are answered.
        tracing::info!("shutting down: finishing in-flight requests and work");
        let _ = stop_tx.send(true);
    };
    let deadline = connections::serve(listener, router, limits, shutdown, grace).await;

    let drained = tokio::time::timeout_at(deadline, async {
        while tasks.join_next().await.is_some() {}
        let _ = recorded_tx.send(true);
        while recorders.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("grace period over; unfinished jobs will run after restart");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Deliveries wait for their upstream by name: after an upstream is renamed
/// or removed, what waited for the old name is not delivered until an
/// upstream has that name again. Said at start rather than left silent.
async fn warn_of_stranded_deliveries(rt: &Runtime) {
    match rt.store.waiting_destinations(Queue::Deliver).await {
        Ok(waiting) => {
            for (name, conversations) in waiting {
                if !rt.upstreams.contains_key(&name) {
                    tracing::warn!(
                        upstream = %name,
                        conversations,
                        "deliveries wait for an upstream that is not configured; name an upstream {name:?} again to deliver them"
                    );
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading waiting deliveries failed"),
    }
}

/// `sync_on_start`: registers the upstream's channels as `patchbay upstreams
/// sync` does, never widening; logs what changed and what was held. Serving
/// does not wait for it.
async fn sync_on_start(rt: Arc<Runtime>, upstream: Arc<upstreams::Upstream>) {
    match upstreams::register::register(&upstream, &rt.channels, false, false).await {
        Ok(report) => {
            for outcome in report.channels {
                if outcome.widenings.is_empty() {
                    tracing::info!(upstream = %upstream.name, channel = %outcome.channel, action = ?outcome.action, changes = ?outcome.changes, "channel registered");
                } else {
                    tracing::warn!(upstream = %upstream.name, channel = %outcome.channel, action = ?outcome.action, widenings = ?outcome.widenings, "channel registration held: it would widen the platform's copy; run `patchbay upstreams sync --widen` to apply it");
                }
            }
        }
        Err(e) => {
            tracing::warn!(upstream = %upstream.name, error = %e, "registering channels at start failed")
        }
    }
}

/// Passes each wake-up of `from` on to every one of `to`, until `stop`.
async fn fan_out(
    from: Arc<tokio::sync::Notify>,
    to: Vec<Arc<tokio::sync::Notify>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = from.notified() => to.iter().for_each(|w| w.notify_one()),
            _ = stop.changed() => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
