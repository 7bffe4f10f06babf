//! The web chat channel's host side. The `webchat` adapter converts, as every
//! adapter does; the host serves the widget, issues sessions, holds each
//! customer's socket, and keeps each conversation's durable outbox, which a
//! reconnecting widget reads from where it stopped.
//!
//! ```text
//! widget ──hello{token, after}──▶ socket ──▶ outbox entries after `after`, then live
//! widget ──send{client_id, …}───▶ socket ──▶ verify + store (as /webhooks) ──▶ ack
//! reply ──▶ outbound worker ──▶ adapter renders RequestSpec::Outbox ──▶ Outboxes::push
//! ```

mod outbox;
mod routes;
mod socket;

pub use outbox::Outboxes;
pub use routes::routes;
