//! Opening adapter libraries and checking their descriptor.
//!
//! With the SDK's `abi` module, the only place `unsafe` is allowed. Libraries
//! are opened with `RTLD_NOW | RTLD_LOCAL` (every symbol resolved up front, none
//! leaking into other plugins) and never unloaded: their code may still be on
//! some thread's stack, and a process holds few of them.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use patchbay_plugin_sdk::abi::{
    ABI_MAJOR, AdapterDescriptor, ENTRY_SYMBOL, MAGIC, RawBuf, UPSTREAM_ENTRY_SYMBOL, status,
};
use patchbay_plugin_sdk::adapter::{Manifest, WireRange};
use patchbay_plugin_sdk::upstream::UpstreamManifest;

/// Biggest answer accepted from a plugin; more is a misbehaving plugin.
pub const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// A library that passed the handshake.
#[derive(Debug)]
pub struct Library {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// What it implements, with its manifest.
    pub exports: Exports,
    /// ABI version it was built for.
    pub abi: (u32, u32),
    /// Wire versions it reads.
    pub wire: WireRange,
    descriptor: &'static AdapterDescriptor,
}

// SAFETY: the descriptor is immutable static data of a library that is never
// unloaded, and its functions are thread-safe by the ABI's contract (adapters
// are `Send + Sync`).
unsafe impl Send for Library {}
// SAFETY: as above.
unsafe impl Sync for Library {}

/// Why a library was refused.
/// What a library implements, by the entry point it exports, with its manifest.
#[derive(Debug, Clone)]
pub enum Exports {
    /// A channel adapter (`patchbay_adapter_abi_v1`).
    Adapter(Box<Manifest>),
    /// An upstream connector (`patchbay_upstream_abi_v1`).
    Upstream(UpstreamManifest),
}

impl Library {
    /// The adapter's manifest, if the library is an adapter.
    pub fn adapter_manifest(&self) -> Option<&Manifest> {
        match &self.exports {
            Exports::Adapter(m) => Some(m),
            Exports::Upstream(_) => None,
        }
    }

    /// The connector's manifest, if the library is an upstream connector.
    pub fn upstream_manifest(&self) -> Option<&UpstreamManifest> {
        match &self.exports {
            Exports::Upstream(m) => Some(m),
            Exports::Adapter(_) => None,
        }
    }

