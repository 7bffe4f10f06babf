//! Who a web chat customer is: Patchbay's own session tokens, sites' JWTs,
//! and which pages may embed the widget.
//!
//! A session token is an HS256 JWT signed with the channel's `session_secret`:
//! `sub` the customer (and conversation) id, `aud` `webchat:<channel>`, `exp`.
//! Anonymous customers get a random id from the host; a site that knows its
//! customer signs a JWT of its own (HS256 with `site_jwt_secret`, or RS256
//! with `site_jwt_public_key`) whose `sub` becomes the customer id.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use patchbay_plugin_sdk::adapter::{ChannelConfig, ConfigError, Secret, Timestamp};
use patchbay_plugin_sdk::error::Rejection;
use serde::{Deserialize, Serialize};

use crate::Settings;

/// The customer a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The customer's id; also their conversation's id.
    pub id: String,
    /// A display name, when the site gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A session token handed to the widget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// The token (`Authorization: Bearer …`, or the socket's `hello`).
    pub token: String,
    /// Whose it is.
    pub customer: Customer,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    aud: String,
    iat: i64,
    exp: i64,
}

#[derive(Debug, Deserialize)]
struct SiteClaims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    exp: i64,
}

/// A site's key for the JWTs it signs about its customers.
struct SiteKey {
    key: DecodingKey,
    algorithm: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
}

/// Issues and checks one channel's sessions.
pub struct Sessions {
    audience: String,
    secret: Secret,
    lifetime_secs: i64,
    site: Option<SiteKey>,
    require_site_jwt: bool,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("audience", &self.audience)
            .field("lifetime_secs", &self.lifetime_secs)
            .field("site_jwt", &self.site.as_ref().map(|s| s.algorithm))
            .finish_non_exhaustive()
    }
}

/// The shortest `session_secret` accepted: it is an HMAC key.
const MIN_SECRET_CHARS: usize = 32;

impl Sessions {
    pub(crate) fn new(config: &ChannelConfig, settings: &Settings) -> Result<Self, ConfigError> {
        let secret = config.secret("session_secret")?.clone();
        if secret.expose().chars().count() < MIN_SECRET_CHARS {
            return Err(ConfigError::new(
                "secrets.session_secret",
                format!("must be at least {MIN_SECRET_CHARS} characters"),
            ));
        }
        if !(1..=24 * 30).contains(&settings.session_hours) {
            return Err(ConfigError::new(
                "settings.session_hours",
                "must be between 1 and 720",
            ));
        }
        let site = site_key(config, settings)?;
        if settings.require_site_jwt && site.is_none() {
            return Err(ConfigError::new(
                "settings.require_site_jwt",
                "needs secrets.site_jwt_secret (HS256) or settings.site_jwt_public_key (RS256)",
            ));
        }
        Ok(Sessions {
            audience: format!("webchat:{}", config.channel),
            secret,
            lifetime_secs: i64::from(settings.session_hours) * 3600,
            site,
            require_site_jwt: settings.require_site_jwt,
        })
    }

    /// A session for a new anonymous visitor; `visitor` is a fresh random id
    /// the host draws. Refused when the channel requires a site's JWT.
    pub fn anonymous(&self, visitor: &str, now: Timestamp) -> Result<Issued, Rejection> {
        if self.require_site_jwt {
            return Err(Rejection::unauthorized(
                "this chat needs the site's sign-in (a site JWT)",
            ));
        }
        let customer = Customer {
            id: format!("visitor-{visitor}"),
            name: None,
        };
        self.issue(customer, now)
    }

    /// A session for the customer a site vouches for with its own JWT.
    pub fn from_site_jwt(&self, jwt: &str, now: Timestamp) -> Result<Issued, Rejection> {
        let Some(site) = &self.site else {
            return Err(Rejection::bad_request(
                "this channel accepts no site JWTs (no site key is configured)",
            ));
        };
        let mut validation = Validation::new(site.algorithm);
        validation.algorithms = vec![site.algorithm];
        // Expiry is checked against the host's clock below.
        validation.validate_exp = false;
        validation.required_spec_claims = ["sub".to_string(), "exp".to_string()].into();
        match &site.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &site.issuer {
            validation.set_issuer(&[iss]);
        }
        let claims = jsonwebtoken::decode::<SiteClaims>(jwt, &site.key, &validation)
            .map_err(|e| Rejection::unauthorized(format!("site JWT refused: {e}")))?
            .claims;
        if claims.exp <= now.as_secs() {
            return Err(Rejection::unauthorized("site JWT expired"));
        }
        if claims.sub.is_empty() || claims.sub.len() > 200 {
            return Err(Rejection::unauthorized(
                "site JWT `sub` must be 1 to 200 bytes",
            ));
        }
        let customer = Customer {
            id: claims.sub,
            name: claims.name.filter(|n| !n.trim().is_empty()),
        };
        self.issue(customer, now)
    }

