//! Registering Patchbay's channels with a platform that keeps its own model
//! of each channel (eGain's channel objects: restrictions per direction and
//! localised system messages).
//!
//! The host builds a [`Registration`] from its config — every channel routed
//! to the upstream, with its capabilities as narrowed by config and its
//! system messages — and drives [`UpstreamConnector::register`](super::UpstreamConnector::register)
//! like a delivery. The chain ends with [`RegistrationReport::into_step`]:
//! what was created, updated, left alone, or held back because it would
//! widen what the platform lets its agents send.

use serde::{Deserialize, Serialize};

use crate::adapter::{Step, StepOutput};
use crate::capabilities::{ChannelCapabilities, SystemMessages};
use crate::error::AdapterError;

/// One channel as the platform should know it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChannelProfile {
    /// The channel's id in Patchbay's config.
    pub name: String,
    /// The adapter behind it (`email`, `teams`).
    pub adapter: String,
    /// What the channel carries, each direction, as narrowed by config.
    pub capabilities: ChannelCapabilities,
    /// The channel's language (`en-US`).
    pub language: String,
    /// The channel's system messages (defaults fill what config leaves out).
    pub system_messages: SystemMessages,
}

impl ChannelProfile {
    /// A profile of channel `name`.
    pub fn new(
        name: impl Into<String>,
        adapter: impl Into<String>,
        capabilities: ChannelCapabilities,
        language: impl Into<String>,
        system_messages: SystemMessages,
    ) -> Self {
        ChannelProfile {
            name: name.into(),
            adapter: adapter.into(),
            capabilities,
            language: language.into(),
            system_messages,
        }
    }
}

/// What to register, and how far the platform's copy may change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Registration {
    /// The channels.
    pub channels: Vec<ChannelProfile>,
    /// Apply changes that let the platform send more than its copy allows
    /// now (a longer text limit, a new rich type); without it such a channel
    /// is held and the report says why.
    pub widen: bool,
    /// Read and compare only; change nothing.
    pub dry_run: bool,
}

impl Registration {
    /// Registers `channels`, never widening, for real.
    pub fn new(channels: Vec<ChannelProfile>) -> Self {
        Registration {
            channels,
            widen: false,
            dry_run: false,
        }
    }

    /// Whether widening changes are applied.
    pub fn widening(mut self, widen: bool) -> Self {
        self.widen = widen;
        self
    }

    /// Whether to change nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// What happened to one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterAction {
    /// The platform had no such channel; it was created.
    Created,
    /// The platform's copy differed; it was updated.
    Updated,
    /// The platform's copy already matched.
    Unchanged,
    /// The update would widen the platform's copy and widening was not asked for.
    Held,
    /// A dry run: it would be created.
    WouldCreate,
    /// A dry run: it would be updated.
    WouldUpdate,
}

/// One channel's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChannelOutcome {
    /// The channel's id in Patchbay.
    pub channel: String,
    /// What happened.
    pub action: RegisterAction,
    /// The platform's id for the channel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<String>,
    /// The fields that differ, one line each (`outbound.maxTextLength: 140 → 10000`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Of those, the ones that widen what the platform allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub widenings: Vec<String>,
}

impl ChannelOutcome {
    /// An outcome for `channel`.
    pub fn new(channel: impl Into<String>, action: RegisterAction) -> Self {
        ChannelOutcome {
            channel: channel.into(),
            action,
            platform_id: None,
            changes: Vec::new(),
            widenings: Vec::new(),
        }
    }

    /// With the platform's id.
    pub fn with_platform_id(mut self, id: Option<String>) -> Self {
        self.platform_id = id;
        self
    }

    /// With the differing fields and the widening ones among them.
    pub fn with_changes(mut self, changes: Vec<String>, widenings: Vec<String>) -> Self {
        self.changes = changes;
        self.widenings = widenings;
        self
    }
}

/// What a registration did, channel by channel.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegistrationReport {
    /// One outcome per channel, in the registration's order.
    pub channels: Vec<ChannelOutcome>,
}

impl RegistrationReport {
    /// The step that ends a registration chain with this report.
    pub fn into_step(self) -> Step {
        match serde_json::to_value(&self) {
            Ok(value) => Step::Done {
                output: StepOutput::Resource { value },
            },
            Err(e) => Step::fail(AdapterError::permanent(format!(
                "cannot encode the registration report: {e}"
            ))),
        }
    }

    /// Reads the report a registration chain ended with.
    pub fn from_output(output: StepOutput) -> Result<Self, AdapterError> {
        match output {
            StepOutput::Resource { value } => serde_json::from_value(value).map_err(|e| {
                AdapterError::permanent(format!("unreadable registration report: {e}"))
            }),
            other => Err(AdapterError::permanent(format!(
                "a registration ended without a report: {other:?}"
            ))),
        }
    }

    /// Whether any channel was held back for widening.
    pub fn held(&self) -> bool {
        self.channels
            .iter()
            .any(|c| c.action == RegisterAction::Held)
    }
}