    /// The id configs use by default: an adapter's id or a connector's kind.
    pub fn default_name(&self) -> &str {
        match &self.exports {
            Exports::Adapter(m) => &m.id,
            Exports::Upstream(m) => &m.kind,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("plugin {path}: {message}")]
pub struct LoadError {
    /// The library.
    pub path: String,
    /// What mismatched.
    pub message: String,
}

fn refuse(path: &Path, message: impl Into<String>) -> LoadError {
    LoadError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The fields every descriptor version starts with, read before trusting the
/// rest.
#[repr(C)]
struct Header {
    magic: u64,
    abi_major: u32,
    abi_minor: u32,
    struct_size: u32,
}

/// Opens `path` and checks magic, ABI major, descriptor size, wire range and
/// manifest, naming what mismatched.
pub fn open(path: &Path) -> Result<Library, LoadError> {
    #[cfg(unix)]
    let library = {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: loading a library runs its initialisers. Patchbay only loads
        // files from directories the operator configured (and optionally
        // pinned by sha256), which is the trust decision this rests on.
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
            .map(libloading::Library::from)
            .map_err(|e| refuse(path, format!("cannot be loaded: {e}")))?
    };
    #[cfg(not(unix))]
    let library = {
        // SAFETY: as above.
        unsafe { libloading::Library::new(path) }
            .map_err(|e| refuse(path, format!("cannot be loaded: {e}")))?
    };
    let entry = |name: &str| {
        // SAFETY: the symbol, if present, is the SDK's entry point with this
        // exact signature (its name carries the ABI major).
        unsafe { library.get::<extern "C" fn() -> *const AdapterDescriptor>(name.as_bytes()) }
            .ok()
            .map(|symbol| *symbol)
    };
    let (entry, upstream) = match (entry(ENTRY_SYMBOL), entry(UPSTREAM_ENTRY_SYMBOL)) {
        (Some(adapter), None) => (adapter, false),
        (None, Some(connector)) => (connector, true),
        (Some(_), Some(_)) => {
            return Err(refuse(
                path,
                format!(
                    "exports both `{ENTRY_SYMBOL}` and `{UPSTREAM_ENTRY_SYMBOL}`; a library is one adapter or one connector"
                ),
            ));
        }
        (None, None) => {
            return Err(match other_abi_major(&library) {
                Some(major) => refuse(
                    path,
                    format!(
                        "built for ABI {major}, this host speaks ABI {ABI_MAJOR}; use a Patchbay release for ABI {major} or rebuild the plugin against SDK ABI {ABI_MAJOR}"
                    ),
                ),
                None => refuse(
                    path,
                    format!(
                        "no `{ENTRY_SYMBOL}` or `{UPSTREAM_ENTRY_SYMBOL}` symbol: not a Patchbay plugin (build it with `export_adapter!` or `export_upstream!` as a cdylib)"
                    ),
                ),
            });
        }
    };
    // Never unloaded (see the module docs).
    std::mem::forget(library);
    let descriptor = entry();
    if descriptor.is_null() {
        return Err(refuse(path, "the entry point returned no descriptor"));
    }
    // SAFETY: every descriptor version starts with these fields; they are read
    // before anything else so a foreign or older struct is refused, not misread.
    let header = unsafe { &*(descriptor as *const Header) };
    if header.magic != MAGIC {
        return Err(refuse(
            path,
            format!(
                "wrong magic {:#018x} (expected {MAGIC:#018x})",
                header.magic
            ),
        ));
    }
    if header.abi_major != ABI_MAJOR {
        return Err(refuse(
            path,
            format!(
                "built for ABI {}.{}, this host speaks ABI {ABI_MAJOR}.x",
                header.abi_major, header.abi_minor
            ),
        ));
    }
    let needed = std::mem::size_of::<AdapterDescriptor>() as u32;
    if header.struct_size < needed {
        return Err(refuse(
            path,
            format!(
                "descriptor is {} bytes, ABI {ABI_MAJOR} needs at least {needed}",
                header.struct_size
            ),
        ));
    }
    // SAFETY: magic, major and size say this is a full ABI-1 descriptor, which
    // lives in the library's static storage for the life of the process.
    let descriptor: &'static AdapterDescriptor = unsafe { &*descriptor };
    let wire = WireRange {
        min: descriptor.wire_min,
        max: descriptor.wire_max,
    };
    let ours = WireRange::CURRENT;
    if wire.max < ours.min || wire.min > ours.max {
        return Err(refuse(
            path,
            format!(
                "reads wire versions {}..={}, this host writes {}..={}",
                wire.min, wire.max, ours.min, ours.max
            ),
        ));
    }
    // SAFETY: the manifest bytes are static data of the library, `manifest_len` long.
    let manifest_bytes = unsafe { slice(descriptor.manifest_ptr, descriptor.manifest_len) };
    let invalid = |e: serde_json::Error| refuse(path, format!("manifest is not valid JSON: {e}"));
    let exports = if upstream {
        Exports::Upstream(serde_json::from_slice(manifest_bytes).map_err(invalid)?)
    } else {
        Exports::Adapter(Box::new(
            serde_json::from_slice(manifest_bytes).map_err(invalid)?,
        ))
    };
    Ok(Library {
        path: path.to_path_buf(),
        exports,
        abi: (descriptor.abi_major, descriptor.abi_minor),
        wire,
        descriptor,
    })
}

/// The ABI major of another `patchbay_adapter_abi_v<N>` entry point, if the
/// library has one: a plugin built for an older or newer host.
fn other_abi_major(library: &libloading::Library) -> Option<u32> {
    (0..=32).filter(|&n| n != ABI_MAJOR).find(|n| {
        ["adapter", "upstream"].iter().any(|kind| {
            let name = format!("patchbay_{kind}_abi_v{n}");
            // SAFETY: only looked up, never called.
            unsafe { library.get::<*const c_void>(name.as_bytes()) }.is_ok()
        })
    })
}

/// # Safety
/// `ptr` must point to `len` readable bytes or be null.
unsafe fn slice<'a>(ptr: *const u8, len: u64) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len as usize) }
    }
}

/// A live plugin instance, owned: calls borrow it, and it is destroyed when
/// dropped — so no call can run in a destroyed instance. Share it with an
/// `Arc` to let a call keep it alive while its owner replaces it.
#[derive(Debug)]
pub struct Instance {
    ptr: *mut c_void,
    library: Arc<Library>,
}

// SAFETY: the plugin's adapter is `Send + Sync` (the SDK only exports such
// adapters), so its instance may be used and dropped from any thread.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Instance {
    /// Runs operation `op` in this instance.
    pub fn call(&self, op: u32, envelope: &[u8], body: &[u8]) -> Answer {
        self.library.call(self, op, envelope, body)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this library's `create`; `self` is its only
        // owner and no call can be inside it (calls borrow `self`), so it is
        // destroyed once, unused.
        unsafe { (self.library.descriptor.destroy)(self.ptr) }
    }
}

