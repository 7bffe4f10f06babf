//! The one containment layer every adapter and upstream connector runs
//! behind, compiled-in and shared-library alike.
//!
//! Each call — `verify`, `parse_inbound`, `render_outbound`, `resume`, the
//! token hooks, resource listing and fetching — runs under `catch_unwind`. A
//! panic fails that call as transient (the job is retried, then
//! dead-lettered; a webhook gets 503 so the provider retries), is logged and
//! counted; three panics within a minute pause the channel's calls for a
//! minute (they fail fast as transient) while every other channel keeps
//! working. A shared-library adapter also recreates its instance after a
//! panic (see [`super::dynamic`]). Connectors' calls (`verify`, `decode`,
//! `deliver`, `resume`, the token hooks) are contained the same way.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use patchbay_plugin_sdk::adapter::{
    AccessToken, ChannelAdapter, Continuation, InboundRequest, Manifest, ProviderResponse,
    RequestSpec, ResourceSpec, Resources, Step, Timestamp, Verdict,
};
use patchbay_plugin_sdk::error::{AdapterError, Rejection};
use patchbay_plugin_sdk::message::Message;
use patchbay_plugin_sdk::upstream::register::Registration;
use patchbay_plugin_sdk::upstream::{Delivery, PlatformEvent, UpstreamConnector, UpstreamManifest};

/// Panics within [`WINDOW`] that pause a channel's calls.
const PANICS: usize = 3;
/// How long panics are remembered, and how long calls are paused.
const WINDOW: Duration = Duration::from_secs(60);

/// A contract whose calls can be contained: its manifest is read once.
pub trait Contract {
    /// What it declares.
    type Manifest: Clone + std::fmt::Debug;
    /// Reads the manifest.
    fn read_manifest(&self) -> Self::Manifest;
    /// What an instance is called in logs: `adapter for channel`.
    const NOUN: &'static str;
}

impl<'a> Contract for dyn ChannelAdapter + 'a {
    type Manifest = Manifest;
    fn read_manifest(&self) -> Manifest {
        self.manifest()
    }
    const NOUN: &'static str = "adapter for channel";
}

impl<'a> Contract for dyn UpstreamConnector + 'a {
    type Manifest = UpstreamManifest;
    fn read_manifest(&self) -> UpstreamManifest {
        self.manifest()
    }
    const NOUN: &'static str = "connector for upstream";
}

/// An adapter or connector behind the containment layer.
pub struct Contained<A: ?Sized + Contract> {
    name: String,
    manifest: A::Manifest,
    panics: Mutex<VecDeque<Instant>>,
    total: AtomicU64,
    inner: Box<A>,
}

impl<A: ?Sized + Contract> std::fmt::Debug for Contained<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contained")
            .field("name", &self.name)
            .field("manifest", &self.manifest)
            .field("panics", &self.panics())
            .finish_non_exhaustive()
    }
}

impl<A: ?Sized + Contract> Contained<A> {
    /// Wraps the instance serving `name` (a channel or upstream). Its
    /// manifest is read once, here.
    pub fn new(name: &str, inner: Box<A>) -> Self {
        Contained {
            name: name.to_string(),
            manifest: inner.read_manifest(),
            panics: Mutex::default(),
            total: AtomicU64::new(0),
            inner,
        }
    }

    /// Panics contained so far.
    pub fn panics(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn paused(&self) -> bool {
        let mut panics = self.panics.lock().unwrap_or_else(|p| p.into_inner());
        while panics.front().is_some_and(|t| t.elapsed() > WINDOW) {
            panics.pop_front();
        }
        panics.len() >= PANICS
    }

    /// Runs `f`; `Err` with why if the instance is paused or `f` panicked.
    fn run<T>(&self, what: &str, f: impl FnOnce(&A) -> T) -> Result<T, String> {
        if self.paused() {
            return Err(format!(
                "{} {} panicked {PANICS} times within a minute; calls paused",
                A::NOUN,
                self.name
            ));
        }
        catch_unwind(AssertUnwindSafe(|| f(self.inner.as_ref()))).map_err(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            self.total.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("patchbay_plugin_panics_total", "name" => self.name.clone())
                .increment(1);
            self.panics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(Instant::now());
            tracing::error!(name = %self.name, operation = what, "{} panicked: {message}", A::NOUN);
            format!("{} panicked in {what}: {message}", A::NOUN)
        })
    }

