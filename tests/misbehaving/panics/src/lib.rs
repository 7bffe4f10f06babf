//! An adapter written with the SDK whose parsing and rendering panic: the
//! SDK reports the panic as a status and the host contains it.

use patchbay_plugin_sdk::prelude::*;

#[path = "../../common.rs"]
mod common;

fn manifest() -> Manifest {
    common::manifest("panics")
}

#[derive(Debug, Default)]
pub struct PanicsFactory;

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
