//! The stable C ABI: how an adapter built as a shared library talks to a host
//! built with another compiler.
//!
//! Only fixed-width integers, pointers and byte buffers cross. The library
//! exports one symbol, [`ENTRY_SYMBOL`] (the ABI major is in its name), which
//! returns a `#[repr(C)]` [`AdapterDescriptor`]: magic, ABI version, the
//! struct's size, the manifest as JSON, and four functions — `create`,
//! `destroy`, `call` and `free_buf`. Every operation of [`ChannelAdapter`] is
//! one `call` with an operation code ([`op`]), a JSON envelope versioned by
//! [`WIRE_VERSION`](crate::adapter::WIRE_VERSION) and the raw body bytes beside it (no base64 on the hot path);
//! the answer is a JSON buffer that the library allocated and the host hands
//! back to the library's `free_buf`. Every exported function catches panics and
//! reports them as [`status::PANIC`].
//!
//! Plugin authors do not touch any of this: [`export_adapter!`] generates the
//! entry point from an [`AdapterFactory`].
//!
//! [`export_adapter!`]: crate::export_adapter

// The one module of the SDK that handles raw pointers; each block says why it
// is sound.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::adapter::{
    AdapterFactory, ChannelAdapter, ChannelConfig, Continuation, InboundRequest, ProviderResponse,
    Resources, Timestamp,
};
use crate::driver::Operations;
use crate::message::Message;
use crate::upstream::register::Registration;
use crate::upstream::{Delivery, UpstreamConnector, UpstreamFactory};

/// `PATCHBAY` in ASCII: the first field of every descriptor.
pub const MAGIC: u64 = 0x5041_5443_4842_4159;
/// Incompatible changes to the descriptor or the calling convention.
pub const ABI_MAJOR: u32 = 1;
/// Compatible additions (new operations, new trailing descriptor fields).
pub const ABI_MINOR: u32 = 0;
/// The exported entry point, `extern "C" fn() -> *const AdapterDescriptor`.
pub const ENTRY_SYMBOL: &str = "patchbay_adapter_abi_v1";
/// The entry point of an upstream connector library: the same descriptor,
/// whose manifest is an [`UpstreamManifest`](crate::upstream::UpstreamManifest)
/// and whose operations are the connector's. Which symbol a library exports
/// says which contract it implements.
pub const UPSTREAM_ENTRY_SYMBOL: &str = "patchbay_upstream_abi_v1";

/// Status codes returned by `create` and `call`.
pub mod status {
    /// Success; the buffer holds the JSON result.
    pub const OK: i32 = 0;
    /// The operation failed cleanly; the buffer holds a JSON error.
    pub const ERROR: i32 = 1;
    /// The adapter panicked; the buffer holds the panic message as text.
    pub const PANIC: i32 = 2;
    /// The library does not know this operation code.
    pub const UNKNOWN_OP: i32 = 3;
    /// The envelope was not valid JSON for this wire version.
    pub const BAD_ENVELOPE: i32 = 4;
}

/// Operation codes of `call`: one per [`ChannelAdapter`] method.
pub mod op {
    /// [`ChannelAdapter::verify`](crate::adapter::ChannelAdapter::verify) → `Result<Verdict, Rejection>`.
    pub const VERIFY: u32 = 1;
    /// `parse_inbound` → `Step`.
    pub const PARSE_INBOUND: u32 = 2;
    /// `render_outbound` → `Step`.
    pub const RENDER_OUTBOUND: u32 = 3;
    /// `resume` → `Step`.
    pub const RESUME: u32 = 4;
    /// `resources` → `Vec<ResourceSpec>`.
    pub const RESOURCES: u32 = 5;
    /// `fetch_resource` → `Step`.
    pub const FETCH_RESOURCE: u32 = 6;
    /// `token_request` → `Result<RequestSpec, AdapterError>`.
    pub const TOKEN_REQUEST: u32 = 7;
    /// `token_response` → `Result<AccessToken, AdapterError>`.
    pub const TOKEN_RESPONSE: u32 = 8;
    /// `manifest` of the configured instance → `Manifest`.
    pub const MANIFEST: u32 = 9;
    /// A connector's `decode` (request in the envelope, body beside it).
    pub const DECODE: u32 = 10;
    /// A connector's `deliver` (delivery in the envelope).
    pub const DELIVER: u32 = 11;
    /// A connector's `register` (registration in the envelope).
    pub const REGISTER: u32 = 12;
}

