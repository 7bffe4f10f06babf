//! What an adapter declares about itself.

use serde::{Deserialize, Serialize};

use super::WIRE_VERSION;
use crate::capabilities::ChannelCapabilities;

/// What an adapter is. Built with [`Manifest::new`] and the `with_*` methods,
/// since it gains fields as the contract grows:
///
/// ```
/// use patchbay_plugin_sdk::prelude::*;
/// let manifest = Manifest::new("toy", "Toy", "0.1.0", ChannelCapabilities::default())
///     .with_secrets([SettingSpec::required("secret", "webhook signing key")]);
/// assert_eq!(manifest.wire, WireRange::CURRENT);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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

impl Manifest {
    /// An adapter speaking the current wire version, with no secrets, settings
    /// or auth profiles yet.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
        capabilities: ChannelCapabilities,
    ) -> Self {
        Manifest {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            wire: WireRange::CURRENT,
            capabilities,
            secrets: Vec::new(),
            settings: Vec::new(),
            auth_profiles: Vec::new(),
        }
    }

    /// The same, reading these secrets.
    pub fn with_secrets(mut self, secrets: impl IntoIterator<Item = SettingSpec>) -> Self {
        self.secrets = secrets.into_iter().collect();
        self
    }

    /// The same, reading these settings.
    pub fn with_settings(mut self, settings: impl IntoIterator<Item = SettingSpec>) -> Self {
        self.settings = settings.into_iter().collect();
        self
    }

    /// The same, able to obtain tokens for these OAuth profiles.
    pub fn with_auth_profiles<S: Into<String>>(
        mut self,
        profiles: impl IntoIterator<Item = S>,
    ) -> Self {
        self.auth_profiles = profiles.into_iter().map(Into::into).collect();
        self
    }

    /// The same, speaking wire versions `wire`.
    pub fn with_wire(mut self, wire: WireRange) -> Self {
        self.wire = wire;
        self
    }
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
