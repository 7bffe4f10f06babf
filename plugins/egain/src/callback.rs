//! How the Hub proves its callbacks are its own.
//!
//! eGain's Hub authenticates to a client application's callback with an
//! Authentication object: OAuth (it fetches a token from a URL with a payload
//! it was given, reads `$.accessToken`, sends it on every callback until the
//! callback answers 401, then fetches a new one) or Basic. Patchbay is that
//! authorization server: `POST {public_url}/upstreams/{name}/token` with
//! `{"clientId", "clientSecret"}` answers `{"accessToken", "tokenType",
//! "expiresIn"}`. The token is an HS256 JWT under the callback client's
//! secret (`aud` the upstream, `exp`), so checking it needs no state shared
//! between replicas, and rotating the secret revokes every token.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use patchbay_plugin_sdk::adapter::{AckResponse, InboundRequest, Secret, Timestamp};
use patchbay_plugin_sdk::error::Rejection;
use patchbay_plugin_sdk::signature::{auth_credentials, base64_decode};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How callbacks authenticate (`settings.callback_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// A token from Patchbay's token endpoint.
    #[default]
    Token,
    /// `Authorization: Basic` with the callback client's id and secret.
    Basic,
}

/// The callback client's credentials and how they are presented.
#[derive(Debug)]
pub struct CallbackAuth {
    pub(crate) scheme: Scheme,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    /// The upstream's name: tokens are good for it only.
    pub(crate) audience: String,
    pub(crate) token_lifetime_secs: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    aud: String,
    iat: i64,
    exp: i64,
}

fn unauthorized(why: &str) -> Rejection {
    Rejection {
        status: 401,
        message: why.to_string(),
        stale_resources: false,
    }
}

impl CallbackAuth {
    /// Answers a token request: a token for the right credentials, 401 otherwise.
    pub fn issue(
        &self,
        request: &InboundRequest,
        now: Timestamp,
    ) -> Result<AckResponse, Rejection> {
        if self.scheme != Scheme::Token {
            return Err(Rejection {
                status: 404,
                message: "callbacks use Basic auth; there is no token endpoint".into(),
                stale_resources: false,
            });
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Ask {
            client_id: String,
            client_secret: String,
        }
        let ask: Ask = serde_json::from_slice(&request.body).map_err(|_| {
            Rejection::bad_request("a token request is {\"clientId\", \"clientSecret\"}")
        })?;
        let id_ok = Secret::new(ask.client_id) == Secret::new(self.client_id.clone());
        let secret_ok = Secret::new(ask.client_secret) == self.client_secret;
        if !(id_ok && secret_ok) {
            return Err(unauthorized("invalid client credentials"));
        }
        let claims = Claims {
            aud: self.audience.clone(),
            iat: now.as_secs(),
            exp: now.as_secs() + self.token_lifetime_secs,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.client_secret.expose().as_bytes()),
        )
        .map_err(|_| Rejection {
            status: 500,
            message: "cannot sign the token".into(),
            stale_resources: false,
        })?;
        let body = json!({
            "accessToken": token,
            "tokenType": "Bearer",
            "expiresIn": self.token_lifetime_secs,
        });
        Ok(AckResponse::with_body("application/json", body.to_string()))
    }

    /// Checks a callback's `Authorization`; 401 when it is missing, wrong or
    /// expired, so the Hub fetches a new token.
    pub fn check(&self, request: &InboundRequest, now: Timestamp) -> Result<(), Rejection> {
        let header = request
            .header("authorization")
            .ok_or_else(|| unauthorized("missing authorization"))?;
        match self.scheme {
            Scheme::Basic => {
                let encoded = auth_credentials(header, "Basic")
                    .ok_or_else(|| unauthorized("Basic authorization expected"))?;
                let decoded = base64_decode(encoded)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| unauthorized("unreadable Basic authorization"))?;
                let (id, secret) = decoded.split_once(':').unwrap_or((&decoded, ""));
                let id_ok = Secret::new(id) == Secret::new(self.client_id.clone());
                let secret_ok = Secret::new(secret) == self.client_secret;
                if id_ok && secret_ok {
                    Ok(())
                } else {
                    Err(unauthorized("invalid credentials"))
                }
            }
            Scheme::Token => {
                let token = auth_credentials(header, "Bearer").unwrap_or(header.trim());
                let mut validation = Validation::new(Algorithm::HS256);
                validation.algorithms = vec![Algorithm::HS256];
                // Expiry is checked against the host's clock below, not the system's.
                validation.validate_exp = false;
                validation.required_spec_claims = ["aud".to_string(), "exp".to_string()].into();
                validation.set_audience(&[&self.audience]);
                let data = jsonwebtoken::decode::<Claims>(
                    token,
                    &DecodingKey::from_secret(self.client_secret.expose().as_bytes()),
                    &validation,
                )
                .map_err(|_| unauthorized("invalid token"))?;
                if data.claims.exp <= now.as_secs() {
                    return Err(unauthorized("token expired"));
                }
                Ok(())
            }
        }
    }
}