    fn step(&self, what: &str, f: impl FnOnce(&A) -> Step) -> Step {
        self.run(what, f)
            .unwrap_or_else(|why| Step::fail(AdapterError::transient(why)))
    }
}

impl ChannelAdapter for Contained<dyn ChannelAdapter> {
    fn manifest(&self) -> Manifest {
        self.manifest.clone()
    }

    fn verify(
        &self,
        request: &InboundRequest,
        now: Timestamp,
        resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        // Nothing is stored; 503 makes the provider retry later.
        self.run("verify", |a| a.verify(request, now, resources))
            .unwrap_or_else(|why| {
                Err(Rejection {
                    status: 503,
                    message: why,
                    stale_resources: false,
                })
            })
    }

    fn parse_inbound(&self, request: &InboundRequest, now: Timestamp) -> Step {
        self.step("parse_inbound", |a| a.parse_inbound(request, now))
    }

    fn render_outbound(&self, message: &Message, now: Timestamp) -> Step {
        self.step("render_outbound", |a| a.render_outbound(message, now))
    }

    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        self.step("resume", |a| a.resume(continuation, response, now))
    }

    fn resources(&self) -> Vec<ResourceSpec> {
        self.run("resources", |a| a.resources()).unwrap_or_default()
    }

    fn fetch_resource(&self, name: &str, now: Timestamp) -> Step {
        self.step("fetch_resource", |a| a.fetch_resource(name, now))
    }

    fn token_request(&self, profile: &str, now: Timestamp) -> Result<RequestSpec, AdapterError> {
        self.run("token_request", |a| a.token_request(profile, now))
            .unwrap_or_else(|why| Err(AdapterError::transient(why)))
    }

    fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        self.run("token_response", |a| {
            a.token_response(profile, response, now)
        })
        .unwrap_or_else(|why| Err(AdapterError::transient(why)))
    }
}

impl UpstreamConnector for Contained<dyn UpstreamConnector> {
    fn manifest(&self) -> UpstreamManifest {
        self.manifest.clone()
    }

    fn verify(&self, request: &InboundRequest, now: Timestamp) -> Result<Verdict, Rejection> {
        // Nothing is stored; 503 makes the platform redeliver later.
        self.run("verify", |c| c.verify(request, now))
            .unwrap_or_else(|why| {
                Err(Rejection {
                    status: 503,
                    message: why,
                    stale_resources: false,
                })
            })
    }

    fn decode(
        &self,
        request: &InboundRequest,
        now: Timestamp,
    ) -> Result<Vec<PlatformEvent>, AdapterError> {
        self.run("decode", |c| c.decode(request, now))
            .unwrap_or_else(|why| Err(AdapterError::transient(why)))
    }

    fn deliver(&self, delivery: &Delivery, now: Timestamp) -> Step {
        self.step("deliver", |c| c.deliver(delivery, now))
    }

    fn register(&self, registration: &Registration, now: Timestamp) -> Step {
        self.step("register", |c| c.register(registration, now))
    }

    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        self.step("resume", |c| c.resume(continuation, response, now))
    }

    fn token_request(&self, profile: &str, now: Timestamp) -> Result<RequestSpec, AdapterError> {
        self.run("token_request", |c| c.token_request(profile, now))
            .unwrap_or_else(|why| Err(AdapterError::transient(why)))
    }

    fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        self.run("token_response", |c| {
            c.token_response(profile, response, now)
        })
        .unwrap_or_else(|why| Err(AdapterError::transient(why)))
    }
}

#[cfg(test)]
mod tests {
    use patchbay_plugin_sdk::capabilities::{ChannelCapabilities, DirectionCapabilities};
    use patchbay_plugin_sdk::error::ErrorClass;
    use patchbay_plugin_sdk::message::Content;
    use patchbay_plugin_sdk::testkit::request;

    use super::*;

    /// Panics in every operation it has.
    struct Exploding;

