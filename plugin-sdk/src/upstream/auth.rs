//! Auth schemes shared by every connector, configured per upstream.
//!
//! - [`BodySignature`]: an HMAC of the exact body in a header, SHA-1 or
//!   SHA-256, hex or base64, with an optional prefix (`sha1=`). Signs what
//!   Patchbay sends and verifies what the platform sends, in constant time.
//! - Static headers (`x-ccid`, API keys): plain `(name, value)` pairs a
//!   connector adds; see [`StaticHeader`].
//! - [`ClientCredentials`]: an OAuth 2.0 client-credentials grant. A request
//!   names the auth profile, the host asks the connector for the token
//!   request, caches the token until shortly before it expires, and fetches
//!   a new one once when the platform answers 401.

use serde::{Deserialize, Serialize};

use crate::adapter::{
    AccessToken, HttpRequestSpec, InboundRequest, ProviderResponse, RequestSpec, Secret, Timestamp,
};
use crate::error::{AdapterError, Rejection};
use crate::signature::{base64_encode, constant_time_eq, hmac_sha1, hmac_sha256, split_prefixed};

/// The hash of a [`BodySignature`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
}

/// How a [`BodySignature`]'s digest is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestEncoding {
    /// Lowercase hex (uppercase accepted when verifying).
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// An HMAC of the exact body, carried in one header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodySignature {
    /// The header (`X-Hub-Signature`).
    pub header: String,
    /// The hash.
    pub algorithm: HmacAlgorithm,
    /// How the digest is written.
    pub encoding: DigestEncoding,
    /// Text before the digest (`sha1=`), or empty.
    #[serde(default)]
    pub prefix: String,
}

impl BodySignature {
    /// `X-Hub-Signature: sha1=<hex>`, as Genesys Multicloud signs.
    pub fn hub_sha1() -> Self {
        BodySignature {
            header: "X-Hub-Signature".into(),
            algorithm: HmacAlgorithm::Sha1,
            encoding: DigestEncoding::Hex,
            prefix: "sha1=".into(),
        }
    }

    /// `X-Hub-Signature-256: <base64>`, as Genesys Cloud signs.
    pub fn hub_sha256_base64() -> Self {
        BodySignature {
            header: "X-Hub-Signature-256".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: DigestEncoding::Base64,
            prefix: "sha256=".into(),
        }
    }

    fn digest(&self, key: &Secret, body: &[u8]) -> Vec<u8> {
        let key = key.expose().as_bytes();
        match self.algorithm {
            HmacAlgorithm::Sha1 => hmac_sha1(key, body),
            HmacAlgorithm::Sha256 => hmac_sha256(key, body),
        }
    }

    /// The header value for `body`.
    pub fn value(&self, key: &Secret, body: &[u8]) -> String {
        let digest = self.digest(key, body);
        let digest = match self.encoding {
            DigestEncoding::Hex => hex::encode(digest),
            DigestEncoding::Base64 => base64_encode(&digest),
        };
        format!("{}{digest}", self.prefix)
    }

    /// Adds the signature header for the request's body.
    pub fn sign(&self, key: &Secret, request: HttpRequestSpec) -> HttpRequestSpec {
        let value = self.value(key, &request.body);
        request.header(self.header.clone(), value)
    }

    /// Checks the request's signature; 401 without a valid one. The prefix
    /// is optional on what arrives (some senders drop it), and compared
    /// without regard to case.
    pub fn verify(&self, key: &Secret, request: &InboundRequest) -> Result<(), Rejection> {
        let received = request
            .header(&self.header)
            .ok_or_else(|| Rejection::unauthorized(format!("missing {}", self.header)))?
            .trim();
        let digest = match split_prefixed(received) {
            Some((prefix, digest))
                if !self.prefix.is_empty()
                    && format!("{prefix}=").eq_ignore_ascii_case(&self.prefix) =>
            {
                digest
            }
            _ => received,
        };
        let received = match self.encoding {
            DigestEncoding::Hex => hex::decode(digest.to_ascii_lowercase()).ok(),
            DigestEncoding::Base64 => crate::signature::base64_decode(digest),
        };
        let expected = self.digest(key, &request.body);
        match received {
            Some(received) if constant_time_eq(&received, &expected) => Ok(()),
            _ => Err(Rejection::unauthorized(format!(
                "{} does not match the body",
                self.header
            ))),
        }
    }
}

/// A header every request to the platform carries (`x-ccid`, an API key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticHeader {
    /// The header's name.
    pub name: String,
    /// Its value (a [`Secret`]: it never prints).
    pub value: Secret,
}

impl StaticHeader {
    /// Adds the headers to a request.
    pub fn apply(headers: &[StaticHeader], mut request: HttpRequestSpec) -> HttpRequestSpec {
        for h in headers {
            request = request.header(h.name.clone(), h.value.expose());
        }
        request
    }
}

/// Where a [`ClientCredentials`] grant puts the client's id and secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialsIn {
    /// `Authorization: Basic base64(id:secret)` (RFC 6749's preference).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Form,
}

/// An OAuth 2.0 client-credentials grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCredentials {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// Scopes to ask for, if any.
    #[serde(default)]
    pub scope: Option<String>,
    /// Where the credentials go.
    #[serde(default)]
    pub credentials_in: CredentialsIn,
}

