//! `patchbay upstreams sync <name>`: registers the channels routed to an
//! upstream with a platform that keeps its own model of them (eGain), from
//! Patchbay's config — their capabilities as narrowed by config, and their
//! system messages.

use patchbay_plugin_sdk::upstream::UpstreamConnector;
use patchbay_plugin_sdk::upstream::register::{ChannelProfile, Registration, RegistrationReport};

use crate::channels::Channels;
use crate::upstreams::{Speaks, Upstream};

/// The profiles of the channels that send to `upstream`, in name order.
pub fn profiles(channels: &Channels, upstream: &str) -> Vec<ChannelProfile> {
    channels
        .values()
        .filter(|c| c.upstream == upstream)
        .map(|c| {
            ChannelProfile::new(
                c.id.clone(),
                c.adapter_id.clone(),
                c.capabilities.clone(),
                c.language.clone(),
                c.system_messages.clone(),
            )
        })
        .collect()
}

/// Registers `channels`' profiles with `upstream` through its connector.
pub async fn register(
    upstream: &Upstream,
    channels: &Channels,
    widen: bool,
    dry_run: bool,
) -> anyhow::Result<RegistrationReport> {
    let Speaks::Connector {
        connector,
        transport,
    } = &upstream.speaks
    else {
        anyhow::bail!(
            "upstream {:?} is Patchbay's own webhook; it keeps no channel registrations",
            upstream.name
        );
    };
    let registration = Registration::new(profiles(channels, &upstream.name))
        .widening(widen)
        .dry_run(dry_run);
    let step = connector.register(&registration, transport.clock().timestamp());
    let operations: &dyn UpstreamConnector = connector.as_ref();
    let output = transport
        .drive(&upstream.name, operations, step)
        .await
        .map_err(|e| anyhow::anyhow!("registration with {:?} failed: {e}", upstream.name))?;
    Ok(RegistrationReport::from_output(output)?)
}
