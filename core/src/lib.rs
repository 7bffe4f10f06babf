//! # Patchbay core
//!
//! The host's decisions that need no I/O, so they can be table-tested:
//!
//! - [`breaker`]: pausing a failing destination as a whole, probing it, and
//!   resuming it at once when it answers;
//! - [`capabilities`]: narrowing an adapter's declared capabilities with the
//!   operator's configuration (configuration can only take away);
//! - [`fit`]: fitting an outbound message to a channel, deterministically — rich
//!   content the channel cannot carry becomes numbered text, long text is split at
//!   word boundaries, unsupported features are dropped, disallowed attachments are
//!   refused — with a report of every change;
//! - [`menu`]: mapping a customer's "2" back to the postback of item 2 of a menu
//!   that was degraded to numbers;
//! - [`retry`]: the retry schedule, with jitter supplied by the caller.
//!
//! ## What this crate does not do
//!
//! No clock, no randomness, no storage, no network: callers pass `now` and jitter
//! in, and keep the results (for example the degraded [`menu::Menu`]) themselves.

pub mod breaker;
pub mod capabilities;
pub mod fit;
pub mod menu;
pub mod retry;
pub mod text;
