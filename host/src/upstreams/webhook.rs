//! Delivering canonical messages to the application's webhook.
//!
//! Each POST carries the message as JSON, signed over the exact body:
//! `X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, body)>` and
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, plus the trace
//! headers, `X-Patchbay-Message-Id` and `X-Patchbay-Attempt`.
//! 2xx is delivered; 5xx, 408, 429 and network failures or timeouts are retried;
//! any other 4xx means the application refuses the message: it is dead-lettered.

use patchbay_plugin_sdk::adapter::{Secret, retry_after_ms};
use patchbay_plugin_sdk::message::TraceContext;
use patchbay_plugin_sdk::signature::{hmac_sha1_hex, hmac_sha256_hex};

use crate::clock::Clock;
use crate::transport::{error_chain, host_of};

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppOutcome {
    /// 2xx.
    Delivered,
    /// Try again (after `retry_after_ms` if the application said so).
    Retry {
        /// The application's `Retry-After`.
        retry_after_ms: Option<u64>,
        /// Why, for the job's last error.
        reason: String,
    },
    /// The application refused the message; do not retry.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Posts to the application webhook.
#[derive(Debug, Clone)]
pub struct AppClient {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Secret,
    clock: Clock,
}

impl AppClient {
    /// A client for `url`, signing with `secret`.
    pub fn new(client: reqwest::Client, url: reqwest::Url, secret: Secret, clock: Clock) -> Self {
        AppClient {
            client,
            url,
            secret,
            clock,
        }
    }

    /// Delivers one message body.
    pub async fn deliver(
        &self,
        message_id: &str,
        body: Vec<u8>,
        trace: &TraceContext,
        attempt: u32,
    ) -> AppOutcome {
        let key = self.secret.expose().as_bytes();
        let mut request = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header(
                "x-hub-signature",
                format!("sha1={}", hmac_sha1_hex(key, &body)),
            )
            .header(
                "x-hub-signature-256",
                format!("sha256={}", hmac_sha256_hex(key, &body)),
            )
            .header("x-patchbay-message-id", message_id)
            .header("x-patchbay-attempt", attempt.to_string());
        for (name, value) in [
            ("traceparent", &trace.traceparent),
            ("tracestate", &trace.tracestate),
            ("b3", &trace.b3),
        ] {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                return AppOutcome::Retry {
                    retry_after_ms: None,
                    reason: format!(
                        "application at {} unreachable: {}",
                        host_of(self.url.as_str()),
                        error_chain(&e)
                    ),
                };
            }
        };
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after_ms =
            header("retry-after").and_then(|v| retry_after_ms(&v, self.clock.timestamp()));
        let location = header("location");
        // Drain the body so the connection can be reused.
        let _ = response.bytes().await;
        match status.as_u16() {
            200..=299 => AppOutcome::Delivered,
            // Not followed (see `app_client`): the messages wait, in order,
            // until `webhook_url` names where the application is.
            300..=399 => AppOutcome::Retry {
                retry_after_ms,
                reason: format!(
                    "application answered HTTP {status}, a redirect to {}: \
                     Patchbay does not follow redirects; set webhook_url to where it points",
                    redirect_target(&self.url, location.as_deref())
                ),
            },
            408 | 429 | 500..=599 => AppOutcome::Retry {
                retry_after_ms,
                reason: format!("application answered HTTP {status}"),
            },
            _ => AppOutcome::Refused {
                reason: format!("application refused the message with HTTP {status}"),
            },
        }
    }
}

/// Where a redirect from `url` points: scheme, host and port only (a path
/// or query may hold a secret).
fn redirect_target(url: &reqwest::Url, location: Option<&str>) -> String {
    match location.map(|l| url.join(l)) {
        Some(Ok(target)) => host_of(target.as_str()),
        Some(Err(_)) => "(an invalid URL)".into(),
        None => "(no Location)".into(),
    }
}

/// Gives a message that carries no trace (no `traceparent`, no `b3`) a new
/// one, so every message's log lines and deliveries can be followed.
pub fn ensure_trace(trace: &mut patchbay_plugin_sdk::message::TraceContext) {
    if trace.traceparent.is_none() && trace.b3.is_none() {
        trace.traceparent = Some(new_traceparent());
    }
}

/// A new W3C `traceparent` for messages that arrive without one.
fn new_traceparent() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let span: u64 = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}
