//! The TOML configuration: one file for server, store, application, channels.
//!
//! Loading happens in three passes so errors can name the offending key:
//! 1. parse the TOML;
//! 2. resolve `${ENV}` in every string (`$${` keeps a literal `${`) and every
//!    `<key>_file = "path"` into `<key>` = the file's contents (trailing newline
//!    removed) — how secrets stay out of the file;
//! 3. deserialise into typed structs that reject unknown keys, then [`Config::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use patchbay_core::capabilities::CapabilityOverrides;
use patchbay_core::retry::RetryPolicy;
use patchbay_plugin_sdk::adapter::Secret;
use patchbay_plugin_sdk::capabilities::SystemMessageKey;
use serde::Deserialize;

/// A configuration error with the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Dotted path of the key (`channels.web.settings.webhook_url`), or `(file)`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where messages are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// The threads parsing, delivering and sending.
    #[serde(default)]
    pub workers: WorkersConfig,
    /// The 0.1 form of one `webhook` upstream, still accepted: it is the
    /// upstream named `application`.
    #[serde(default)]
    application: Option<ApplicationConfig>,
    /// What sits behind Patchbay, by name: the business application's
    /// webhook, or a contact-centre platform. Each channel names one.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamSection>,
    /// Every call to providers: sends, lookups while parsing, tokens, keys.
    #[serde(default)]
    pub providers: ProvidersConfig,
    /// The 0.1 name of `[providers]`, kept only to say so.
    #[serde(default, rename = "outbound")]
    renamed_outbound: Option<toml::Value>,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Channel instances by id; the id is the `{channel}` in URLs.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSection>,
    /// Where adapter libraries may be loaded from.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Adapter libraries to load (`[[plugin]]`), in order.
    #[serde(default, rename = "plugin")]
    pub plugin_libraries: Vec<PluginEntry>,
    /// The admin console; off without it.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
}

/// `[admin]`: the console at `/admin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// What an operator types to log in (at least 16 characters; use
    /// `${ENV}` or `key_file`).
    pub key: Secret,
    /// How long a login lasts, in hours.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
}

fn default_session_hours() -> u64 {
    12
}

/// `[plugins]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// The only directories libraries are loaded from (relative to the config
    /// file). Keep them writable by the operator alone: loading a library runs
    /// its code.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
}

/// `[[plugin]]`: one adapter library.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// The library file, inside one of `plugins.dirs` (relative to the config file).
    pub path: PathBuf,
    /// The file's expected SHA-256 (hex); a different file is refused.
    pub sha256: Option<String>,
    /// The adapter id channels use (`adapter = "..."`); defaults to the
    /// manifest's id. Needed when that id is already taken, e.g. to run a
    /// compiled-in adapter's library build next to it.
    pub name: Option<String>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The public base URL providers call (behind a proxy, the proxy's URL).
    /// Defaults to `http://<listen address>`.
    pub public_url: Option<String>,
    /// Largest accepted request body in bytes; larger bodies get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Seconds to finish in-flight requests and work after SIGTERM or
    /// Ctrl-C; connections still open then are closed.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Connections open at once; more wait until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Milliseconds to receive a request's headers, from the connection's
    /// opening or the previous response: idle keep-alive connections close
    /// after it too.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    /// Milliseconds to receive a request's body and answer it; later → 408.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_grace() -> u64 {
    30
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_timeout() -> u64 {
    10_000
}
fn default_request_timeout() -> u64 {
    30_000
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            public_url: None,
            max_body_bytes: default_max_body(),
            shutdown_grace_secs: default_grace(),
            max_connections: default_max_connections(),
            header_timeout_ms: default_header_timeout(),
            request_timeout_ms: default_request_timeout(),
        }
    }
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite database file (created if missing). One Patchbay process
    /// per file. Not used when `url` is set.
    #[serde(default = "default_db")]
    pub path: PathBuf,
    /// A PostgreSQL database shared by several replicas:
    /// `postgres://user:password@host:5432/patchbay` (give the password with
    /// `${ENV}` or the whole URL with `url_file`). Unset: SQLite at `path`.
    #[serde(default)]
    pub url: Option<Secret>,
    /// Most PostgreSQL connections one replica keeps open for its requests
    /// and workers (two more: the parser's and the listener's).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Most webhooks committed in one transaction.
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Rows of workers' writes (claims, completions) each transaction takes
    /// beside the acknowledgements waiting: larger favours delivering, smaller
    /// favours accepting.
    #[serde(default = "default_background_rows")]
    pub background_rows_per_turn: usize,
    /// Replaced by `background_rows_per_turn`; accepted and ignored (a warning
    /// at start says so).
    #[serde(default)]
    pub background_write_delay_ms: Option<u64>,
    /// How long a worker may hold a job before another may take it, in seconds.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// How long finished jobs are kept (their dedupe keys catch provider
    /// redeliveries meanwhile), in hours; 0 keeps them forever. Dead letters
    /// are always kept.
    #[serde(default = "default_keep_done")]
    pub keep_done_hours: u64,
}

