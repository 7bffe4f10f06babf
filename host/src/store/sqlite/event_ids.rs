//! Provider event ids in the SQLite store: the recent ones appended to a
//! table in arrival order and kept in memory, the rest in `dedupe`, merged
//! into it in large sorted batches.
//!
//! `dedupe` holds a retention window — a million ids and more — keyed by a
//! random slot (see [`KeyHash`]), so inserting each parsed webhook's id
//! there dirtied a page of its own in every commit: most of the bytes the
//! main database wrote under load. Instead an id is appended to
//! `dedupe_recent` (its last page, whatever the id) in the transaction that
//! records its webhook, and kept in memory; once `merge_at` ids have
//! gathered, one transaction inserts them into `dedupe` sorted by slot — each
//! page of the table written once for the whole batch — and empties
//! `dedupe_recent`. An id is looked up in memory first, then in `dedupe`, so
//! a duplicate is recognised whichever side of a merge it falls on.
//!
//! The memory mirrors the table exactly. Ids added by the open transaction
//! are kept apart, join the others only when it commits, and are dropped
//! with their op (a savepoint rolled back) or their turn; the readers' hint
//! ([`seen`](crate::store::Store::seen)) sees committed ids only. On open,
//! `dedupe_recent` is read back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::jobs::execute;
use crate::store::dedupe::KeyHash;

/// Committed ids not yet merged: slot → check.
pub(super) type Recent = Arc<Mutex<HashMap<i64, i64>>>;

/// The writer's view of the event ids (see the module's documentation).
pub(super) struct EventIds {
    committed: Recent,
    /// The oldest `seen_at` among the committed ids, for retention.
    oldest: Option<i64>,
    /// Ids appended by the open transaction, in order, with their time.
    open: Vec<(KeyHash, i64)>,
    open_slots: HashMap<i64, i64>,
    /// How many of `open` the open transaction had when it merged: those
    /// went into `dedupe` with the committed ones.
    merged_at: Option<usize>,
    merge_at: usize,
}

