//! What an adapter instance is configured with: settings, secrets, and the
//! errors that name a bad one.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

/// Everything an adapter instance is configured with.
#[derive(Clone, Serialize, Deserialize, Default)]
pub struct ChannelConfig {
    /// The channel instance id.
    pub channel: String,
    /// The public base URL of this channel's webhook, e.g.
    /// `https://gw.example.com/webhooks/support`, for signatures over URLs and
    /// for status callbacks.
    pub webhook_url: String,
    /// Adapter-specific settings (the `settings` table of the channel config).
    #[serde(default)]
    pub settings: Value,
    /// Secrets by name (already resolved from `*_file` and `${ENV}` by the host).
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("channel", &self.channel)
            .field("webhook_url", &self.webhook_url)
            .field("settings", &self.settings)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ChannelConfig {
    /// The secret `name`, or a config error saying it is missing or blank.
    pub fn secret(&self, name: &str) -> Result<&Secret, ConfigError> {
        let key = || format!("secrets.{name}");
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| ConfigError::new(key(), "is required"))?;
        if secret.expose().trim().is_empty() {
            return Err(ConfigError::new(key(), "must not be empty"));
        }
        Ok(secret)
    }

    /// Deserialises `settings` into the adapter's own settings type, naming the
    /// offending key on error.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = if self.settings.is_null() {
            Value::Object(Default::default())
        } else {
            self.settings.clone()
        };
        serde_json::from_value(value).map_err(|e| ConfigError::new("settings", e.to_string()))
    }
}

/// A secret value. It never prints (`Debug` shows `Secret(***)`, and there is
/// no `Display`), and two secrets compare in constant time, so comparing a
/// token a caller sent with the configured one leaks nothing through timing.
///
/// ```
/// use patchbay_plugin_sdk::adapter::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret(***)");
/// assert_eq!(s.expose(), "hunter2");
/// assert_eq!(s, Secret::new("hunter2"));
/// assert_ne!(s, Secret::new("hunter3"));
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        // Length is not secret; the bytes are compared without an early exit.
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configuration error: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The offending key, relative to the channel's table.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A config error at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Checks that the setting `key` holds an `http://` or `https://` URL.
    ///
    /// ```
    /// use patchbay_plugin_sdk::adapter::ConfigError;
    /// assert!(ConfigError::check_http_url("settings.api", "https://api.example").is_ok());
    /// assert_eq!(ConfigError::check_http_url("settings.api", "ftp://x").unwrap_err().key, "settings.api");
    /// ```
    pub fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(())
        } else {
            Err(ConfigError::new(key, "must be an http:// or https:// URL"))
        }
    }

    /// Checks that each `(key, value)` setting holds more than whitespace.
    ///
    /// ```
    /// use patchbay_plugin_sdk::adapter::ConfigError;
    /// assert!(ConfigError::check_not_empty([("settings.id", "a-1")]).is_ok());
    /// assert_eq!(ConfigError::check_not_empty([("settings.id", "a"), ("settings.key", " ")]).unwrap_err().key, "settings.key");
    /// ```
    pub fn check_not_empty<'a>(
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), ConfigError> {
        match settings.into_iter().find(|(_, v)| v.trim().is_empty()) {
            Some((key, _)) => Err(ConfigError::new(key, "must not be empty")),
            None => Ok(()),
        }
    }
}
