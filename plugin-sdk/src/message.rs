//! The canonical message model: one format for both directions.
//!
//! A [`Message`] is an envelope (who, where, when, trace context) around one
//! [`Content`]. The application only ever sees this format, whatever the channel.
//!
//! Forward compatibility: unknown *fields* are ignored and unknown content *kinds*
//! are kept verbatim as [`Content::Unknown`], so a newer peer never makes an older
//! one fail.
//!
//! ```
//! use patchbay_plugin_sdk::message::{Content, Message};
//!
//! let json = r#"{"conversation":{"id":"c-1"},"content":{"type":"text","text":"hi"}}"#;
//! let msg: Message = serde_json::from_str(json).unwrap();
//! assert_eq!(msg.content, Content::text("hi"));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One canonical message, inbound (customer → application) or outbound
/// (application → customer).
///
/// ```
/// use patchbay_plugin_sdk::message::{Content, Message};
///
/// let msg = Message::new("conv-42", Content::text("Hello"));
/// assert_eq!(msg.conversation.id, "conv-42");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Patchbay's id for this message, assigned by the host when it stores it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The channel instance (the key of `[channels.<id>]` in the host config).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// The conversation, and the thread within it if the channel has threads.
    pub conversation: Conversation,
    /// Who wrote the message: the customer inbound, the bot or agent outbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Participant>,
    /// Who the message is for, when the channel says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Participant>,
    /// The provider's own id for this message (Slack `ts`, Twilio `MessageSid`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// When the message was written, RFC 3339, as the provider reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// W3C and B3 trace headers carried end to end.
    #[serde(default, skip_serializing_if = "TraceContext::is_empty")]
    pub trace: TraceContext,
    /// Key/values the channel supplied with the message (customer profile, page URL…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, Value>,
    /// What the message says.
    pub content: Content,
}

impl Message {
    /// A message in `conversation` with the given content and an otherwise empty envelope.
    pub fn new(conversation: impl Into<String>, content: Content) -> Self {
        Message {
            id: String::new(),
            channel: String::new(),
            conversation: Conversation {
                id: conversation.into(),
                thread_id: None,
            },
            sender: None,
            recipient: None,
            provider_message_id: None,
            timestamp: None,
            trace: TraceContext::default(),
            context: BTreeMap::new(),
            content,
        }
    }

    /// Checks what serde alone cannot: a known content kind that failed to parse
    /// (and so was kept as unknown) is an error here, with the parser's reason.
    ///
    /// ```
    /// use patchbay_plugin_sdk::message::Message;
    /// let bad: Message = serde_json::from_str(
    ///     r#"{"conversation":{"id":"c"},"content":{"type":"text"}}"#).unwrap();
    /// assert!(bad.validate().unwrap_err().contains("text"));
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        if self.conversation.id.is_empty() {
            return Err("conversation.id must not be empty".into());
        }
        self.content.validate()
    }
}

/// A conversation and optional thread.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Conversation {
    /// The conversation id, stable for the life of the conversation on its channel.
    pub id: String,
    /// The thread within the conversation (Slack `thread_ts`, Teams `replyToId`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

/// A sender or recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Participant {
    /// The channel's id for the participant (user id, phone number, address).
    pub id: String,
    /// A display name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Participant {
    /// A participant known by id only.
    pub fn id(id: impl Into<String>) -> Self {
        Participant {
            id: id.into(),
            name: None,
        }
    }
}

/// Trace headers carried from provider to application and back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TraceContext {
    /// W3C `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// B3 single-header form (`b3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b3: Option<String>,
}

impl TraceContext {
    /// True when no trace header is present.
    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none() && self.tracestate.is_none() && self.b3.is_none()
    }
}

