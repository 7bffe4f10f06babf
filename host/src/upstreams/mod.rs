//! Upstreams: what sits behind Patchbay, by name (`[upstreams.<name>]`).
//!
//! | kind | customer → upstream | upstream → customer |
//! |---|---|---|
//! | `webhook` | canonical JSON POSTed, signed ([`webhook`]) | `POST /v1/channels/{channel}/messages` with the upstream's API key |
//! | `console` | kept in the store, shown in the admin console | a reply written in the admin console (for trials) |
//! | a connector's (`genesys-3pm`, …) | the connector's `deliver`, driven like an adapter's steps | `POST /upstreams/{name}/webhook`, verified and decoded by the connector |
//!
//! Every channel sends to one upstream. A `deliver` job's destination is the
//! upstream's name, so each upstream has its own breaker, concurrency and
//! retry schedule, and a platform that is down pauses only its channels'
//! deliveries.
//!
//! **Mappings.** A platform knows a customer by
//! [`customer_key`](patchbay_plugin_sdk::upstream::customer_key): the channel
//! and conversation, escaped, which [`conversation_of`] reads back — so an
//! agent's reply finds its channel and customer however long ago, after any
//! restart, with no lookup that could be lost. What the key cannot carry is
//! kept in the store's links ([`link_scope`]): a Patchbay message id → the
//! platform's id for it (receipts name the id the platform knows), and a
//! customer → the platform's last structured message (a button response
//! names the message it answers).

pub mod register;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use patchbay_core::retry::RetryPolicy;
use patchbay_plugin_sdk::adapter::{ChannelConfig, Secret};
use patchbay_plugin_sdk::message::Conversation;
use patchbay_plugin_sdk::upstream::{UpstreamConnector, UpstreamFactory};

use crate::clock::Clock;
use crate::config::{CONSOLE_KIND, Config, ConfigError, UpstreamSection, WEBHOOK_KIND};
use crate::plugins::contained::Contained;
use crate::transport::{Transport, app_client};
use webhook::AppClient;

/// The connectors compiled into this build, by kind.
pub fn builtin_connectors() -> BTreeMap<&'static str, Arc<dyn UpstreamFactory>> {
    let mut connectors: BTreeMap<&'static str, Arc<dyn UpstreamFactory>> = BTreeMap::new();
    connectors.insert(
        patchbay_upstream_genesys_3pm::KIND,
        Arc::new(patchbay_upstream_genesys_3pm::MulticloudFactory),
    );
    connectors.insert(
        patchbay_upstream_genesys_cloud::KIND,
        Arc::new(patchbay_upstream_genesys_cloud::OpenMessagingFactory),
    );
    connectors.insert(
        patchbay_upstream_pega_dms::KIND,
        Arc::new(patchbay_upstream_pega_dms::PegaDmsFactory),
    );
    connectors.insert(
        patchbay_upstream_egain::KIND,
        Arc::new(patchbay_upstream_egain::EgainFactory),
    );
    connectors
}

/// One configured upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Its name (the key under `[upstreams]`).
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// How it is spoken to.
    pub speaks: Speaks,
    /// Retries of deliveries to it.
    pub retry: RetryPolicy,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Whether `serve` registers its channels with the platform at start.
    pub sync_on_start: bool,
}

/// How an upstream is spoken to.
#[derive(Debug)]
pub enum Speaks {
    /// Patchbay's own signed webhook, and the application API.
    Webhook {
        /// Posts to the webhook.
        client: AppClient,
        /// Keys accepted on the API for this upstream's channels.
        api_keys: Vec<Secret>,
    },
    /// A person answering in the admin console (for trials): what reaches
    /// it stays in the store, where the console shows it.
    Console,
    /// A platform, through its connector.
    Connector {
        /// The connector, contained.
        connector: Arc<Contained<dyn UpstreamConnector>>,
        /// Runs its requests (its own timeout and token cache).
        transport: Transport,
    },
}

