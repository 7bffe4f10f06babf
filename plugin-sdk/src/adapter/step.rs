//! The steps of an operation and what they carry between provider calls.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RequestSpec;
use crate::error::AdapterError;
use crate::message::Message;

/// One step of an adapter operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Execute `request`, then call [`ChannelAdapter::resume`](super::ChannelAdapter::resume) with `continuation`
    /// and the response.
    Request {
        /// What to execute.
        request: RequestSpec,
        /// Where the adapter left off.
        continuation: Continuation,
    },
    /// Finished.
    Done {
        /// The result.
        output: StepOutput,
    },
    /// Failed; the error's class tells the host whether to retry.
    Fail {
        /// Why.
        error: AdapterError,
    },
}

impl Step {
    /// Inbound parsing finished with these messages.
    pub fn messages(messages: Vec<Message>) -> Self {
        Step::Done {
            output: StepOutput::Messages { messages },
        }
    }

    /// Outbound delivery finished.
    pub fn delivered(provider_message_id: Option<String>) -> Self {
        Step::Done {
            output: StepOutput::Delivered {
                provider_message_id,
            },
        }
    }

    /// Failed.
    pub fn fail(error: AdapterError) -> Self {
        Step::Fail { error }
    }

    /// Execute `request`, then resume with `state` (see [`Continuation`]).
    pub fn request<T: Serialize>(request: impl Into<RequestSpec>, state: &T) -> Self {
        Step::Request {
            request: request.into(),
            continuation: Continuation::new(state),
        }
    }
}

/// The result of a finished operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepOutput {
    /// Canonical messages parsed from an inbound request (possibly none).
    Messages {
        /// The messages.
        messages: Vec<Message>,
    },
    /// An outbound message was handed to the provider.
    Delivered {
        /// The provider's id for it.
        provider_message_id: Option<String>,
    },
    /// A fetched resource (see [`ChannelAdapter::fetch_resource`](super::ChannelAdapter::fetch_resource)).
    Resource {
        /// The document, in whatever shape the adapter's `verify` reads.
        value: Value,
    },
}

/// A document the host keeps for an adapter's `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSpec {
    /// The name `verify` looks it up by.
    pub name: String,
    /// Refresh it when it is older than this.
    pub refresh_after_ms: i64,
}

/// The resources the host has fetched for one adapter instance, by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Resources(pub BTreeMap<String, Value>);

impl Resources {
    /// No resources.
    pub fn none() -> Self {
        Resources::default()
    }

    /// The resource `name`, if the host has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Adds or replaces a resource.
    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.0.insert(name.into(), value);
        self
    }
}

/// Adapter state carried across a provider request.
///
/// To the host it is opaque JSON. Adapters keep it typed: one serde type per
/// adapter (an enum tagged by operation, say), written with
/// [`Continuation::new`] and read back with [`Continuation::decode`].
///
/// ```
/// use patchbay_plugin_sdk::adapter::Continuation;
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// #[serde(tag = "op", rename_all = "snake_case")]
/// enum Pending { Upload { part: u32 }, Send }
///
/// let c = Continuation::new(&Pending::Upload { part: 2 });
/// assert_eq!(c.decode::<Pending>().unwrap(), Pending::Upload { part: 2 });
/// assert!(Continuation::none().decode::<Pending>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Continuation(pub Value);

impl Continuation {
    /// Encodes the adapter's state.
    pub fn new<T: Serialize>(state: &T) -> Self {
        // Serialising plain data structs and enums to a `Value` cannot fail.
        Continuation(serde_json::to_value(state).unwrap_or(Value::Null))
    }

    /// No state: the adapter needs nothing but the response.
    pub fn none() -> Self {
        Continuation(Value::Null)
    }

    /// Decodes the adapter's state. A continuation the adapter did not write
    /// (or wrote in an older shape) is a permanent failure, never a panic.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, AdapterError> {
        T::deserialize(&self.0)
            .map_err(|e| AdapterError::permanent(format!("unreadable continuation: {e}")))
    }
}