/// A byte buffer allocated by the library; only its `free_buf` may release it.
#[repr(C)]
#[derive(Debug)]
pub struct RawBuf {
    /// Start of the bytes (null when empty).
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: u64,
    /// Allocated capacity, for the allocator that owns it.
    pub cap: u64,
}

impl RawBuf {
    /// An empty buffer.
    pub const EMPTY: RawBuf = RawBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    fn from_vec(bytes: Vec<u8>) -> RawBuf {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        RawBuf {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len() as u64,
            cap: bytes.capacity() as u64,
        }
    }
}

/// `create(config_json, config_len, out_instance, out_error) -> status`.
pub type CreateFn = unsafe extern "C" fn(*const u8, u64, *mut *mut c_void, *mut RawBuf) -> i32;
/// `destroy(instance)`.
pub type DestroyFn = unsafe extern "C" fn(*mut c_void);
/// `call(instance, op, envelope, envelope_len, body, body_len, out) -> status`.
pub type CallFn =
    unsafe extern "C" fn(*mut c_void, u32, *const u8, u64, *const u8, u64, *mut RawBuf) -> i32;
/// `free_buf(buf)`.
pub type FreeBufFn = unsafe extern "C" fn(RawBuf);

/// What the entry symbol returns. Fields are only ever appended (a minor ABI
/// change), so a host checks `struct_size` before reading later ones.
#[repr(C)]
#[derive(Debug)]
pub struct AdapterDescriptor {
    /// Always [`MAGIC`].
    pub magic: u64,
    /// [`ABI_MAJOR`] of the SDK the library was built with.
    pub abi_major: u32,
    /// [`ABI_MINOR`] of the SDK the library was built with.
    pub abi_minor: u32,
    /// `size_of::<AdapterDescriptor>()` in the library.
    pub struct_size: u32,
    /// Oldest wire version the library reads.
    pub wire_min: u32,
    /// Newest wire version the library reads.
    pub wire_max: u32,
    /// The factory's manifest, JSON.
    pub manifest_ptr: *const u8,
    /// Its length.
    pub manifest_len: u64,
    /// Creates an instance from a `ChannelConfig` (JSON).
    pub create: CreateFn,
    /// Destroys an instance.
    pub destroy: DestroyFn,
    /// Runs one operation.
    pub call: CallFn,
    /// Frees a buffer this library returned.
    pub free_buf: FreeBufFn,
}

/// The JSON envelope of a `call`. Fields an operation does not use are absent;
/// unknown fields are ignored so a newer host can add some.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Envelope {
    /// The wire version the host speaks.
    pub wire: u32,
    /// The host's clock.
    pub now: Timestamp,
    /// `verify`, `parse_inbound`: the request without its body (the body is
    /// the separate byte slice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<InboundRequest>,
    /// `verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// `render_outbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// `resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
    /// `resume`, `token_response`: the response without its body (the body is
    /// the separate byte slice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ProviderResponse>,
    /// `fetch_resource`: the resource; `token_*`: the auth profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A connector's `deliver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// A connector's `register`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
}

/// Generates the entry point of an adapter library from an [`AdapterFactory`]
/// type that implements `Default`.
///
/// ```ignore
/// patchbay_plugin_sdk::export_adapter!(MyFactory);
/// ```
///
/// Put it in the crate root of a crate with `crate-type = ["cdylib", "rlib"]`.
#[macro_export]
macro_rules! export_adapter {
    ($factory:ty) => {
        /// The Patchbay adapter entry point.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn patchbay_adapter_abi_v1() -> *const $crate::abi::AdapterDescriptor {
            static EXPORTED: ::std::sync::OnceLock<$crate::abi::Exported> =
                ::std::sync::OnceLock::new();
            $crate::abi::Exported::get::<$crate::abi::Adapters<$factory>>(&EXPORTED)
        }
    };
}

/// Generates the entry point of an upstream connector library from an
/// [`UpstreamFactory`] type that implements `Default`, as
/// [`export_adapter!`](crate::export_adapter) does for adapters.
///
/// ```ignore
/// patchbay_plugin_sdk::export_upstream!(MyConnectorFactory);
/// ```
#[macro_export]
macro_rules! export_upstream {
    ($factory:ty) => {
        /// The Patchbay upstream connector entry point.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn patchbay_upstream_abi_v1() -> *const $crate::abi::AdapterDescriptor {
            static EXPORTED: ::std::sync::OnceLock<$crate::abi::Exported> =
                ::std::sync::OnceLock::new();
            $crate::abi::Exported::get::<$crate::abi::Upstreams<$factory>>(&EXPORTED)
        }
    };
}

