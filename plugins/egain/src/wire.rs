//! The Conversation Hub's message bodies: **the one place to correct**.
//!
//! eGain documents the envelope (`{metadata: {attributes: [{name, value}]},
//! messages: {…}}` on `POST /conversations/messages`, answered 202), the
//! message types and who may send them, but not the body of one message
//! (`RequestMessages`) nor the callback's. Everything below the envelope is
//! assumed, in one table, each line marked:
//!
//! | field | meaning | source |
//! |---|---|---|
//! | `messages.message[]` | the messages of one call or callback | assumed |
//! | `.id` | the sender's id for the message | assumed |
//! | `.type` | `text`, `typing.start`, `conversation.end`, `richMessage.listpicker`, … | documented (the type names) |
//! | `.createdDate` | RFC 3339 | assumed |
//! | `.conversation.id` | the Hub's conversation | assumed |
//! | `.sender` / `.recipient` | `{type, address, name}`; the customer's address is Patchbay's customer key, the account's its `address` | assumed |
//! | `.inReplyTo` | the Hub's id of the message a postback answers | assumed |
//! | `.content.text`, `.content.attachments[] {url, name, contentType, size}`, `.content.postback` | text, files by URL (not the Asset API), a choice's payload | assumed |
//! | `.content.richMessage` | the rich message, with the fields of [`ListPicker`], [`QuickReplies`], [`TimePicker`], [`RichLink`] | assumed |
//! | answer `{messages: {message: [{id}]}}` | the Hub's ids | assumed |

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A send or a callback.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Envelope {
    /// Key/values about the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// The messages.
    pub messages: Messages,
}

/// `metadata`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// `[{name, value}]`.
    #[serde(default)]
    pub attributes: Vec<Attribute>,
}

/// One attribute.
#[derive(Debug, Serialize, Deserialize)]
pub struct Attribute {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// `messages`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Messages {
    /// One or more messages.
    #[serde(default)]
    pub message: Vec<HubMessage>,
}

/// One message, either way.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubMessage {
    /// The sender's id for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `text`, `typing.start`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date: Option<String>,
    /// The Hub's conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Reference>,
    /// Who sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Party>,
    /// Who it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Party>,
    /// The Hub's id of the message this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// What it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<HubContent>,
}

/// `{id}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reference {
    /// The id.
    #[serde(default)]
    pub id: Option<String>,
}

/// A sender or recipient.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Party {
    /// `customer`, `egain_agent`, `custom_bot`, …
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The customer's key, or the account's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `content`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubContent {
    /// The text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Files, by URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<HubAttachment>,
    /// A choice's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback: Option<String>,
    /// Attributes of a `customer.info`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    /// The rich message of a `richMessage.*` type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rich_message: Option<Value>,
}

/// A file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubAttachment {
    /// Where it is.
    pub url: String,
    /// Its file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// `richMessage.listpicker`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPicker {
    /// The heading.
    #[serde(default)]
    pub title: String,
    /// The choices.
    pub items: Vec<ListItem>,
}

/// A list picker's item.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListItem {
    /// What the customer sees.
    pub title: String,
    /// A second line.
    #[serde(default)]
    pub subtitle: Option<String>,
    /// An image.
    #[serde(default)]
    pub image_url: Option<String>,
    /// Sent back when picked; the title when absent.
    #[serde(default)]
    pub payload: Option<String>,
}

/// `richMessage.quickreply`.
#[derive(Debug, Deserialize)]
pub struct QuickReplies {
    /// The prompt.
    #[serde(default)]
    pub text: String,
    /// The replies.
    pub replies: Vec<Reply>,
}

/// A quick reply.
#[derive(Debug, Deserialize)]
pub struct Reply {
    /// Its label.
    pub title: String,
    /// Sent back when chosen; the label when absent.
    #[serde(default)]
    pub payload: Option<String>,
}

/// `richMessage.timepicker`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimePicker {
    /// The prompt.
    #[serde(default)]
    pub title: String,
    /// IANA time zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The slots.
    pub slots: Vec<Slot>,
}

/// A time slot.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    /// RFC 3339 start.
    pub start: String,
    /// Minutes.
    #[serde(default)]
    pub duration_minutes: Option<u32>,
    /// Sent back when chosen; the start when absent.
    #[serde(default)]
    pub payload: Option<String>,
}

/// `richMessage.richlink`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RichLink {
    /// The link.
    pub url: String,
    /// Its title.
    #[serde(default)]
    pub title: String,
    /// A preview image.
    #[serde(default)]
    pub image_url: Option<String>,
    /// A short description.
    #[serde(default)]
    pub description: Option<String>,
}
