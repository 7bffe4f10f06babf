//! Bot Framework authentication: the signing keys inbound tokens are checked
//! against, token validation, and the client-credentials token for outbound.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::auth_credentials;
use serde::Deserialize;
use serde_json::Value;

use crate::{Pending, Teams};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 300;

/// Step 1: the OpenID metadata, which names the key set.
pub(crate) fn fetch_keys(metadata_url: &str) -> Step {
    Step::request(HttpRequestSpec::get(metadata_url), &Pending::KeyMetadata)
}

/// Step 2 and 3: follow `jwks_uri`, then hand the key set to the host.
pub(crate) fn resume_keys(pending: Pending, response: ProviderResponse) -> Step {
    let stage = match pending {
        Pending::KeyMetadata => "metadata",
        _ => "key set",
    };
    if !response.is_success() {
        return Step::fail(response.classify_http_error(&format!("OpenID {stage} endpoint")));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&response.body) else {
        return Step::fail(AdapterError::transient(format!(
            "OpenID {stage} is not JSON"
        )));
    };
    match stage {
        "metadata" => match body["jwks_uri"].as_str() {
            Some(uri) => Step::request(HttpRequestSpec::get(uri), &Pending::KeySet),
            None => Step::fail(AdapterError::transient("OpenID metadata has no jwks_uri")),
        },
        _ if body["keys"].is_array() => Step::Done {
            output: StepOutput::Resource { value: body },
        },
        _ => Step::fail(AdapterError::transient("OpenID key set has no keys")),
    }
}

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    #[serde(default)]
    kty: String,
    n: String,
    e: String,
    /// The channels (`msteams`, `webchat`, …) the key may sign activities of.
    #[serde(default)]
    endorsements: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    serviceurl: Option<String>,
}

/// Validates `Authorization: Bearer <JWT>`: signed by a key endorsed for the
/// activity's `channelId`, and with a `serviceurl` claim matching the
/// activity's `serviceUrl`.
pub(crate) fn validate(
    teams: &Teams,
    authorization: Option<&str>,
    activity: ActivityHead<'_>,
    now: Timestamp,
    resources: &Resources,
) -> Result<(), Rejection> {
    let ActivityHead {
        service_url,
        channel_id,
    } = activity;
    let token = authorization
        .and_then(|h| auth_credentials(h, "Bearer"))
        .ok_or_else(|| Rejection::unauthorized("missing bearer token"))?;
    let header =
        decode_header(token).map_err(|_| Rejection::unauthorized("malformed bearer token"))?;
    if header.alg != Algorithm::RS256 {
        return Err(Rejection::unauthorized("bearer token is not RS256"));
    }
    let kid = header
        .kid
        .ok_or_else(|| Rejection::unauthorized("bearer token names no signing key"))?;
    let keys = resources
        .get(crate::KEYS_RESOURCE)
        .and_then(|set| set["keys"].as_array())
        .ok_or_else(|| Rejection::stale_resources("no signing keys loaded yet"))?;
    let jwk = keys
        .iter()
        .filter_map(|k| Jwk::deserialize(k).ok())
        .find(|k| k.kid == kid && (k.kty.is_empty() || k.kty == "RSA"))
        .ok_or_else(|| Rejection::stale_resources("bearer token is signed with an unknown key"))?;
    // A key serves the channels it is endorsed for, and no others.
    if !jwk.endorsements.iter().any(|e| e == channel_id) {
        return Err(Rejection::unauthorized(format!(
            "signing key is not endorsed for channel {channel_id:?}"
        )));
    }
    let key = DecodingKey::from_rsa_components(&jwk.n, &jwk.e)
        .map_err(|_| Rejection::unauthorized("signing key is malformed"))?;

    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&teams.issuer]);
    validation.set_audience(&[&teams.app_id]);
    validation.leeway = LEEWAY_SECS;
    // The clock is the host's, not the system's: expiry and not-before are
    // checked against it below.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data = decode::<Value>(token, &key, &validation)
        .map_err(|e| Rejection::unauthorized(format!("bearer token rejected: {}", reason(&e))))?;
    check_times(&data.claims, now)?;
    let claims: Claims = serde_json::from_value(data.claims)
        .map_err(|_| Rejection::unauthorized("bearer token claims are malformed"))?;
    let claimed = claims
        .serviceurl
        .ok_or_else(|| Rejection::unauthorized("bearer token has no serviceurl claim"))?;
    if claimed.trim_end_matches('/') != service_url.trim_end_matches('/') {
        return Err(Rejection::unauthorized(
            "serviceurl claim does not match the activity's serviceUrl",
        ));
    }
    Ok(())
}

/// What `validate` reads of the activity before its token is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActivityHead<'a> {
    /// `serviceUrl`: what the token's `serviceurl` claim must match.
    pub service_url: &'a str,
    /// `channelId`: what the signing key must be endorsed for.
    pub channel_id: &'a str,
}

/// `exp` and `nbf` against the host's clock, with the leeway.
fn check_times(claims: &Value, now: Timestamp) -> Result<(), Rejection> {
    let now = now.as_secs();
    let leeway = LEEWAY_SECS as i64;
    let exp = claims["exp"]
        .as_i64()
        .ok_or_else(|| Rejection::unauthorized("bearer token has no expiry"))?;
    if now > exp + leeway {
        return Err(Rejection::unauthorized("bearer token expired"));
    }
    if let Some(nbf) = claims["nbf"].as_i64()
        && now + leeway < nbf
    {
        return Err(Rejection::unauthorized("bearer token is not valid yet"));
    }
    Ok(())
}

/// A short reason that never echoes the token.
fn reason(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::ImmatureSignature => "not valid yet",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        ErrorKind::InvalidAlgorithm => "wrong algorithm",
        _ => "malformed",
    }
}

/// The OAuth client-credentials request for the bot's outbound token.
pub(crate) fn token_request(teams: &Teams) -> RequestSpec {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &teams.app_id)
        .append_pair("client_secret", teams.app_password.expose())
        .append_pair("scope", &teams.token_scope)
        .finish();
    RequestSpec::Http(HttpRequestSpec {
        method: "POST".into(),
        url: teams.token_url.clone(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: form.into_bytes(),
        auth_profile: None,
    })
}

/// Reads `access_token` and `expires_in` from the token endpoint's answer.
pub(crate) fn token_response(
    response: ProviderResponse,
    now: Timestamp,
) -> Result<AccessToken, AdapterError> {
    if !response.is_success() {
        // A refused client secret will not fix itself.
        let mut error = response.classify_http_error("the OAuth token endpoint");
        if matches!(response.status, 400 | 401) {
            error = AdapterError::permanent(format!(
                "the OAuth token endpoint refused the credentials (HTTP {}); check settings.app_id and secrets.app_password",
                response.status
            ));
        }
        return Err(error);
    }
    #[derive(Deserialize)]
    struct Token {
        access_token: String,
        #[serde(default)]
        expires_in: Option<i64>,
    }
    let token: Token = serde_json::from_slice(&response.body).map_err(|_| {
        AdapterError::transient("the OAuth token endpoint answered without a token")
    })?;
    Ok(AccessToken {
        token: Secret::new(token.access_token),
        expires_at: Timestamp(now.0 + token.expires_in.unwrap_or(3600) * 1000),
    })
}
