//! [`ChannelAdapter`] and [`UpstreamConnector`] over a loaded library: every
//! method is one `call` with a JSON envelope, so nothing downstream knows how
//! the adapter or connector was loaded.
//!
//! A plugin that panics (the SDK catches the panic inside the library and
//! reports it as a status) gets its instance recreated, and the panic is
//! raised again here so that the one containment layer every adapter runs
//! behind, [`super::contained::Contained`], counts it, pauses the channel if
//! it keeps happening, and fails the call as transient. `channels::build`
//! puts every adapter behind that layer; used on its own, a
//! `DynamicAdapter` unwinds on a plugin panic.

use std::sync::{Arc, RwLock};

use patchbay_plugin_sdk::abi::{Envelope, op, status};
use patchbay_plugin_sdk::adapter::{
    AccessToken, AdapterFactory, ChannelAdapter, ChannelConfig, ConfigError, Continuation,
    InboundRequest, Manifest, ProviderResponse, RequestSpec, ResourceSpec, Resources, Step,
    Timestamp, Verdict, WIRE_VERSION,
};
use patchbay_plugin_sdk::error::{AdapterError, Rejection};
use patchbay_plugin_sdk::message::Message;
use serde::de::DeserializeOwned;

use patchbay_plugin_sdk::upstream::register::Registration;
use patchbay_plugin_sdk::upstream::{
    Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory, UpstreamManifest,
};

use super::loader::{Answer, Instance, Library, LoadError};

/// Creates instances from a loaded library.
#[derive(Debug, Clone)]
pub struct DynamicFactory {
    library: Arc<Library>,
    manifest: Box<Manifest>,
}

impl DynamicFactory {
    /// Wraps an adapter library that passed the handshake; an upstream
    /// connector library is refused.
    pub fn new(library: Library) -> Result<Self, LoadError> {
        let manifest = library
            .adapter_manifest()
            .cloned()
            .ok_or_else(|| LoadError {
                path: library.path.display().to_string(),
                message: "is an upstream connector, not a channel adapter".into(),
            })?;
        Ok(DynamicFactory {
            library: Arc::new(library),
            manifest: Box::new(manifest),
        })
    }

    /// The library.
    pub fn library(&self) -> &Library {
        &self.library
    }
}

impl AdapterFactory for DynamicFactory {
    fn manifest(&self) -> Manifest {
        (*self.manifest).clone()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(DynamicAdapter {
            plugged: Plugged::new(&self.library, config)?,
            manifest: (*self.manifest).clone(),
        }))
    }
}

pub(super) fn create(
    library: &Arc<Library>,
    config: &ChannelConfig,
) -> Result<Instance, ConfigError> {
    let json =
        serde_json::to_vec(config).map_err(|e| ConfigError::new("settings", e.to_string()))?;
    library.create(&json).map_err(|answer| match answer {
        Answer::Failed {
            status: status::ERROR,
            message,
        } => serde_json::from_slice(&message).unwrap_or_else(|_| {
            ConfigError::new("settings", String::from_utf8_lossy(&message).into_owned())
        }),
        Answer::Failed { status, message } => ConfigError::new(
            "adapter",
            format!(
                "plugin failed to create the channel (status {status}): {}",
                String::from_utf8_lossy(&message)
            ),
        ),
        Answer::Ok(_) => ConfigError::new("adapter", "plugin create failed"),
    })
}

/// An adapter's or connector's instance living in a library.
#[derive(Debug)]
pub(super) struct Plugged {
    library: Arc<Library>,
    config: ChannelConfig,
    /// The current instance. Each call holds its own reference, so replacing
    /// the instance after a panic destroys the old one only once the calls
    /// still inside it have returned.
    instance: RwLock<Arc<Instance>>,
}

impl Plugged {
    /// A first instance for `config`.
    pub(super) fn new(library: &Arc<Library>, config: &ChannelConfig) -> Result<Self, ConfigError> {
        Ok(Plugged {
            library: library.clone(),
            config: config.clone(),
            instance: RwLock::new(Arc::new(create(library, config)?)),
        })
    }

    /// Replaces the instance, whose state may be broken after a panic.
    fn after_panic(&self, message: &str) {
        let channel = &self.config.channel;
        tracing::error!(%channel, plugin = %self.library.path.display(), "plugin panicked: {message}");
        match create(&self.library, &self.config) {
            Ok(fresh) => {
                // The old instance goes when the last call holding it returns.
                let old = std::mem::replace(
                    &mut *self.instance.write().unwrap_or_else(|p| p.into_inner()),
                    Arc::new(fresh),
                );
                drop(old);
            }
            Err(e) => tracing::error!(%channel, "recreating the plugin instance failed: {e}"),
        }
    }

