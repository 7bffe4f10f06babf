//! What an adapter declares about itself.

use serde::{Deserialize, Serialize};

use super::WIRE_VERSION;
use crate::capabilities::ChannelCapabilities;

/// What an adapter is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The adapter id used in configs (`"slack"`, `"client-channel"`).
    pub id: String,
    /// A human name.
    pub name: String,
    /// The adapter's own version.
    pub version: String,
    /// The lowest and highest wire version the adapter speaks.
    pub wire: WireRange,
    /// Default capabilities; configuration can narrow them.
    pub capabilities: ChannelCapabilities,
    /// Secrets the adapter reads, by name.
    #[serde(default)]
    pub secrets: Vec<SettingSpec>,
    /// Settings the adapter reads, by name.
    #[serde(default)]
    pub settings: Vec<SettingSpec>,
    /// OAuth profiles the adapter can request tokens for.
    #[serde(default)]
    pub auth_profiles: Vec<String>,
}

/// An inclusive range of wire versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRange {
    /// Lowest supported.
    pub min: u32,
    /// Highest supported.
    pub max: u32,
}

impl WireRange {
    /// Only the current wire version.
    pub const CURRENT: WireRange = WireRange {
        min: WIRE_VERSION,
        max: WIRE_VERSION,
    };

    /// True when `version` is in range.
    pub fn contains(&self, version: u32) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// One documented setting or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingSpec {
    /// Its key.
    pub name: String,
    /// Whether the adapter refuses to start without it.
    pub required: bool,
    /// What it is for.
    pub description: String,
}

impl SettingSpec {
    /// A required setting.
    pub fn required(name: &str, description: &str) -> Self {
        SettingSpec {
            name: name.into(),
            required: true,
            description: description.into(),
        }
    }

    /// An optional setting.
    pub fn optional(name: &str, description: &str) -> Self {
        SettingSpec {
            name: name.into(),
            required: false,
            description: description.into(),
        }
    }
}
