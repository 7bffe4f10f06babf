#![no_main]
//! What crosses the C ABI as JSON, decoded as the host decodes a plugin's
//! answers (steps, verdicts, manifests, resources, tokens, config errors) and
//! as a plugin decodes the host's envelope: malformed answers are errors,
//! never panics, and what decodes is used as the host would use it.

use libfuzzer_sys::fuzz_target;
use patchbay_core::capabilities::{CapabilityOverrides, narrow};
use patchbay_fuzz::check_message;
use patchbay_plugin_sdk::abi::Envelope;
use patchbay_plugin_sdk::adapter::{
    AccessToken, ConfigError, Manifest, RequestSpec, ResourceSpec, Step, StepOutput, Verdict,
};
use patchbay_plugin_sdk::error::Rejection;

fuzz_target!(|data: &[u8]| {
    if let Ok(Step::Done {
        output: StepOutput::Messages { messages },
    }) = serde_json::from_slice::<Step>(data)
    {
        for message in messages.iter().filter(|m| m.validate().is_ok()) {
            check_message(message);
        }
    }
    let _ = serde_json::from_slice::<Result<Verdict, Rejection>>(data);
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        let _ = narrow(&manifest.capabilities, &CapabilityOverrides::default());
        let _ = manifest.wire.contains(1);
    }
    let _ = serde_json::from_slice::<Vec<ResourceSpec>>(data);
    let _ = serde_json::from_slice::<RequestSpec>(data);
    let _ = serde_json::from_slice::<AccessToken>(data);
    let _ = serde_json::from_slice::<ConfigError>(data);
    let _ = serde_json::from_slice::<Envelope>(data);
});
