//! Executing adapters' request descriptions, and driving multi-step flows.
//!
//! The adapter describes; this module does: HTTP through one shared `reqwest`
//! client (rustls with the ring provider), SMTP through [`SmtpSender`], OAuth
//! tokens cached per channel and profile until shortly before they expire, and
//! the [`Step`] loop that feeds responses back to the adapter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchbay_plugin_sdk::adapter::{
    AccessToken, HttpRequestSpec, ProviderResponse, RequestSpec, Step, StepOutput, Timestamp,
};
use patchbay_plugin_sdk::driver::{Driver, Next, Operations};
use patchbay_plugin_sdk::error::AdapterError;

use crate::clock::Clock;
use crate::smtp::SmtpSender;
use crate::webchat::Outboxes;

/// Redirects followed for one request (reqwest's default too).
const MAX_REDIRECTS: usize = 10;

/// Refresh tokens this long before they expire.
const TOKEN_MARGIN_MS: i64 = 60_000;

/// Installs rustls' ring provider once per process (no OpenSSL, no aws-lc).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the shared HTTP client.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    client(timeout, reqwest::redirect::Policy::default())
}

/// Builds the client that delivers to the application's webhook: as
/// [`http_client`], but a redirect is answered, not followed. Followed, a
/// `302` to a POST becomes a GET without the message, and that GET's `200`
/// would count as delivered.
pub fn app_client(timeout: Duration) -> reqwest::Client {
    client(timeout, reqwest::redirect::Policy::none())
}

/// Every client Patchbay makes, with its own redirect policy. Building fails
/// only when the TLS backend cannot start — as `reqwest::Client::new()`
/// would panic then, so no fallback: one would follow redirects its policy
/// refuses.
fn client(timeout: Duration, redirect: reqwest::redirect::Policy) -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("patchbay/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect)
        .build()
        .expect("the HTTP client's TLS backend starts")
}

/// Executes request descriptions for adapters and connectors.
#[derive(Debug, Clone)]
pub struct Transport {
    /// For `GET` and `HEAD`: follows redirects.
    reads: reqwest::Client,
    /// For every other method: follows only `307` and `308`, which keep the
    /// method and body. A `301`, `302` or `303` would turn a send into a GET
    /// without its body, and that GET's `200` could read as sent; the adapter
    /// gets the redirect instead, an error it reports.
    writes: reqwest::Client,
    smtp: SmtpSender,
    clock: Clock,
    tokens: Arc<Mutex<HashMap<(String, String), AccessToken>>>,
    /// Where [`RequestSpec::Outbox`] entries go; a transport without them
    /// (an upstream's) refuses such requests.
    outboxes: Option<Outboxes>,
}

