//! # Patchbay host
//!
//! The process that runs channel adapters: it owns every socket, the clock,
//! retries and durability, so adapters can stay pure converters.
//!
//! ```text
//!  provider ──POST /webhooks/{ch}──▶ ingress: verify ─▶ store (group commit) ─▶ 2xx ack
//!                                                     │
//!                      inbound worker: parse_inbound ◀┘ (+ provider calls)
//!                                     │ canonical messages
//!                      deliver worker ▼──▶ the channel's upstream: the application
//!                                          webhook (signed), or a platform's API
//!                                          through its connector
//!
//!  application ──POST /v1/channels/{ch}/messages──▶ store ─▶ 202 {"ids"}
//!  platform ──POST /upstreams/{name}/webhook──▶ connector verify ─▶ store ─▶ its ack
//!                      (inbound worker: connector decode ─▶ one job per message)
//!                      outbound worker: fit (core) ─▶ render_outbound ─▶ provider
//!                                     │ receipt
//!                      deliver worker ▼──▶ the channel's upstream
//! ```
//!
//! Modules: [`config`] (TOML, `${ENV}`, `*_file`), [`channels`] (adapters by
//! config), [`store`] (durable queues), [`server`] (HTTP), [`workers`] (the three
//! queue loops), [`transport`] (executing adapters' requests), [`resources`] (signing keys
//! adapters verify with), [`upstreams`] (what sits behind
//! Patchbay: the application webhook or a platform connector), [`serve`] (wiring and shutdown), [`cli`].
//!
//! ## What this crate does not do
//!
//! It does not convert provider formats (adapters do) or decide how to degrade
//! content (`patchbay-core` does).

pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod destinations;
pub mod metrics;
pub mod plugins;
pub mod resources;
pub mod runtime;
pub mod serve;
pub mod server;
pub mod smtp;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod upstreams;
pub mod webchat;
pub mod workers;
