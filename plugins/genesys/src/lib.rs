//! Patchbay as the integration layer of Genesys: two upstream connectors.
//!
//! | kind | platform | module |
//! |---|---|---|
//! | `genesys-3pm` | Genesys Multicloud CX Third-Party Messaging (nexus v3) | [`multicloud`] |
//! | `genesys-open-messaging` | Genesys Cloud Open Messaging | [`open_messaging`] |
//!
//! Both follow the vendors' documents where those are explicit and say in
//! their module docs what was assumed where they are silent; every
//! assumption lives in one place (a constant, a match arm) so a captured
//! payload can correct it.

pub mod multicloud;
pub mod open_messaging;
mod reasons;

use patchbay_plugin_sdk::adapter::Timestamp;
use patchbay_plugin_sdk::message::{Message, TraceContext};

pub use multicloud::MulticloudFactory;
pub use open_messaging::OpenMessagingFactory;

/// The trace id of a message's trace context (from `traceparent` or `b3`),
/// for Genesys' `X-B3-TraceId`.
fn trace_id(trace: &TraceContext) -> Option<String> {
    if let Some(b3) = &trace.b3 {
        return b3.split('-').next().map(str::to_string);
    }
    let parent = trace.traceparent.as_deref()?;
    parent.split('-').nth(1).map(str::to_string)
}

/// A trace context for a message that arrived with `X-B3-TraceId`.
fn trace_from_b3(trace_id: Option<&str>) -> TraceContext {
    let valid = |id: &str| {
        matches!(id.len(), 16 | 32)
            && id.chars().all(|c| c.is_ascii_hexdigit())
            && id.chars().any(|c| c != '0')
    };
    match trace_id.map(str::trim).filter(|id| valid(id)) {
        Some(id) => TraceContext {
            b3: Some(format!(
                "{}-{}",
                id.to_ascii_lowercase(),
                &format!("{id:0>16}")[..16]
            )),
            ..TraceContext::default()
        },
        None => TraceContext::default(),
    }
}

/// When a message was created: its timestamp, else the time in its UUIDv7
/// id, else `now`. Stable across retries, which Genesys Cloud needs: it
/// dedupes on the message id *and* time.
fn message_time(message: &Message, now: Timestamp) -> String {
    if let Some(ts) = message
        .timestamp
        .as_deref()
        .and_then(Timestamp::parse_rfc3339)
    {
        return ts.to_rfc3339();
    }
    let hex: String = message.id.chars().filter(|c| *c != '-').take(12).collect();
    match i64::from_str_radix(&hex, 16) {
        Ok(ms) if hex.len() == 12 && message.id.len() == 36 => Timestamp(ms).to_rfc3339(),
        _ => now.to_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_plugin_sdk::message::Content;

    #[test]
    fn trace_ids_come_from_either_header_and_go_back_as_b3() {
        let parent = TraceContext {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..TraceContext::default()
        };
        assert_eq!(
            trace_id(&parent).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let b3 = trace_from_b3(Some("4BF92F3577B34DA6A3CE929D0E0E4736"));
        assert_eq!(
            trace_id(&b3).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_from_b3(Some("not-hex")), TraceContext::default());
        assert_eq!(
            trace_from_b3(Some(&"0".repeat(16))),
            TraceContext::default()
        );
    }

    #[test]
    fn message_time_is_stable_for_a_uuid7_id() {
        let mut m = Message::new("c", Content::text("x"));
        m.id = "0190163d-8694-739b-aea5-966c26f8ad91".into();
        let t = message_time(&m, Timestamp(5));
        assert_eq!(t, message_time(&m, Timestamp(99_999)));
        assert!(t.starts_with("2024-06-"), "{t}");
        m.id = "not-a-uuid".into();
        assert_eq!(message_time(&m, Timestamp(0)), Timestamp(0).to_rfc3339());
    }
}
