//! An adapter written with the SDK whose parsing and rendering panic: the
//! SDK reports the panic as a status and the host contains it.
//!
//! Its `verify` takes a few milliseconds and checks, throughout, that its
//! instance is still alive (a canary its destructor clears): a host that
//! destroys an instance while another thread's call is inside it is caught.

use std::sync::atomic::{AtomicU64, Ordering};

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
        Ok(Box::new(Panics {
            canary: AtomicU64::new(ALIVE),
        }))
    }
}

const ALIVE: u64 = 0x5AFE_C0DE_5AFE_C0DE;

struct Panics {
    /// An atomic so each check reads the memory a destroy may have changed.
    canary: AtomicU64,
}

impl Panics {
    fn alive(&self) -> bool {
        self.canary.load(Ordering::SeqCst) == ALIVE
    }
}

impl Drop for Panics {
    fn drop(&mut self) {
        self.canary.store(0, Ordering::SeqCst);
    }
}

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
        for _ in 0..4 {
            if !self.alive() {
                return Err(Rejection::unauthorized(
                    "instance used after it was destroyed",
                ));
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
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