fn default_db() -> PathBuf {
    PathBuf::from("patchbay.db")
}
fn default_pool_size() -> usize {
    16
}
fn default_batch() -> usize {
    512
}
fn default_background_rows() -> usize {
    128
}
fn default_keep_done() -> u64 {
    72
}
fn default_lease() -> u64 {
    60
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_db(),
            url: None,
            pool_size: default_pool_size(),
            max_batch: default_batch(),
            background_rows_per_turn: default_background_rows(),
            background_write_delay_ms: None,
            lease_secs: default_lease(),
            keep_done_hours: default_keep_done(),
        }
    }
}

/// `[workers]`: the threads that parse webhooks, deliver to upstreams and
/// send to providers, apart from the server's (see `workers/threads.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// How many threads (default: one per core).
    #[serde(default = "default_worker_threads")]
    pub threads: usize,
    /// How much lower than the server's their scheduling priority is, as a
    /// Linux `nice` increment (0–19; 0: the same). Higher favours
    /// acknowledging over delivering when the cores are all busy.
    #[serde(default = "default_worker_nice")]
    pub nice: i32,
}

fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}
fn default_worker_nice() -> i32 {
    crate::workers::threads::NICE
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            threads: default_worker_threads(),
            nice: default_worker_nice(),
        }
    }
}

/// `[upstreams.<name>]`: one application or platform behind Patchbay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// `webhook` (Patchbay's own signed webhook and API) or a connector's
    /// kind (`genesys-3pm`, `genesys-open-messaging`).
    pub kind: String,
    /// `webhook`: where canonical messages and receipts are POSTed.
    pub webhook_url: Option<String>,
    /// `webhook`: the HMAC key for `X-Hub-Signature` (or `secret_file`).
    pub secret: Option<Secret>,
    /// `webhook`: keys accepted on the application API for this upstream's
    /// channels (`Authorization: Bearer <key>`).
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Connector settings, passed to the connector as JSON.
    #[serde(default)]
    pub settings: toml::Table,
    /// Connector secrets by name (use `<name>_file` or `${ENV}`).
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// Per-request timeout in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Deliveries in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retry schedule for 5xx, 429 and timeouts.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Registers the upstream's channels with the platform at start, as
    /// `patchbay upstreams sync` does without `--widen` (platforms that keep
    /// a copy of each channel: eGain).
    #[serde(default)]
    pub sync_on_start: bool,
    /// Where its keys are written in the file, for errors: `upstreams.<name>`,
    /// or `application` for the 0.1 table.
    #[serde(skip)]
    pub config_key: String,
}

/// The name a 0.1 `[application]` table's upstream gets.
pub const LEGACY_UPSTREAM: &str = "application";

/// The kind of Patchbay's own webhook and API.
pub const WEBHOOK_KIND: &str = "webhook";

/// The kind whose agent is a person in the admin console (for trials).
pub const CONSOLE_KIND: &str = "console";

/// `[application]` (0.1): the same as `[upstreams.application]` of kind `webhook`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplicationConfig {
    /// Where canonical messages and receipts are POSTed.
    pub webhook_url: String,
    /// HMAC key for `X-Hub-Signature` / `X-Hub-Signature-256` (or `secret_file`).
    pub secret: Secret,
    /// Keys accepted on the application API (`Authorization: Bearer <key>`).
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Per-request timeout in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Deliveries in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retry schedule for 5xx, 429 and timeouts.
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn default_timeout() -> u64 {
    10_000
}
fn default_concurrency() -> usize {
    32
}

/// `[providers]`: how Patchbay calls providers' APIs — outbound sends, and
/// the lookups, token and key requests inbound parsing makes too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Per-request timeout towards providers, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Sends in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retry schedule for transient and rate-limited failures.
    #[serde(default)]
    pub retry: RetryPolicy,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            timeout_ms: default_timeout(),
            concurrency: default_concurrency(),
            retry: RetryPolicy::default(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `patchbay_host=debug`; `RUST_LOG` wins.
    pub level: Option<String>,
}