/// All upstreams by name.
pub type Upstreams = BTreeMap<String, Arc<Upstream>>;

/// The connectors upstreams can use, by kind: the compiled-in ones and the
/// configured `[[plugin]]` libraries that are connectors. A library whose
/// kind is taken is an error unless its entry sets `name`.
pub fn connectors(
    config: &Config,
) -> Result<BTreeMap<String, Arc<dyn UpstreamFactory>>, ConfigError> {
    let mut connectors: BTreeMap<String, Arc<dyn UpstreamFactory>> = builtin_connectors()
        .into_iter()
        .map(|(kind, factory)| (kind.to_string(), factory))
        .collect();
    for (i, loaded) in crate::plugins::load_configured(config)?
        .into_iter()
        .enumerate()
    {
        let crate::plugins::Plugin::Upstream(factory) = loaded.plugin else {
            continue;
        };
        if connectors.contains_key(&loaded.name) || loaded.name == WEBHOOK_KIND {
            return Err(ConfigError::new(
                format!("plugin[{i}]"),
                format!(
                    "upstream kind {:?} is already taken; set `name` to load this library under another kind",
                    loaded.name
                ),
            ));
        }
        tracing::info!(kind = %loaded.name, plugin = %factory.library().path.display(), "upstream connector library loaded");
        connectors.insert(loaded.name, Arc::new(factory));
    }
    Ok(connectors)
}

/// Builds every configured upstream; the connector names the setting or
/// secret at fault.
pub fn build(config: &Config, public_url: &str, clock: &Clock) -> Result<Upstreams, ConfigError> {
    let built_in = |kind: &str| kind == WEBHOOK_KIND || kind == CONSOLE_KIND;
    let connectors = if config.upstreams.values().all(|u| built_in(&u.kind)) {
        BTreeMap::new()
    } else {
        connectors(config)?
    };
    let mut upstreams = Upstreams::new();
    for (name, section) in &config.upstreams {
        let speaks = speaks(name, section, &connectors, public_url, clock)?;
        upstreams.insert(
            name.clone(),
            Arc::new(Upstream {
                name: name.clone(),
                kind: section.kind.clone(),
                speaks,
                retry: section.retry,
                concurrency: section.concurrency,
                sync_on_start: section.sync_on_start,
            }),
        );
    }
    Ok(upstreams)
}

fn speaks(
    name: &str,
    section: &UpstreamSection,
    connectors: &BTreeMap<String, Arc<dyn UpstreamFactory>>,
    public_url: &str,
    clock: &Clock,
) -> Result<Speaks, ConfigError> {
    let key = |k: &str| format!("{}.{k}", section.config_key);
    let timeout = Duration::from_millis(section.timeout_ms);
    if section.kind == CONSOLE_KIND {
        return Ok(Speaks::Console);
    }
    if section.kind == WEBHOOK_KIND {
        let (Some(url), Some(secret)) = (&section.webhook_url, &section.secret) else {
            return Err(ConfigError::new(key("webhook_url"), "is required"));
        };
        let url = url
            .parse()
            .map_err(|e| ConfigError::new(key("webhook_url"), format!("{e}")))?;
        return Ok(Speaks::Webhook {
            client: AppClient::new(app_client(timeout), url, secret.clone(), clock.clone()),
            api_keys: section.api_keys.clone(),
        });
    }
    let Some(factory) = connectors.get(section.kind.as_str()) else {
        let mut kinds: Vec<&str> = vec![WEBHOOK_KIND, CONSOLE_KIND];
        kinds.extend(connectors.keys().map(String::as_str));
        return Err(ConfigError::new(
            key("kind"),
            format!(
                "unknown kind {:?}; this build knows {}",
                section.kind,
                kinds.join(", ")
            ),
        ));
    };
    let settings = serde_json::to_value(&section.settings)
        .map_err(|e| ConfigError::new(key("settings"), e.to_string()))?;
    let connector_config = ChannelConfig {
        channel: name.to_string(),
        webhook_url: format!(
            "{}/upstreams/{name}/webhook",
            public_url.trim_end_matches('/')
        ),
        settings,
        secrets: section.secrets.clone(),
    };
    let connector = factory
        .create(&connector_config)
        .map_err(|e| ConfigError::new(key(&e.key), e.message))?;
    Ok(Speaks::Connector {
        connector: Arc::new(Contained::new(name, connector)),
        transport: Transport::new(timeout, clock.clone()),
    })
}

