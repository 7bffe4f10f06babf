//! # Email adapter
//!
//! Customers write to an address; the application answers by email, in the
//! same thread.
//!
//! ## Inbound
//!
//! Three ways in, all to `/webhooks/{channel}`:
//!
//! - **Raw MIME** (`Content-Type: message/rfc822`), for an MTA that pipes mail
//!   to an HTTP endpoint. Authenticated with `secrets.inbound_token`, given as
//!   `Authorization: Bearer …`, as the password of basic auth, or as `?token=`.
//! - **SendGrid Inbound Parse** (`settings.inbound = "sendgrid"`, multipart
//!   form; parsed fields or the raw message when "POST the raw, full MIME
//!   message" is on). SendGrid does not sign these posts, so the URL carries the
//!   inbound token (basic auth or `?token=`).
//! - **Mailgun routes** (`settings.inbound = "mailgun"`, form or multipart),
//!   verified with `signature` = hex `HMAC-SHA256(mailgun_signing_key,
//!   timestamp + token)` and a timestamp no more than 15 minutes away.
//!
//! Mail is parsed with `mail-parser`. The conversation is the sender's address;
//! the thread is the first `References` id (else `In-Reply-To`, else the
//! message's own `Message-ID`), so every message of one mail thread shares it.
//! Quoted replies and signatures are cut from the canonical text; the full
//! text, subject, ids and HTML are kept in `context`. Attachments arrive as
//! `data:` URLs. A reply sent from one of Patchbay's button links (its subject
//! carries `[pb:<payload>]`) becomes a postback. Each message is deduplicated on
//! its `Message-ID`.
//!
//! ## Outbound
//!
//! Rendered as a MIME message (`mail-builder`) and handed to the host's SMTP
//! transport with the relay from `settings.smtp`. Replies carry `In-Reply-To`
//! and `References` so mail clients thread them, and the subject of the
//! customer's mail (from `context.email_subject`) with `Re:`. Markdown, buttons
//! (link buttons as links, postback buttons as reply links), carousels (as
//! cards) and rich links become HTML with a plain-text alternative; attachments
//! are fetched and included. SMTP 4xx → retried; 5xx → failed, 550/551/553 as
//! 530 (no such mailbox), 552 as 520, 554 as 350.

mod form;
mod inbound;
mod outbound;
mod quote;

use patchbay_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The adapter id used in configs.
pub const ADAPTER_ID: &str = "email";

/// Creates email instances.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmailFactory;

// Loadable as a shared library too (`[[plugin]]` in the host config). A host
// that links several adapters in turns the entry point off (one symbol per binary).
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_adapter!(EmailFactory);

/// Which provider posts forms to this channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum InboundProvider {
    #[default]
    Sendgrid,
    Mailgun,
}

/// Settings under `[channels.<id>.settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `Name <address>` or a bare address: who replies come from.
    from: String,
    #[serde(default)]
    inbound: InboundProvider,
    smtp: SmtpSettings,
    /// The subject of messages that answer no customer mail.
    #[serde(default = "default_subject")]
    subject: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpSettings {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    security: SmtpSecurity,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    hello_name: Option<String>,
}

fn default_subject() -> String {
    "Your conversation with us".into()
}

/// A mailbox: display name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// Parses `Name <address>`, `"Name" <address>` or `address`.
    fn parse(text: &str) -> Option<Mailbox> {
        let text = text.trim();
        let (name, address) = match text.rsplit_once('<') {
            Some((name, rest)) => {
                let name = name.trim().trim_matches('"').trim();
                (
                    (!name.is_empty()).then(|| name.to_string()),
                    rest.strip_suffix('>')?.trim(),
                )
            }
            None => (None, text),
        };
        is_address(address).then(|| Mailbox {
            name,
            address: address.to_string(),
        })
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

/// A plausible `local@domain` address: what SMTP will at least try.
pub(crate) fn is_address(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !text
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
                && !domain.contains('@')
        }
        None => false,
    }
}

/// A configured email instance.
#[derive(Debug)]
pub struct Email {
    from: Mailbox,
    inbound: InboundProvider,
    relay: SmtpRelay,
    subject: String,
    inbound_token: Option<Secret>,
    mailgun_signing_key: Option<Secret>,
}

