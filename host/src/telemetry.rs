//! Logging setup: text or JSON lines on stderr, filtered by `RUST_LOG` or the
//! config's `log.level`.

use patchbay_plugin_sdk::message::TraceContext;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(log.level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A message's trace id (32 hex digits), from its W3C `traceparent` or its
/// B3 header: the field that ties one message's log lines together.
pub fn trace_id(trace: &TraceContext) -> Option<&str> {
    let id = match (&trace.traceparent, &trace.b3) {
        (Some(parent), _) => parent.split('-').nth(1)?,
        (None, Some(b3)) => b3.split('-').next()?,
        (None, None) => return None,
    };
    (id.len() == 32 || id.len() == 16)
        .then_some(id)
        .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_traceparent_or_b3() {
        let mut trace = TraceContext::default();
        assert_eq!(trace_id(&trace), None);
        trace.b3 = Some("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1".into());
        assert_eq!(trace_id(&trace), Some("80f198ee56343ba864fe8b2a57d3eff7"));
        trace.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        assert_eq!(trace_id(&trace), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        trace.traceparent = Some("00-not-hex-at-all".into());
        assert_eq!(trace_id(&trace), None);
    }
}
