//! An adapter written with the SDK whose parsing and rendering panic: the
//! SDK reports the panic as a status and the host contains it.

use patchbay_plugin_sdk::prelude::*;

#[derive(Debug, Default)]
pub struct PanicsFactory;

fn manifest() -> Manifest {
    Manifest {
        id: "panics".into(),
        name: "Panics".into(),
        version: "0.0.0".into(),
        wire: WireRange::CURRENT,
        capabilities: ChannelCapabilities {
            inbound: DirectionCapabilities::plain_text(1000),
            outbound: DirectionCapabilities::plain_text(1000),
        },
        secrets: vec![],
        settings: vec![],
        auth_profiles: vec![],
    }
}

impl AdapterFactory for PanicsFactory {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn create(&self, _config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(Panics))
    }
}

struct Panics;

impl ChannelAdapter for Panics {
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
        panic!("the parser exploded")
    }

    fn render_outbound(&self, _: &Message, _: Timestamp) -> Step {
        panic!("the renderer exploded")
    }
}

patchbay_plugin_sdk::export_adapter!(PanicsFactory);