/// What a library exports behind its entry point: one contract's factory.
/// Implemented by [`Adapters`] and [`Upstreams`]; the export macros pick one.
pub trait Exports: Default + 'static {
    /// What an instance is.
    type Instance: ?Sized + Send + Sync;
    /// The manifest, as JSON.
    fn manifest_json(&self) -> serde_json::Result<Vec<u8>>;
    /// A new instance for `config`.
    fn create_instance(
        &self,
        config: &ChannelConfig,
    ) -> Result<Box<Self::Instance>, crate::adapter::ConfigError>;
    /// Runs operation `op` on an instance.
    fn dispatch(
        instance: &Self::Instance,
        op: u32,
        envelope: Envelope,
        body: &[u8],
    ) -> Result<Vec<u8>, Failure>;
}

/// The channel adapters of factory `F`.
#[derive(Debug, Default)]
pub struct Adapters<F>(F);

/// The upstream connectors of factory `F`.
#[derive(Debug, Default)]
pub struct Upstreams<F>(F);

impl<F: AdapterFactory + Default + 'static> Exports for Adapters<F> {
    type Instance = dyn ChannelAdapter;
    fn manifest_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&self.0.manifest())
    }
    fn create_instance(
        &self,
        config: &ChannelConfig,
    ) -> Result<Box<dyn ChannelAdapter>, crate::adapter::ConfigError> {
        self.0.create(config)
    }
    fn dispatch(
        instance: &dyn ChannelAdapter,
        op: u32,
        envelope: Envelope,
        body: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        dispatch(instance, op, envelope, body)
    }
}

impl<F: UpstreamFactory + Default + 'static> Exports for Upstreams<F> {
    type Instance = dyn UpstreamConnector;
    fn manifest_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&self.0.manifest())
    }
    fn create_instance(
        &self,
        config: &ChannelConfig,
    ) -> Result<Box<dyn UpstreamConnector>, crate::adapter::ConfigError> {
        self.0.create(config)
    }
    fn dispatch(
        instance: &dyn UpstreamConnector,
        op: u32,
        envelope: Envelope,
        body: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        dispatch_upstream(instance, op, envelope, body)
    }
}

/// The descriptor and the manifest bytes it points into, built once per
/// library. Used by [`export_adapter!`](crate::export_adapter).
#[derive(Debug)]
pub struct Exported {
    descriptor: AdapterDescriptor,
    _manifest: Vec<u8>,
}

// SAFETY: the descriptor's pointers refer to `_manifest`, owned by the same
// value and never mutated, and to `extern "C"` functions; sharing them between
// threads is sharing immutable data.
unsafe impl Sync for Exported {}
// SAFETY: as above; nothing in `Exported` is tied to a thread.
unsafe impl Send for Exported {}

impl Exported {
    /// The descriptor for what `E` exports, built on first use.
    pub fn get<E: Exports>(cell: &'static OnceLock<Exported>) -> *const AdapterDescriptor {
        let exported = cell.get_or_init(|| {
            // A manifest that does not serialise is reported as an empty one;
            // the host refuses it at load time with a clear message.
            let manifest = catch_unwind(|| E::default().manifest_json())
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let wire = crate::adapter::WireRange::CURRENT;
            Exported {
                descriptor: AdapterDescriptor {
                    magic: MAGIC,
                    abi_major: ABI_MAJOR,
                    abi_minor: ABI_MINOR,
                    struct_size: std::mem::size_of::<AdapterDescriptor>() as u32,
                    wire_min: wire.min,
                    wire_max: wire.max,
                    manifest_ptr: manifest.as_ptr(),
                    manifest_len: manifest.len() as u64,
                    create: create::<E>,
                    destroy: destroy::<E>,
                    call: call::<E>,
                    free_buf,
                },
                _manifest: manifest,
            }
        });
        &exported.descriptor
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> Vec<u8> {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "adapter panicked".to_string());
    text.into_bytes()
}

/// Writes `bytes` to `out` and returns `status`.
///
/// # Safety
/// `out` must be valid for a write of one `RawBuf`.
unsafe fn answer(out: *mut RawBuf, status: i32, bytes: Vec<u8>) -> i32 {
    if !out.is_null() {
        // SAFETY: the caller passes a valid, writable `RawBuf` slot.
        unsafe { out.write(RawBuf::from_vec(bytes)) };
    }
    status
}

/// # Safety
/// `ptr` must point to `len` readable bytes (or be null with `len` 0), alive
/// for the duration of the call.
unsafe fn bytes<'a>(ptr: *const u8, len: u64) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr, len as usize) }
}

