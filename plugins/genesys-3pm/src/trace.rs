//! Genesys' `X-B3-TraceId` and Patchbay's trace context.

use patchbay_plugin_sdk::message::TraceContext;

/// The trace id of a message's trace context (from `traceparent` or `b3`),
/// for Genesys' `X-B3-TraceId`.
pub(crate) fn trace_id(trace: &TraceContext) -> Option<String> {
    if let Some(b3) = &trace.b3 {
        return b3.split('-').next().map(str::to_string);
    }
    let parent = trace.traceparent.as_deref()?;
    parent.split('-').nth(1).map(str::to_string)
}

/// A trace context for a message that arrived with `X-B3-TraceId`.
pub(crate) fn trace_from_b3(trace_id: Option<&str>) -> TraceContext {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