/// The store's link scopes of an upstream: what a link maps from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkScope {
    /// A Patchbay message id → the platform's id for it.
    Message,
    /// A customer key → the platform's id of its last structured message.
    Structured,
}

/// The store scope of `upstream`'s links of one kind.
pub fn link_scope(upstream: &str, scope: LinkScope) -> String {
    match scope {
        LinkScope::Message => format!("message:{upstream}"),
        LinkScope::Structured => format!("structured:{upstream}"),
    }
}

/// The channel and conversation a customer key names (the inverse of
/// [`customer_key`](patchbay_plugin_sdk::upstream::customer_key)).
pub fn conversation_of(customer: &str) -> Option<(String, Conversation)> {
    let (channel, rest) = customer.split_once(':')?;
    let (id, thread) = match rest.split_once('#') {
        Some((id, thread)) => (id, Some(unescape(thread)?)),
        None => (rest, None),
    };
    let id = unescape(id)?;
    if channel.is_empty() || id.is_empty() {
        return None;
    }
    Some((
        channel.to_string(),
        Conversation {
            id,
            thread_id: thread,
        },
    ))
}

/// Decodes the three escapes `customer_key` writes; any other is refused.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "25" => '%',
            "23" => '#',
            "2F" => '/',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use patchbay_plugin_sdk::upstream::customer_key;

    use super::*;

    fn built(upstream: &str) -> Result<Upstreams, ConfigError> {
        let text = format!("{upstream}\n[channels.web]\nadapter = \"client-channel\"\n");
        let config = Config::parse(&text, std::path::Path::new("."), &|_| None).expect("parses");
        build(&config, "https://gw.example", &Clock::system())
    }

    #[test]
    fn unknown_kinds_and_connector_settings_are_named() {
        let err = built("[upstreams.x]\nkind = \"genesys-5000\"").expect_err("unknown kind");
        assert_eq!(err.key, "upstreams.x.kind");
        assert!(err.message.contains("genesys-3pm"), "{err}");
        let err = built("[upstreams.g]\nkind = \"genesys-3pm\"\nsettings = { api_url = \"https://g.example/nexus/v3\", ccid = \"c\", channel_id = \"x\" }")
            .expect_err("no secret");
        assert_eq!(err.key, "upstreams.g.secrets.signing_secret");
        let ok = built("[upstreams.g]\nkind = \"genesys-3pm\"\nsettings = { api_url = \"https://g.example/nexus/v3\", ccid = \"c\", channel_id = \"x\" }\nsecrets = { signing_secret = \"s\" }")
            .expect("builds");
        assert!(matches!(ok["g"].speaks, Speaks::Connector { .. }));
    }

    #[test]
    fn a_customer_key_reads_back_as_its_channel_and_conversation() {
        for (channel, id, thread) in [
            ("sms-main", "+15550001", None),
            ("slack", "C1", Some("1700000000.0001")),
            ("teams", "19:abc@thread.skype;messageid=1", None),
            ("web", "odd%23#and/100%", Some("t#1")),
        ] {
            let key = customer_key(channel, id, thread);
            let (c, conversation) = conversation_of(&key).expect(&key);
            assert_eq!(c, channel);
            assert_eq!(conversation.id, id);
            assert_eq!(conversation.thread_id.as_deref(), thread);
        }
        assert_eq!(conversation_of("no-colon"), None);
        assert_eq!(conversation_of("c:"), None);
        assert_eq!(conversation_of("c:bad%4"), None);
    }
}
