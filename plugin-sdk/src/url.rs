//! URL helpers for building provider requests.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

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

/// The media type and bytes of a `data:` URL (RFC 2397), base64 or
/// percent-encoded; `None` if `url` is not one or is malformed.
///
/// ```
/// use patchbay_plugin_sdk::url::decode_data_url;
/// assert_eq!(decode_data_url("data:text/plain;base64,aGk="), Some(("text/plain".into(), b"hi".to_vec())));
/// assert_eq!(decode_data_url("data:,a%20b"), Some(("text/plain".into(), b"a b".to_vec())));
/// assert_eq!(decode_data_url("https://example.com/a.png"), None);
/// ```
pub fn decode_data_url(url: &str) -> Option<(String, Vec<u8>)> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    let (meta, base64) = match meta.strip_suffix(";base64") {
        Some(m) => (m, true),
        None => (meta, false),
    };
    let media_type = match meta.split(';').next() {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => "text/plain".to_string(),
    };
    let bytes = if base64 {
        crate::signature::base64_decode(data)?
    } else {
        percent_decode_str(data).collect()
    };
    Some((media_type, bytes))
}
