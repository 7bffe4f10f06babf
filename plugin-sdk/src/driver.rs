//! The one loop that runs an operation's [`Step`]s, sans-I/O.
//!
//! An adapter operation is a chain: a [`Step::Request`] asks for a provider
//! call, [`ChannelAdapter::resume`] reads the answer and returns the next step,
//! until [`Step::Done`] or [`Step::Fail`]. [`Driver`] holds that chain's rules —
//! at most [`MAX_STEPS`] steps, and one retry with a fresh token when the
//! provider refuses a cached one — and leaves the I/O to its caller. The host
//! drives it with real HTTP and SMTP; the [testkit](crate::testkit) drives it
//! with scripted responses, so an adapter behaves under test exactly as in
//! production.
//!
//! ```
//! use patchbay_plugin_sdk::driver::{Driver, Next};
//! # use patchbay_plugin_sdk::prelude::*;
//! # fn run(adapter: &dyn ChannelAdapter, step: Step, now: Timestamp,
//! #        call: impl Fn(&RequestSpec) -> ProviderResponse) -> Result<StepOutput, AdapterError> {
//! let mut driver = Driver::new(step);
//! loop {
//!     match driver.advance() {
//!         Next::Request { request, fresh_token } => {
//!             // `fresh_token`: drop this channel's cached tokens first.
//!             let response = call(&request);
//!             driver.resume(adapter, response, now);
//!         }
//!         Next::Finished(outcome) => return outcome,
//!     }
//! }
//! # }
//! ```

use crate::adapter::{
    AccessToken, ChannelAdapter, Continuation, ProviderResponse, RequestSpec, Step, StepOutput,
    Timestamp,
};
use crate::error::AdapterError;
use crate::message::ReasonCode;
use crate::upstream::UpstreamConnector;

/// Most steps one operation may take; more means the adapter is looping.
pub const MAX_STEPS: usize = 16;

/// The hooks a step chain calls between requests: what channel adapters and
/// upstream connectors share, so one driver (and one host loop) runs both.
pub trait Operations: Sync {
    /// Continues an operation with the answer to its request.
    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step;
    /// The token request of an auth profile.
    fn token_request(&self, profile: &str, now: Timestamp) -> Result<RequestSpec, AdapterError>;
    /// Reads a token response.
    fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError>;
}

macro_rules! operations_of {
    ($contract:ident) => {
        impl<'a> Operations for dyn $contract + 'a {
            fn resume(&self, c: Continuation, r: ProviderResponse, now: Timestamp) -> Step {
                <dyn $contract>::resume(self, c, r, now)
            }
            fn token_request(
                &self,
                profile: &str,
                now: Timestamp,
            ) -> Result<RequestSpec, AdapterError> {
                <dyn $contract>::token_request(self, profile, now)
            }
            fn token_response(
                &self,
                profile: &str,
                r: ProviderResponse,
                now: Timestamp,
            ) -> Result<AccessToken, AdapterError> {
                <dyn $contract>::token_response(self, profile, r, now)
            }
        }
    };
}
operations_of!(ChannelAdapter);
operations_of!(UpstreamConnector);

/// What the caller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Execute `request` (adding a bearer token if it names an auth profile)
    /// and pass the answer to [`Driver::resume`].
    Request {
        /// The request, as the adapter described it.
        request: RequestSpec,
        /// The provider refused the cached token: forget the channel's tokens
        /// and obtain a fresh one before executing.
        fresh_token: bool,
    },
    /// The operation is over. After an [`AdapterError::is_auth_expired`]
    /// failure the caller forgets the channel's cached tokens.
    Finished(Result<StepOutput, AdapterError>),
}

/// Runs one operation's steps; see the [module docs](self).
#[derive(Debug)]
pub struct Driver {
    state: State,
    steps: usize,
    /// Whether the one retry with a fresh token has been spent.
    refreshed: bool,
}

