//! An adapter written with the SDK whose parser answers a 65 MiB message,
//! more than the host takes from a plugin in one answer.

use patchbay_plugin_sdk::prelude::*;

#[path = "../../common.rs"]
mod common;

fn manifest() -> Manifest {
    common::manifest("oversized")
}

#[derive(Debug, Default)]
pub struct OversizedFactory;

impl AdapterFactory for OversizedFactory {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn create(&self, _config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(Oversized))
    }
}

struct Oversized;

impl ChannelAdapter for Oversized {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn verify(
        &self,
        _: &InboundRequest,
        _: Timestamp,
        _: &Resources,
    ) -> Result<Verdict, Rejection> {
        Ok(Verdict::accept(None))
    }

    fn parse_inbound(&self, _: &InboundRequest, _: Timestamp) -> Step {
        let text = "x".repeat(65 * 1024 * 1024);
        Step::messages(vec![Message::new("c", Content::text(text))])
    }

    fn render_outbound(&self, _: &Message, _: Timestamp) -> Step {
        Step::delivered(None)
    }
}

patchbay_plugin_sdk::export_adapter!(OversizedFactory);
