//! Builds the adapter libraries the plugin tests load, once per test process.
//!
//! They go to their own target directory: the workspace build links the
//! first-party adapters into the host with their entry points turned off
//! (feature `compiled-in`), and the example third-party adapter is a crate of
//! its own outside the workspace.

// Shared by test and bench targets, each using part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The first-party adapters, by crate suffix.
pub const FIRST_PARTY: &[&str] = &["client_channel", "slack", "teams", "sms", "webex", "email"];

/// The first-party upstream connectors, by crate suffix.
pub const CONNECTORS: &[&str] = &["genesys_3pm", "genesys_cloud", "pega_dms", "egain"];

/// The deliberately broken libraries under `tests/misbehaving`.
pub const MISBEHAVING: &[&str] = &[
    "wrong_magic",
    "abi_v2",
    "short_descriptor",
    "bad_manifest",
    "panics",
    "oversized",
    "unknown_op",
];

/// The example third-party adapter, a crate outside the workspace.
pub const TELEGRAM_EXAMPLE: &str = "examples/telegram-adapter";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace());
    command
}

/// Builds every library (once) and returns the directory holding them.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace().join("target/plugin-libs");
        let mut build = cargo();
        build
            .args(["build", "--quiet", "--target-dir"])
            .arg(&target);
        for name in FIRST_PARTY {
            build.args([
                "-p",
                &format!("patchbay-adapter-{}", name.replace('_', "-")),
            ]);
        }
        for name in CONNECTORS {
            build.args([
                "-p",
                &format!("patchbay-upstream-{}", name.replace('_', "-")),
            ]);
        }
        for name in MISBEHAVING {
            build.args(["-p", &format!("misbehaving-{}", name.replace('_', "-"))]);
        }
        assert!(
            build.status().expect("run cargo build").success(),
            "building the adapter libraries failed"
        );
        let example = cargo()
            .args(["build", "--quiet", "--manifest-path"])
            .arg(workspace().join(TELEGRAM_EXAMPLE).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("run cargo build");
        assert!(example.success(), "building {TELEGRAM_EXAMPLE} failed");
        target.join("debug")
    })
}

/// The path of library `name` (`patchbay_adapter_sms`, `misbehaving_panics`,
/// `patchbay_telegram_example`).
pub fn path(name: &str) -> PathBuf {
    dir().join(file_name(name))
}

/// `libNAME.so`, `libNAME.dylib` or `NAME.dll`.
fn file_name(name: &str) -> String {
    format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Builds one workspace adapter crate as an optimised library (for
/// benchmarks) and returns the library's path.
pub fn release(package: &str) -> PathBuf {
    let target = workspace().join("target/plugin-libs");
    let status = cargo()
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {package} failed");
    target
        .join("release")
        .join(file_name(&package.replace('-', "_")))
}
