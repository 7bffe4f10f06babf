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

    /// The body read as an `application/x-www-form-urlencoded` form: every
    /// field, decoded, in order (a name may repeat).
    ///
    /// ```
    /// use patchbay_plugin_sdk::adapter::InboundRequest;
    /// let req = InboundRequest { body: b"From=%2B15550001&Body=hi+there".to_vec(), ..Default::default() };
    /// assert_eq!(req.form()[1], ("Body".to_string(), "hi there".to_string()));
    /// ```
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The URL's query parameter `name`, decoded (the first, if it repeats).
    ///
    /// ```
    /// use patchbay_plugin_sdk::adapter::InboundRequest;
    /// let req = InboundRequest { url: "https://gw/webhooks/sms?token=a%2Fb".into(), ..Default::default() };
    /// assert_eq!(req.query("token").as_deref(), Some("a/b"));
    /// assert_eq!(req.query("other"), None);
    /// ```
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, query) = self.url.split_once('?')?;
        let query = query.split('#').next().unwrap_or_default();
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The outcome of a successful [`ChannelAdapter::verify`](super::ChannelAdapter::verify).
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
        Verdict::accept_with(AckResponse::empty(200), dedupe_key)
    }

    /// Store the request and answer with `ack` — the body a provider insists
    /// on (Twilio's empty TwiML document, say).
    pub fn accept_with(ack: AckResponse, dedupe_key: Option<String>) -> Self {
        Verdict {
            ack,
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
