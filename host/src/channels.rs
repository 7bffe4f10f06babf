//! Channel instances: an adapter configured for one channel, with its narrowed
//! capabilities and system messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use patchbay_core::capabilities::narrow;
use patchbay_plugin_sdk::adapter::{AdapterFactory, ChannelAdapter, ChannelConfig};
use patchbay_plugin_sdk::capabilities::{ChannelCapabilities, SystemMessages};

use crate::config::{ChannelSection, Config, ConfigError};
use crate::plugins;
use crate::plugins::contained::Contained;

/// The adapters compiled into this build, by id.
pub fn builtin_adapters() -> BTreeMap<&'static str, Arc<dyn AdapterFactory>> {
    let mut adapters: BTreeMap<&'static str, Arc<dyn AdapterFactory>> = BTreeMap::new();
    adapters.insert(
        patchbay_adapter_client_channel::ADAPTER_ID,
        Arc::new(patchbay_adapter_client_channel::ClientChannelFactory),
    );
    adapters.insert(
        patchbay_adapter_slack::ADAPTER_ID,
        Arc::new(patchbay_adapter_slack::SlackFactory),
    );
    adapters.insert(
        patchbay_adapter_teams::ADAPTER_ID,
        Arc::new(patchbay_adapter_teams::TeamsFactory),
    );
    adapters.insert(
        patchbay_adapter_sms::ADAPTER_ID,
        Arc::new(patchbay_adapter_sms::SmsFactory),
    );
    adapters.insert(
        patchbay_adapter_webex::ADAPTER_ID,
        Arc::new(patchbay_adapter_webex::WebexFactory),
    );
    adapters.insert(
        patchbay_adapter_email::ADAPTER_ID,
        Arc::new(patchbay_adapter_email::EmailFactory),
    );
    adapters.insert(
        patchbay_adapter_webchat::ADAPTER_ID,
        Arc::new(patchbay_adapter_webchat::WebchatFactory),
    );
    adapters
}

/// How an adapter came into this process.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Linked into the `patchbay` binary.
    CompiledIn,
    /// Loaded from a `[[plugin]]` library.
    Library {
        /// The library file.
        path: std::path::PathBuf,
        /// Its SHA-256, hex.
        sha256: String,
        /// The ABI (major, minor) it was built for.
        abi: (u32, u32),
        /// Wire versions it reads.
        wire: patchbay_plugin_sdk::adapter::WireRange,
    },
}

/// An adapter channels can use.
#[derive(Clone)]
pub struct Registered {
    /// Makes channel instances.
    pub factory: Arc<dyn AdapterFactory>,
    /// Where it came from.
    pub origin: Origin,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Every adapter available to channels, by the id channels use.
pub type Registry = BTreeMap<String, Registered>;

/// The compiled-in adapters plus the configured `[[plugin]]` libraries. A
/// library whose id is taken is an error unless its entry sets `name`.
pub fn registry(config: &Config) -> Result<Registry, ConfigError> {
    let mut registry: Registry = builtin_adapters()
        .into_iter()
        .map(|(id, factory)| {
            let origin = Origin::CompiledIn;
            (id.to_string(), Registered { factory, origin })
        })
        .collect();
    for (i, loaded) in plugins::load_configured(config)?.into_iter().enumerate() {
        // Upstream connector libraries are `upstreams::connectors`'.
        let plugins::Plugin::Adapter(factory) = loaded.plugin else {
            continue;
        };
        if let Some(taken) = registry.get(&loaded.name) {
            let by = match &taken.origin {
                Origin::CompiledIn => "a compiled-in adapter".to_string(),
                Origin::Library { path, .. } => path.display().to_string(),
            };
            return Err(ConfigError::new(
                format!("plugin[{i}]"),
                format!(
                    "adapter id {:?} is already provided by {by}; set `name` to load this library under another id",
                    loaded.name
                ),
            ));
        }
        let library = factory.library();
        let origin = Origin::Library {
            path: library.path.clone(),
            sha256: loaded.sha256,
            abi: library.abi,
            wire: library.wire,
        };
        registry.insert(
            loaded.name,
            Registered {
                factory: Arc::new(factory),
                origin,
            },
        );
    }
    Ok(registry)
}

/// One configured channel.
pub struct Channel {
    /// Its id (the key under `[channels]`).
    pub id: String,
    /// The adapter id.
    pub adapter_id: String,
    /// The adapter instance.
    pub adapter: Arc<dyn ChannelAdapter>,
    /// Declared capabilities narrowed by configuration.
    pub capabilities: ChannelCapabilities,
    /// System messages for this channel.
    pub system_messages: SystemMessages,
    /// The language of system messages.
    pub language: String,
    /// The upstream its customers' messages and receipts go to.
    pub upstream: String,
    /// How its adapter came into this process (compiled in, or which library).
    pub origin: Origin,
    /// For the compiled-in web chat: its sessions and allowed pages, which
    /// the host's widget routes use (see `crate::webchat`).
    pub web: Option<Arc<patchbay_adapter_webchat::Webchat>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("adapter", &self.adapter_id)
            .finish_non_exhaustive()
    }
}

