//! What a channel can carry, per direction (the eGain restrictions model).
//!
//! An adapter declares its defaults in its manifest; the operator's configuration
//! can only narrow them (the host's core intersects the two). The host fits every
//! outbound message to the outbound capabilities *before* the adapter renders it, so
//! adapters never see content their channel cannot carry.
//!
//! ```
//! use patchbay_plugin_sdk::capabilities::{DirectionCapabilities, Feature, RichType};
//!
//! let sms = DirectionCapabilities::plain_text(1600);
//! assert!(!sms.supports_rich(RichType::Carousel));
//! assert!(!sms.has(Feature::Typing));
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Capabilities of a channel in both directions plus its system messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChannelCapabilities {
    /// From customer to application.
    pub inbound: DirectionCapabilities,
    /// From application to customer.
    pub outbound: DirectionCapabilities,
}

/// What one direction of a channel can carry.
///
/// It gains fields as channels need them, so adapters build it from
/// [`plain_text`](Self::plain_text) or [`everything`](Self::everything) and the
/// `with_*` methods:
///
/// ```
/// use patchbay_plugin_sdk::capabilities::*;
/// let webex = DirectionCapabilities::plain_text(7000)
///     .with_max_text_bytes(7000)
///     .with_features([Feature::Attachments, Feature::RichText])
///     .with_rich_types([RichType::Buttons])
///     .with_limits(RichLimits::none().with_max_buttons(5));
/// assert!(webex.has(Feature::RichText));
/// assert_eq!(webex.limits.max_buttons, Some(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DirectionCapabilities {
    /// Longest text in characters (Unicode scalar values); `None` for no limit.
    #[serde(default)]
    pub max_text_length: Option<usize>,
    /// Longest text in UTF-8 bytes, for providers that count bytes (Webex);
    /// `None` for no limit. Text is split to fit both limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_text_bytes: Option<usize>,
    /// Features the direction supports.
    #[serde(default)]
    pub features: BTreeSet<Feature>,
    /// Rich message types carried natively; anything else is degraded.
    #[serde(default)]
    pub rich_types: BTreeSet<RichType>,
    /// Which attachments are allowed.
    #[serde(default)]
    pub attachment_policy: AttachmentPolicy,
    /// Size limits of native rich content (Slack's Block Kit, Teams' cards).
    #[serde(default)]
    pub limits: RichLimits,
}

/// How much native rich content a direction carries. Fitting enforces these so
/// the provider never rejects a message for its size: longer titles are
/// shortened, and rich content with more entries than allowed is sent as
/// numbered text instead (no choice is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RichLimits {
    /// Most buttons in one buttons message or on one card.
    #[serde(default)]
    pub max_buttons: Option<usize>,
    /// Most entries in a list picker, quick replies or time picker.
    #[serde(default)]
    pub max_choices: Option<usize>,
    /// Most cards in a carousel.
    #[serde(default)]
    pub max_cards: Option<usize>,
    /// Longest button, choice or card title, in characters.
    #[serde(default)]
    pub max_title_length: Option<usize>,
}

impl RichLimits {
    /// No limits.
    pub fn none() -> Self {
        RichLimits::default()
    }

    /// The same, with at most `max` buttons per message or card.
    pub fn with_max_buttons(mut self, max: usize) -> Self {
        self.max_buttons = Some(max);
        self
    }

    /// The same, with at most `max` entries per list, quick replies or time picker.
    pub fn with_max_choices(mut self, max: usize) -> Self {
        self.max_choices = Some(max);
        self
    }

    /// The same, with at most `max` cards per carousel.
    pub fn with_max_cards(mut self, max: usize) -> Self {
        self.max_cards = Some(max);
        self
    }

    /// The same, with titles of at most `max` characters.
    pub fn with_max_title_length(mut self, max: usize) -> Self {
        self.max_title_length = Some(max);
        self
    }
}

impl Default for DirectionCapabilities {
    fn default() -> Self {
        DirectionCapabilities::plain_text(usize::MAX)
    }
}

impl DirectionCapabilities {
    /// Text only, up to `max_text_length` characters; no features, no rich types,
    /// no attachments.
    pub fn plain_text(max_text_length: usize) -> Self {
        DirectionCapabilities {
            max_text_length: (max_text_length != usize::MAX).then_some(max_text_length),
            max_text_bytes: None,
            features: BTreeSet::new(),
            rich_types: BTreeSet::new(),
            attachment_policy: AttachmentPolicy::disabled(),
            limits: RichLimits::default(),
        }
    }

