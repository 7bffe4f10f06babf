//! Adapters loaded from shared libraries built against the plugin SDK's C ABI.
//!
//! [`loader`] opens a library and checks its descriptor; [`dynamic`] wraps it
//! in the same `ChannelAdapter` trait the compiled-in adapters implement.

pub mod dynamic;
pub mod loader;

pub use dynamic::{DynamicAdapter, DynamicFactory};
pub use loader::{LoadError, open};
