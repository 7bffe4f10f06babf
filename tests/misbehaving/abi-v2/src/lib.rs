//! What a library built against a future SDK with ABI 2 looks like: the
//! entry symbol carries the major, and so does the descriptor. This host
//! finds no ABI-1 entry point and says which major the library speaks.
#![allow(unsafe_code)]

#[path = "../../common.rs"]
mod common;

static DESCRIPTOR: common::Static = common::Static({
    let mut d = common::descriptor(b"{}");
    d.abi_major = 2;
    d
});

#[unsafe(no_mangle)]
pub extern "C" fn patchbay_adapter_abi_v2() -> *const patchbay_plugin_sdk::abi::AdapterDescriptor {
    &DESCRIPTOR.0
}
