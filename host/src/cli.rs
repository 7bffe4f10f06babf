//! The `patchbay` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Exit code for a bad configuration (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// Patchbay: one canonical message format for every messaging channel.
#[derive(Debug, Parser)]
#[command(name = "patchbay", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG", default_value = "patchbay.toml")]
        config: PathBuf,
    },
    /// Check a config file: exit 0 if it is valid, 78 naming the offending key if not.
    CheckConfig {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG", default_value = "patchbay.toml")]
        config: PathBuf,
    },
    /// Inspect and replay dead letters.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Inspect adapter libraries and see which adapters a config loads.
    Plugins {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Work with upstreams.
    Upstreams {
        #[command(subcommand)]
        action: UpstreamAction,
    },
    /// Show queue counts.
    Status {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG", default_value = "patchbay.toml")]
        config: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetterAction {
    /// List dead letters, newest first.
    List {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG", default_value = "patchbay.toml")]
        config: PathBuf,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put a dead letter back in its queue; a running host picks it up.
    Replay {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG", default_value = "patchbay.toml")]
        config: PathBuf,
        /// The dead letter's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum UpstreamAction {
    /// Create or update the platform's copy of each channel routed to the
    /// upstream (eGain) from this config, and report what changed. Exits 3
    /// when a change was held because it would widen what the platform
    /// allows.
    Sync {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG", default_value = "patchbay.toml")]
        config: PathBuf,
        /// The upstream's name.
        name: String,
        /// Also apply changes that widen what the platform lets its agents
        /// send (a longer text limit, a new rich type, an unblocked file type).
        #[arg(long)]
        widen: bool,
        /// Compare only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Exit code of `upstreams sync` when a widening change was held.
pub const EXIT_HELD: u8 = 3;

#[derive(Debug, Subcommand)]
enum PluginAction {
    /// Print a library's manifest and ABI/wire versions without enabling it.
    Inspect {
        /// The shared library (`.so`, `.dylib`, `.dll`).
        path: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the adapters a config makes available, how each is loaded, and
    /// the channels using it.
    List {
        /// The config file.
        #[arg(long, short, env = "PATCHBAY_CONFIG", default_value = "patchbay.toml")]
        config: PathBuf,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: invalid config {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The URL providers and platforms call, as `serve` would use it.
fn public_url(config: &Config) -> String {
    config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.server.listen))
}

/// The config's upstreams and channels, built as `serve` builds them.
fn build(
    config: &Config,
    public: &str,
) -> Result<(crate::upstreams::Upstreams, crate::channels::Channels), crate::config::ConfigError> {
    let upstreams = crate::upstreams::build(config, public, &crate::clock::Clock::system())?;
    Ok((upstreams, crate::channels::build(config, public)?))
}

/// Runs the CLI.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            crate::telemetry::init(&config.log);
            match crate::serve::serve(config).await {
                Ok(()) => ExitCode::SUCCESS,
                // As `check-config` does: 78 for what the config got wrong.
                Err(e) if e.downcast_ref::<crate::config::ConfigError>().is_some() => {
                    eprintln!("error: invalid config: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config: path } => {
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let public = public_url(&config);
            match build(&config, &public) {
                Ok((upstreams, channels)) => {
                    println!("config OK: {}", path.display());
                    for (name, upstream) in &upstreams {
                        let webhook = match upstream.speaks {
                            crate::upstreams::Speaks::Webhook { .. } => String::new(),
                            crate::upstreams::Speaks::Console => {
                                format!(", answered at {public}/admin/conversations")
                            }
                            crate::upstreams::Speaks::Connector { .. } => {
                                format!(", webhook {public}/upstreams/{name}/webhook")
                            }
                        };
                        println!("  upstream {name}: {}{webhook}", upstream.kind);
                    }
                    for (id, ch) in &channels {
                        println!(
                            "  channel {id}: adapter {} ({}) → upstream {}",
                            ch.adapter_id,
                            ch.adapter.manifest().version,
                            ch.upstream
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: invalid config {}: {e}", path.display());
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::DeadLetters { action } => dead_letters(action).await,
        Command::Plugins { action } => plugins(action),
        Command::Upstreams { action } => upstreams(action).await,
        Command::Status { config, json } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let store =
                match crate::serve::open_store(&config, false, crate::clock::Clock::system()).await
                {
                    Ok(s) => s,
                    Err(e) => return fail(e),
                };
            // Conversations waiting per upstream: what an outage holds back.
            let waiting = store
                .waiting_destinations(crate::store::Queue::Deliver)
                .await
                .unwrap_or_default();
            match store.counts().await {
                Ok(counts) if json => {
                    let mut map: serde_json::Map<String, serde_json::Value> = counts
                        .into_iter()
                        .map(|(q, c)| {
                            (
                                q.as_str().to_string(),
                                serde_json::to_value(c).unwrap_or_default(),
                            )
                        })
                        .collect();
                    let waiting: serde_json::Map<String, serde_json::Value> = waiting
                        .into_iter()
                        .map(|(upstream, n)| (upstream, n.into()))
                        .collect();
                    map.insert("waiting_by_upstream".into(), waiting.into());
                    map.insert("store".into(), store.backend().into());
                    println!("{}", serde_json::Value::Object(map));
                    ExitCode::SUCCESS
                }
                Ok(counts) => {
                    println!("store: {}\n", crate::serve::describe_store(&config));
                    println!(
                        "{:<10} {:>10} {:>10} {:>10}",
                        "QUEUE", "PENDING", "DONE", "DEAD"
                    );
                    for (queue, c) in counts {
                        println!(
                            "{:<10} {:>10} {:>10} {:>10}",
                            queue.as_str(),
                            c.pending,
                            c.done,
                            c.dead
                        );
                    }
                    if !waiting.is_empty() {
                        println!();
                        println!("{:<24} {:>14}", "UPSTREAM", "CONVERSATIONS");
                        for (upstream, n) in waiting {
                            let note = if config.upstreams.contains_key(&upstream) {
                                ""
                            } else {
                                "  (not configured)"
                            };
                            println!("{upstream:<24} {n:>14}{note}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.into()),
            }
        }
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

async fn dead_letters(action: DeadLetterAction) -> ExitCode {
    let path = match &action {
        DeadLetterAction::List { config, .. } | DeadLetterAction::Replay { config, .. } => {
            config.clone()
        }
    };
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match crate::serve::open_store(&config, false, crate::clock::Clock::system()).await
    {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match action {
        DeadLetterAction::List { limit, json, .. } => match store.dead_letters(limit).await {
            Ok(letters) => {
                if json {
                    for l in &letters {
                        println!("{}", serde_json::to_string(l).unwrap_or_default());
                    }
                } else {
                    println!("store: {}\n", crate::serve::describe_store(&config));
                    println!(
                        "{:<36}  {:<8}  {:<16}  {:>8}  LAST ERROR",
                        "ID", "QUEUE", "CHANNEL", "ATTEMPTS"
                    );
                    for l in &letters {
                        println!(
                            "{:<36}  {:<8}  {:<16}  {:>8}  {}",
                            l.id,
                            l.queue.as_str(),
                            l.channel,
                            l.attempts,
                            l.last_error.as_deref().unwrap_or("")
                        );
                    }
                    if letters.is_empty() {
                        println!("(no dead letters)");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e.into()),
        },
        DeadLetterAction::Replay { id, .. } => {
            match store.replay(&id, crate::clock::system_now_ms()).await {
                Ok(true) => {
                    println!("replayed {id}");
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    eprintln!("error: no dead letter with id {id}");
                    ExitCode::FAILURE
                }
                Err(e) => fail(e.into()),
            }
        }
    }
}

fn plugins(action: PluginAction) -> ExitCode {
    match action {
        PluginAction::Inspect { path, json } => inspect(&path, json),
        PluginAction::List { config, json } => list(&config, json),
    }
}

/// Opens a library (running its initialisers, as any load does) and prints
/// what it declares; nothing is enabled.
fn inspect(path: &std::path::Path, json: bool) -> ExitCode {
    use patchbay_plugin_sdk::abi::{ABI_MAJOR, ABI_MINOR};
    use patchbay_plugin_sdk::adapter::WireRange;

    let library = match crate::plugins::open(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sha256 = crate::plugins::file_sha256(path).unwrap_or_default();
    let (contract, manifest) = match &library.exports {
        crate::plugins::Exports::Adapter(m) => ("adapter", serde_json::json!(m)),
        crate::plugins::Exports::Upstream(m) => ("upstream", serde_json::json!(m)),
    };
    if json {
        let out = serde_json::json!({
            "path": library.path,
            "sha256": sha256,
            "contract": contract,
            "abi": {"major": library.abi.0, "minor": library.abi.1},
            "wire": library.wire,
            "host": {"abi": {"major": ABI_MAJOR, "minor": ABI_MINOR}, "wire": WireRange::CURRENT},
            "manifest": manifest,
        });
        println!("{out}");
        return ExitCode::SUCCESS;
    }
    let host_wire = WireRange::CURRENT;
    let m = match &library.exports {
        crate::plugins::Exports::Adapter(m) => m,
        crate::plugins::Exports::Upstream(u) => {
            println!("library   {}", library.path.display());
            println!("sha256    {sha256}");
            println!("upstream  {} {} — {}", u.kind, u.version, u.description);
            println!(
                "abi       {}.{} (this host: {ABI_MAJOR}.{ABI_MINOR})",
                library.abi.0, library.abi.1
            );
            println!("receipts  {}", if u.receipts { "yes" } else { "no" });
            println!("typing    {}", if u.typing { "yes" } else { "no" });
            let rich: Vec<&str> = u.rich_types.iter().map(|t| t.as_str()).collect();
            println!("rich      {}", rich.join(", "));
            return ExitCode::SUCCESS;
        }
    };
    // One line per setting or secret, with what it is for.
    let describe = |heading: &str, specs: &[patchbay_plugin_sdk::adapter::SettingSpec]| {
        if specs.is_empty() {
            println!("{heading:<9} none");
        }
        for (i, spec) in specs.iter().enumerate() {
            let heading = if i == 0 { heading } else { "" };
            let need = if spec.required {
                "required"
            } else {
                "optional"
            };
            println!("{heading:<9} {} ({need}): {}", spec.name, spec.description);
        }
    };
    println!("library   {}", library.path.display());
    println!("sha256    {sha256}");
    println!("adapter   {} — {} {}", m.id, m.name, m.version);
    println!(
        "abi       {}.{} (this host: {ABI_MAJOR}.{ABI_MINOR})",
        library.abi.0, library.abi.1
    );
    println!(
        "wire      {}..={} (this host: {}..={})",
        library.wire.min, library.wire.max, host_wire.min, host_wire.max
    );
    describe("settings", &m.settings);
    describe("secrets", &m.secrets);
    let rich: Vec<String> = m
        .capabilities
        .outbound
        .rich_types
        .iter()
        .map(|t| t.as_str().to_string())
        .collect();
    println!("rich      {}", rich.join(", "));
    ExitCode::SUCCESS
}

fn list(path: &std::path::Path, json: bool) -> ExitCode {
    use crate::channels::Origin;

    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let registry = match crate::channels::registry(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: invalid config {}: {e}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !json {
        println!(
            "{:<16} {:<10} {:<24} SOURCE",
            "ADAPTER", "VERSION", "CHANNELS"
        );
    }
    for (id, adapter) in &registry {
        let manifest = adapter.factory.manifest();
        let channels: Vec<&str> = config
            .channels
            .iter()
            .filter(|(_, c)| &c.adapter == id)
            .map(|(name, _)| name.as_str())
            .collect();
        if json {
            let source = match &adapter.origin {
                Origin::CompiledIn => serde_json::json!({"kind": "compiled-in"}),
                Origin::Library {
                    path,
                    sha256,
                    abi,
                    wire,
                } => serde_json::json!({
                    "kind": "library", "path": path, "sha256": sha256,
                    "abi": {"major": abi.0, "minor": abi.1}, "wire": wire,
                }),
            };
            let line = serde_json::json!({
                "adapter": id, "manifest_id": manifest.id, "version": manifest.version,
                "channels": channels, "source": source,
            });
            println!("{line}");
            continue;
        }
        let source = match &adapter.origin {
            Origin::CompiledIn => "compiled-in".to_string(),
            Origin::Library {
                path, abi, wire, ..
            } => format!(
                "{} (abi {}.{}, wire {}..={})",
                path.display(),
                abi.0,
                abi.1,
                wire.min,
                wire.max
            ),
        };
        let channels = if channels.is_empty() {
            "-".to_string()
        } else {
            channels.join(",")
        };
        println!("{id:<16} {:<10} {channels:<24} {source}", manifest.version);
    }
    list_connectors(&config, path, json)
}

/// The upstream connectors a config makes available, after the adapters.
fn list_connectors(config: &crate::config::Config, path: &std::path::Path, json: bool) -> ExitCode {
    let connectors = match crate::upstreams::connectors(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid config {}: {e}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !json {
        println!();
        println!(
            "{:<16} {:<10} {:<24} SOURCE",
            "UPSTREAM KIND", "VERSION", "UPSTREAMS"
        );
    }
    let builtin = crate::upstreams::builtin_connectors();
    for (kind, factory) in &connectors {
        let manifest = factory.manifest();
        let upstreams: Vec<&str> = config
            .upstreams
            .iter()
            .filter(|(_, u)| &u.kind == kind)
            .map(|(name, _)| name.as_str())
            .collect();
        let source = if builtin.contains_key(kind.as_str()) {
            "compiled-in"
        } else {
            "library"
        };
        if json {
            let line = serde_json::json!({
                "upstream_kind": kind, "manifest_kind": manifest.kind, "version": manifest.version,
                "upstreams": upstreams, "source": source,
            });
            println!("{line}");
            continue;
        }
        let upstreams = if upstreams.is_empty() {
            "-".to_string()
        } else {
            upstreams.join(",")
        };
        println!(
            "{kind:<16} {:<10} {upstreams:<24} {source}",
            manifest.version
        );
    }
    ExitCode::SUCCESS
}

async fn upstreams(action: UpstreamAction) -> ExitCode {
    let UpstreamAction::Sync {
        config,
        name,
        widen,
        dry_run,
        json,
    } = action;
    let config = match load(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (upstreams, channels) = match build(&config, &public_url(&config)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: invalid config: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(upstream) = upstreams.get(&name) else {
        let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
        eprintln!(
            "error: no upstream {name:?} in the config; it has {}",
            known.join(", ")
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let report =
        match crate::upstreams::register::register(upstream, &channels, widen, dry_run).await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
    if json {
        println!("{}", serde_json::to_value(&report).unwrap_or_default());
    } else {
        if report.channels.is_empty() {
            println!("no channel sends to upstream {name}");
        }
        for outcome in &report.channels {
            let id = outcome
                .platform_id
                .as_deref()
                .map_or(String::new(), |id| format!(" (id {id})"));
            let action = serde_json::to_value(outcome.action).unwrap_or_default();
            println!(
                "{}: {}{id}",
                outcome.channel,
                action.as_str().unwrap_or_default().replace('_', " ")
            );
            for change in &outcome.changes {
                let widens = if outcome.widenings.contains(change) {
                    "  (widens)"
                } else {
                    ""
                };
                println!("    {change}{widens}");
            }
        }
        if report.held() {
            println!(
                "some channels were held: their update would let the platform send more than its copy allows now; run again with --widen to apply it"
            );
        }
    }
    if report.held() {
        ExitCode::from(EXIT_HELD)
    } else {
        ExitCode::SUCCESS
    }
}