/// All channels by id.
pub type Channels = BTreeMap<String, Arc<Channel>>;

/// Builds every configured channel; a bad channel is an error naming its key.
pub fn build(config: &Config, public_url: &str) -> Result<Channels, ConfigError> {
    build_with(config, &registry(config)?, public_url)
}

/// Builds every configured channel from adapters already loaded.
pub fn build_with(
    config: &Config,
    registry: &Registry,
    public_url: &str,
) -> Result<Channels, ConfigError> {
    let mut channels = Channels::new();
    for (id, section) in &config.channels {
        let mut channel = build_one(id, section, registry, public_url)?;
        // Validation made sure there is one.
        channel.upstream = config.upstream_of(section).unwrap_or_default().to_string();
        channels.insert(id.clone(), Arc::new(channel));
    }
    Ok(channels)
}

fn build_one(
    id: &str,
    section: &ChannelSection,
    registry: &Registry,
    public_url: &str,
) -> Result<Channel, ConfigError> {
    let registered = registry.get(section.adapter.as_str()).ok_or_else(|| {
        let known: Vec<&str> = registry.keys().map(String::as_str).collect();
        ConfigError::new(
            format!("channels.{id}.adapter"),
            format!(
                "unknown adapter {:?}; known: {}",
                section.adapter,
                known.join(", ")
            ),
        )
    })?;
    let factory = &registered.factory;
    let settings = serde_json::to_value(&section.settings)
        .map_err(|e| ConfigError::new(format!("channels.{id}.settings"), e.to_string()))?;
    let channel_config = ChannelConfig {
        channel: id.to_string(),
        webhook_url: format!("{}/webhooks/{id}", public_url.trim_end_matches('/')),
        settings,
        secrets: section.secrets.clone(),
    };
    let adapter = factory
        .create(&channel_config)
        .map_err(|e| ConfigError::new(format!("channels.{id}.{}", e.key), e.message))?;
    let capabilities = narrow(&adapter.manifest().capabilities, &section.capabilities);
    let web = match registered.origin {
        Origin::CompiledIn if section.adapter == patchbay_adapter_webchat::ADAPTER_ID => {
            let web = patchbay_adapter_webchat::Webchat::new(&channel_config)
                .map_err(|e| ConfigError::new(format!("channels.{id}.{}", e.key), e.message))?;
            Some(Arc::new(web))
        }
        _ => None,
    };
    Ok(Channel {
        id: id.to_string(),
        adapter_id: section.adapter.clone(),
        adapter: Arc::new(Contained::new(id, adapter)),
        capabilities,
        system_messages: SystemMessages(section.system_messages.clone()),
        language: section.language.clone(),
        upstream: String::new(),
        origin: registered.origin.clone(),
        web,
    })
}
