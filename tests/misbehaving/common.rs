//! What the misbehaving libraries share: a plain-text manifest, and for the
//! hand-made ones a descriptor they can corrupt one field at a time, with
//! `create`/`destroy`/`call`/`free_buf` that would work if the host ever got
//! that far. Each crate uses part of it.
#![allow(dead_code)]

use std::ffi::c_void;

use patchbay_plugin_sdk::abi::{ABI_MAJOR, ABI_MINOR, AdapterDescriptor, MAGIC, RawBuf, status};
use patchbay_plugin_sdk::prelude::*;

/// A valid manifest for a plain-text adapter called `id`.
pub fn manifest(id: &str) -> Manifest {
    Manifest::new(
        id,
        id,
        "0.0.0",
        ChannelCapabilities {
            inbound: DirectionCapabilities::plain_text(1000),
            outbound: DirectionCapabilities::plain_text(1000),
        },
    )
}

/// A descriptor in static storage (raw pointers are not `Sync` by default).
pub struct Static(pub AdapterDescriptor);

// SAFETY: immutable data pointing at static bytes and functions.
unsafe impl Sync for Static {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for Static {}

/// A descriptor that is correct except for what the caller changes.
pub const fn descriptor(manifest: &'static [u8]) -> AdapterDescriptor {
    AdapterDescriptor {
        magic: MAGIC,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        struct_size: std::mem::size_of::<AdapterDescriptor>() as u32,
        wire_min: 1,
        wire_max: 1,
        manifest_ptr: manifest.as_ptr(),
        manifest_len: manifest.len() as u64,
        create,
        destroy,
        call,
        free_buf,
    }
}

unsafe extern "C" fn create(
    _config: *const u8,
    _len: u64,
    instance: *mut *mut c_void,
    _error: *mut RawBuf,
) -> i32 {
    // SAFETY: the host passes a valid out-slot. Any non-null pointer will do:
    // this library keeps no state.
    unsafe { *instance = std::ptr::NonNull::<u8>::dangling().as_ptr().cast() };
    status::OK
}

unsafe extern "C" fn destroy(_instance: *mut c_void) {}

unsafe extern "C" fn call(
    _instance: *mut c_void,
    _op: u32,
    _envelope: *const u8,
    _envelope_len: u64,
    _body: *const u8,
    _body_len: u64,
    _out: *mut RawBuf,
) -> i32 {
    status::UNKNOWN_OP
}

unsafe extern "C" fn free_buf(_buf: RawBuf) {}
