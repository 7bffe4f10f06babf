//! Test harness: mock servers on random loopback ports, and a real `patchbay
//! serve` process with a config written for the test.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use patchbay_plugin_sdk::signature::{hmac_sha1_hex, hmac_sha256_hex};
use serde_json::Value;

pub const APP_SECRET: &str = "app-secret-for-tests";
pub const CHANNEL_SECRET: &str = "channel-secret-for-tests";
pub const API_KEY: &str = "api-key-0123456789abcdef";

/// A request a mock server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// What the mock answered.
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("mock received JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

#[derive(Default)]
struct MockState {
    received: Vec<Received>,
    script: VecDeque<Answer>,
    by_path: HashMap<String, VecDeque<Answer>>,
    defaults: HashMap<String, Answer>,
}

/// A small HTTP server that records requests and answers from a per-path
/// script, then a per-path default, then the shared script, then `200 {}`.
#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    state: Arc<Mutex<MockState>>,
}

impl Mock {
    pub async fn start() -> Mock {
        Mock::start_on(0).await
    }

    pub async fn start_on(port: u16) -> Mock {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind mock");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(MockState::default()));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Mock { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these statuses and bodies.
    pub fn script(&self, answers: &[(u16, &str)]) {
        let mut s = self.state.lock().expect("lock");
        s.script
            .extend(answers.iter().map(|(c, b)| Answer::new(*c, b)));
    }

    /// Answers the next requests to `path` with these, in order.
    pub fn script_path(&self, path: &str, answers: Vec<Answer>) {
        let mut s = self.state.lock().expect("lock");
        s.by_path
            .entry(path.to_string())
            .or_default()
            .extend(answers);
    }

    /// Answers every request to `path` (once its script is used up) with this.
    pub fn respond(&self, path: &str, answer: Answer) {
        let mut s = self.state.lock().expect("lock");
        s.defaults.insert(path.to_string(), answer);
    }

    /// Stops answering every request to `path` with one answer (see [`respond`](Mock::respond)).
    pub fn clear(&self, path: &str) {
        self.state.lock().expect("lock").defaults.remove(path);
    }

    /// The requests received on `path`.
    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until at least `n` requests arrived on `path`.
    pub async fn wait_for_path(&self, path: &str, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received_on(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} requests on {path}; all: {:#?}",
                self.received()
                    .iter()
                    .map(|r| format!("{} {}", r.path, String::from_utf8_lossy(&r.body)))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("lock").received.clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} requests; got {}: {:#?}",
                got.len(),
                got.iter()
                    .map(|r| String::from_utf8_lossy(&r.body).to_string())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn record(
    State(state): State<Arc<Mutex<MockState>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut s = state.lock().expect("lock");
    let path = uri.path().to_string();
    let answer = s
        .by_path
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .or_else(|| s.defaults.get(&path).cloned())
        .or_else(|| s.script.pop_front())
        .unwrap_or_else(|| Answer::new(200, "{}"));
    s.received.push(Received {
        path: path.clone(),
        status: answer.status,
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    let mut response = (
        axum::http::StatusCode::from_u16(answer.status).expect("status"),
        [("content-type", "application/json")],
        answer.body,
    )
        .into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            axum::http::HeaderValue::from_str(&value).expect("value"),
        );
    }
    response
}

/// Asserts that the application webhook request is signed as documented.
pub fn assert_app_signature(r: &Received) {
    assert_eq!(
        r.header("x-hub-signature"),
        Some(format!("sha1={}", hmac_sha1_hex(APP_SECRET.as_bytes(), &r.body)).as_str())
    );
    assert_eq!(
        r.header("x-hub-signature-256"),
        Some(format!("sha256={}", hmac_sha256_hex(APP_SECRET.as_bytes(), &r.body)).as_str())
    );
}

/// A running `patchbay serve`.
pub struct Host {
    /// Holds the config, secret file and database for the host's lifetime.
    _dir: tempfile::TempDir,
    /// Where the process logs, when not to stderr.
    log_file: Option<PathBuf>,
    pub config: PathBuf,
    pub url: String,
    child: Option<Child>,
    /// Stops a host served inside the test process.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What to put in the test config.
pub struct HostOptions {
    pub app_url: String,
    pub integration_url: String,
    pub extra_channel_toml: String,
    pub max_body_bytes: usize,
    /// More keys for the `[server]` table.
    pub server_toml: String,
    /// The `[store]` table's keys instead of a SQLite file in the host's
    /// directory (replicas on one PostgreSQL).
    pub store_toml: Option<String>,
    /// JSON logs to a file (see [`Host::log_lines`]) instead of stderr.
    pub json_log_file: bool,
}

impl HostOptions {
    pub fn new(app: &str, integration: &str) -> Self {
        HostOptions {
            app_url: app.to_string(),
            integration_url: integration.to_string(),
            extra_channel_toml: String::new(),
            max_body_bytes: 64 * 1024,
            server_toml: String::new(),
            store_toml: None,
            json_log_file: false,
        }
    }
}

impl Host {
    pub fn start(options: HostOptions) -> Host {
        let mut host = Host::configured(options);
        host.spawn();
        host
    }

    /// Serves inside the test process, with `extra` adapters registered
    /// beside the compiled-in ones: adapters only a test compiles in.
    pub async fn start_in_process(
        options: HostOptions,
        extra: Vec<(&str, Arc<dyn patchbay_plugin_sdk::adapter::AdapterFactory>)>,
    ) -> Host {
        use patchbay_host::channels::{Origin, Registered};

        let mut host = Host::configured(options);
        let config = patchbay_host::config::Config::load(&host.config).expect("config");
        let mut registry = patchbay_host::channels::registry(&config).expect("registry");
        for (id, factory) in extra {
            let origin = Origin::CompiledIn;
            registry.insert(id.to_string(), Registered { factory, origin });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        host.url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            patchbay_host::serve::serve_with(config, &registry, listener, shutdown)
                .await
                .expect("serve");
        });
        host.stop = Some(stop);
        host
    }

    /// Serves the config `config` writes for a new directory (where its
    /// store may go).
    pub fn start_with_config(config: impl FnOnce(&std::path::Path) -> String) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("patchbay.toml");
        std::fs::write(&path, config(dir.path())).expect("config");
        let mut host = Host {
            log_file: None,
            _dir: dir,
            config: path,
            url: String::new(),
            child: None,
            stop: None,
        };
        host.spawn();
        host
    }

    /// Writes the test config (and the channel's secret file) to a new directory.
    fn configured(options: HostOptions) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("channel.secret"),
            format!("{CHANNEL_SECRET}\n"),
        )
        .expect("secret");
        let config = dir.path().join("patchbay.toml");
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = {max_body}
shutdown_grace_secs = 5
{server}

[store]
{store}

[application]
webhook_url = "{app}"
secret = "{app_secret}"
api_keys = ["{api_key}"]
timeout_ms = 2000
retry = {{ max_attempts = 5, base_delay_ms = 50, max_delay_ms = 200 }}

[providers]
timeout_ms = 2000
retry = {{ max_attempts = 3, base_delay_ms = 50, max_delay_ms = 200 }}

[log]
level = "patchbay_host=debug,info"
format = "{log_format}"

[channels.web]
adapter = "client-channel"
upstream = "application"
settings = {{ webhook_url = "{integration}" }}
secrets = {{ signing_secret_file = "channel.secret" }}
{extra}
"#,
            max_body = options.max_body_bytes,
            server = options.server_toml,
            store = options.store_toml.clone().unwrap_or_else(|| format!(
                "path = \"{}\"",
                dir.path().join("patchbay.db").display()
            )),
            app = options.app_url,
            app_secret = APP_SECRET,
            api_key = API_KEY,
            integration = options.integration_url,
            log_format = if options.json_log_file {
                "json"
            } else {
                "text"
            },
            extra = options.extra_channel_toml,
        );
        std::fs::write(&config, text).expect("config");
        let log_file = options
            .json_log_file
            .then(|| dir.path().join("patchbay.log"));
        Host {
            log_file,
            _dir: dir,
            config,
            url: String::new(),
            child: None,
            stop: None,
        }
    }

