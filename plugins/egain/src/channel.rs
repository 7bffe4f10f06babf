//! eGain's channel object from Patchbay's channel model, and what changes
//! between the Hub's copy and it.
//!
//! The two models are the same: restrictions per direction (text length,
//! features, rich types, attachment policy) are Patchbay's capabilities as
//! narrowed by config, and `l10nProperties`' `msg_hub_*` texts are its system
//! messages under the same names.

use std::collections::{BTreeMap, BTreeSet};

use patchbay_plugin_sdk::capabilities::{
    DirectionCapabilities, Feature, ListMode, RichType, SystemMessageKey,
};
use patchbay_plugin_sdk::upstream::register::ChannelProfile;
use serde_json::{Value, json};

/// A 32×32 PNG, the icon eGain shows for a channel's activities unless the
/// upstream sets `icon`.
pub const DEFAULT_ICON: &str = "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAIAAAD8GO2jAAAAKklEQVR42mPQztlAU8QwasGoBaMWjFowasGoBaMWjFowasGoBaMWDBULAIi3HEyeTSRbAAAAAElFTkSuQmCC";

/// The `type` a Patchbay channel is registered under (custom types carry
/// the `custom.` prefix).
pub fn channel_type(channel: &str) -> String {
    format!("custom.patchbay.{channel}")
}

/// The channel object for `POST`/`PUT /channels`.
pub fn channel_object(profile: &ChannelProfile, icon: &str) -> Value {
    json!({
        "type": channel_type(&profile.name),
        "displayName": profile.name,
        "description": format!("Patchbay channel {} ({})", profile.name, profile.adapter),
        "icon": icon,
        "active": true,
        "restrictions": {
            "inbound": direction(&profile.capabilities.inbound, false),
            "outbound": direction(&profile.capabilities.outbound, true),
        },
        "l10nProperties": l10n(profile),
    })
}

fn direction(caps: &DirectionCapabilities, outbound: bool) -> Value {
    let features: Vec<&str> = caps
        .features
        .iter()
        .filter_map(|f| match f {
            Feature::Typing => Some("typing_events"),
            Feature::Attachments => Some("attachments"),
            Feature::RichText => Some("richText"),
            _ => None,
        })
        .collect();
    let policy = &caps.attachment_policy;
    let enabled = policy.enabled && caps.has(Feature::Attachments);
    let mut attachments = json!({
        "enabled": enabled,
        "type": match policy.mode { ListMode::Allow => "allow", _ => "block" },
        "extensions": policy.extensions.iter().collect::<Vec<_>>(),
    });
    if let Some(max) = policy.max_size {
        attachments["maxSize"] = json!(max);
    }
    let mut object = json!({
        "features": features,
        "attachmentPolicy": attachments,
    });
    // Text limits in bytes (Webex) are at least as long in characters.
    if let Some(max) = caps.max_text_length {
        object["maxTextLength"] = json!(max);
    }
    if outbound {
        let rich: Vec<&str> = caps
            .rich_types
            .iter()
            .filter_map(|t| match t {
                RichType::ListPicker => Some("listpicker"),
                RichType::QuickReplies => Some("quickreply"),
                RichType::TimePicker => Some("timepicker"),
                RichType::RichLink => Some("richlink"),
                // Buttons and carousels have no eGain type; agents' are not sent.
                _ => None,
            })
            .collect();
        object["richMessageTypes"] = json!(rich);
        object["systemMessages"] = json!(true);
        object["midChatAuth"] = json!(false);
    }
    object
}

/// Every `msg_hub_*` text in the channel's language and in each language its
/// config gives texts for; `{0}` is kept for the Hub to fill.
fn l10n(profile: &ChannelProfile) -> Value {
    let mut languages: BTreeSet<&str> = profile
        .system_messages
        .0
        .keys()
        .map(String::as_str)
        .collect();
    languages.insert(&profile.language);
    let entries: Vec<Value> = languages
        .into_iter()
        .map(|language| {
            let properties: Vec<Value> = SystemMessageKey::ALL
                .iter()
                .map(|key| {
                    json!({
                        "name": property_name(*key),
                        "value": profile.system_messages.render(language, *key, "{0}"),
                    })
                })
                .collect();
            json!({ "language": language, "properties": properties })
        })
        .collect();
    json!(entries)
}

/// `msg_hub_` and the key's snake-case name.
pub fn property_name(key: SystemMessageKey) -> String {
    let name = serde_json::to_value(key)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    format!("msg_hub_{name}")
}

/// How the Hub's copy differs from the wanted one: every differing field
/// (`outbound.maxTextLength: 140 → 2000`), and those of them that would let
/// more through than the Hub's copy does now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Every change.
    pub changes: Vec<String>,
    /// The widening ones.
    pub widenings: Vec<String>,
}

