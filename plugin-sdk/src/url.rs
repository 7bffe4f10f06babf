//! URL helpers for building provider requests.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `text` for use as one path segment or query value: only
/// unreserved characters stay as they are (spaces become `%20`, never `+`).
///
/// ```
/// use patchbay_plugin_sdk::url::encode_component;
/// assert_eq!(encode_component("a:b/c d"), "a%3Ab%2Fc%20d");
/// assert_eq!(encode_component("Re: [pb:X]"), "Re%3A%20%5Bpb%3AX%5D");
/// ```
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}