/// Log output format.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[channels.<id>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// The adapter id (`client-channel`).
    pub adapter: String,
    /// Adapter settings, passed to the adapter as JSON.
    #[serde(default)]
    pub settings: toml::Table,
    /// Adapter secrets by name (use `<name>_file` or `${ENV}`).
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// The upstream its customers' messages go to (a name under
    /// `[upstreams]`); may be left out when there is only one.
    pub upstream: Option<String>,
    /// Narrowing of the adapter's declared capabilities.
    #[serde(default)]
    pub capabilities: CapabilityOverrides,
    /// Language of system messages.
    #[serde(default = "default_language")]
    pub language: String,
    /// System message texts by language, overriding the defaults.
    #[serde(default)]
    pub system_messages: BTreeMap<String, BTreeMap<SystemMessageKey, String>>,
}

fn default_language() -> String {
    "en-US".into()
}

impl Config {
    /// Reads, resolves and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("(file)", format!("cannot read {}: {e}", path.display()))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base, &|name| std::env::var(name).ok())
    }

    /// Parses config text; relative `*_file` paths resolve against `base`.
    /// No error message carries a secret: values read from files and the
    /// environment, and every string under a key that names a secret, are
    /// replaced by `***` in it, and syntax errors point at a line and column
    /// instead of quoting the line.
    pub fn parse(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| syntax_error(text, &e))?;
        let read = std::cell::RefCell::new(Vec::new());
        let tracking_env = |name: &str| {
            let value = env(name);
            if let Some(value) = &value {
                read.borrow_mut().push(value.clone());
            }
            value
        };
        let mut sensitive = Sensitive::default();
        resolve_table(&mut table, "", base, &tracking_env, &mut sensitive.0)
            .map_err(|e| sensitive.redact(e))?;
        sensitive.0.extend(read.into_inner());
        sensitive.collect(&table, false);
        Config::from_table(table, base).map_err(|e| sensitive.redact(e))
    }

    fn from_table(table: toml::Table, base: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::new(
                    if key == "." { "(root)".into() } else { key },
                    e.inner().to_string(),
                )
            })?;
        let mut config = config;
        config.resolve_plugin_paths(base);
        config.adopt_application()?;
        config.validate()?;
        Ok(config)
    }

    /// Makes a 0.1 `[application]` the `webhook` upstream named `application`,
    /// and gives each upstream its key for errors.
    fn adopt_application(&mut self) -> Result<(), ConfigError> {
        for (name, upstream) in &mut self.upstreams {
            upstream.config_key = format!("upstreams.{name}");
        }
        let Some(app) = self.application.take() else {
            return Ok(());
        };
        if self.upstreams.contains_key(LEGACY_UPSTREAM) {
            return Err(ConfigError::new(
                "application",
                "[upstreams.application] is given too; move [application]'s keys into it and remove [application]",
            ));
        }
        self.upstreams.insert(
            LEGACY_UPSTREAM.to_string(),
            UpstreamSection {
                kind: WEBHOOK_KIND.into(),
                webhook_url: Some(app.webhook_url),
                secret: Some(app.secret),
                api_keys: app.api_keys,
                settings: toml::Table::new(),
                secrets: BTreeMap::new(),
                timeout_ms: app.timeout_ms,
                concurrency: app.concurrency,
                retry: app.retry,
                sync_on_start: false,
                config_key: "application".into(),
            },
        );
        Ok(())
    }

    /// The upstream a channel sends to: its `upstream`, or the only one.
    pub fn upstream_of<'a>(&'a self, channel: &'a ChannelSection) -> Option<&'a str> {
        match &channel.upstream {
            Some(name) => Some(name.as_str()),
            None if self.upstreams.len() == 1 => self.upstreams.keys().next().map(String::as_str),
            None => None,
        }
    }

    /// Plugin paths are relative to the config file, like `*_file` secrets.
    fn resolve_plugin_paths(&mut self, base: &Path) {
        for dir in &mut self.plugins.dirs {
            *dir = base.join(&*dir);
        }
        for entry in &mut self.plugin_libraries {
            entry.path = base.join(&entry.path);
        }
    }

    /// Checks what types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.upstreams.is_empty() {
            return Err(ConfigError::new(
                "upstreams",
                "name what sits behind Patchbay: [upstreams.<name>] with a kind (or a 0.1 [application])",
            ));
        }
        for (name, upstream) in &self.upstreams {
            upstream.validate(name)?;
        }
        if self.renamed_outbound.is_some() {
            return Err(ConfigError::new(
                "outbound",
                "is now [providers] (it governs every call to providers, inbound lookups too); rename the table",
            ));
        }
        if self.providers.timeout_ms == 0 {
            return Err(ConfigError::new(
                "providers.timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.server.max_body_bytes == 0 {
            return Err(ConfigError::new(
                "server.max_body_bytes",
                "must be greater than 0",
            ));
        }
        check_retry("providers.retry", &self.providers.retry)?;
        // Zero would mean "never": refused rather than quietly read as 1.
        for (key, value) in [
            ("store.max_batch", self.store.max_batch as u64),
            (
                "store.background_rows_per_turn",
                self.store.background_rows_per_turn as u64,
            ),
            ("store.lease_secs", self.store.lease_secs),
            ("store.pool_size", self.store.pool_size as u64),
            ("providers.concurrency", self.providers.concurrency as u64),
            ("server.max_connections", self.server.max_connections as u64),
            ("server.header_timeout_ms", self.server.header_timeout_ms),
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            ("workers.threads", self.workers.threads as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if !(0..=19).contains(&self.workers.nice) {
            return Err(ConfigError::new(
                "workers.nice",
                "must be from 0 (the server's priority) to 19",
            ));
        }
        if let Some(level) = &self.log.level {
            check_log_filter(level)?;
        }
        if let Some(admin) = &self.admin {
            if admin.key.expose().len() < 16 {
                return Err(ConfigError::new(
                    "admin.key",
                    "must be at least 16 characters",
                ));
            }
            if admin.session_hours == 0 {
                return Err(ConfigError::new(
                    "admin.session_hours",
                    "must be at least 1",
                ));
            }
        }
        if self.admin.is_none()
            && let Some(console) = self.upstreams.values().find(|u| u.kind == CONSOLE_KIND)
        {
            return Err(ConfigError::new(
                format!("{}.kind", console.config_key),
                "a console upstream is answered in the admin console: set [admin] key",
            ));
        }
        if let Some(url) = &self.store.url {
            // The URL holds a password: the error never repeats it.
            let url = url.expose();
            let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
            if !postgres || url.parse::<tokio_postgres::Config>().is_err() {
                return Err(ConfigError::new(
                    "store.url",
                    "must be a postgres://user:password@host:port/database URL",
                ));
            }
        }
        if let Some(public) = &self.server.public_url
            && !(public.starts_with("http://") || public.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "server.public_url",
                "must be an http:// or https:// URL",
            ));
        }
        if !self.plugin_libraries.is_empty() && self.plugins.dirs.is_empty() {
            return Err(ConfigError::new(
                "plugins.dirs",
                "name the directories adapter libraries may be loaded from",
            ));
        }
        for (i, entry) in self.plugin_libraries.iter().enumerate() {
            if let Some(pin) = &entry.sha256
                && !(pin.len() == 64 && pin.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(ConfigError::new(
                    format!("plugin[{i}].sha256"),
                    "must be 64 hex digits (the output of `sha256sum`)",
                ));
            }
        }
        for (id, channel) in &self.channels {
            match &channel.upstream {
                Some(name) if !self.upstreams.contains_key(name) => {
                    return Err(ConfigError::new(
                        format!("channels.{id}.upstream"),
                        format!(
                            "no upstream is named {name:?}; the upstreams are {}",
                            self.upstreams
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                None if self.upstreams.len() > 1 => {
                    return Err(ConfigError::new(
                        format!("channels.{id}.upstream"),
                        format!(
                            "is required when there are several upstreams ({})",
                            self.upstreams
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                _ => {}
            }
            let ok = !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(ConfigError::new(
                    format!("channels.{id}"),
                    "channel ids may use only letters, digits, '-' and '_'",
                ));
            }
        }
        Ok(())
    }
}

impl UpstreamSection {
    /// Checks what types cannot; the connector checks its own settings.
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{}.{k}", self.config_key);
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(ConfigError::new(
                self.config_key.clone(),
                "upstream names may use only letters, digits, '-' and '_'",
            ));
        }
        if self.kind == WEBHOOK_KIND {
            let url = self.webhook_url.as_deref().map(reqwest::Url::parse);
            match url {
                None => return Err(ConfigError::new(key("webhook_url"), "is required")),
                Some(Ok(u)) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                Some(_) => {
                    return Err(ConfigError::new(
                        key("webhook_url"),
                        "must be an http:// or https:// URL",
                    ));
                }
            }
            match &self.secret {
                None => return Err(ConfigError::new(key("secret"), "is required")),
                Some(s) if s.expose().is_empty() => {
                    return Err(ConfigError::new(key("secret"), "must not be empty"));
                }
                Some(_) => {}
            }
            if let Some(i) = self.api_keys.iter().position(|k| k.expose().len() < 16) {
                return Err(ConfigError::new(
                    key(&format!("api_keys[{i}]")),
                    "must be at least 16 characters",
                ));
            }
            let extra = (self.settings.keys().map(|k| format!("settings.{k}")))
                .chain(self.secrets.keys().map(|k| format!("secrets.{k}")))
                .next();
            if let Some(extra) = extra {
                return Err(ConfigError::new(
                    key(&extra),
                    "a webhook upstream takes webhook_url, secret and api_keys, not connector settings",
                ));
            }
        } else {
            if self.kind == CONSOLE_KIND
                && let Some(extra) = (self.settings.keys().map(|k| format!("settings.{k}")))
                    .chain(self.secrets.keys().map(|k| format!("secrets.{k}")))
                    .next()
            {
                return Err(ConfigError::new(
                    key(&extra),
                    "a console upstream takes no settings or secrets",
                ));
            }
            for (field, given) in [
                ("webhook_url", self.webhook_url.is_some()),
                ("secret", self.secret.is_some()),
                ("api_keys", !self.api_keys.is_empty()),
            ] {
                if given {
                    return Err(ConfigError::new(
                        key(field),
                        format!(
                            "is for kind \"webhook\"; a {} upstream is configured under settings and secrets",
                            self.kind
                        ),
                    ));
                }
            }
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::new(
                key("timeout_ms"),
                "must be greater than 0",
            ));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::new(key("concurrency"), "must be at least 1"));
        }
        check_retry(&key("retry"), &self.retry)
    }
}

fn check_retry(name: &str, policy: &RetryPolicy) -> Result<(), ConfigError> {
    if policy.max_attempts == 0 {
        return Err(ConfigError::new(
            format!("{name}.max_attempts"),
            "must be at least 1",
        ));
    }
    if policy.base_delay_ms > policy.max_delay_ms {
        return Err(ConfigError::new(
            format!("{name}.base_delay_ms"),
            "must not be greater than max_delay_ms",
        ));
    }
    Ok(())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A `log.level` must say something: each directive a level (`info`) or
/// `target=level`. A bare word that is not a level (a typo such as `inf`)
/// would be read as a target name and silence everything else.
fn check_log_filter(filter: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let is_level = |s: &str| LEVELS.contains(&s.trim().to_ascii_lowercase().as_str());
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !is_level(level) {
            return Err(ConfigError::new(
                "log.level",
                format!(
                    "{directive:?} names no level; use one of {} or target=level",
                    LEVELS.join(", ")
                ),
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| ConfigError::new("log.level", e.to_string()))
}

/// A TOML syntax error as a line and column, without the source line (which
/// may hold a secret).
fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return ConfigError::new("(syntax)", message);
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::new(
        "(syntax)",
        format!("line {line}, column {column}: {message}"),
    )
}

/// Values that may be secrets, to keep out of error messages.
#[derive(Default)]
struct Sensitive(Vec<String>);

impl Sensitive {
    /// Adds every string under a key that names a secret (`secrets`,
    /// `secret`, `api_keys`, `*password*`, `*token*`, …).
    fn collect(&mut self, table: &toml::Table, inside_secret: bool) {
        for (key, value) in table {
            let secret = inside_secret || names_a_secret(key);
            self.collect_value(value, secret);
        }
    }

    fn collect_value(&mut self, value: &toml::Value, secret: bool) {
        match value {
            toml::Value::String(s) if secret => self.0.push(s.clone()),
            toml::Value::Array(items) => items.iter().for_each(|v| self.collect_value(v, secret)),
            toml::Value::Table(t) => self.collect(t, secret),
            _ => {}
        }
    }

    fn redact(&self, mut e: ConfigError) -> ConfigError {
        for value in &self.0 {
            // Very short values would blot out ordinary words.
            if value.len() >= 4 {
                e.message = e.message.replace(value.as_str(), "***");
                e.key = e.key.replace(value.as_str(), "***");
            }
        }
        e
    }
}

fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "password", "token", "api_key", "credential"]
        .iter()
        .any(|word| key.contains(word))
}

fn resolve_table(
    table: &mut toml::Table,
    prefix: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    read: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let file_keys: Vec<String> = table
        .keys()
        .filter(|k| k.ends_with("_file") && table[k.as_str()].is_str())
        .cloned()
        .collect();
    for (key, value) in table.iter_mut() {
        resolve_value(value, &join(prefix, key), base, env, read)?;
    }
    for file_key in file_keys {
        let target = file_key.trim_end_matches("_file").to_string();
        let path_key = join(prefix, &file_key);
        if table.contains_key(&target) {
            return Err(ConfigError::new(
                path_key,
                format!("give either {target} or {file_key}, not both"),
            ));
        }
        let Some(toml::Value::String(file)) = table.remove(&file_key) else {
            continue;
        };
        let path = base.join(&file);
        let contents = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new(&path_key, format!("cannot read {}: {e}", path.display()))
        })?;
        let contents = contents.strip_suffix('\n').unwrap_or(&contents);
        let contents = contents.strip_suffix('\r').unwrap_or(contents);
        read.push(contents.to_string());
        table.insert(target, toml::Value::String(contents.to_string()));
    }
    Ok(())
}

fn resolve_value(
    value: &mut toml::Value,
    key: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    read: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => *s = interpolate(s, key, env)?,
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_value(item, &format!("{key}[{i}]"), base, env, read)?;
            }
        }
        toml::Value::Table(t) => resolve_table(t, key, base, env, read)?,
        _ => {}
    }
    Ok(())
}