    /// Everything: every feature and rich type, any attachment, no length limit.
    pub fn everything() -> Self {
        DirectionCapabilities {
            max_text_length: None,
            max_text_bytes: None,
            features: Feature::ALL.iter().copied().collect(),
            rich_types: RichType::ALL.iter().copied().collect(),
            attachment_policy: AttachmentPolicy::default(),
            limits: RichLimits::default(),
        }
    }

    /// The same, with at most `max` characters of text (`None`: no limit).
    pub fn with_max_text_length(mut self, max: Option<usize>) -> Self {
        self.max_text_length = max;
        self
    }

    /// The same, with at most `max` UTF-8 bytes of text.
    pub fn with_max_text_bytes(mut self, max: usize) -> Self {
        self.max_text_bytes = Some(max);
        self
    }

    /// The same, supporting exactly `features`.
    pub fn with_features(mut self, features: impl IntoIterator<Item = Feature>) -> Self {
        self.features = features.into_iter().collect();
        self
    }

    /// The same, carrying exactly `rich_types` natively.
    pub fn with_rich_types(mut self, rich_types: impl IntoIterator<Item = RichType>) -> Self {
        self.rich_types = rich_types.into_iter().collect();
        self
    }

    /// The same, accepting attachments by `policy`.
    pub fn with_attachments(mut self, policy: AttachmentPolicy) -> Self {
        self.attachment_policy = policy;
        self
    }

    /// The same, with these rich-content limits.
    pub fn with_limits(mut self, limits: RichLimits) -> Self {
        self.limits = limits;
        self
    }

    /// True when `feature` is supported.
    pub fn has(&self, feature: Feature) -> bool {
        self.features.contains(&feature)
    }

    /// True when `rich` is carried natively.
    pub fn supports_rich(&self, rich: RichType) -> bool {
        self.rich_types.contains(&rich)
    }
}

/// A feature of a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Feature {
    /// Typing indicators.
    Typing,
    /// File attachments.
    Attachments,
    /// Markdown or other formatted text.
    RichText,
    /// Delivery and read receipts.
    Receipts,
}

impl Feature {
    /// Every feature.
    pub const ALL: &'static [Feature] = &[
        Feature::Typing,
        Feature::Attachments,
        Feature::RichText,
        Feature::Receipts,
    ];
}

/// A rich message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RichType {
    /// [`crate::message::Content::ListPicker`].
    ListPicker,
    /// [`crate::message::Content::Buttons`].
    Buttons,
    /// [`crate::message::Content::Carousel`].
    Carousel,
    /// [`crate::message::Content::QuickReplies`].
    QuickReplies,
    /// [`crate::message::Content::TimePicker`].
    TimePicker,
    /// [`crate::message::Content::RichLink`].
    RichLink,
}

impl RichType {
    /// Every rich type.
    pub const ALL: &'static [RichType] = &[
        RichType::ListPicker,
        RichType::Buttons,
        RichType::Carousel,
        RichType::QuickReplies,
        RichType::TimePicker,
        RichType::RichLink,
    ];

    /// Its name in JSON and config (`"list_picker"`).
    pub fn as_str(self) -> &'static str {
        match self {
            RichType::ListPicker => "list_picker",
            RichType::Buttons => "buttons",
            RichType::Carousel => "carousel",
            RichType::QuickReplies => "quick_replies",
            RichType::TimePicker => "time_picker",
            RichType::RichLink => "rich_link",
        }
    }
}

/// Which attachments a direction accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AttachmentPolicy {
    /// Attachments at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Largest file in bytes; `None` for no limit.
    #[serde(default)]
    pub max_size: Option<u64>,
    /// Whether `extensions` lists what is allowed or what is blocked.
    #[serde(default)]
    pub mode: ListMode,
    /// Lower-case extensions without the dot.
    #[serde(default)]
    pub extensions: BTreeSet<String>,
}

fn yes() -> bool {
    true
}

impl Default for AttachmentPolicy {
    fn default() -> Self {
        AttachmentPolicy {
            enabled: true,
            max_size: None,
            mode: ListMode::Block,
            extensions: BTreeSet::new(),
        }
    }
}

impl AttachmentPolicy {
    /// No attachments.
    pub fn disabled() -> Self {
        AttachmentPolicy {
            enabled: false,
            ..AttachmentPolicy::default()
        }
    }

    /// Any file, of any size.
    pub fn any() -> Self {
        AttachmentPolicy::default()
    }

    /// The same, with files of at most `bytes`.
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// The same, allowing only these extensions (lower case, no dot).
    pub fn allowing<S: Into<String>>(mut self, extensions: impl IntoIterator<Item = S>) -> Self {
        self.mode = ListMode::Allow;
        self.extensions = extensions.into_iter().map(Into::into).collect();
        self
    }