impl EventIds {
    /// Reads back the ids of `dedupe_recent`; a merge starts once `merge_at`
    /// have gathered.
    pub(super) fn load(conn: &Connection, merge_at: usize) -> rusqlite::Result<EventIds> {
        let mut committed = HashMap::new();
        let mut oldest: Option<i64> = None;
        let mut rows = conn.prepare("SELECT slot, check_hash, seen_at FROM dedupe_recent")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            committed.insert(row.get(0)?, row.get(1)?);
            let seen_at: i64 = row.get(2)?;
            oldest = Some(oldest.map_or(seen_at, |o| o.min(seen_at)));
        }
        Ok(EventIds {
            committed: Arc::new(Mutex::new(committed)),
            oldest,
            open: Vec::new(),
            open_slots: HashMap::new(),
            merged_at: None,
            merge_at: merge_at.max(1),
        })
    }

    /// The committed ids not yet merged, for the readers.
    pub(super) fn recent(&self) -> Recent {
        self.committed.clone()
    }

    /// Records the id `hash` seen at `now`; false if it was recorded before.
    /// A different id that happens to share the slot is let through and not
    /// remembered (see [`KeyHash`]).
    pub(super) fn remember(
        &mut self,
        conn: &Connection,
        hash: KeyHash,
        now: i64,
    ) -> rusqlite::Result<bool> {
        let in_memory = self
            .open_slots
            .get(&hash.slot)
            .copied()
            .or_else(|| lock(&self.committed).get(&hash.slot).copied());
        let stored = match in_memory {
            Some(check) => Some(check),
            None => conn
                .prepare_cached("SELECT check_hash FROM dedupe WHERE slot = ?1")?
                .query_row([hash.slot], |r| r.get(0))
                .optional()?,
        };
        if let Some(check) = stored {
            return Ok(check != hash.check);
        }
        execute(
            conn,
            "INSERT INTO dedupe_recent (slot, check_hash, seen_at) VALUES (?1, ?2, ?3)",
            params![hash.slot, hash.check, now],
        )?;
        self.open.push((hash, now));
        self.open_slots.insert(hash.slot, hash.check);
        Ok(true)
    }

    /// Where the open transaction's ids stand, to [`undo_to`](Self::undo_to).
    pub(super) fn mark(&self) -> usize {
        self.open.len()
    }

    /// Forgets the ids added since `mark`: their op was rolled back.
    pub(super) fn undo_to(&mut self, mark: usize) {
        debug_assert!(self.merged_at.is_none_or(|m| m <= mark));
        for (hash, _) in self.open.drain(mark..) {
            self.open_slots.remove(&hash.slot);
        }
    }

    /// Merges if `merge_at` ids wait (see the module's documentation).
    pub(super) fn merge_if_due(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let waiting = match self.merged_at {
            Some(m) => self.open.len() - m,
            None => lock(&self.committed).len() + self.open.len(),
        };
        if waiting >= self.merge_at {
            self.merge(conn)?;
        }
        Ok(())
    }

    /// Before retention forgets the ids seen before `before`: merges, if any
    /// waiting id is that old, so that it is forgotten too.
    pub(super) fn merge_older_than(
        &mut self,
        conn: &Connection,
        before: i64,
    ) -> rusqlite::Result<()> {
        let open_oldest = self.open[self.merged_at.unwrap_or(0)..]
            .iter()
            .map(|(_, at)| *at)
            .min();
        let oldest = match self.merged_at {
            Some(_) => open_oldest,
            None => self.oldest.into_iter().chain(open_oldest).min(),
        };
        if oldest.is_some_and(|at| at < before) {
            self.merge(conn)?;
        }
        Ok(())
    }

    /// Moves every id of `dedupe_recent` into `dedupe`, in slot order, in a
    /// savepoint of its own: should it fail, the turn's ops still commit.
    fn merge(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let started = std::time::Instant::now();
        execute(conn, "SAVEPOINT merge", [])?;
        let merged = execute(
            conn,
            // `WHERE true`: SQLite's grammar needs it before an upsert's ON.
            "INSERT INTO dedupe (slot, check_hash, seen_at)
             SELECT slot, check_hash, seen_at FROM dedupe_recent WHERE true ORDER BY slot
             ON CONFLICT (slot) DO NOTHING",
            [],
        )
        .and_then(|merged| execute(conn, "DELETE FROM dedupe_recent", []).map(|_| merged));
        if merged.is_err() {
            execute(conn, "ROLLBACK TO merge", [])?;
        }
        execute(conn, "RELEASE merge", [])?;
        let merged = merged?;
        self.merged_at = Some(self.open.len());
        tracing::debug!(
            ids = merged,
            ms = started.elapsed().as_millis() as u64,
            "merged recent event ids"
        );
        Ok(())
    }

    /// The open transaction committed: its ids join the committed ones (and
    /// those it merged leave memory).
    pub(super) fn committed(&mut self) {
        let mut committed = lock(&self.committed);
        let from = match self.merged_at.take() {
            Some(m) => {
                committed.clear();
                self.oldest = None;
                m
            }
            None => 0,
        };
        for (hash, at) in self.open.drain(from..) {
            committed.insert(hash.slot, hash.check);
            self.oldest = Some(self.oldest.map_or(at, |o| o.min(at)));
        }
        self.open.clear();
        self.open_slots.clear();
    }

    /// The open transaction was rolled back: nothing of it is kept.
    pub(super) fn aborted(&mut self) {
        self.open.clear();
        self.open_slots.clear();
        self.merged_at = None;
    }
}