/// Replaces `${NAME}` with the variable's value; `$${` stays a literal `${`.
fn interpolate(
    s: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| ConfigError::new(key, "unterminated ${ in value"))?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::new(
                    key,
                    format!("invalid variable name {name:?}"),
                ));
            }
            let value = env(name).ok_or_else(|| {
                ConfigError::new(key, format!("environment variable {name} is not set"))
            })?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [application]
        webhook_url = "http://127.0.0.1:9000/hook"
        secret = "${APP_SECRET}"
        api_keys = ["0123456789abcdef"]
        [channels.web]
        adapter = "client-channel"
        settings = { webhook_url = "http://127.0.0.1:9100/out" }
        secrets = { signing_secret_file = "secret.txt" }
        [channels.web.capabilities.outbound]
        max_text_length = 160
        rich_types = ["buttons"]
    "#;

    fn env(name: &str) -> Option<String> {
        (name == "APP_SECRET").then(|| "from-env".to_string())
    }

    #[test]
    fn env_and_files_resolve() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("secret.txt"), "from-file\n").expect("write");
        let config = Config::parse(MINIMAL, dir.path(), &env).expect("valid");
        let app = &config.upstreams[LEGACY_UPSTREAM];
        assert_eq!(app.secret.as_ref().map(Secret::expose), Some("from-env"));
        assert_eq!(
            config.channels["web"].secrets["signing_secret"].expose(),
            "from-file"
        );
        assert_eq!(
            config.channels["web"].capabilities.outbound.max_text_length,
            Some(160)
        );
        // Store defaults: durable group commit with a bounded retention window.
        let store = &config.store;
        assert_eq!(
            (
                store.max_batch,
                store.background_rows_per_turn,
                store.keep_done_hours
            ),
            (512, 128, 72)
        );
    }

    #[test]
    fn the_example_configs_load() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let env = |name: &str| match name {
            "PGPASSWORD" => Some("pw".to_string()),
            "APP_WEBHOOK_URL" => Some("http://127.0.0.1:9000/patchbay".to_string()),
            _ => None,
        };
        for file in ["patchbay.toml", "replicas/patchbay.toml"] {
            let path = examples.join(file);
            let text = std::fs::read_to_string(&path).expect("example");
            let config = Config::parse(&text, path.parent().unwrap(), &env)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(config.store.url.is_some(), file.starts_with("replicas"));
        }
    }

    #[test]
    fn a_short_admin_key_is_refused_without_repeating_it() {
        let config = MINIMAL.replace("${APP_SECRET}", "app-secret").replace(
            "signing_secret_file = \"secret.txt\"",
            "signing_secret = \"x\"",
        );
        let text = format!("[admin]\nkey = \"s3cr3t\"\n{config}");
        let e = Config::parse(&text, Path::new("."), &|_| None).expect_err("short");
        assert_eq!(e.key, "admin.key");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let text = format!("[admin]\nkey = \"0123456789abcdef\"\n{config}");
        let config = Config::parse(&text, Path::new("."), &|_| None).expect("a long key");
        assert_eq!(config.admin.map(|a| a.session_hours), Some(12));
    }

    #[test]
    fn a_bad_store_url_is_refused_without_repeating_it() {
        let config = MINIMAL.replace("${APP_SECRET}", "app-secret").replace(
            "signing_secret_file = \"secret.txt\"",
            "signing_secret = \"x\"",
        );
        for url in ["mysql://u:s3cr3t@h/db", "postgres://u:s3cr3t@h:notaport/db"] {
            let text = format!("[store]\nurl = \"{url}\"\n{config}");
            let e = Config::parse(&text, Path::new("."), &|_| None).expect_err(url);
            assert_eq!(e.key, "store.url");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn no_config_error_contains_a_secret_however_it_was_supplied() {
        const SECRET: &str = "s3cr3t-Value-0123456789";
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("secret.txt"), "x").expect("write");
        std::fs::write(dir.path().join("key.txt"), format!("{SECRET}\n")).expect("write");
        let env = |name: &str| (name == "KEY").then(|| SECRET.to_string());
        let base = MINIMAL.replace("${APP_SECRET}", "app-secret");
        let list = "api_keys = [\"0123456789abcdef\"]";
        // Each mistake, with the secret given literally, through ${ENV} and
        // through a *_file.
        let mistakes = [
            // A string where a list belongs.
            base.replace(list, &format!("api_keys = \"{SECRET}\"")),
            base.replace(list, "api_keys = \"${KEY}\""),
            base.replace(list, "api_keys_file = \"key.txt\""),
            // Too short to be a key is checked by length, named by index.
            base.replace(list, &format!("api_keys = [\"{SECRET}\", \"short\"]")),
            // A number where a string belongs, next to the secret.
            base.replace(
                "secret = \"app-secret\"",
                &format!("secret = \"{SECRET}\"\ntimeout_ms = \"{SECRET}\""),
            ),
            base.replace(
                "secret = \"app-secret\"",
                "secret = \"${KEY}\"\ntimeout_ms = \"${KEY}\"",
            ),
            // A channel secret of the wrong shape.
            base.replace(
                "secrets = { signing_secret_file = \"secret.txt\" }",
                &format!("secrets = {{ signing_secret = [\"{SECRET}\"] }}"),
            ),
            base.replace(
                "secrets = { signing_secret_file = \"secret.txt\" }",
                "secrets = { signing_secret = { value = \"${KEY}\" } }",
            ),
            // A syntax error on the secret's line.
            base.replace(list, &format!("api_keys = [\"{SECRET}\"")),
            base.replace("secret = \"app-secret\"", &format!("secret = \"{SECRET}")),
            base.replace("secret = \"app-secret\"", &format!("secret = {SECRET}")),
        ];
        for (i, text) in mistakes.iter().enumerate() {
            let err = Config::parse(text, dir.path(), &env).expect_err("a mistake");
            let shown = err.to_string();
            assert!(
                !shown.contains(SECRET),
                "mistake {i} shows the secret: {shown}"
            );
            assert!(
                !shown.contains("s3cr3t"),
                "mistake {i} shows part of it: {shown}"
            );
        }
    }

    #[test]
    fn syntax_errors_point_at_a_line_and_column() {
        let err = Config::parse("[server]\nlisten = \n", Path::new("."), &env).expect_err("syntax");
        assert_eq!(err.key, "(syntax)");
        assert!(err.message.starts_with("line 2, column"), "{err}");
    }

    #[test]
    fn errors_name_the_offending_key() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("secret.txt"), "x").expect("write");
        let table = [
            (
                MINIMAL.replace("${APP_SECRET}", "${NOPE}"),
                "application.secret",
                "NOPE is not set",
            ),
            (
                MINIMAL.replace("secret.txt", "missing.txt"),
                "channels.web.secrets.signing_secret_file",
                "cannot read",
            ),
            (
                MINIMAL.replace("max_text_length", "max_txt_length"),
                "channels.web.capabilities.outbound.max_txt_length",
                "unknown field",
            ),
            (
                MINIMAL.replace("\"buttons\"", "\"hologram\""),
                "channels.web.capabilities.outbound.rich_types[0]",
                "unknown variant",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:9000/hook", "ftp://x"),
                "application.webhook_url",
                "http",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:9000/hook", "http://"),
                "application.webhook_url",
                "http",
            ),
            (
                MINIMAL.replace("0123456789abcdef", "short"),
                "application.api_keys[0]",
                "16",
            ),
            (
                MINIMAL
                    .replace("[channels.web]", "[channels.\"we b\"]")
                    .replace("channels.web.", "channels.\"we b\"."),
                "channels.we b",
                "letters",
            ),
            (
                format!("{MINIMAL}\n[outbound]\ntimeout_ms = 5000\n"),
                "outbound",
                "is now [providers]",
            ),
            (
                format!("{MINIMAL}\n[providers]\nconcurrency = 0\n"),
                "providers.concurrency",
                "at least 1",
            ),
            (
                format!("{MINIMAL}\n[log]\nlevel = \"inf\"\n"),
                "log.level",
                "names no level",
            ),
            (
                format!("{MINIMAL}\n[log]\nlevel = \"patchbay_host=loud\"\n"),
                "log.level",
                "names no level",
            ),
            (
                format!("{MINIMAL}\n[bogus]\n"),
                "bogus",
                "unknown field `bogus`",
            ),
            (
                format!("{MINIMAL}\n[[plugin]]\npath = \"libx.so\"\n"),
                "plugins.dirs",
                "directories",
            ),
            (
                format!(
                    "{MINIMAL}\n[plugins]\ndirs = [\".\"]\n[[plugin]]\npath = \"libx.so\"\nsha256 = \"abc\"\n"
                ),
                "plugin[0].sha256",
                "64 hex digits",
            ),
            ("[application\n".to_string(), "(syntax)", ""),
            (
                format!("[store]\nlease_secs = 0\n{MINIMAL}"),
                "store.lease_secs",
                "at least 1",
            ),
            (
                format!("[store]\nbackground_rows_per_turn = 0\n{MINIMAL}"),
                "store.background_rows_per_turn",
                "at least 1",
            ),
            (
                format!("[workers]\nthreads = 0\n{MINIMAL}"),
                "workers.threads",
                "at least 1",
            ),
            (
                format!("[workers]\nnice = 20\n{MINIMAL}"),
                "workers.nice",
                "from 0",
            ),
            (
                format!("[workers]\nnice = -1\n{MINIMAL}"),
                "workers.nice",
                "from 0",
            ),
            (
                MINIMAL.replace("api_keys = [", "concurrency = 0\n        api_keys = ["),
                "application.concurrency",
                "at least 1",
            ),
            (
                MINIMAL.replace(
                    "api_keys = [",
                    "retry = { base_delay_ms = 5000, max_delay_ms = 1000 }\n        api_keys = [",
                ),
                "application.retry.base_delay_ms",
                "max_delay_ms",
            ),
            (
                format!("{MINIMAL}\n[upstreams.genesys]\nkind = \"genesys-3pm\"\n"),
                "channels.web.upstream",
                "several upstreams",
            ),
            (
                MINIMAL.replace(
                    "adapter = \"client-channel\"",
                    "adapter = \"client-channel\"\n        upstream = \"crm\"",
                ),
                "channels.web.upstream",
                "no upstream is named \"crm\"",
            ),
            (
                format!("{MINIMAL}\n[upstreams.application]\nkind = \"webhook\"\n"),
                "application",
                "move [application]",
            ),
            (
                MINIMAL.replace(
                    "[application]",
                    "[upstreams.app]\n        kind = \"genesys-3pm\"",
                ),
                "upstreams.app.webhook_url",
                "is for kind \"webhook\"",
            ),
            (
                MINIMAL.replace(
                    "[application]",
                    "[upstreams.app]\n        kind = \"webhook\"\n        settings = { a = 1 }",
                ),
                "upstreams.app.settings.a",
                "not connector settings",
            ),
            (
                "[channels.web]\nadapter = \"client-channel\"\n".to_string(),
                "upstreams",
                "name what sits behind Patchbay",
            ),
        ];
        for (text, key, message) in table {
            let err = Config::parse(&text, dir.path(), &env).expect_err(key);
            assert_eq!(err.key, key, "{err}");
            assert!(err.message.contains(message), "{err}");
        }
    }

    #[test]
    fn upstreams_are_named_and_channels_pick_theirs() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("secret.txt"), "x").expect("write");
        let text = MINIMAL
            .replace("[application]", "[upstreams.app]\n        kind = \"webhook\"")
            .replace(
                "[channels.web]",
                "[upstreams.genesys]\n        kind = \"genesys-3pm\"\n        secrets = { signing_secret = \"s\" }\n        [channels.web]\n        upstream = \"genesys\"",
            );
        let config = Config::parse(&text, dir.path(), &env).expect("valid");
        assert_eq!(config.upstreams.len(), 2);
        assert_eq!(config.upstreams["genesys"].config_key, "upstreams.genesys");
        assert_eq!(config.upstream_of(&config.channels["web"]), Some("genesys"));
        // The 0.1 table is the webhook upstream named `application`, the only one.
        let legacy = Config::parse(MINIMAL, dir.path(), &env).expect("valid");
        assert_eq!(legacy.upstreams[LEGACY_UPSTREAM].kind, WEBHOOK_KIND);
        assert_eq!(
            legacy.upstream_of(&legacy.channels["web"]),
            Some(LEGACY_UPSTREAM)
        );
    }

    #[test]
    fn plugin_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("secret.txt"), "x").expect("write");
        let text = format!(
            "{MINIMAL}\n[plugins]\ndirs = [\"plugins\", \"/opt/pb\"]\n[[plugin]]\npath = \"plugins/libx.so\"\nname = \"x2\"\n"
        );
        let config = Config::parse(&text, dir.path(), &env).expect("valid");
        assert_eq!(config.plugins.dirs[0], dir.path().join("plugins"));
        assert_eq!(config.plugins.dirs[1], Path::new("/opt/pb"));
        let entry = &config.plugin_libraries[0];
        assert_eq!(entry.path, dir.path().join("plugins/libx.so"));
        assert_eq!(entry.name.as_deref(), Some("x2"));
    }

    #[test]
    fn dollar_escapes_and_secrets_stay_hidden() {
        let s = interpolate("a$${b}c$d", "k", &env).expect("ok");
        assert_eq!(s, "a${b}c$d");
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("secret.txt"), "from-file").expect("write");
        let config = Config::parse(MINIMAL, dir.path(), &env).expect("valid");
        let debug = format!("{config:?}");
        assert!(!debug.contains("from-env") && !debug.contains("from-file"));
    }
}
