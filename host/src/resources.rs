//! Documents adapters need to verify webhooks (a provider's signing keys),
//! fetched through the transport and cached per channel.
//!
//! A channel's resources are fetched before its first webhook is verified, then
//! refreshed when older than the adapter asks. When `verify` says its resources
//! look stale (a token signed with a key the cached set lacks, as after a key
//! rotation), they are fetched again at most once per [`FORCED_REFRESH_GAP_MS`],
//! so forged tokens cannot make Patchbay hammer the provider.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use patchbay_plugin_sdk::adapter::{ResourceSpec, Resources, StepOutput};
use patchbay_plugin_sdk::error::AdapterError;

use crate::channels::{Channel, Channels};
use crate::transport::Transport;

/// Least time between two refreshes forced by `verify`.
pub const FORCED_REFRESH_GAP_MS: i64 = 30_000;

/// After a failed refresh, the previous copy is used this long before trying again.
const RETRY_FAILED_MS: i64 = 60_000;

/// Cached resources of every channel that declares some.
#[derive(Debug, Default)]
pub struct ResourceCache {
    slots: HashMap<String, Slot>,
    /// Handed to every channel without resources.
    none: Arc<Resources>,
}

#[derive(Debug)]
struct Slot {
    specs: Vec<ResourceSpec>,
    state: Mutex<Snapshot>,
    /// One fetch at a time per channel; waiters reuse its result.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Snapshot {
    resources: Arc<Resources>,
    fetched_at: BTreeMap<String, i64>,
    last_forced: Option<i64>,
}

impl ResourceCache {
    /// A cache for the channels whose adapters declare resources.
    pub fn new(channels: &Channels) -> Self {
        let slots = channels
            .values()
            .filter_map(|channel| {
                let specs = channel.adapter.resources();
                (!specs.is_empty()).then(|| {
                    let slot = Slot {
                        specs,
                        state: Mutex::default(),
                        refreshing: tokio::sync::Mutex::new(()),
                    };
                    (channel.id.clone(), slot)
                })
            })
            .collect();
        ResourceCache {
            slots,
            none: Arc::default(),
        }
    }

    /// The channel's resources, fetching any that are missing or due. A failed
    /// refresh keeps the previous copy; a resource never fetched is an error.
    pub async fn current(
        &self,
        transport: &Transport,
        channel: &Channel,
    ) -> Result<Arc<Resources>, AdapterError> {
        let Some(slot) = self.slots.get(&channel.id) else {
            return Ok(self.none.clone());
        };
        if slot.due(transport.clock().now()).is_empty() {
            return Ok(slot.snapshot());
        }
        let _guard = slot.refreshing.lock().await;
        let due = slot.due(transport.clock().now());
        slot.fetch(transport, channel, &due).await?;
        Ok(slot.snapshot())
    }

    /// Fetches every resource again after `verify` reported them stale, unless
    /// that happened less than [`FORCED_REFRESH_GAP_MS`] ago. Returns the fresh
    /// resources, or `None` when nothing was refetched.
    pub async fn refresh_stale(
        &self,
        transport: &Transport,
        channel: &Channel,
    ) -> Option<Arc<Resources>> {
        let slot = self.slots.get(&channel.id)?;
        let _guard = slot.refreshing.lock().await;
        let now = transport.clock().now();
        {
            let mut state = slot.lock();
            if state
                .last_forced
                .is_some_and(|t| now - t < FORCED_REFRESH_GAP_MS)
            {
                return None;
            }
            state.last_forced = Some(now);
        }
        let names: Vec<String> = slot.specs.iter().map(|s| s.name.clone()).collect();
        slot.fetch(transport, channel, &names).await.ok()?;
        Some(slot.snapshot())
    }
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        // Only a cache sits behind this lock; a poisoned one is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Arc<Resources> {
        self.lock().resources.clone()
    }

    /// Names of resources missing or older than their refresh interval.
    fn due(&self, now: i64) -> Vec<String> {
        let state = self.lock();
        self.specs
            .iter()
            .filter(|spec| {
                state
                    .fetched_at
                    .get(&spec.name)
                    .is_none_or(|at| now - at >= spec.refresh_after_ms)
            })
            .map(|spec| spec.name.clone())
            .collect()
    }

    fn refresh_after(&self, name: &str) -> i64 {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.refresh_after_ms)
    }

    async fn fetch(
        &self,
        transport: &Transport,
        channel: &Channel,
        names: &[String],
    ) -> Result<(), AdapterError> {
        for name in names {
            let step = channel
                .adapter
                .fetch_resource(name, transport.clock().timestamp());
            let fetched = match transport.drive(&channel.id, &*channel.adapter, step).await {
                Ok(StepOutput::Resource { value }) => Ok(value),
                Ok(other) => Err(AdapterError::permanent(format!(
                    "fetching resource {name:?} ended with {other:?}"
                ))),
                Err(e) => Err(e),
            };
            let mut state = self.lock();
            match fetched {
                Ok(value) => {
                    tracing::info!(channel = %channel.id, resource = %name, "resource fetched");
                    let resources = (*state.resources).clone().with(name.clone(), value);
                    state.resources = Arc::new(resources);
                    state
                        .fetched_at
                        .insert(name.clone(), transport.clock().now());
                }
                Err(e) if state.resources.get(name).is_some() => {
                    // Try again in a minute, not on every webhook.
                    let refresh = self.refresh_after(name);
                    state.fetched_at.insert(
                        name.clone(),
                        transport.clock().now() - refresh + RETRY_FAILED_MS,
                    );
                    tracing::warn!(channel = %channel.id, resource = %name, error = %e, "refreshing resource failed; keeping the previous copy");
                }
                Err(e) => {
                    tracing::error!(channel = %channel.id, resource = %name, error = %e, "fetching resource failed");
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
