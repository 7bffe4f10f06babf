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

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: invalid config {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
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
            let public = config
                .server
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.server.listen));
            match crate::channels::build(&config, &public) {
                Ok(channels) => {
                    println!("config OK: {}", path.display());
                    for (id, ch) in &channels {
                        println!(
                            "  channel {id}: adapter {} ({})",
                            ch.adapter_id,
                            ch.adapter.manifest().version
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
        Command::Status { config, json } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let store = match crate::serve::open_store(&config, false).await {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            match store.counts().await {
                Ok(counts) if json => {
                    let map: serde_json::Map<String, serde_json::Value> = counts
                        .into_iter()
                        .map(|(q, c)| {
                            (
                                q.as_str().to_string(),
                                serde_json::to_value(c).unwrap_or_default(),
                            )
                        })
                        .collect();
                    println!("{}", serde_json::Value::Object(map));
                    ExitCode::SUCCESS
                }
                Ok(counts) => {
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
    let store = match crate::serve::open_store(&config, false).await {
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
            match store.replay(&id, crate::store::sqlite::now_ms()).await {
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
