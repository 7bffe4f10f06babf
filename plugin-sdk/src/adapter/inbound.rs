//! An inbound webhook and the adapter's verdict on it.

use serde::{Deserialize, Serialize};

/// An inbound webhook request exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InboundRequest {
    /// The HTTP method.
    pub method: String,
    /// The public URL the provider called, with query (from the host's
    /// configured public base URL, not the `Host` header).
    pub url: String,
    /// Headers in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    #[serde(with = "crate::bytes_b64")]
    pub body: Vec<u8>,
}

impl InboundRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The outcome of a successful [`ChannelAdapter::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The exact response the provider expects.
    pub ack: AckResponse,
    /// The provider's event id; the host drops requests whose key it has seen.
    pub dedupe_key: Option<String>,
    /// `false` for handshakes (Slack's `url_verification`): answer, store nothing.
    pub store: bool,
}

impl Verdict {
    /// Store the request and answer `200` with an empty body.
    pub fn accept(dedupe_key: Option<String>) -> Self {
        Verdict {
            ack: AckResponse::empty(200),
            dedupe_key,
            store: true,
        }
    }

    /// Answer with `ack` and store nothing.
    pub fn handshake(ack: AckResponse) -> Self {
        Verdict {
            ack,
            dedupe_key: None,
            store: false,
        }
    }
}

/// The acknowledgement sent to the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// HTTP status.
    pub status: u16,
    /// Content type of `body`, if any.
    pub content_type: Option<String>,
    /// The body.
    #[serde(with = "crate::bytes_b64")]
    pub body: Vec<u8>,
}

impl AckResponse {
    /// A status with no body.
    pub fn empty(status: u16) -> Self {
        AckResponse {
            status,
            content_type: None,
            body: Vec::new(),
        }
    }

    /// A `200` with a body of the given content type.
    pub fn with_body(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        AckResponse {
            status: 200,
            content_type: Some(content_type.into()),
            body: body.into(),
        }
    }
}