    /// The same, blocking these extensions (lower case, no dot).
    pub fn blocking<S: Into<String>>(mut self, extensions: impl IntoIterator<Item = S>) -> Self {
        self.mode = ListMode::Block;
        self.extensions = extensions.into_iter().map(Into::into).collect();
        self
    }

    /// True when a file with this extension passes the allow/block list.
    ///
    /// ```
    /// use patchbay_plugin_sdk::capabilities::{AttachmentPolicy, ListMode};
    /// let p = AttachmentPolicy::any().blocking(["exe"]);
    /// assert!(!p.allows_extension(Some("exe")));
    /// assert!(p.allows_extension(Some("pdf")));
    /// ```
    pub fn allows_extension(&self, ext: Option<&str>) -> bool {
        match (self.mode, ext) {
            (ListMode::Block, Some(ext)) => !self.extensions.contains(ext),
            (ListMode::Block, None) => true,
            (ListMode::Allow, Some(ext)) => self.extensions.contains(ext),
            // A file without an extension cannot be on an allow-list.
            (ListMode::Allow, None) => false,
        }
    }
}

/// Whether a list allows or blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ListMode {
    /// Only the listed extensions are allowed.
    Allow,
    /// The listed extensions are refused.
    #[default]
    Block,
}

/// The localised system messages Patchbay uses when it must tell someone something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SystemMessageKey {
    /// The message was kept and will be retried.
    RetainAndRetry,
    /// Outside service hours.
    OffHours,
    /// The customer sent content the channel cannot pass on.
    InvalidContentTypeToCustomer,
    /// The agent sent content the channel cannot carry.
    InvalidContentTypeToAgent,
    /// A message could not be delivered.
    ChannelMsgFailed,
    /// An attachment's extension is not allowed; `{0}` is the extension.
    BlockedFileExtension,
    /// An attachment is too large; `{0}` is the limit.
    AttachmentSizeExceedsLimit,
}

impl SystemMessageKey {
    /// Every key.
    pub const ALL: &'static [SystemMessageKey] = &[
        SystemMessageKey::RetainAndRetry,
        SystemMessageKey::OffHours,
        SystemMessageKey::InvalidContentTypeToCustomer,
        SystemMessageKey::InvalidContentTypeToAgent,
        SystemMessageKey::ChannelMsgFailed,
        SystemMessageKey::BlockedFileExtension,
        SystemMessageKey::AttachmentSizeExceedsLimit,
    ];

    /// The English default text.
    pub fn default_text(self) -> &'static str {
        match self {
            SystemMessageKey::RetainAndRetry => {
                "Thank you for reaching out. We will respond to you at the earliest."
            }
            SystemMessageKey::OffHours => {
                "Thank you for your inquiry. We are outside our service hours; please try again later."
            }
            SystemMessageKey::InvalidContentTypeToCustomer
            | SystemMessageKey::InvalidContentTypeToAgent => {
                "This content type is not currently supported."
            }
            SystemMessageKey::ChannelMsgFailed => {
                "Message could not be delivered. Please try again after some time."
            }
            SystemMessageKey::BlockedFileExtension => "Attachment file type '{0}' is not allowed.",
            SystemMessageKey::AttachmentSizeExceedsLimit => {
                "File could not be sent. It exceeded the maximum limit of {0}"
            }
        }
    }
}

/// System message texts by language tag (`"en-US"`), falling back to English defaults.
///
/// ```
/// use patchbay_plugin_sdk::capabilities::{SystemMessages, SystemMessageKey};
/// let m = SystemMessages::default();
/// assert_eq!(m.render("fr-FR", SystemMessageKey::BlockedFileExtension, "exe"),
///            "Attachment file type 'exe' is not allowed.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct SystemMessages(pub BTreeMap<String, BTreeMap<SystemMessageKey, String>>);

impl SystemMessages {
    /// The text for `key` in `language` (or its primary subtag, or the default),
    /// with `{0}` replaced by `arg`.
    pub fn render(&self, language: &str, key: SystemMessageKey, arg: &str) -> String {
        let primary = language.split('-').next().unwrap_or(language);
        let template = self
            .0
            .get(language)
            .and_then(|m| m.get(&key))
            .or_else(|| {
                self.0
                    .iter()
                    .find(|(lang, _)| lang.split('-').next() == Some(primary))
                    .and_then(|(_, m)| m.get(&key))
            })
            .map(String::as_str)
            .unwrap_or(key.default_text());
        template.replace("{0}", arg)
    }
}

#[cfg(test)]
mod tests {
    use super::RichType;

    #[test]
    fn rich_type_names_match_their_json() {
        for t in RichType::ALL {
            assert_eq!(serde_json::to_value(t).ok(), Some(t.as_str().into()));
        }
    }
}