unsafe extern "C" fn create<E: Exports>(
    config: *const u8,
    config_len: u64,
    out_instance: *mut *mut c_void,
    out: *mut RawBuf,
) -> i32 {
    // SAFETY: the host passes the config bytes it owns for this call.
    let config = unsafe { bytes(config, config_len) };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let config: ChannelConfig = match serde_json::from_slice(config) {
            Ok(c) => c,
            Err(e) => return Err((status::BAD_ENVELOPE, e.to_string().into_bytes())),
        };
        match E::default().create_instance(&config) {
            // Boxed again: a thin pointer crosses, whatever the instance's type.
            Ok(instance) => Ok(Box::into_raw(Box::new(instance)) as *mut c_void),
            Err(e) => Err((status::ERROR, serde_json::to_vec(&e).unwrap_or_default())),
        }
    }));
    match result {
        Ok(Ok(instance)) => {
            // SAFETY: the host passes a writable pointer slot.
            unsafe { out_instance.write(instance) };
            // SAFETY: `out` is the host's buffer slot.
            unsafe { answer(out, status::OK, Vec::new()) }
        }
        // SAFETY: as above.
        Ok(Err((code, bytes))) => unsafe { answer(out, code, bytes) },
        // SAFETY: as above.
        Err(panic) => unsafe { answer(out, status::PANIC, panic_message(panic)) },
    }
}

unsafe extern "C" fn destroy<E: Exports>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: `instance` came from `create` (a leaked `Box<Instance>`) and the
    // host destroys each instance once.
    let adapter = unsafe { Box::from_raw(instance as *mut Box<E::Instance>) };
    // A panicking destructor must not unwind into the host.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(adapter)));
}

unsafe extern "C" fn free_buf(buf: RawBuf) {
    if buf.ptr.is_null() {
        return;
    }
    // SAFETY: `buf` was made by `RawBuf::from_vec` in this library, with this
    // allocator, and is freed once.
    drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len as usize, buf.cap as usize) });
}

unsafe extern "C" fn call<E: Exports>(
    instance: *mut c_void,
    op: u32,
    envelope: *const u8,
    envelope_len: u64,
    body: *const u8,
    body_len: u64,
    out: *mut RawBuf,
) -> i32 {
    if instance.is_null() {
        // SAFETY: `out` is the host's buffer slot.
        return unsafe { answer(out, status::ERROR, b"null instance".to_vec()) };
    }
    // SAFETY: `instance` is a live pointer from `create`; adapters are `Sync`,
    // so a shared reference may be used from any thread.
    let adapter: &E::Instance = unsafe { &*(instance as *const Box<E::Instance>) };
    // SAFETY: the host passes buffers it owns for this call.
    let (envelope, body) = unsafe { (bytes(envelope, envelope_len), bytes(body, body_len)) };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let envelope: Envelope = serde_json::from_slice(envelope)
            .map_err(|e| (status::BAD_ENVELOPE, e.to_string().into_bytes()))?;
        if !crate::adapter::WireRange::CURRENT.contains(envelope.wire) {
            return Err((status::BAD_ENVELOPE, b"unsupported wire version".to_vec()));
        }
        E::dispatch(adapter, op, envelope, body)
    }));
    let (code, bytes) = match result {
        Ok(Ok(json)) => (status::OK, json),
        Ok(Err(failure)) => failure,
        Err(panic) => (status::PANIC, panic_message(panic)),
    };
    // SAFETY: `out` is the host's buffer slot.
    unsafe { answer(out, code, bytes) }
}

/// A failed call: its status and message.
pub type Failure = (i32, Vec<u8>);

