//! Advisory lock keys, as `(class, key)` pairs (PostgreSQL's two-integer
//! form, a key space of its own beside any single-bigint locks an operator's
//! tools take).

/// Schema migrations: one replica at a time.
pub const MIGRATIONS: (i32, i32) = (0x5042, 1);
/// Appending to the acknowledgement log: sequence numbers become visible in
/// the order they were taken, so the parser never passes one still committing.
pub const ACK_LOG: (i32, i32) = (0x5042, 2);
/// The parser: one replica reads the log at a time, keeping arrival order.
pub const PARSER: (i32, i32) = (0x5042, 3);
/// Retention: one replica prunes at a time.
pub const RETENTION: (i32, i32) = (0x5042, 4);
