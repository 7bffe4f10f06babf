//! Submitting adapters' SMTP request descriptions with lettre (rustls + ring).
//!
//! One pooled transport per relay, built on first use. The relay's reply code
//! goes back to the adapter as [`ProviderResponse::status`] (250 when accepted,
//! 4xx/5xx when refused) so the adapter classifies it like an HTTP answer;
//! failing to reach or talk to the relay at all is transient.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncTransport, Tokio1Executor};
use patchbay_plugin_sdk::adapter::{ProviderResponse, SmtpRelay, SmtpRequestSpec, SmtpSecurity};
use patchbay_plugin_sdk::error::AdapterError;

type Relay = AsyncSmtpTransport<Tokio1Executor>;

/// SMTP submission with connection reuse.
#[derive(Clone)]
pub struct SmtpSender {
    timeout: Duration,
    relays: Arc<Mutex<HashMap<RelayKey, Relay>>>,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What makes two relays the same connection pool (the password included, so
/// a rotated secret gets fresh connections).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RelayKey {
    host: String,
    port: u16,
    security: String,
    username: Option<String>,
    password: Option<String>,
    hello_name: Option<String>,
}

impl From<&SmtpRelay> for RelayKey {
    fn from(r: &SmtpRelay) -> Self {
        RelayKey {
            host: r.host.clone(),
            port: r.port,
            security: format!("{:?}", r.security),
            username: r.username.clone(),
            password: r.password.as_ref().map(|p| p.expose().to_string()),
            hello_name: r.hello_name.clone(),
        }
    }
}

impl SmtpSender {
    /// A sender whose connections and commands time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        SmtpSender {
            timeout,
            relays: Arc::default(),
        }
    }

    /// Submits one message and reports the relay's answer.
    pub async fn send(&self, spec: SmtpRequestSpec) -> Result<ProviderResponse, AdapterError> {
        let envelope = envelope(&spec)?;
        let relay = self.relay(&spec.relay)?;
        let server = format!("{}:{}", spec.relay.host, spec.relay.port);
        match relay.send_raw(&envelope, &spec.message).await {
            Ok(response) => Ok(ProviderResponse {
                status: u16::from(response.code()),
                headers: Vec::new(),
                body: response
                    .message()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into_bytes(),
            }),
            Err(e) => match e.status() {
                // The relay answered, and refused: the adapter classifies it.
                Some(code) => Ok(ProviderResponse {
                    status: u16::from(code),
                    headers: Vec::new(),
                    body: e
                        .source()
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                        .into_bytes(),
                }),
                // lettre's message includes its sources, never credentials.
                None => Err(AdapterError::transient(format!("SMTP relay {server}: {e}"))),
            },
        }
    }

    fn relay(&self, spec: &SmtpRelay) -> Result<Relay, AdapterError> {
        let key = RelayKey::from(spec);
        let mut relays = self
            .relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(relay) = relays.get(&key) {
            return Ok(relay.clone());
        }
        crate::transport::install_crypto_provider();
        let bad = |e: lettre::transport::smtp::Error| {
            AdapterError::permanent(format!("SMTP relay {:?}: {e}", spec.host))
        };
        let mut builder = match spec.security {
            SmtpSecurity::Starttls => Relay::starttls_relay(&spec.host).map_err(bad)?,
            SmtpSecurity::Tls => Relay::relay(&spec.host).map_err(bad)?,
            SmtpSecurity::None => Relay::builder_dangerous(&spec.host),
        }
        .port(spec.port)
        .timeout(Some(self.timeout));
        if let (Some(user), Some(password)) = (&spec.username, &spec.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        if let Some(name) = &spec.hello_name {
            builder = builder.hello_name(ClientId::Domain(name.clone()));
        }
        let relay = builder.build();
        relays.insert(key, relay.clone());
        Ok(relay)
    }
}

fn envelope(spec: &SmtpRequestSpec) -> Result<Envelope, AdapterError> {
    let address = |text: &str| {
        text.parse::<Address>().map_err(|e| {
            AdapterError::permanent(format!("invalid envelope address {text:?}: {e}"))
                .with_reason(patchbay_plugin_sdk::message::ReasonCode::INVALID_DESTINATION)
        })
    };
    let from = address(&spec.from)?;
    let to = spec
        .to
        .iter()
        .map(|t| address(t))
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to)
        .map_err(|e| AdapterError::permanent(format!("invalid envelope: {e}")))
}
