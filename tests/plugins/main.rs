//! Adapters loaded from shared libraries: the first-party adapters give the
//! same results through the C ABI as compiled in, and broken libraries are
//! refused at load or contained at call.

#[path = "../plugin_libs.rs"]
mod plugin_libs;

mod misbehaving;
mod parity;
