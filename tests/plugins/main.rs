//! Adapters and upstream connectors loaded from shared libraries: the
//! first-party ones give the same results through the C ABI as compiled in,
//! and broken libraries are refused at load or contained at call.

#[path = "../plugin_libs.rs"]
mod plugin_libs;

mod misbehaving;
mod parity;
mod upstreams;