    pub(super) fn invoke<T: DeserializeOwned>(
        &self,
        op: u32,
        envelope: Envelope,
        body: &[u8],
    ) -> Result<T, String> {
        let envelope = serde_json::to_vec(&envelope).map_err(|e| format!("envelope: {e}"))?;
        let answer = {
            let instance = self
                .instance
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            instance.call(op, &envelope, body)
        };
        match answer {
            Answer::Ok(json) => serde_json::from_slice(&json)
                .map_err(|e| format!("plugin answered invalid JSON for operation {op}: {e}")),
            Answer::Failed {
                status: status::PANIC,
                message,
            } => {
                let message = String::from_utf8_lossy(&message).into_owned();
                self.after_panic(&message);
                // For the containment layer to count (no panic hook runs).
                std::panic::resume_unwind(Box::new(format!("plugin panicked: {message}")))
            }
            Answer::Failed {
                status: status::UNKNOWN_OP,
                ..
            } => Err(format!("plugin does not support operation {op}")),
            Answer::Failed { status, message } => Err(format!(
                "plugin call {op} failed (status {status}): {}",
                String::from_utf8_lossy(&message)
            )),
        }
    }

    pub(super) fn envelope(now: Timestamp) -> Envelope {
        Envelope {
            wire: WIRE_VERSION,
            now,
            ..Envelope::default()
        }
    }

    /// The request without its body: the body crosses as raw bytes.
    pub(super) fn head(request: &InboundRequest) -> InboundRequest {
        InboundRequest {
            body: Vec::new(),
            ..request.clone()
        }
    }

    pub(super) fn step(&self, op: u32, envelope: Envelope, body: &[u8]) -> Step {
        self.invoke(op, envelope, body)
            .unwrap_or_else(|e| Step::fail(AdapterError::permanent(e)))
    }

    /// `resume`: the response's body travels beside the envelope.
    pub(super) fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        let body = response.body;
        let envelope = Envelope {
            continuation: Some(continuation),
            response: Some(ProviderResponse {
                body: Vec::new(),
                ..response
            }),
            ..Self::envelope(now)
        };
        self.step(op::RESUME, envelope, &body)
    }

    pub(super) fn token_request(
        &self,
        profile: &str,
        now: Timestamp,
    ) -> Result<RequestSpec, AdapterError> {
        let envelope = Envelope {
            name: Some(profile.to_string()),
            ..Self::envelope(now)
        };
        self.invoke::<Result<RequestSpec, AdapterError>>(op::TOKEN_REQUEST, envelope, &[])
            .unwrap_or_else(|e| Err(AdapterError::permanent(e)))
    }

    pub(super) fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        let body = response.body;
        let envelope = Envelope {
            name: Some(profile.to_string()),
            response: Some(ProviderResponse {
                body: Vec::new(),
                ..response
            }),
            ..Self::envelope(now)
        };
        self.invoke::<Result<AccessToken, AdapterError>>(op::TOKEN_RESPONSE, envelope, &body)
            .unwrap_or_else(|e| Err(AdapterError::permanent(e)))
    }
}

/// A library's channel adapter.
#[derive(Debug)]
pub struct DynamicAdapter {
    plugged: Plugged,
    manifest: Manifest,
}

impl ChannelAdapter for DynamicAdapter {
    fn manifest(&self) -> Manifest {
        self.manifest.clone()
    }

    fn verify(
        &self,
        request: &InboundRequest,
        now: Timestamp,
        resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        let envelope = Envelope {
            request: Some(Plugged::head(request)),
            resources: Some(resources.clone()),
            ..Plugged::envelope(now)
        };
        match self
            .plugged
            .invoke::<Result<Verdict, Rejection>>(op::VERIFY, envelope, &request.body)
        {
            Ok(result) => result,
            // Nothing is stored; the provider retries on 503.
            Err(m) => Err(Rejection {
                status: 503,
                message: m,
                stale_resources: false,
            }),
        }
    }

    fn parse_inbound(&self, request: &InboundRequest, now: Timestamp) -> Step {
        let envelope = Envelope {
            request: Some(Plugged::head(request)),
            ..Plugged::envelope(now)
        };
        self.plugged
            .step(op::PARSE_INBOUND, envelope, &request.body)
    }

