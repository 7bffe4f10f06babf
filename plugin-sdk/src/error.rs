//! Classified errors. The class drives the host: retry, back off, refresh a
//! token, or give up and report a `Failed` receipt.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::message::ReasonCode;

/// How the host should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// Will fail again: give up and report.
    Permanent,
    /// May succeed later: retry with backoff.
    Transient,
    /// The provider asked to slow down; retry after `retry_after_ms` when given.
    RateLimited {
        /// The provider's `Retry-After`, in milliseconds.
        retry_after_ms: Option<u64>,
    },
    /// The access token was refused: refresh it and retry once.
    AuthExpired,
    /// The input itself is wrong (malformed payload, unsupported content).
    BadInput,
}

/// An adapter failure: a class, a message for people, and the reason code to
/// report to the application if the message is given up on.
///
/// ```
/// use patchbay_plugin_sdk::error::AdapterError;
/// use patchbay_plugin_sdk::message::ReasonCode;
///
/// let e = AdapterError::rate_limited(Some(2_000), "slow down");
/// assert!(e.is_retryable());
/// assert_eq!(e.retry_after_ms(), Some(2_000));
/// assert_eq!(e.reason(), ReasonCode::RATE_LIMITED);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct AdapterError {
    #[serde(flatten)]
    class: ErrorClass,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonCode>,
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl AdapterError {
    fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        AdapterError {
            class,
            message: message.into(),
            reason: None,
        }
    }

    /// Will fail again.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, message)
    }

    /// May succeed later.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, message)
    }

    /// The provider is rate limiting.
    pub fn rate_limited(retry_after_ms: Option<u64>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::RateLimited { retry_after_ms }, message)
    }

    /// The access token was refused.
    pub fn auth_expired(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::AuthExpired, message)
    }

    /// The input is wrong.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::BadInput, message)
    }

    /// The channel cannot carry this kind of content (reason 510). Fitting
    /// normally prevents it; adapters answer this for whatever slips through.
    pub fn unsupported(channel: &str, kind: &str) -> Self {
        AdapterError::permanent(format!("{channel} cannot send {kind} content"))
            .with_reason(ReasonCode::UNSUPPORTED)
    }

    /// Sets the reason code reported if the message is given up on.
    pub fn with_reason(mut self, reason: ReasonCode) -> Self {
        self.reason = Some(reason);
        self
    }

    /// The class.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The reason code to report: the explicit one, else one implied by the class.
    pub fn reason(&self) -> ReasonCode {
        self.reason.unwrap_or(match self.class {
            ErrorClass::RateLimited { .. } => ReasonCode::RATE_LIMITED,
            ErrorClass::BadInput => ReasonCode::INVALID_STRUCTURE,
            _ => ReasonCode::GENERAL,
        })
    }

    /// True for transient, rate-limited and auth-expired failures.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Transient | ErrorClass::RateLimited { .. } | ErrorClass::AuthExpired
        )
    }

    /// True when the access token should be refreshed.
    pub fn is_auth_expired(&self) -> bool {
        self.class == ErrorClass::AuthExpired
    }

    /// The provider's requested delay, if any.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self.class {
            ErrorClass::RateLimited { retry_after_ms } => retry_after_ms,
            _ => None,
        }
    }
}

/// Why [`crate::adapter::ChannelAdapter::verify`] refused a request. Nothing is stored.
///
/// The message goes to logs and to the caller, so it must never contain a secret
/// or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// The HTTP status to answer: 401 for authentication, 400 for malformed input.
    pub status: u16,
    /// Why, safe to show.
    pub message: String,
    /// The request may be fine but the resources `verify` used are out of date
    /// (a signing key the cached key set does not have yet): the host refreshes
    /// them and verifies once more.
    #[serde(default)]
    pub stale_resources: bool,
}

impl Rejection {
    /// 401: missing or wrong signature, stale timestamp.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Rejection {
            status: 401,
            message: message.into(),
            stale_resources: false,
        }
    }

    /// 401 that may go away once the host refreshes the adapter's resources,
    /// e.g. a token signed with a key the cached key set does not contain.
    pub fn stale_resources(message: impl Into<String>) -> Self {
        Rejection {
            stale_resources: true,
            ..Rejection::unauthorized(message)
        }
    }

    /// 400: the request cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Rejection {
            status: 400,
            message: message.into(),
            stale_resources: false,
        }
    }
}
