//! Narrowing declared capabilities with configuration.
//!
//! An adapter declares what its channel can carry; an operator may narrow that
//! (an SMS channel limited to 320 characters, a Slack workspace where attachments
//! are off). Narrowing never widens: limits take the minimum, sets the
//! intersection, attachment lists combine so a file must pass both.

use std::collections::BTreeSet;

use patchbay_plugin_sdk::capabilities::{
    AttachmentPolicy, ChannelCapabilities, DirectionCapabilities, Feature, ListMode, RichLimits,
    RichType,
};
use serde::Deserialize;

/// Operator overrides for both directions (`[channels.<id>.capabilities]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityOverrides {
    /// Narrows inbound capabilities.
    #[serde(default)]
    pub inbound: DirectionOverrides,
    /// Narrows outbound capabilities.
    #[serde(default)]
    pub outbound: DirectionOverrides,
}

/// Operator overrides for one direction; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionOverrides {
    /// A lower text limit, in characters.
    pub max_text_length: Option<usize>,
    /// A lower text limit, in UTF-8 bytes.
    pub max_text_bytes: Option<usize>,
    /// The features to keep (others are removed).
    pub features: Option<BTreeSet<Feature>>,
    /// The rich types to keep (others are degraded).
    pub rich_types: Option<BTreeSet<RichType>>,
    /// Attachment restrictions.
    pub attachments: Option<AttachmentOverrides>,
    /// Lower rich-content limits.
    #[serde(default)]
    pub limits: RichLimits,
}

/// Operator attachment restrictions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentOverrides {
    /// `false` turns attachments off.
    pub enabled: Option<bool>,
    /// A lower size limit in bytes.
    pub max_size: Option<u64>,
    /// Only these extensions.
    pub allow: Option<BTreeSet<String>>,
    /// Never these extensions.
    #[serde(default)]
    pub block: BTreeSet<String>,
}

/// Applies overrides to declared capabilities.
pub fn narrow(
    declared: &ChannelCapabilities,
    overrides: &CapabilityOverrides,
) -> ChannelCapabilities {
    ChannelCapabilities {
        inbound: narrow_direction(&declared.inbound, &overrides.inbound),
        outbound: narrow_direction(&declared.outbound, &overrides.outbound),
    }
}

/// Applies one direction's overrides.
///
/// ```
/// use patchbay_core::capabilities::{narrow_direction, DirectionOverrides};
/// use patchbay_plugin_sdk::capabilities::{DirectionCapabilities, RichType};
///
/// let declared = DirectionCapabilities::everything();
/// let o = DirectionOverrides { max_text_length: Some(160), rich_types: Some([RichType::Buttons].into()), ..Default::default() };
/// let n = narrow_direction(&declared, &o);
/// assert_eq!(n.max_text_length, Some(160));
/// assert!(!n.supports_rich(RichType::Carousel));
/// ```
pub fn narrow_direction(
    declared: &DirectionCapabilities,
    o: &DirectionOverrides,
) -> DirectionCapabilities {
    let mut narrowed = declared.clone();
    narrowed.max_text_length = lower_limit(declared.max_text_length, o.max_text_length);
    narrowed.max_text_bytes = lower_limit(declared.max_text_bytes, o.max_text_bytes);
    let (d, l) = (declared.limits, o.limits);
    let limits = &mut narrowed.limits;
    limits.max_buttons = lower_limit(d.max_buttons, l.max_buttons);
    limits.max_choices = lower_limit(d.max_choices, l.max_choices);
    limits.max_cards = lower_limit(d.max_cards, l.max_cards);
    limits.max_title_length = lower_limit(d.max_title_length, l.max_title_length);
    if let Some(keep) = &o.features {
        narrowed.features = declared.features.intersection(keep).copied().collect();
    }
    if let Some(keep) = &o.rich_types {
        narrowed.rich_types = declared.rich_types.intersection(keep).copied().collect();
    }
    if let Some(a) = &o.attachments {
        narrowed.attachment_policy = narrow_attachments(&declared.attachment_policy, a);
    }
    narrowed
}