    impl ChannelAdapter for Exploding {
        fn manifest(&self) -> Manifest {
            Manifest::new(
                "exploding",
                "exploding",
                "0.0.0",
                ChannelCapabilities {
                    inbound: DirectionCapabilities::plain_text(100),
                    outbound: DirectionCapabilities::plain_text(100),
                },
            )
        }
        fn verify(
            &self,
            _: &InboundRequest,
            _: Timestamp,
            _: &Resources,
        ) -> Result<Verdict, Rejection> {
            panic!("verify exploded")
        }
        fn parse_inbound(&self, _: &InboundRequest, _: Timestamp) -> Step {
            panic!("parse exploded")
        }
        fn render_outbound(&self, _: &Message, _: Timestamp) -> Step {
            panic!("render exploded")
        }
        fn resume(&self, _: Continuation, _: ProviderResponse, _: Timestamp) -> Step {
            panic!("resume exploded")
        }
        fn resources(&self) -> Vec<ResourceSpec> {
            panic!("resources exploded")
        }
        fn fetch_resource(&self, _: &str, _: Timestamp) -> Step {
            panic!("fetch exploded")
        }
        fn token_request(&self, _: &str, _: Timestamp) -> Result<RequestSpec, AdapterError> {
            panic!("token request exploded")
        }
        fn token_response(
            &self,
            _: &str,
            _: ProviderResponse,
            _: Timestamp,
        ) -> Result<AccessToken, AdapterError> {
            panic!("token response exploded")
        }
    }

    fn transient(step: Step) -> String {
        let Step::Fail { error } = step else {
            panic!("a panic must fail the call")
        };
        assert_eq!(error.class(), ErrorClass::Transient);
        error.message().to_string()
    }

    #[test]
    fn a_panic_in_any_operation_fails_that_call_as_transient_and_is_counted() {
        let a = Contained::<dyn ChannelAdapter>::new("boom", Box::new(Exploding));
        let req = request("POST", "https://gw.example/webhooks/boom", &[], b"{}");
        let now = Timestamp(0);
        assert!(transient(a.parse_inbound(&req, now)).contains("parse_inbound"));
        assert!(
            transient(a.resume(Continuation::none(), ProviderResponse::default(), now))
                .contains("resume")
        );
        assert_eq!(a.panics(), 2);
        // Within a minute the third pauses the channel: calls fail fast.
        let rejected = a.verify(&req, now, &Resources::none()).expect_err("503");
        assert_eq!(rejected.status, 503);
        assert_eq!(a.panics(), 3);
        let paused = transient(a.render_outbound(&Message::new("c", Content::text("x")), now));
        assert!(paused.contains("calls paused"), "{paused}");
        assert!(a.resources().is_empty());
        assert!(a.token_request("p", now).is_err());
        assert!(
            a.token_response("p", ProviderResponse::default(), now)
                .is_err()
        );
        assert!(transient(a.fetch_resource("keys", now)).contains("calls paused"));
        assert_eq!(a.panics(), 3, "paused calls do not run");
    }

    #[test]
    fn every_operation_is_contained() {
        let now = Timestamp(0);
        let req = request("POST", "https://gw.example/webhooks/boom", &[], b"{}");
        // A fresh wrapper per operation, so the pause never hides a panic.
        type Call<'a> = Box<dyn Fn(&Contained<dyn ChannelAdapter>) + 'a>;
        let each: Vec<Call<'_>> = vec![
            Box::new(|a| drop(a.verify(&req, now, &Resources::none()))),
            Box::new(|a| drop(a.parse_inbound(&req, now))),
            Box::new(|a| drop(a.render_outbound(&Message::new("c", Content::text("x")), now))),
            Box::new(|a| drop(a.resume(Continuation::none(), ProviderResponse::default(), now))),
            Box::new(|a| drop(a.resources())),
            Box::new(|a| drop(a.fetch_resource("k", now))),
            Box::new(|a| drop(a.token_request("p", now))),
            Box::new(|a| drop(a.token_response("p", ProviderResponse::default(), now))),
        ];
        for call in each {
            let a = Contained::<dyn ChannelAdapter>::new("boom", Box::new(Exploding));
            call(&a);
            assert_eq!(a.panics(), 1);
        }
    }
}