impl Transport {
    /// A transport whose HTTP requests and SMTP sessions each take at most
    /// `timeout`.
    pub fn new(timeout: Duration, clock: Clock) -> Self {
        let keep_method = reqwest::redirect::Policy::custom(|attempt| {
            let kept = matches!(attempt.status().as_u16(), 307 | 308);
            if kept && attempt.previous().len() < MAX_REDIRECTS {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        Transport {
            reads: http_client(timeout),
            writes: client(timeout, keep_method),
            smtp: SmtpSender::new(timeout),
            clock,
            tokens: Arc::default(),
            outboxes: None,
        }
    }

    /// The same transport, storing outbox entries in `outboxes`.
    pub fn with_outboxes(mut self, outboxes: Outboxes) -> Self {
        self.outboxes = Some(outboxes);
        self
    }

    /// Runs `step` to completion for `channel`'s adapter, through the SDK's
    /// [`Driver`] (the loop the testkit runs too).
    pub async fn drive<O: Operations + ?Sized>(
        &self,
        channel: &str,
        adapter: &O,
        step: Step,
    ) -> Result<StepOutput, AdapterError> {
        let mut driver = Driver::new(step);
        loop {
            match driver.advance() {
                Next::Request {
                    request,
                    fresh_token,
                } => {
                    if fresh_token {
                        tracing::info!(%channel, "provider refused the cached token; refreshing it once");
                        self.forget_tokens(channel);
                    }
                    let started = std::time::Instant::now();
                    let response = self.execute(channel, adapter, request).await;
                    metrics::histogram!("patchbay_provider_request_seconds", "channel" => channel.to_string())
                        .record(started.elapsed().as_secs_f64());
                    let response = response?;
                    let now = self.clock.timestamp();
                    driver.resume_with(|c| adapter.resume(c, response, now));
                }
                Next::Finished(outcome) => {
                    if let Err(error) = &outcome
                        && error.is_auth_expired()
                    {
                        self.forget_tokens(channel);
                    }
                    return outcome;
                }
            }
        }
    }

    async fn execute<O: Operations + ?Sized>(
        &self,
        channel: &str,
        adapter: &O,
        request: RequestSpec,
    ) -> Result<ProviderResponse, AdapterError> {
        match request {
            RequestSpec::Http(mut http) => {
                if let Some(profile) = http.auth_profile.take() {
                    let token = self.token(channel, adapter, &profile).await?;
                    http.headers.push((
                        "authorization".into(),
                        format!("Bearer {}", token.token.expose()),
                    ));
                }
                self.http(http).await
            }
            RequestSpec::Smtp(smtp) => self.smtp.send(smtp).await,
            RequestSpec::Outbox(push) => match &self.outboxes {
                Some(outboxes) => outboxes.push(channel, push).await,
                None => Err(AdapterError::permanent(
                    "outbox entries are for channels; this request came from elsewhere",
                )),
            },
        }
    }

    /// Sends one HTTP request. Connection failures and timeouts are transient.
    /// A `GET` of a `data:` URL (an attachment the application inlined) is
    /// answered here, as a server holding those bytes would.
    pub async fn http(&self, spec: HttpRequestSpec) -> Result<ProviderResponse, AdapterError> {
        if spec.url.starts_with("data:") && spec.method.eq_ignore_ascii_case("GET") {
            let (media_type, body) = patchbay_plugin_sdk::url::decode_data_url(&spec.url)
                .ok_or_else(|| AdapterError::bad_input("malformed data: URL"))?;
            return Ok(ProviderResponse {
                status: 200,
                headers: vec![("content-type".into(), media_type)],
                body,
            });
        }
        let method = reqwest::Method::from_bytes(spec.method.as_bytes()).map_err(|_| {
            AdapterError::permanent(format!("invalid HTTP method {:?}", spec.method))
        })?;
        let client = match method {
            reqwest::Method::GET | reqwest::Method::HEAD => &self.reads,
            _ => &self.writes,
        };
        let mut builder = client.request(method, &spec.url);
        for (name, value) in &spec.headers {
            builder = builder.header(name, value);
        }
        let response = builder.body(spec.body).send().await.map_err(|e| {
            // reqwest errors name the URL, never headers or bodies, so no secret leaks.
            AdapterError::transient(format!(
                "request to {} failed: {}",
                host_of(&spec.url),
                error_chain(&e)
            ))
        })?;
        let status = response.status().as_u16();
        let mut headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        retry_after_in_seconds(&mut headers, self.clock.timestamp());
        let body = response
            .bytes()
            .await
            .map_err(|e| {
                AdapterError::transient(format!("reading response failed: {}", error_chain(&e)))
            })?
            .to_vec();
        Ok(ProviderResponse {
            status,
            headers,
            body,
        })
    }

    async fn token<O: Operations + ?Sized>(
        &self,
        channel: &str,
        adapter: &O,
        profile: &str,
    ) -> Result<AccessToken, AdapterError> {
        let key = (channel.to_string(), profile.to_string());
        let now = self.clock.now();
        if let Some(token) = self.lock_tokens().get(&key)
            && token.expires_at.0 - TOKEN_MARGIN_MS > now
        {
            return Ok(token.clone());
        }
        let RequestSpec::Http(request) = adapter.token_request(profile, Timestamp(now))? else {
            return Err(AdapterError::permanent("token requests must be HTTP"));
        };
        let response = self.http(request).await?;
        let token = adapter.token_response(profile, response, self.clock.timestamp())?;
        self.lock_tokens().insert(key, token.clone());
        Ok(token)
    }

    /// The clock token expiry and adapters' `now` are read from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn forget_tokens(&self, channel: &str) {
        self.lock_tokens().retain(|(c, _), _| c != channel);
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), AccessToken>> {
        // A panic while holding the lock leaves only a cache behind; keep using it.
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Rewrites a `Retry-After` given as an HTTP-date into seconds from `now`
/// (rounded up), so adapters — which have no clock of their own for it —
/// read every form with `ProviderResponse::retry_after_ms`.
fn retry_after_in_seconds(headers: &mut [(String, String)], now: Timestamp) {
    for (name, value) in headers.iter_mut() {
        if name.eq_ignore_ascii_case("retry-after")
            && value.trim().parse::<f64>().is_err()
            && let Some(ms) = patchbay_plugin_sdk::adapter::retry_after_ms(value, now)
        {
            *value = ms.div_ceil(1000).to_string();
        }
    }
}

/// `scheme://host:port` of a URL, for error messages (paths may carry tokens).
pub fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(invalid URL)".into(),
    }
}

/// An error and its sources on one line, without the URL reqwest adds.
pub fn error_chain(e: &reqwest::Error) -> String {
    // reqwest's own message repeats the URL (which may carry a token): describe the
    // kind instead and keep the sources.
    let mut text = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    }
    .to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_plugin_sdk::error::ErrorClass;

    fn transport() -> Transport {
        let timeout = Duration::from_secs(1);
        Transport::new(timeout, Clock::system())
    }

    fn get(url: &str) -> HttpRequestSpec {
        HttpRequestSpec {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: vec![],
            auth_profile: None,
        }
    }

    #[test]
    fn an_http_date_retry_after_reaches_adapters_in_seconds() {
        // 1 Jan 1970 00:01:00 GMT is 60 s after the epoch; now is 15.5 s.
        let mut headers = vec![
            ("content-type".to_string(), "text/plain".to_string()),
            (
                "Retry-After".to_string(),
                "Thu, 01 Jan 1970 00:01:00 GMT".to_string(),
            ),
        ];
        retry_after_in_seconds(&mut headers, Timestamp(15_500));
        assert_eq!(headers[1].1, "45");
        let response = ProviderResponse {
            status: 429,
            headers,
            body: vec![],
        };
        assert_eq!(response.retry_after_ms(), Some(45_000));
        // Seconds and nonsense are left as they are.
        let mut headers = vec![
            ("retry-after".to_string(), "7".to_string()),
            ("retry-after".to_string(), "soon".to_string()),
        ];
        retry_after_in_seconds(&mut headers, Timestamp(0));
        assert_eq!(headers[0].1, "7");
        assert_eq!(headers[1].1, "soon");
    }

    /// A server whose `/target` answers with the method and body it got, and
    /// whose `/{status}` redirects there with that status.
    async fn redirecting_server() -> String {
        use axum::extract::Path;
        use axum::http::{Method, StatusCode, header};
        let app = axum::Router::new()
            .route(
                "/target",
                axum::routing::any(|method: Method, body: String| async move {
                    format!("{method} {body}")
                }),
            )
            .route(
                "/{status}",
                axum::routing::any(|Path(status): Path<u16>| async move {
                    let status = StatusCode::from_u16(status).expect("a status");
                    (status, [(header::LOCATION, "/target")])
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    #[tokio::test]
    async fn a_send_is_never_turned_into_a_get_by_a_redirect() {
        let base = redirecting_server().await;
        let t = transport();
        let send = |status: u16| HttpRequestSpec {
            method: "POST".into(),
            body: b"hello".to_vec(),
            ..get(&format!("{base}/{status}"))
        };
        for status in [301, 302, 303] {
            let answer = t.http(send(status)).await.expect("an answer");
            assert_eq!(answer.status, status, "handed to the adapter, not followed");
        }
        for status in [307, 308] {
            let answer = t.http(send(status)).await.expect("an answer");
            assert_eq!((answer.status, answer.body), (200, b"POST hello".to_vec()));
        }
        // A read follows any redirect.
        let read = t
            .http(get(&format!("{base}/302")))
            .await
            .expect("an answer");
        assert_eq!((read.status, read.body), (200, b"GET ".to_vec()));
    }

    #[tokio::test]
    async fn data_urls_are_answered_without_a_network() {
        let t = transport();
        let ok = t
            .http(get("data:image/png;base64,iVBORw=="))
            .await
            .expect("ok");
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.headers,
            vec![("content-type".into(), "image/png".into())]
        );
        assert_eq!(ok.body, [0x89, b'P', b'N', b'G']);
        let bad = t.http(get("data:nocomma")).await.expect_err("malformed");
        assert_eq!(bad.class(), ErrorClass::BadInput);
    }
}
