//! What the load benchmarks share: environment knobs, a counting mock server,
//! and starting a server process that prints `patchbay listening on http://ADDR`
//! first.

// Each benchmark uses part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `main` on a multi-threaded runtime when invoked by `cargo bench`
/// (which passes `--bench`); `cargo test --benches` runs nothing.
pub fn bench_main<F: Future<Output = ()>>(main: impl FnOnce() -> F) {
    if std::env::args().any(|a| a == "--bench") {
        block_on(main());
    }
}

/// Runs `future` to completion on a new multi-threaded runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A mock server on a random port that answers 200 (with a provider-style
/// JSON body) and counts what it received; returns its base URL.
pub async fn counter() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move |_b: axum::body::Bytes| {
        seen.fetch_add(1, Ordering::Relaxed);
        async { r#"{"message_id":"il-1"}"# }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), count)
}

/// `name` from the environment as a number, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `values` (the upper one of an even count).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A server process, killed when dropped, and its base URL.
#[derive(Debug)]
pub struct Server(pub Child, pub String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and reads the address from its first line. Its log goes to
/// the file `PATCHBAY_BENCH_LOG` names, if any (appended), else nowhere.
pub fn spawn(mut cmd: Command) -> Server {
    let log = match std::env::var_os("PATCHBAY_BENCH_LOG") {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open PATCHBAY_BENCH_LOG")
            .into(),
        None => Stdio::null(),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let url = line
        .trim()
        .strip_prefix("patchbay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server(child, url)
}

/// The bare handler: answers 200 with an empty body to anything, and prints
/// its address as `patchbay serve` does. Benchmarks re-execute themselves
/// into it, so it runs as its own process.
pub fn bare_server() {
    block_on(serve_announced(
        axum::Router::new().fallback(|_body: axum::body::Bytes| async { "" }),
    ));
}

/// Serves `router` on a random loopback port, first printing its address as
/// `patchbay serve` does (what [`spawn`] reads).
pub async fn serve_announced(router: axum::Router) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "patchbay listening on http://{}",
        listener.local_addr().expect("addr")
    );
    axum::serve(listener, router).await.expect("serve");
}

/// `background_rows_per_turn = N` for a bench config when
/// `PATCHBAY_BENCH_BACKGROUND_ROWS` asks for it, else nothing (the default).
pub fn store_tuning() -> String {
    std::env::var("PATCHBAY_BENCH_BACKGROUND_ROWS")
        .map(|rows| format!("background_rows_per_turn = {rows}"))
        .unwrap_or_default()
}