fn manifest() -> Manifest {
    let outbound = DirectionCapabilities::plain_text(100_000)
        .with_features([Feature::RichText, Feature::Attachments])
        .with_rich_types([RichType::Buttons, RichType::Carousel, RichType::RichLink])
        // What most mailboxes accept.
        .with_attachments(AttachmentPolicy::any().with_max_size(20 * 1024 * 1024));
    let inbound = DirectionCapabilities::plain_text(100_000)
        .with_max_text_length(None)
        .with_features([Feature::RichText, Feature::Attachments]);
    Manifest::new(
        ADAPTER_ID,
        "Email (SMTP, SendGrid, Mailgun)",
        env!("CARGO_PKG_VERSION"),
        ChannelCapabilities { inbound, outbound },
    )
    .with_secrets([
            SettingSpec::optional(
                "inbound_token",
                "authenticates raw MIME and SendGrid posts (Bearer, basic auth password or ?token=)",
            ),
            SettingSpec::optional(
                "mailgun_signing_key",
                "Mailgun's HTTP webhook signing key, for settings.inbound = \"mailgun\"",
            ),
            SettingSpec::optional("smtp_password", "password for settings.smtp.username"),
        ])
    .with_settings([
            SettingSpec::required("from", "who replies come from: `Name <address>`"),
            SettingSpec::optional(
                "inbound",
                "which provider posts forms: \"sendgrid\" (default) or \"mailgun\"",
            ),
            SettingSpec::required(
                "smtp",
                "the relay: { host, port, security = \"starttls\" | \"tls\" | \"none\", username, hello_name }",
            ),
            SettingSpec::optional(
                "subject",
                "subject of messages that answer no customer mail",
            ),
        ])
}

impl AdapterFactory for EmailFactory {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(Email::new(config)?))
    }
}

/// A secret that may be absent; blank is still an error.
fn optional_secret(config: &ChannelConfig, name: &str) -> Result<Option<Secret>, ConfigError> {
    match config.secrets.contains_key(name) {
        true => config.secret(name).map(|s| Some(s.clone())),
        false => Ok(None),
    }
}

impl Email {
    /// Builds an instance from its channel config.
    pub fn new(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let s: Settings = config.settings()?;
        let from = Mailbox::parse(&s.from).ok_or_else(|| {
            ConfigError::new("settings.from", "must be an address or `Name <address>`")
        })?;
        if s.smtp.host.trim().is_empty() || s.smtp.host.contains(['/', ' ']) {
            return Err(ConfigError::new(
                "settings.smtp.host",
                "must be a host name or IP address",
            ));
        }
        let password = optional_secret(config, "smtp_password")?;
        if s.smtp.username.is_some() != password.is_some() {
            return Err(ConfigError::new(
                "secrets.smtp_password",
                "settings.smtp.username and secrets.smtp_password go together",
            ));
        }
        let mailgun_signing_key = optional_secret(config, "mailgun_signing_key")?;
        if s.inbound == InboundProvider::Mailgun && mailgun_signing_key.is_none() {
            return Err(ConfigError::new(
                "secrets.mailgun_signing_key",
                "is required when settings.inbound = \"mailgun\"",
            ));
        }
        let port = s.smtp.port.unwrap_or(match s.smtp.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        Ok(Email {
            from,
            inbound: s.inbound,
            relay: SmtpRelay {
                host: s.smtp.host,
                port,
                security: s.smtp.security,
                username: s.smtp.username,
                password,
                hello_name: s.smtp.hello_name,
            },
            subject: s.subject,
            inbound_token: optional_secret(config, "inbound_token")?,
            mailgun_signing_key,
        })
    }
}

impl ChannelAdapter for Email {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn verify(
        &self,
        request: &InboundRequest,
        now: Timestamp,
        _resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        inbound::verify(self, request, now)
    }

    fn parse_inbound(&self, request: &InboundRequest, _now: Timestamp) -> Step {
        inbound::parse(self, request)
    }

    fn render_outbound(&self, message: &Message, now: Timestamp) -> Step {
        outbound::render(self, message, now)
    }

    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        outbound::resume(self, continuation, response, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_parse() {
        let m = Mailbox::parse("\"Shop Support\" <support@shop.example>").expect("named");
        assert_eq!(m.name.as_deref(), Some("Shop Support"));
        assert_eq!(m.address, "support@shop.example");
        assert_eq!(m.domain(), "shop.example");
        assert_eq!(Mailbox::parse("a@b.example").expect("bare").name, None);
        for bad in [
            "",
            "nobody",
            "a@b",
            "a b@c.example",
            "<a@b.example",
            "a@@b.example",
        ] {
            assert!(Mailbox::parse(bad).is_none(), "{bad}");
        }
    }
}