    fn render_outbound(&self, message: &Message, now: Timestamp) -> Step {
        let envelope = Envelope {
            message: Some(message.clone()),
            ..Plugged::envelope(now)
        };
        self.plugged.step(op::RENDER_OUTBOUND, envelope, &[])
    }

    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        self.plugged.resume(continuation, response, now)
    }

    fn resources(&self) -> Vec<ResourceSpec> {
        self.plugged
            .invoke(op::RESOURCES, Plugged::envelope(Timestamp(0)), &[])
            .unwrap_or_default()
    }

    fn fetch_resource(&self, name: &str, now: Timestamp) -> Step {
        let envelope = Envelope {
            name: Some(name.to_string()),
            ..Plugged::envelope(now)
        };
        self.plugged.step(op::FETCH_RESOURCE, envelope, &[])
    }

    fn token_request(&self, profile: &str, now: Timestamp) -> Result<RequestSpec, AdapterError> {
        self.plugged.token_request(profile, now)
    }

    fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        self.plugged.token_response(profile, response, now)
    }
}

/// Creates connector instances from a loaded upstream connector library.
#[derive(Debug, Clone)]
pub struct DynamicUpstreamFactory {
    library: Arc<Library>,
    manifest: UpstreamManifest,
}

impl DynamicUpstreamFactory {
    /// Wraps a connector library that passed the handshake; an adapter
    /// library is refused.
    pub fn new(library: Library) -> Result<Self, LoadError> {
        let manifest = library
            .upstream_manifest()
            .cloned()
            .ok_or_else(|| LoadError {
                path: library.path.display().to_string(),
                message: "is a channel adapter, not an upstream connector".into(),
            })?;
        Ok(DynamicUpstreamFactory {
            library: Arc::new(library),
            manifest,
        })
    }

    /// The library.
    pub fn library(&self) -> &Library {
        &self.library
    }
}

impl UpstreamFactory for DynamicUpstreamFactory {
    fn manifest(&self) -> UpstreamManifest {
        self.manifest.clone()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn UpstreamConnector>, ConfigError> {
        Ok(Box::new(DynamicConnector {
            plugged: Plugged::new(&self.library, config)?,
            manifest: self.manifest.clone(),
        }))
    }
}

/// A library's upstream connector.
#[derive(Debug)]
pub struct DynamicConnector {
    plugged: Plugged,
    manifest: UpstreamManifest,
}

impl UpstreamConnector for DynamicConnector {
    fn manifest(&self) -> UpstreamManifest {
        self.manifest.clone()
    }

    fn verify(&self, request: &InboundRequest, now: Timestamp) -> Result<Verdict, Rejection> {
        let envelope = Envelope {
            request: Some(Plugged::head(request)),
            ..Plugged::envelope(now)
        };
        match self
            .plugged
            .invoke::<Result<Verdict, Rejection>>(op::VERIFY, envelope, &request.body)
        {
            Ok(result) => result,
            // Nothing is stored; the platform redelivers on 503.
            Err(message) => Err(Rejection {
                status: 503,
                message,
                stale_resources: false,
            }),
        }
    }

    fn decode(
        &self,
        request: &InboundRequest,
        now: Timestamp,
    ) -> Result<Vec<PlatformEvent>, AdapterError> {
        let envelope = Envelope {
            request: Some(Plugged::head(request)),
            ..Plugged::envelope(now)
        };
        self.plugged
            .invoke::<Result<Vec<PlatformEvent>, AdapterError>>(op::DECODE, envelope, &request.body)
            .unwrap_or_else(|e| Err(AdapterError::permanent(e)))
    }

    fn deliver(&self, delivery: &Delivery, now: Timestamp) -> Step {
        let envelope = Envelope {
            delivery: Some(delivery.clone()),
            ..Plugged::envelope(now)
        };
        self.plugged.step(op::DELIVER, envelope, &[])
    }

    fn register(&self, registration: &Registration, now: Timestamp) -> Step {
        let envelope = Envelope {
            registration: Some(registration.clone()),
            ..Plugged::envelope(now)
        };
        self.plugged.step(op::REGISTER, envelope, &[])
    }

    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        self.plugged.resume(continuation, response, now)
    }

    fn token_request(&self, profile: &str, now: Timestamp) -> Result<RequestSpec, AdapterError> {
        self.plugged.token_request(profile, now)
    }

    fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        self.plugged.token_response(profile, response, now)
    }
}