/// The operations both contracts share (`resume`, the token hooks), or
/// `None` for any other.
fn shared_op<O: Operations + ?Sized>(
    ops: &O,
    op: u32,
    env: Envelope,
    body: &[u8],
) -> Option<Result<Vec<u8>, Failure>> {
    let bad = |what: &str| (status::BAD_ENVELOPE, what.as_bytes().to_vec());
    let now = env.now;
    let with_body = |response: Option<ProviderResponse>, what: &str| {
        let mut response = response.ok_or_else(|| bad(what))?;
        response.body = body.to_vec();
        Ok(response)
    };
    let json = match op {
        op::RESUME => with_body(env.response, "resume needs response").map(|response| {
            let continuation = env
                .continuation
                .unwrap_or(Continuation(serde_json::Value::Null));
            serde_json::to_vec(&ops.resume(continuation, response, now))
        }),
        op::TOKEN_REQUEST => env
            .name
            .ok_or_else(|| bad("token_request needs name"))
            .map(|name| serde_json::to_vec(&ops.token_request(&name, now))),
        op::TOKEN_RESPONSE => {
            let name = env.name.clone();
            with_body(env.response, "token_response needs response").and_then(|response| {
                let name = name.ok_or_else(|| bad("token_response needs name"))?;
                Ok(serde_json::to_vec(
                    &ops.token_response(&name, response, now),
                ))
            })
        }
        _ => return None,
    };
    Some(json.and_then(|j| j.map_err(|e| (status::ERROR, e.to_string().into_bytes()))))
}

fn dispatch(
    adapter: &dyn ChannelAdapter,
    op: u32,
    env: Envelope,
    body: &[u8],
) -> Result<Vec<u8>, Failure> {
    let bad = |what: &str| (status::BAD_ENVELOPE, what.as_bytes().to_vec());
    let now = env.now;
    let with_body = |request: Option<InboundRequest>| {
        request.map(|mut r| {
            r.body = body.to_vec();
            r
        })
    };
    let json = match op {
        op::MANIFEST => serde_json::to_vec(&adapter.manifest()),
        op::VERIFY => {
            let request = with_body(env.request).ok_or_else(|| bad("verify needs request"))?;
            let resources = env.resources.unwrap_or_default();
            serde_json::to_vec(&adapter.verify(&request, now, &resources))
        }
        op::PARSE_INBOUND => {
            let request = with_body(env.request).ok_or_else(|| bad("parse needs request"))?;
            serde_json::to_vec(&adapter.parse_inbound(&request, now))
        }
        op::RENDER_OUTBOUND => {
            let message = env.message.ok_or_else(|| bad("render needs message"))?;
            serde_json::to_vec(&adapter.render_outbound(&message, now))
        }
        op::RESOURCES => serde_json::to_vec(&adapter.resources()),
        op::FETCH_RESOURCE => {
            let name = env.name.ok_or_else(|| bad("fetch_resource needs name"))?;
            serde_json::to_vec(&adapter.fetch_resource(&name, now))
        }
        _ => {
            return shared_op(adapter, op, env, body).unwrap_or_else(|| unknown(op));
        }
    };
    json.map_err(|e| (status::ERROR, e.to_string().into_bytes()))
}

fn unknown(op: u32) -> Result<Vec<u8>, Failure> {
    Err((
        status::UNKNOWN_OP,
        format!("unknown operation {op}").into_bytes(),
    ))
}

fn dispatch_upstream(
    connector: &dyn UpstreamConnector,
    op: u32,
    env: Envelope,
    body: &[u8],
) -> Result<Vec<u8>, Failure> {
    let bad = |what: &str| (status::BAD_ENVELOPE, what.as_bytes().to_vec());
    let now = env.now;
    let with_body = |request: Option<InboundRequest>| {
        request.map(|mut r| {
            r.body = body.to_vec();
            r
        })
    };
    let json = match op {
        op::MANIFEST => serde_json::to_vec(&connector.manifest()),
        op::VERIFY => {
            let request = with_body(env.request).ok_or_else(|| bad("verify needs request"))?;
            serde_json::to_vec(&connector.verify(&request, now))
        }
        op::DECODE => {
            let request = with_body(env.request).ok_or_else(|| bad("decode needs request"))?;
            serde_json::to_vec(&connector.decode(&request, now))
        }
        op::DELIVER => {
            let delivery = env.delivery.ok_or_else(|| bad("deliver needs delivery"))?;
            serde_json::to_vec(&connector.deliver(&delivery, now))
        }
        op::REGISTER => {
            let registration = env
                .registration
                .ok_or_else(|| bad("register needs registration"))?;
            serde_json::to_vec(&connector.register(&registration, now))
        }
        _ => {
            return shared_op(connector, op, env, body).unwrap_or_else(|| unknown(op));
        }
    };
    json.map_err(|e| (status::ERROR, e.to_string().into_bytes()))
}
