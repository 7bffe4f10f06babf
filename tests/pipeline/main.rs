//! End to end through a real `patchbay serve` process: a mock integration layer
//! (the client-channel provider) and a mock application, all on 127.0.0.1.

mod harness;
#[path = "../plugin_libs.rs"]
mod plugin_libs;
#[path = "../support/postgres.rs"]
mod postgres;

mod browser;
mod containment;
mod delivery;
mod edges;
mod egain;
mod email;
mod flows;
mod genesys;
mod ingress;
mod operations;
mod pega;
mod plugins;
mod replicas;
mod slack;
mod sms;
mod smtp_server;
mod teams;
mod webchat;
mod webex;