/// What a call came back with.
#[derive(Debug)]
pub enum Answer {
    /// `status::OK` and the JSON.
    Ok(Vec<u8>),
    /// Any other status and the library's message.
    Failed { status: i32, message: Vec<u8> },
}

impl Library {
    /// Creates an instance from a JSON `ChannelConfig`.
    pub fn create(self: &Arc<Self>, config: &[u8]) -> Result<Instance, Answer> {
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut out = RawBuf::EMPTY;
        // SAFETY: `create` is the library's function with the ABI-1 signature;
        // the config slice and both out-slots are valid for the call.
        let code = unsafe {
            (self.descriptor.create)(
                config.as_ptr(),
                config.len() as u64,
                &mut instance,
                &mut out,
            )
        };
        let bytes = self.take(out);
        match (code, instance.is_null()) {
            (status::OK, false) => Ok(Instance {
                ptr: instance,
                library: self.clone(),
            }),
            (status::OK, true) => Err(Answer::Failed {
                status: status::ERROR,
                message: b"create returned no instance".to_vec(),
            }),
            (code, _) => Err(Answer::Failed {
                status: code,
                message: bytes.unwrap_or_default(),
            }),
        }
    }

    /// Runs operation `op` in `instance` (see [`Instance::call`]).
    fn call(&self, instance: &Instance, op: u32, envelope: &[u8], body: &[u8]) -> Answer {
        let mut out = RawBuf::EMPTY;
        // SAFETY: `call` is the library's function with the ABI-1 signature; the
        // instance is live for the call (it is borrowed, and only its drop
        // destroys it), and the slices and the out-slot are valid for the call.
        let code = unsafe {
            (self.descriptor.call)(
                instance.ptr,
                op,
                envelope.as_ptr(),
                envelope.len() as u64,
                body.as_ptr(),
                body.len() as u64,
                &mut out,
            )
        };
        match (code, self.take(out)) {
            (status::OK, Ok(bytes)) => Answer::Ok(bytes),
            (status::OK, Err(too_big)) => Answer::Failed {
                status: status::ERROR,
                message: too_big.into_bytes(),
            },
            (code, bytes) => Answer::Failed {
                status: code,
                message: bytes.unwrap_or_else(String::into_bytes),
            },
        }
    }

    /// Copies a library buffer out and hands it back to the library's allocator.
    fn take(&self, buf: RawBuf) -> Result<Vec<u8>, String> {
        let len = buf.len;
        let copied = if len > MAX_OUTPUT_BYTES {
            Err(format!(
                "plugin answered {len} bytes, more than the {MAX_OUTPUT_BYTES}-byte limit"
            ))
        } else {
            // SAFETY: the library filled `buf` with `len` initialised bytes.
            Ok(unsafe { slice(buf.ptr, len) }.to_vec())
        };
        // SAFETY: `buf` came from this library and is freed exactly once, here.
        unsafe { (self.descriptor.free_buf)(buf) };
        copied
    }
}