#[derive(Debug)]
enum State {
    /// `step` is next.
    Ready(Step),
    /// Waiting for the answer to `request`.
    Waiting {
        request: RequestSpec,
        continuation: Continuation,
    },
    /// The provider refused a cached token: make `request` again with a fresh one.
    Retrying {
        request: RequestSpec,
        continuation: Continuation,
    },
    /// `advance` reported the end.
    Over,
}

impl Driver {
    /// A driver starting at `step` (what `parse_inbound`, `render_outbound` or
    /// `fetch_resource` returned).
    pub fn new(step: Step) -> Self {
        Driver {
            state: State::Ready(step),
            steps: 0,
            refreshed: false,
        }
    }

    /// The next thing to do. Call [`resume`](Self::resume) after every
    /// [`Next::Request`]; after [`Next::Finished`] the driver is spent.
    pub fn advance(&mut self) -> Next {
        match std::mem::replace(&mut self.state, State::Over) {
            State::Ready(Step::Done { output }) => Next::Finished(Ok(output)),
            State::Ready(Step::Fail { error }) => Next::Finished(Err(error)),
            State::Ready(Step::Request {
                request,
                continuation,
            }) => {
                self.steps += 1;
                if self.steps > MAX_STEPS {
                    return Next::Finished(Err(AdapterError::permanent(format!(
                        "adapter took more than {MAX_STEPS} steps; giving up"
                    ))));
                }
                self.state = State::Waiting {
                    request: request.clone(),
                    continuation,
                };
                Next::Request {
                    request,
                    fresh_token: false,
                }
            }
            State::Retrying {
                request,
                continuation,
            } => {
                self.state = State::Waiting {
                    request: request.clone(),
                    continuation,
                };
                Next::Request {
                    request,
                    fresh_token: true,
                }
            }
            State::Waiting { .. } => Next::Finished(Err(AdapterError::permanent(
                "driver: a request's response was never passed to resume",
            ))),
            State::Over => Next::Finished(Err(AdapterError::permanent(
                "driver: the operation is already over",
            ))),
        }
    }

    /// Hands the provider's answer to the adapter. When the adapter says a
    /// request made with a cached token failed because the token expired, the
    /// same request is made once more with a fresh token before the failure
    /// counts.
    pub fn resume(
        &mut self,
        adapter: &dyn ChannelAdapter,
        response: ProviderResponse,
        now: Timestamp,
    ) {
        self.resume_with(|continuation| adapter.resume(continuation, response, now));
    }

