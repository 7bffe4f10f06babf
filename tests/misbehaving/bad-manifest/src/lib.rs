//! A descriptor whose manifest bytes are not JSON.
#![allow(unsafe_code)]

#[path = "../../common.rs"]
mod common;

static DESCRIPTOR: common::Static = common::Static(common::descriptor(b"id = \"toml, not json\""));

#[unsafe(no_mangle)]
pub extern "C" fn patchbay_adapter_abi_v1() -> *const patchbay_plugin_sdk::abi::AdapterDescriptor {
    &DESCRIPTOR.0
}