/// The committed ids; a panic elsewhere while holding the lock leaves the
/// map whole (every change to it is a single insert or clear).
pub(super) fn lock(recent: &Recent) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
    recent
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE dedupe (slot INTEGER PRIMARY KEY, check_hash INTEGER NOT NULL,
                 seen_at INTEGER NOT NULL);
             CREATE TABLE dedupe_recent (id INTEGER PRIMARY KEY, slot INTEGER NOT NULL,
                 check_hash INTEGER NOT NULL, seen_at INTEGER NOT NULL);",
        )
        .unwrap();
        conn
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    fn id(n: u32) -> KeyHash {
        KeyHash::of("slack", &format!("Ev{n}"))
    }

    #[test]
    fn an_id_is_recognised_before_during_and_after_its_merge() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 3).unwrap();
        assert!(ids.remember(&conn, id(1), 10).unwrap());
        assert!(!ids.remember(&conn, id(1), 11).unwrap(), "same transaction");
        ids.committed();
        assert!(
            !ids.remember(&conn, id(1), 12).unwrap(),
            "committed, unmerged"
        );
        assert!(ids.remember(&conn, id(2), 12).unwrap());
        assert!(ids.remember(&conn, id(3), 12).unwrap());
        ids.merge_if_due(&conn).unwrap();
        assert!(ids.remember(&conn, id(4), 13).unwrap(), "after the merge");
        assert!(
            !ids.remember(&conn, id(2), 13).unwrap(),
            "merged, uncommitted"
        );
        ids.committed();
        assert_eq!(count(&conn, "dedupe"), 3);
        assert_eq!(count(&conn, "dedupe_recent"), 1, "the one after the merge");
        assert_eq!(ids.recent().lock().unwrap().len(), 1);
        for n in 1..=4 {
            assert!(!ids.remember(&conn, id(n), 14).unwrap(), "Ev{n}");
        }
    }

    #[test]
    fn ids_of_an_undone_op_or_turn_are_forgotten() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 100).unwrap();
        assert!(ids.remember(&conn, id(1), 10).unwrap());
        let mark = ids.mark();
        assert!(ids.remember(&conn, id(2), 10).unwrap());
        ids.undo_to(mark);
        assert!(ids.remember(&conn, id(2), 10).unwrap(), "its op was undone");
        ids.aborted();
        assert!(ids.recent().lock().unwrap().is_empty());
        assert!(
            ids.remember(&conn, id(1), 10).unwrap(),
            "its turn was undone"
        );
    }

    #[test]
    fn retention_merges_ids_older_than_its_cutoff_only() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 100).unwrap();
        ids.remember(&conn, id(1), 1_000).unwrap();
        ids.committed();
        ids.merge_older_than(&conn, 1_000).unwrap();
        assert_eq!(count(&conn, "dedupe"), 0, "not older than the cutoff");
        ids.merge_older_than(&conn, 1_001).unwrap();
        ids.committed();
        assert_eq!(count(&conn, "dedupe"), 1);
        assert!(ids.recent().lock().unwrap().is_empty());
    }

    #[test]
    fn ids_are_read_back_on_open() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 100).unwrap();
        ids.remember(&conn, id(1), 5).unwrap();
        ids.committed();
        let mut again = EventIds::load(&conn, 100).unwrap();
        assert!(!again.remember(&conn, id(1), 6).unwrap());
        again.merge_older_than(&conn, 6).unwrap();
        again.committed();
        assert_eq!(count(&conn, "dedupe"), 1, "its time was read back too");
    }

    #[test]
    fn a_slot_shared_by_another_id_lets_it_through_unremembered() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 100).unwrap();
        let a = id(1);
        let b = KeyHash {
            slot: a.slot,
            check: a.check ^ 1,
        };
        assert!(ids.remember(&conn, a, 1).unwrap());
        assert!(ids.remember(&conn, b, 1).unwrap());
        assert!(ids.remember(&conn, b, 1).unwrap(), "not remembered");
        assert_eq!(count(&conn, "dedupe_recent"), 1);
    }
}
