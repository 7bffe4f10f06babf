//! A descriptor whose `struct_size` is too small to hold the ABI-1 fields.
#![allow(unsafe_code)]

#[path = "../../common.rs"]
mod common;

static DESCRIPTOR: common::Static = common::Static({
    let mut d = common::descriptor(b"{}");
    d.struct_size = 24;
    d
});

#[unsafe(no_mangle)]
pub extern "C" fn patchbay_adapter_abi_v1() -> *const patchbay_plugin_sdk::abi::AdapterDescriptor {
    &DESCRIPTOR.0
}