/// Compares the fields Patchbay manages; others (ids, dates, the icon) are
/// the Hub's.
pub fn diff(existing: &Value, wanted: &Value) -> Diff {
    let mut out = Diff::default();
    for field in ["displayName", "description", "active"] {
        let (old, new) = (&existing[field], &wanted[field]);
        if old != new {
            out.changes.push(format!("{field}: {} → {new}", shown(old)));
        }
    }
    for dir in ["inbound", "outbound"] {
        let old = &existing["restrictions"][dir];
        let new = &wanted["restrictions"][dir];
        let mut change = |field: String, old: &Value, new: &Value, widens: bool| {
            let line = format!("{dir}.{field}: {} → {}", shown(old), shown(new));
            if widens {
                out.widenings.push(line.clone());
            }
            out.changes.push(line);
        };
        let (old_len, new_len) = (&old["maxTextLength"], &new["maxTextLength"]);
        if old_len != new_len {
            let widens = match (old_len.as_u64(), new_len.as_u64()) {
                (Some(o), Some(n)) => n > o,
                (Some(_), None) => true,
                _ => false,
            };
            change("maxTextLength".into(), old_len, new_len, widens);
        }
        for set in ["features", "richMessageTypes"] {
            let (mut o, n) = (strings(&old[set]), strings(&new[set]));
            if set == "features" && old[set].is_null() {
                // eGain: "if no features are provided" the channel allows them all.
                o = ["typing_events", "attachments", "richText"]
                    .map(str::to_string)
                    .into();
            }
            if o != n {
                change(set.into(), &old[set], &new[set], !n.is_subset(&o));
            }
        }
        if dir == "outbound" {
            for flag in ["systemMessages", "midChatAuth"] {
                if old[flag] != new[flag] {
                    change(
                        flag.into(),
                        &old[flag],
                        &new[flag],
                        new[flag] == json!(true),
                    );
                }
            }
        }
        let (o, n) = (&old["attachmentPolicy"], &new["attachmentPolicy"]);
        if o["enabled"] != n["enabled"] {
            let widens = n["enabled"] == json!(true);
            change(
                "attachmentPolicy.enabled".into(),
                &o["enabled"],
                &n["enabled"],
                widens,
            );
        }
        if o["maxSize"] != n["maxSize"] {
            let widens = match (o["maxSize"].as_u64(), n["maxSize"].as_u64()) {
                (Some(o), Some(n)) => n > o,
                (Some(_), None) => true,
                _ => false,
            };
            change(
                "attachmentPolicy.maxSize".into(),
                &o["maxSize"],
                &n["maxSize"],
                widens,
            );
        }
        let (old_ext, new_ext) = (strings(&o["extensions"]), strings(&n["extensions"]));
        if o["type"] != n["type"] || old_ext != new_ext {
            let widens = if o["type"] != n["type"] {
                true
            } else if n["type"] == json!("allow") {
                !new_ext.is_subset(&old_ext)
            } else {
                !old_ext.is_subset(&new_ext)
            };
            let show = |p: &Value| json!({"type": p["type"], "extensions": p["extensions"]});
            change(
                "attachmentPolicy.extensions".into(),
                &show(o),
                &show(n),
                widens,
            );
        }
    }
    let (old_texts, new_texts) = (texts(existing), texts(wanted));
    for (key, new) in &new_texts {
        if old_texts.get(key) != Some(new) {
            let old = old_texts.get(key).map_or(Value::Null, |s| json!(s));
            out.changes
                .push(format!("l10n.{key}: {} → {}", shown(&old), json!(new)));
        }
    }
    out
}

fn shown(value: &Value) -> String {
    if value.is_null() {
        "(none)".into()
    } else {
        value.to_string()
    }
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `language.name` → text.
fn texts(channel: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in channel["l10nProperties"].as_array().into_iter().flatten() {
        let language = entry["language"].as_str().unwrap_or_default();
        for property in entry["properties"].as_array().into_iter().flatten() {
            if let (Some(name), Some(value)) =
                (property["name"].as_str(), property["value"].as_str())
            {
                out.insert(format!("{language}.{name}"), value.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use patchbay_plugin_sdk::capabilities::{
        AttachmentPolicy, ChannelCapabilities, SystemMessages,
    };

    use super::*;

    fn profile(max: usize, rich: &[RichType]) -> ChannelProfile {
        let outbound = DirectionCapabilities::plain_text(max)
            .with_features([Feature::Attachments])
            .with_rich_types(rich.iter().copied())
            .with_attachments(AttachmentPolicy::any().blocking(["exe"]));
        ChannelProfile::new(
            "mail",
            "email",
            ChannelCapabilities {
                inbound: DirectionCapabilities::plain_text(max),
                outbound,
            },
            "en-US",
            SystemMessages::default(),
        )
    }

    #[test]
    fn the_same_profile_differs_in_nothing() {
        let wanted = channel_object(&profile(1000, &[RichType::ListPicker]), DEFAULT_ICON);
        assert_eq!(diff(&wanted, &wanted), Diff::default());
    }

    #[test]
    fn narrowing_is_a_change_and_widening_is_flagged() {
        let wide = channel_object(
            &profile(1000, &[RichType::ListPicker, RichType::RichLink]),
            DEFAULT_ICON,
        );
        let narrow = channel_object(&profile(500, &[RichType::ListPicker]), DEFAULT_ICON);
        let narrowing = diff(&wide, &narrow);
        assert_eq!(narrowing.changes.len(), 3, "{narrowing:?}");
        assert!(narrowing.widenings.is_empty(), "{narrowing:?}");
        let widening = diff(&narrow, &wide);
        assert_eq!(widening.widenings.len(), 3, "{widening:?}");
        assert!(widening.widenings[0].starts_with("inbound.maxTextLength: 500 → 1000"));
    }

    #[test]
    fn unblocking_an_extension_widens() {
        let mut hub = channel_object(&profile(1000, &[]), DEFAULT_ICON);
        hub["restrictions"]["outbound"]["attachmentPolicy"]["extensions"] = json!(["exe", "bat"]);
        let d = diff(&hub, &channel_object(&profile(1000, &[]), DEFAULT_ICON));
        assert_eq!(d.widenings.len(), 1, "{d:?}");
        assert!(d.widenings[0].starts_with("outbound.attachmentPolicy.extensions"));
    }

    #[test]
    fn texts_keep_the_placeholder_under_egain_names() {
        let object = channel_object(&profile(1000, &[]), DEFAULT_ICON);
        let texts = texts(&object);
        assert_eq!(
            texts["en-US.msg_hub_blocked_file_extension"],
            "Attachment file type '{0}' is not allowed."
        );
        assert_eq!(texts.len(), SystemMessageKey::ALL.len());
    }
}
