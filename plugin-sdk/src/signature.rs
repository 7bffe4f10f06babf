//! Signature helpers shared by adapters: HMAC-SHA1/SHA-256, hex and base64, and
//! constant-time comparison.
//!
//! ```
//! use patchbay_plugin_sdk::signature::{hmac_sha256_hex, verify_hex};
//! let sig = hmac_sha256_hex(b"secret", b"body");
//! assert!(verify_hex(&sig, &hmac_sha256_hex(b"secret", b"body")));
//! assert!(!verify_hex(&sig, &hmac_sha256_hex(b"secret", b"other")));
//! ```

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

/// HMAC-SHA1 of `message` under `key`.
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Lower-case hex HMAC-SHA1.
pub fn hmac_sha1_hex(key: &[u8], message: &[u8]) -> String {
    hex::encode(hmac_sha1(key, message))
}

/// Lower-case hex HMAC-SHA256.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    hex::encode(hmac_sha256(key, message))
}

/// Standard base64 (with padding).
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64; `None` when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Constant-time equality of two byte strings (length may leak, content does not).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Compares a received hex signature with the expected one, case-insensitively
/// and in constant time.
pub fn verify_hex(received: &str, expected_hex: &str) -> bool {
    let received = received.trim().to_ascii_lowercase();
    constant_time_eq(received.as_bytes(), expected_hex.as_bytes())
}

/// Splits `"sha1=abcd"` into `("sha1", "abcd")`.
///
/// ```
/// use patchbay_plugin_sdk::signature::split_prefixed;
/// assert_eq!(split_prefixed("sha256=ab12"), Some(("sha256", "ab12")));
/// ```
pub fn split_prefixed(value: &str) -> Option<(&str, &str)> {
    value.trim().split_once('=')
}

/// The credentials of an `Authorization` header value using `scheme`
/// (`Bearer`, `Basic`), which HTTP compares case-insensitively.
///
/// ```
/// use patchbay_plugin_sdk::signature::auth_credentials;
/// assert_eq!(auth_credentials("bearer abc ", "Bearer"), Some("abc"));
/// assert_eq!(auth_credentials("BEARER abc", "Bearer"), Some("abc"));
/// assert_eq!(auth_credentials("Basic abc", "Bearer"), None);
/// assert_eq!(auth_credentials("Bearerabc", "Bearer"), None);
/// ```
pub fn auth_credentials<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let header = header.trim_start();
    let (given, rest) = header.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|credentials| !credentials.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2202 and RFC 4231 test case 2.
    #[test]
    fn rfc_vectors() {
        assert_eq!(
            hmac_sha1_hex(b"Jefe", b"what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_hex_is_case_insensitive_and_exact() {
        let sig = hmac_sha1_hex(b"k", b"m");
        assert!(verify_hex(&sig.to_uppercase(), &sig));
        assert!(!verify_hex(&sig[..10], &sig));
        assert!(!verify_hex("", &sig));
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(
            base64_decode(&base64_encode(b"\x00\xffabc")).unwrap(),
            b"\x00\xffabc"
        );
        assert!(base64_decode("not base64!").is_none());
    }
}