/// A token lifetime assumed when the answer gives none (seconds).
const DEFAULT_LIFETIME_SECS: i64 = 3600;

impl ClientCredentials {
    /// The token request.
    pub fn request(&self) -> RequestSpec {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        let mut request = HttpRequestSpec {
            method: "POST".into(),
            url: self.token_url.clone(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: Vec::new(),
            auth_profile: None,
        };
        match self.credentials_in {
            CredentialsIn::Basic => {
                let pair = format!("{}:{}", self.client_id, self.client_secret.expose());
                request = request.header(
                    "authorization",
                    format!("Basic {}", base64_encode(pair.as_bytes())),
                );
            }
            CredentialsIn::Form => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", self.client_secret.expose());
            }
        }
        request.body = form.finish().into_bytes();
        request.into()
    }

    /// Reads `{access_token, expires_in}`. A refusal (400/401) is permanent:
    /// the configured credentials are wrong; 5xx and 429 are transient.
    pub fn response(
        &self,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        if matches!(response.status, 400 | 401 | 403) {
            // No fresh token can help: the configured credentials were refused.
            return Err(AdapterError::permanent(format!(
                "the token endpoint refused the client credentials (HTTP {})",
                response.status
            ))
            .with_reason(crate::message::ReasonCode::NOT_ALLOWED));
        }
        if !response.is_success() {
            return Err(response.classify_http_error("token request"));
        }
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            expires_in: Option<i64>,
        }
        let answer: Answer = serde_json::from_slice(&response.body).map_err(|e| {
            AdapterError::transient(format!("token answer is not a token response: {e}"))
        })?;
        let lifetime = answer.expires_in.unwrap_or(DEFAULT_LIFETIME_SECS).max(1);
        Ok(AccessToken {
            token: Secret::new(answer.access_token),
            expires_at: Timestamp(now.0.saturating_add(lifetime.saturating_mul(1000))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(header: &str, value: &str, body: &[u8]) -> InboundRequest {
        InboundRequest {
            method: "POST".into(),
            url: "https://patchbay.test/upstreams/g/webhook".into(),
            headers: vec![(header.into(), value.into())],
            body: body.to_vec(),
        }
    }

    #[test]
    fn a_signature_verifies_what_it_signed_and_nothing_else() {
        let key = Secret::new("k");
        for scheme in [
            BodySignature::hub_sha1(),
            BodySignature::hub_sha256_base64(),
        ] {
            let value = scheme.value(&key, b"{\"a\":1}");
            assert!(value.starts_with(&scheme.prefix));
            let ok = request(&scheme.header, &value, b"{\"a\":1}");
            assert_eq!(scheme.verify(&key, &ok), Ok(()));
            let tampered = request(&scheme.header, &value, b"{\"a\":2}");
            assert_eq!(scheme.verify(&key, &tampered).unwrap_err().status, 401);
            assert!(scheme.verify(&Secret::new("other"), &ok).is_err());
            let missing = request("x-other", &value, b"{\"a\":1}");
            assert!(scheme.verify(&key, &missing).is_err());
        }
    }

    #[test]
    fn sha1_hex_matches_the_documented_form_and_accepts_no_prefix() {
        let scheme = BodySignature::hub_sha1();
        let key = Secret::new("secret");
        let value = scheme.value(&key, b"body");
        // HMAC-SHA1("secret", "body")
        let hex = crate::signature::hmac_sha1_hex(b"secret", b"body");
        assert_eq!(value, format!("sha1={hex}"));
        let bare = request("x-hub-signature", &hex.to_uppercase(), b"body");
        assert_eq!(scheme.verify(&key, &bare), Ok(()));
    }

    #[test]
    fn client_credentials_ask_with_basic_or_form_and_read_the_lifetime() {
        let mut grant = ClientCredentials {
            token_url: "https://login.example.test/oauth/token".into(),
            client_id: "id".into(),
            client_secret: Secret::new("s3cret"),
            scope: None,
            credentials_in: CredentialsIn::Basic,
        };
        let RequestSpec::Http(basic) = grant.request() else {
            panic!("http")
        };
        let authorization = basic.headers.iter().find(|(k, _)| k == "authorization");
        assert_eq!(
            authorization.map(|(_, v)| v.as_str()),
            Some(format!("Basic {}", base64_encode(b"id:s3cret")).as_str())
        );
        assert_eq!(basic.body, b"grant_type=client_credentials");
        grant.credentials_in = CredentialsIn::Form;
        grant.scope = Some("a b".into());
        let RequestSpec::Http(form) = grant.request() else {
            panic!("http")
        };
        assert_eq!(
            String::from_utf8(form.body).unwrap(),
            "grant_type=client_credentials&scope=a+b&client_id=id&client_secret=s3cret"
        );
        let token = grant
            .response(
                ProviderResponse {
                    status: 200,
                    headers: vec![],
                    body: br#"{"access_token":"t","token_type":"bearer","expires_in":60}"#.to_vec(),
                },
                Timestamp(1_000),
            )
            .unwrap();
        assert_eq!(token.token.expose(), "t");
        assert_eq!(token.expires_at, Timestamp(61_000));
        let refused = grant.response(
            ProviderResponse {
                status: 401,
                headers: vec![],
                body: vec![],
            },
            Timestamp(0),
        );
        assert!(!refused.unwrap_err().is_retryable());
    }
}