    /// [`resume`](Self::resume) for any contract whose operations run as
    /// steps (an [upstream connector](crate::upstream) too): `resume` is its
    /// resume hook, already holding the response and `now`.
    pub fn resume_with(&mut self, resume: impl FnOnce(Continuation) -> Step) {
        let State::Waiting {
            request,
            continuation,
        } = std::mem::replace(&mut self.state, State::Over)
        else {
            self.state = State::Ready(Step::fail(AdapterError::permanent(
                "driver: resume without a pending request",
            )));
            return;
        };
        let authed = matches!(&request, RequestSpec::Http(h) if h.auth_profile.is_some());
        let retry = (authed && !self.refreshed).then(|| (request, continuation.clone()));
        let step = match resume(continuation) {
            // No token was sent, so no fresh one can help: the provider
            // refused the credentials the channel is configured with.
            Step::Fail { error } if error.is_auth_expired() && !authed => Step::fail(
                AdapterError::permanent(format!(
                    "{} (the provider refused the configured credentials)",
                    error.message()
                ))
                .with_reason(ReasonCode::NOT_ALLOWED),
            ),
            step => step,
        };
        match (step, retry) {
            (Step::Fail { error }, Some((request, continuation))) if error.is_auth_expired() => {
                self.refreshed = true;
                self.state = State::Retrying {
                    request,
                    continuation,
                };
            }
            (step, _) => self.state = State::Ready(step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{HttpRequestSpec, InboundRequest, Manifest, Resources, Verdict};
    use crate::error::{ErrorClass, Rejection};
    use crate::message::Message;

    /// Resumes by asking for another request until its script runs out.
    struct Scripted(fn(u32) -> Step);

    impl ChannelAdapter for Scripted {
        fn manifest(&self) -> Manifest {
            unimplemented!("not needed by the driver")
        }
        fn verify(
            &self,
            _: &InboundRequest,
            _: Timestamp,
            _: &Resources,
        ) -> Result<Verdict, Rejection> {
            Ok(Verdict::accept(None))
        }
        fn parse_inbound(&self, _: &InboundRequest, _: Timestamp) -> Step {
            Step::messages(vec![])
        }
        fn render_outbound(&self, _: &Message, _: Timestamp) -> Step {
            Step::delivered(None)
        }
        fn resume(&self, c: Continuation, _: ProviderResponse, _: Timestamp) -> Step {
            (self.0)(c.decode().unwrap_or(0))
        }
    }

    fn call(n: u32, authed: bool) -> Step {
        let mut request = HttpRequestSpec::get("https://api.example/x");
        if authed {
            request.auth_profile = Some("bot".into());
        }
        Step::request(request, &n)
    }

    /// Drives to the end with 200s, returning (requests made, fresh-token flags, outcome).
    fn run(
        adapter: &Scripted,
        first: Step,
    ) -> (usize, Vec<bool>, Result<StepOutput, AdapterError>) {
        let mut driver = Driver::new(first);
        let mut fresh = Vec::new();
        loop {
            match driver.advance() {
                Next::Request { fresh_token, .. } => {
                    fresh.push(fresh_token);
                    let ok = ProviderResponse {
                        status: 200,
                        ..Default::default()
                    };
                    driver.resume(adapter, ok, Timestamp(0));
                }
                Next::Finished(outcome) => return (fresh.len(), fresh, outcome),
            }
        }
    }

    #[test]
    fn a_looping_adapter_is_stopped_after_max_steps() {
        let adapter = Scripted(|n| call(n + 1, false));
        let (requests, _, outcome) = run(&adapter, call(0, false));
        assert_eq!(requests, MAX_STEPS);
        let error = outcome.expect_err("loop");
        assert!(error.message().contains("more than 16 steps"), "{error}");
    }

    #[test]
    fn an_expired_token_is_refreshed_once_then_the_failure_counts() {
        let adapter = Scripted(|_| Step::fail(AdapterError::auth_expired("401")));
        let (requests, fresh, outcome) = run(&adapter, call(0, true));
        assert_eq!(requests, 2);
        assert_eq!(fresh, [false, true]);
        assert!(outcome.expect_err("still refused").is_auth_expired());
    }

    #[test]
    fn a_401_without_a_token_is_a_permanent_credentials_failure() {
        let adapter = Scripted(|_| {
            let refused = ProviderResponse {
                status: 401,
                ..Default::default()
            };
            Step::fail(refused.classify_http_error("Acme"))
        });
        let (requests, _, outcome) = run(&adapter, call(0, false));
        assert_eq!(requests, 1, "not retried: there is no token to refresh");
        let error = outcome.expect_err("refused");
        assert_eq!(error.class(), ErrorClass::Permanent);
        assert_eq!(error.reason(), ReasonCode::NOT_ALLOWED);
        assert!(
            error
                .message()
                .contains("refused the configured credentials"),
            "{error}"
        );
    }

    #[test]
    fn continuations_carry_typed_state_between_steps() {
        let adapter = Scripted(|n| {
            if n < 3 {
                call(n + 1, false)
            } else {
                Step::delivered(Some(format!("after {n}")))
            }
        });
        let (requests, _, outcome) = run(&adapter, call(0, false));
        assert_eq!(requests, 4);
        assert_eq!(
            outcome.expect("done"),
            StepOutput::Delivered {
                provider_message_id: Some("after 3".into())
            }
        );
    }

    #[test]
    fn the_driver_is_spent_after_the_end() {
        let mut driver = Driver::new(Step::delivered(None));
        assert!(matches!(driver.advance(), Next::Finished(Ok(_))));
        assert!(matches!(driver.advance(), Next::Finished(Err(_))));
    }
}
