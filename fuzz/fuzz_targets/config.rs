#![no_main]
//! The config loader on any text: errors, never panics, and a secret read
//! from the environment never appears in an error it was not typed into.

use libfuzzer_sys::fuzz_target;
use patchbay_host::config::Config;

const SECRET: &str = "Fuzz-Env-Secret-7f3a";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "S").then(|| SECRET.to_string());
    if let Err(e) = Config::parse(text, std::path::Path::new("/nonexistent"), &env) {
        let shown = e.to_string();
        assert!(
            !shown.contains(SECRET) || text.contains(SECRET),
            "a secret from the environment reached an error: {shown}"
        );
    }
});