    /// Starts the process on the same config and database.
    pub fn spawn(&mut self) {
        let stderr = match &self.log_file {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("log file"),
            ),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_patchbay"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn patchbay");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        let url = line
            .trim()
            .strip_prefix("patchbay listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        self.url = url.to_string();
        self.child = Some(child);
    }

    /// The JSON log lines written so far (with `json_log_file`).
    pub fn log_lines(&self) -> Vec<Value> {
        let path = self.log_file.as_ref().expect("started with json_log_file");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }

    /// SIGKILL: no shutdown, no flushing.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let child = self.child.take().expect("running");
        let pid = child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let mut child = child;
        child.wait().expect("wait")
    }

    /// Runs a `patchbay` subcommand against this host's config; returns stdout.
    pub fn cli(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_patchbay"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run patchbay");
        (out.status, String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// [`cli`](Host::cli) off the test's runtime, for commands that call
    /// the test's mock servers.
    pub async fn cli_async(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_patchbay"));
        command.args(args).arg("--config").arg(&self.config);
        let out = tokio::task::spawn_blocking(move || command.output().expect("run patchbay"))
            .await
            .expect("join");
        let mut text = String::from_utf8_lossy(&out.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status, text)
    }

    /// Waits until no job is pending in any queue — everything accepted has
    /// been delivered, failed or dead-lettered — so a test can then assert
    /// that nothing more happened. Panics after 15 s with the counts.
    pub async fn idle(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let counts = self.counts();
            let pending: u64 = counts
                .as_object()
                .into_iter()
                .flat_map(|queues| queues.values())
                .filter_map(|queue| queue["pending"].as_u64())
                .sum();
            if pending == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "queues never went idle: {counts}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Queue counts from `patchbay status --json`.
    pub fn counts(&self) -> Value {
        let (status, out) = self.cli(&["status", "--json"]);
        assert!(status.success(), "status failed: {out}");
        serde_json::from_str(&out).expect("status json")
    }

    /// POSTs a webhook body signed with the channel secret.
    pub async fn webhook(&self, body: &Value) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).expect("body");
        let sig = format!(
            "sha256={}",
            hmac_sha256_hex(CHANNEL_SECRET.as_bytes(), &bytes)
        );
        self.post_raw("/webhooks/web", &[("x-hub-signature-256", &sig)], bytes)
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = client().post(format!("{}{path}", self.url));
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.expect("post")
    }

    /// Sends a message through the application API on the `web` channel.
    pub async fn send(&self, message: &Value, idempotency_key: Option<&str>) -> reqwest::Response {
        self.send_to("web", message, idempotency_key).await
    }

    /// Sends one message on `channel`, expects `202`, and returns its id.
    pub async fn send_id(&self, channel: &str, message: &Value) -> String {
        let res = self.send_to(channel, message, None).await;
        assert_eq!(res.status(), 202);
        res.json_value().await["ids"][0]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// Sends a message through the application API on `channel`.
    pub async fn send_to(
        &self,
        channel: &str,
        message: &Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = client()
            .post(format!("{}/v1/channels/{channel}/messages", self.url))
            .header("authorization", format!("Bearer {API_KEY}"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(message).expect("message"));
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        req.send().await.expect("send")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::Client {
    patchbay_host::transport::http_client(Duration::from_secs(10))
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `reqwest` is built without its `json` feature; parse bodies here.
pub trait JsonValue {
    #[allow(async_fn_in_trait)]
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("json body")
    }
}