    /// A fresh token for the holder of a valid one (same customer).
    pub fn renew(&self, token: &str, now: Timestamp) -> Result<Issued, Rejection> {
        let customer = self.check(token, now)?;
        self.issue(customer, now)
    }

    /// The customer of a valid, unexpired token.
    pub fn check(&self, token: &str, now: Timestamp) -> Result<Customer, Rejection> {
        let claims = self.decode(token)?;
        if claims.exp <= now.as_secs() {
            return Err(Rejection::unauthorized("session expired"));
        }
        Ok(Customer {
            id: claims.sub,
            name: claims.name,
        })
    }

    /// The customer of a token this channel signed, expired or not: a message
    /// accepted while its session was valid is parsed later, whatever the time.
    pub(crate) fn customer_of(&self, token: &str) -> Result<Customer, Rejection> {
        let claims = self.decode(token)?;
        Ok(Customer {
            id: claims.sub,
            name: claims.name,
        })
    }

    fn decode(&self, token: &str) -> Result<SessionClaims, Rejection> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.validate_exp = false;
        validation.required_spec_claims =
            ["sub".to_string(), "aud".to_string(), "exp".to_string()].into();
        validation.set_audience(&[&self.audience]);
        jsonwebtoken::decode::<SessionClaims>(
            token,
            &DecodingKey::from_secret(self.secret.expose().as_bytes()),
            &validation,
        )
        .map(|data| data.claims)
        .map_err(|_| Rejection::unauthorized("invalid session token"))
    }

    fn issue(&self, customer: Customer, now: Timestamp) -> Result<Issued, Rejection> {
        let exp = now.as_secs() + self.lifetime_secs;
        let claims = SessionClaims {
            sub: customer.id.clone(),
            name: customer.name.clone(),
            aud: self.audience.clone(),
            iat: now.as_secs(),
            exp,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.secret.expose().as_bytes()),
        )
        .map_err(|_| Rejection {
            status: 500,
            message: "cannot sign the session token".into(),
            stale_resources: false,
        })?;
        Ok(Issued {
            token,
            customer,
            expires_at: Timestamp::from_secs(exp),
        })
    }
}

fn site_key(config: &ChannelConfig, settings: &Settings) -> Result<Option<SiteKey>, ConfigError> {
    let hs = config.secrets.get("site_jwt_secret");
    let rs = settings.site_jwt_public_key.as_deref();
    let (key, algorithm) = match (hs, rs) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "settings.site_jwt_public_key",
                "set either secrets.site_jwt_secret (HS256) or settings.site_jwt_public_key (RS256), not both",
            ));
        }
        (Some(secret), None) => {
            if secret.expose().chars().count() < MIN_SECRET_CHARS {
                return Err(ConfigError::new(
                    "secrets.site_jwt_secret",
                    format!("must be at least {MIN_SECRET_CHARS} characters"),
                ));
            }
            (
                DecodingKey::from_secret(secret.expose().as_bytes()),
                Algorithm::HS256,
            )
        }
        (None, Some(pem)) => {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
                ConfigError::new(
                    "settings.site_jwt_public_key",
                    "not an RSA public key in PEM (-----BEGIN PUBLIC KEY-----)",
                )
            })?;
            (key, Algorithm::RS256)
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(SiteKey {
        key,
        algorithm,
        issuer: settings.site_jwt_issuer.clone(),
        audience: settings.site_jwt_audience.clone(),
    }))
}

/// Which pages may embed the widget: `scheme://host[:port]` origins.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    allowed: Vec<String>,
}

impl Origins {
    pub(crate) fn new(allowed: &[String]) -> Result<Self, ConfigError> {
        let mut list = Vec::new();
        for (i, origin) in allowed.iter().enumerate() {
            let normal = normalize(origin);
            let (scheme, rest) = normal.split_once("://").unwrap_or(("", ""));
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
                return Err(ConfigError::new(
                    format!("settings.allowed_origins[{i}]"),
                    format!("{origin:?} is not an origin like https://www.example.com"),
                ));
            }
            list.push(normal);
        }
        Ok(Origins { allowed: list })
    }

    /// Whether a page at `origin` may use the widget. A page served by
    /// Patchbay itself (the origin's host is the request's `Host`) always may.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = normalize(origin);
        if let (Some(host), Some((_, authority))) = (host, origin.split_once("://"))
            && authority.eq_ignore_ascii_case(host.trim())
        {
            return true;
        }
        self.allowed.contains(&origin)
    }
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}