/// Declares [`Content`] and the strict twin its `validate` parses with, from
/// one list of kinds, so the two cannot drift apart.
macro_rules! content_kinds {
    ($( $(#[$meta:meta])* $kind:ident $fields:tt ),* $(,)?) => {
        /// The body of a message. Serialised with a `type` tag in snake case.
        ///
        /// ```
        /// use patchbay_plugin_sdk::message::Content;
        /// let json = serde_json::to_value(Content::text("hi")).unwrap();
        /// assert_eq!(json["type"], "text");
        /// ```
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum Content {
            $( $(#[$meta])* $kind $fields, )*
            /// A content kind this version does not know, kept verbatim so it round-trips.
            #[serde(untagged)]
            Unknown(Value),
        }

        /// [`Content`] without the fallback: a known kind that fails to parse
        /// here says precisely why.
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        #[allow(dead_code)]
        enum StrictContent {
            $( $kind $fields, )*
        }
    };
}

content_kinds! {
    /// Text, plain or markdown.
    Text {
        /// The text.
        text: String,
        /// How to read `text`.
        #[serde(default, skip_serializing_if = "TextFormat::is_plain")]
        format: TextFormat,
    },
    /// A typing indicator.
    Typing {
        /// `true` while typing, `false` when stopped.
        #[serde(default = "yes")]
        active: bool,
    },
    /// One or more files, with an optional caption.
    Attachments {
        /// The files.
        attachments: Vec<Attachment>,
        /// Text sent with the files.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A button's or menu item's payload, sent back by the customer.
    Postback {
        /// The payload the application attached to the choice.
        payload: String,
        /// What the customer saw or typed, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// The conversation ended (customer left inbound; agent or bot ended outbound).
    EndSession {
        /// Why, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Key/values from the channel with no other content.
    ContextData {
        /// The data.
        data: BTreeMap<String, Value>,
    },
    /// A menu the customer picks from.
    ListPicker {
        /// The question or heading.
        title: String,
        /// The choices, in order.
        items: Vec<ListItem>,
    },
    /// Text with buttons (postback and link).
    Buttons {
        /// The text above the buttons.
        text: String,
        /// The buttons, in order.
        buttons: Vec<Button>,
    },
    /// A horizontal list of cards.
    Carousel {
        /// The cards, in order.
        cards: Vec<Card>,
    },
    /// Text with short replies offered as chips.
    QuickReplies {
        /// The prompt.
        text: String,
        /// The replies, in order.
        replies: Vec<QuickReply>,
    },
    /// A choice of time slots.
    TimePicker {
        /// The prompt.
        title: String,
        /// The slots, in order.
        slots: Vec<TimeSlot>,
        /// IANA time zone the slots are shown in, when not UTC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// A link preview.
    RichLink {
        /// The link.
        url: String,
        /// Its title.
        title: String,
        /// A preview image.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        /// A short description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// What became of an outbound message.
    Receipt(DeliveryReceipt),
}

fn yes() -> bool {
    true
}

impl Content {
    /// Plain text content.
    pub fn text(text: impl Into<String>) -> Self {
        Content::Text {
            text: text.into(),
            format: TextFormat::Plain,
        }
    }

    /// The `type` tag of this content (`"text"`, `"carousel"`…).
    pub fn kind(&self) -> &str {
        match self {
            Content::Text { .. } => "text",
            Content::Typing { .. } => "typing",
            Content::Attachments { .. } => "attachments",
            Content::Postback { .. } => "postback",
            Content::EndSession { .. } => "end_session",
            Content::ContextData { .. } => "context_data",
            Content::ListPicker { .. } => "list_picker",
            Content::Buttons { .. } => "buttons",
            Content::Carousel { .. } => "carousel",
            Content::QuickReplies { .. } => "quick_replies",
            Content::TimePicker { .. } => "time_picker",
            Content::RichLink { .. } => "rich_link",
            Content::Receipt(_) => "receipt",
            Content::Unknown(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// The rich type this content needs from the channel, if it is rich content.
    pub fn rich_type(&self) -> Option<crate::capabilities::RichType> {
        use crate::capabilities::RichType;
        Some(match self {
            Content::ListPicker { .. } => RichType::ListPicker,
            Content::Buttons { .. } => RichType::Buttons,
            Content::Carousel { .. } => RichType::Carousel,
            Content::QuickReplies { .. } => RichType::QuickReplies,
            Content::TimePicker { .. } => RichType::TimePicker,
            Content::RichLink { .. } => RichType::RichLink,
            _ => return None,
        })
    }

    /// Rejects a known kind that only parsed as [`Content::Unknown`] because it was malformed.
    pub fn validate(&self) -> Result<(), String> {
        let Content::Unknown(value) = self else {
            return Ok(());
        };
        let kind = value.get("type").and_then(Value::as_str);
        let Some(kind) = kind else {
            return Err("content has no \"type\"".into());
        };
        if KNOWN_KINDS.contains(&kind) {
            // A known kind lands here only when it did not parse as itself.
            // Parse again strictly to get serde's reason; if the copy parses
            // (its duplicate keys were merged on the way), the original had
            // conflicting fields.
            return Err(
                match serde_json::from_value::<StrictContent>(value.clone()) {
                    Ok(_) => format!("invalid {kind} content: a field is given twice"),
                    Err(e) => format!("invalid {kind} content: {e}"),
                },
            );
        }
        Ok(())
    }
}

/// Every content kind this version knows.
pub const KNOWN_KINDS: &[&str] = &[
    "text",
    "typing",
    "attachments",
    "postback",
    "end_session",
    "context_data",
    "list_picker",
    "buttons",
    "carousel",
    "quick_replies",
    "time_picker",
    "rich_link",
    "receipt",
];

/// How text is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TextFormat {
    /// Plain text.
    #[default]
    Plain,
    /// CommonMark; adapters convert to the channel's dialect or strip it.
    Markdown,
}

impl TextFormat {
    fn is_plain(&self) -> bool {
        *self == TextFormat::Plain
    }
}

/// A file sent with a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Attachment {
    /// Where the file can be fetched.
    pub url: String,
    /// The file name, including its extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl Attachment {
    /// The lower-case extension of `filename` (or of the URL path), without the dot.
    ///
    /// ```
    /// use patchbay_plugin_sdk::message::Attachment;
    /// let a = Attachment { url: "https://x/y/Report.PDF?sig=1".into(), ..Default::default() };
    /// assert_eq!(a.extension().as_deref(), Some("pdf"));
    /// ```
    pub fn extension(&self) -> Option<String> {
        let name = match &self.filename {
            Some(name) => name.as_str(),
            None => {
                let path = self.url.split(['?', '#']).next().unwrap_or("");
                path.rsplit('/').next().unwrap_or("")
            }
        };
        let (_, ext) = name.rsplit_once('.')?;
        (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
    }
}

/// One choice of a list picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ListItem {
    /// What the customer sees.
    pub title: String,
    /// A second line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    /// An image for the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The payload sent back as a postback when the item is picked.
    pub payload: String,
}

impl ListItem {
    /// The item on one line, for choice lists that show no subtitle.
    ///
    /// ```
    /// use patchbay_plugin_sdk::message::ListItem;
    /// let item = ListItem { title: "Morning".into(), subtitle: Some("8–12".into()), ..Default::default() };
    /// assert_eq!(item.label(), "Morning — 8–12");
    /// ```
    pub fn label(&self) -> String {
        match &self.subtitle {
            Some(sub) => format!("{} — {sub}", self.title),
            None => self.title.clone(),
        }
    }
}

/// A button: a postback or a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    /// The label.
    pub title: String,
    /// What pressing it does.
    pub action: ButtonAction,
}

impl Button {
    /// A button that sends `payload` back.
    pub fn postback(title: impl Into<String>, payload: impl Into<String>) -> Self {
        Button {
            title: title.into(),
            action: ButtonAction::Postback {
                payload: payload.into(),
            },
        }
    }

    /// A button that opens `url`.
    pub fn link(title: impl Into<String>, url: impl Into<String>) -> Self {
        Button {
            title: title.into(),
            action: ButtonAction::Link { url: url.into() },
        }
    }
}

/// What a button does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ButtonAction {
    /// Send `payload` back to the application as a [`Content::Postback`].
    Postback {
        /// The payload.
        payload: String,
    },
    /// Open a URL.
    Link {
        /// The URL.
        url: String,
    },
}

/// One card of a carousel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Card {
    /// The heading.
    pub title: String,
    /// A second line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    /// An image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The card's buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

/// A quick reply chip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct QuickReply {
    /// The label.
    pub title: String,
    /// The payload sent back when chosen.
    pub payload: String,
}

/// A time slot of a time picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TimeSlot {
    /// Start, RFC 3339.
    pub start: String,
    /// Length in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u32>,
    /// The payload sent back when chosen; the start time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// The fate of an outbound message, reported to the application.
///
/// ```
/// use patchbay_plugin_sdk::message::{DeliveryReceipt, ReasonCode, ReceiptStatus};
/// let r = DeliveryReceipt::failed("m-1", ReasonCode::INVALID_DESTINATION, "no such room");
/// assert_eq!(r.status, ReceiptStatus::Failed);
/// assert_eq!(r.reasons[0].code, ReasonCode(530));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DeliveryReceipt {
    /// Patchbay's id of the outbound message this is about, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message_id: String,
    /// The provider's id of that message, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// What happened.
    pub status: ReceiptStatus,
    /// Why, for `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// What Patchbay changed to fit the message to the channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adjustments: Vec<Adjustment>,
}

impl DeliveryReceipt {
    /// A `Delivered` receipt.
    pub fn delivered(message_id: impl Into<String>) -> Self {
        DeliveryReceipt {
            message_id: message_id.into(),
            status: ReceiptStatus::Delivered,
            ..Default::default()
        }
    }

    /// A `Failed` receipt with one reason.
    pub fn failed(
        message_id: impl Into<String>,
        code: ReasonCode,
        message: impl Into<String>,
    ) -> Self {
        DeliveryReceipt {
            message_id: message_id.into(),
            status: ReceiptStatus::Failed,
            reasons: vec![Reason {
                code,
                message: Some(message.into()),
            }],
            ..Default::default()
        }
    }
}

/// Delivery status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum ReceiptStatus {
    /// The provider accepted or delivered the message.
    #[default]
    Delivered,
    /// The recipient read it.
    Read,
    /// A published message was removed.
    Removed,
    /// It was not delivered; see the reasons.
    Failed,
}

/// A reason code with an optional human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The code.
    pub code: ReasonCode,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A failure reason code (the Third-Party Messaging codes). Unknown codes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReasonCode(pub u16);

impl ReasonCode {
    /// 305: the message expired.
    pub const EXPIRED: ReasonCode = ReasonCode(305);
    /// 310: rate limit reached.
    pub const RATE_LIMITED: ReasonCode = ReasonCode(310);
    /// 350: message not allowed.
    pub const NOT_ALLOWED: ReasonCode = ReasonCode(350);
    /// 500: general error.
    pub const GENERAL: ReasonCode = ReasonCode(500);
    /// 510: unsupported message.
    pub const UNSUPPORTED: ReasonCode = ReasonCode(510);
    /// 512: unknown message.
    pub const UNKNOWN: ReasonCode = ReasonCode(512);
    /// 520: invalid message structure.
    pub const INVALID_STRUCTURE: ReasonCode = ReasonCode(520);
    /// 530: invalid destination.
    pub const INVALID_DESTINATION: ReasonCode = ReasonCode(530);
}

/// One change made to fit an outbound message to its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    /// The content kind or feature concerned (`"carousel"`, `"typing"`, `"text"`…).
    pub subject: String,
    /// What was done.
    pub action: AdjustmentAction,
    /// Details for people.
    pub detail: String,
}

/// What fitting did to a part of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdjustmentAction {
    /// Rewritten into a form the channel supports.
    Converted,
    /// Split into several messages.
    Split,
    /// Shortened to the channel's limits.
    Truncated,
    /// Left out.
    Dropped,
    /// The whole message was refused.
    Refused,
}
