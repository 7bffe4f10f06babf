//! A descriptor whose magic is not `PATCHBAY`.
#![allow(unsafe_code)]

#[path = "../../common.rs"]
mod common;

static DESCRIPTOR: common::Static = common::Static({
    let mut d = common::descriptor(b"{}");
    d.magic = 0x0BAD_0BAD_0BAD_0BAD;
    d
});

#[unsafe(no_mangle)]
pub extern "C" fn patchbay_adapter_abi_v1() -> *const patchbay_plugin_sdk::abi::AdapterDescriptor {
    &DESCRIPTOR.0
}
