#![no_main]
//! The application API's body (`POST /v1/channels/{id}/messages`), then the
//! fitting every accepted message goes through, against channels of several
//! shapes: nothing panics, and every text part fits its channel's limits.

use libfuzzer_sys::fuzz_target;
use patchbay_core::fit::{Target, fit};
use patchbay_core::text::TextLimit;
use patchbay_fuzz::check_message;
use patchbay_plugin_sdk::capabilities::{
    AttachmentPolicy, DirectionCapabilities, Feature, RichLimits, RichType, SystemMessages,
};
use patchbay_plugin_sdk::message::Content;

fn channels() -> Vec<DirectionCapabilities> {
    vec![
        DirectionCapabilities::everything(),
        DirectionCapabilities::plain_text(160),
        DirectionCapabilities::plain_text(7000)
            .with_max_text_bytes(7000)
            .with_features([Feature::RichText, Feature::Attachments])
            .with_rich_types([RichType::Buttons, RichType::Carousel])
            .with_attachments(
                AttachmentPolicy::any()
                    .blocking(["exe"])
                    .with_max_size(1024),
            )
            .with_limits(
                RichLimits::none()
                    .with_max_buttons(5)
                    .with_max_title_length(20),
            ),
        DirectionCapabilities::plain_text(12).with_max_text_bytes(10),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(messages) = patchbay_host::server::api::parse_messages(data) else {
        return;
    };
    let system_messages = SystemMessages::default();
    for message in &messages {
        check_message(message);
        for caps in channels() {
            let target = Target {
                capabilities: &caps,
                system_messages: &system_messages,
                language: "en-US",
            };
            let fitted = fit(&message.content, target);
            let limit = TextLimit::of(&caps);
            for part in &fitted.parts {
                if let Content::Text { text, .. } = part {
                    assert!(
                        limit.fits(text),
                        "a {}-byte part exceeds {}",
                        text.len(),
                        limit.describe()
                    );
                }
            }
        }
    }
});
