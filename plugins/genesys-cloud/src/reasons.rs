//! Patchbay's numeric reason codes (Multicloud's own) and Genesys Cloud's
//! string reasons. The pairing is by meaning [assumed: Genesys documents the
//! two lists separately]; Cloud's extra reasons map to their nearest code.

use patchbay_plugin_sdk::message::ReasonCode;

/// Each Cloud reason with its code; the first entry of a code is what the
/// code is sent as.
const TABLE: &[(&str, ReasonCode)] = &[
    ("MessageExpired", ReasonCode::EXPIRED),
    ("RateLimited", ReasonCode::RATE_LIMITED),
    ("MessageNotAllowed", ReasonCode::NOT_ALLOWED),
    ("RecipientOptedOut", ReasonCode::NOT_ALLOWED),
    ("GeneralError", ReasonCode::GENERAL),
    ("ServerError", ReasonCode::GENERAL),
    ("UnsupportedMessage", ReasonCode::UNSUPPORTED),
    ("MediaTypeNotAllowed", ReasonCode::UNSUPPORTED),
    ("UnknownMessage", ReasonCode::UNKNOWN),
    ("InvalidMessageStructure", ReasonCode::INVALID_STRUCTURE),
    ("InvalidMediaContentLength", ReasonCode::INVALID_STRUCTURE),
    ("InvalidDestination", ReasonCode::INVALID_DESTINATION),
];

/// The Cloud reason for a code; unknown codes are `GeneralError`.
pub fn cloud_name(code: ReasonCode) -> &'static str {
    TABLE
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("GeneralError", |(name, _)| name)
}

/// The code of a Cloud reason; unknown names are 500.
pub fn code_of(name: &str) -> ReasonCode {
    TABLE
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or(ReasonCode::GENERAL, |(_, code)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_goes_there_and_back() {
        for code in [305, 310, 350, 500, 510, 512, 520, 530] {
            let code = ReasonCode(code);
            assert_eq!(code_of(cloud_name(code)), code);
        }
        assert_eq!(cloud_name(ReasonCode(999)), "GeneralError");
        assert_eq!(code_of("RecipientOptedOut"), ReasonCode::NOT_ALLOWED);
        assert_eq!(code_of("nonsense"), ReasonCode::GENERAL);
    }
}