/// The tighter of two optional limits (`None` is no limit).
fn lower_limit(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn narrow_attachments(declared: &AttachmentPolicy, o: &AttachmentOverrides) -> AttachmentPolicy {
    let lower = |set: &BTreeSet<String>| -> BTreeSet<String> {
        set.iter()
            .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
            .collect()
    };
    let block = lower(&o.block);
    let (mode, extensions) = match (&o.allow, declared.mode) {
        (Some(allow), ListMode::Allow) => (
            ListMode::Allow,
            lower(allow)
                .intersection(&declared.extensions)
                .filter(|e| !block.contains(*e))
                .cloned()
                .collect(),
        ),
        (Some(allow), ListMode::Block) => (
            ListMode::Allow,
            lower(allow)
                .into_iter()
                .filter(|e| !declared.extensions.contains(e) && !block.contains(e))
                .collect(),
        ),
        (None, ListMode::Allow) => (
            ListMode::Allow,
            declared.extensions.difference(&block).cloned().collect(),
        ),
        (None, ListMode::Block) => (
            ListMode::Block,
            declared.extensions.union(&block).cloned().collect(),
        ),
    };
    let mut narrowed = declared.clone();
    narrowed.enabled = declared.enabled && o.enabled.unwrap_or(true);
    narrowed.max_size = match (declared.max_size, o.max_size) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    narrowed.mode = mode;
    narrowed.extensions = extensions;
    narrowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn attachment_lists_combine_so_both_must_pass() {
        let block_exe = AttachmentPolicy::any().blocking(["exe"]);
        let allow_jpg_txt = AttachmentPolicy::any().allowing(["jpg", "txt"]);
        let table: Vec<(
            &AttachmentPolicy,
            AttachmentOverrides,
            ListMode,
            BTreeSet<String>,
        )> = vec![
            (
                &block_exe,
                AttachmentOverrides {
                    block: set(&[".BAT"]),
                    ..Default::default()
                },
                ListMode::Block,
                set(&["bat", "exe"]),
            ),
            (
                &block_exe,
                AttachmentOverrides {
                    allow: Some(set(&["exe", "pdf"])),
                    ..Default::default()
                },
                ListMode::Allow,
                set(&["pdf"]),
            ),
            (
                &allow_jpg_txt,
                AttachmentOverrides {
                    allow: Some(set(&["jpg", "png"])),
                    ..Default::default()
                },
                ListMode::Allow,
                set(&["jpg"]),
            ),
            (
                &allow_jpg_txt,
                AttachmentOverrides {
                    block: set(&["txt"]),
                    ..Default::default()
                },
                ListMode::Allow,
                set(&["jpg"]),
            ),
        ];
        for (declared, o, mode, exts) in table {
            let n = narrow_attachments(declared, &o);
            assert_eq!((n.mode, &n.extensions), (mode, &exts), "{o:?}");
        }
    }

    #[test]
    fn narrowing_never_widens() {
        let declared = DirectionCapabilities::plain_text(160)
            .with_max_text_bytes(400)
            .with_limits(RichLimits::none().with_max_buttons(5).with_max_cards(10));
        let o = DirectionOverrides {
            max_text_length: Some(1000),
            max_text_bytes: Some(300),
            features: Some(Feature::ALL.iter().copied().collect()),
            rich_types: Some(RichType::ALL.iter().copied().collect()),
            attachments: Some(AttachmentOverrides {
                enabled: Some(true),
                max_size: Some(10),
                ..Default::default()
            }),
            limits: RichLimits::none().with_max_buttons(3),
        };
        let n = narrow_direction(&declared, &o);
        assert_eq!(n.limits.max_buttons, Some(3));
        assert_eq!(n.limits.max_cards, Some(10));
        assert_eq!(n.max_text_length, Some(160));
        assert_eq!(n.max_text_bytes, Some(300));
        assert!(n.features.is_empty() && n.rich_types.is_empty());
        assert!(!n.attachment_policy.enabled);
    }
}
