//! A library from an SDK that shares the ABI but knows none of the host's
//! operations: every `call` answers `UNKNOWN_OP`.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use patchbay_plugin_sdk::abi::AdapterDescriptor;

#[path = "../../common.rs"]
mod common;

#[unsafe(no_mangle)]
pub extern "C" fn patchbay_adapter_abi_v1() -> *const AdapterDescriptor {
    static DESCRIPTOR: OnceLock<common::Static> = OnceLock::new();
    &DESCRIPTOR
        .get_or_init(|| {
            let manifest = common::manifest("unknown-op");
            let bytes = serde_json::to_vec(&manifest).unwrap_or_default().leak();
            common::Static(common::descriptor(bytes))
        })
        .0
}
