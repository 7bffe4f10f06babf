//! Adapters loaded from shared libraries built against the plugin SDK's C ABI.
//!
//! [`loader`] opens a library and checks its descriptor; [`dynamic`] wraps it
//! in the same `ChannelAdapter` trait the compiled-in adapters implement;
//! [`load_configured`] applies the operator's `[[plugin]]` policy first.

pub mod contained;
pub mod dynamic;
pub mod loader;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use dynamic::{DynamicAdapter, DynamicConnector, DynamicFactory, DynamicUpstreamFactory};
pub use loader::{Exports, Library, LoadError, open};

use crate::config::{Config, ConfigError};

/// A `[[plugin]]` library that passed every check.
#[derive(Debug)]
pub struct Loaded {
    /// The adapter id channels refer to, or the kind upstreams refer to.
    pub name: String,
    /// The file's SHA-256, hex.
    pub sha256: String,
    /// The factory over the library.
    pub plugin: Plugin,
}

/// A loaded library, by what it implements.
#[derive(Debug)]
pub enum Plugin {
    /// A channel adapter: channels name it as `adapter`.
    Adapter(DynamicFactory),
    /// An upstream connector: upstreams name it as `kind`.
    Upstream(DynamicUpstreamFactory),
}

/// Loads every `[[plugin]]` entry: the file must sit inside one of
/// `plugins.dirs` (after resolving symlinks), match its `sha256` pin if given,
/// and pass the ABI handshake. Errors name the entry.
pub fn load_configured(config: &Config) -> Result<Vec<Loaded>, ConfigError> {
    let dirs: Vec<PathBuf> = config
        .plugins
        .dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .collect();
    let mut loaded = Vec::new();
    for (i, entry) in config.plugin_libraries.iter().enumerate() {
        let key = format!("plugin[{i}]");
        let path = entry.path.canonicalize().map_err(|e| {
            ConfigError::new(
                format!("{key}.path"),
                format!("cannot read {}: {e}", entry.path.display()),
            )
        })?;
        if !dirs.iter().any(|dir| path.starts_with(dir)) {
            return Err(ConfigError::new(
                format!("{key}.path"),
                format!(
                    "{} is outside the plugin directories ({}); add its directory to plugins.dirs",
                    path.display(),
                    display_list(&config.plugins.dirs)
                ),
            ));
        }
        let sha256 = file_sha256(&path)
            .map_err(|e| ConfigError::new(format!("{key}.path"), e.to_string()))?;
        if let Some(pin) = &entry.sha256
            && !pin.eq_ignore_ascii_case(&sha256)
        {
            return Err(ConfigError::new(
                format!("{key}.sha256"),
                format!(
                    "{} has sha256 {sha256}, the config pins {pin}; refusing to load it",
                    path.display()
                ),
            ));
        }
        let library =
            open(&path).map_err(|e| ConfigError::new(format!("{key}.path"), e.to_string()))?;
        let name = entry
            .name
            .clone()
            .unwrap_or_else(|| library.default_name().to_string());
        let refused = |e: LoadError| ConfigError::new(format!("{key}.path"), e.to_string());
        let plugin = match library.exports {
            Exports::Adapter(_) => Plugin::Adapter(DynamicFactory::new(library).map_err(refused)?),
            Exports::Upstream(_) => {
                Plugin::Upstream(DynamicUpstreamFactory::new(library).map_err(refused)?)
            }
        };
        loaded.push(Loaded {
            name,
            sha256,
            plugin,
        });
    }
    Ok(loaded)
}

/// The hex SHA-256 of a file.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn display_list(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
