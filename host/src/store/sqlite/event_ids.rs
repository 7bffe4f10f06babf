//! Provider event ids in the SQLite store: the recent ones appended to a
//! table in arrival order and kept in memory, the rest in `dedupe`, merged
//! into it in large sorted batches.
//!
//! `dedupe` holds a retention window — a million ids and more — keyed by a
//! random slot (see [`KeyHash`]), so inserting each parsed webhook's id
//! there dirtied a page of its own in every commit: most of the bytes the
//! main database wrote under load. Instead an id is appended to
//! `dedupe_recent` (its last page, whatever the id) in the transaction that
//! records its webhook, and kept in memory. Once `merge_at` ids have
//! gathered, a merge takes them sorted by slot and inserts them into
//! `dedupe` a chunk per writer turn, in slot order — each page of the table
//! written about once for the whole batch, and no turn held up by more than a
//! chunk — then deletes them from `dedupe_recent` and from memory. An id is
//! looked up in memory first, then in `dedupe`, so a duplicate is recognised
//! whichever side of a merge it falls on.
//!
//! The memory mirrors the table exactly. Ids added by the open transaction
//! are kept apart, join the others only when it commits, and are dropped
//! with their op (a savepoint rolled back) or their turn; a merge's progress
//! too moves only with a commit. The readers' hint
//! ([`seen`](crate::store::Store::seen)) sees committed ids only. On open,
//! `dedupe_recent` is read back (a merge cut short starts again: inserting
//! an id already in `dedupe` changes nothing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::jobs::{execute, in_savepoint};
use crate::store::dedupe::KeyHash;

/// Committed ids not yet merged, by slot.
pub(super) type Recent = Arc<Mutex<HashMap<i64, Recorded>>>;

/// A committed id not yet merged: its slot's check, and when it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recorded {
    pub(super) check: i64,
    pub(super) seen_at: i64,
}

/// The writer's view of the event ids (see the module's documentation).
pub(super) struct EventIds {
    committed: Recent,
    /// The oldest `seen_at` among the committed ids, for retention.
    oldest: Option<i64>,
    /// Ids appended by the open transaction, in order, with their time.
    open: Vec<(KeyHash, i64)>,
    open_slots: HashMap<i64, i64>,
    /// A merge under way, as of the last commit.
    merge: Option<Merge>,
    /// What the open transaction did to it.
    step: Step,
    /// How many of `open` the open transaction had when retention merged
    /// everything at once: those went into `dedupe` with the committed ones.
    merged_all_at: Option<usize>,
    merge_at: usize,
    chunk: usize,
}

/// Committed ids being merged: sorted by slot, those up to `next` inserted.
struct Merge {
    /// `(slot, check, seen_at)`.
    rows: Vec<(i64, i64, i64)>,
    /// The last `dedupe_recent.id` among them.
    upto: i64,
    next: usize,
}

/// A merge's progress in the open transaction.
enum Step {
    None,
    /// Inserted the rows up to this one.
    Inserted(usize),
    /// Inserted the last rows and deleted them from `dedupe_recent`, whose
    /// oldest remaining id was seen then.
    Finished(Option<i64>),
}

impl EventIds {
    /// Reads back the ids of `dedupe_recent`; a merge starts once `merge_at`
    /// have gathered, and inserts up to `chunk` of them per turn.
    pub(super) fn load(
        conn: &Connection,
        merge_at: usize,
        chunk: usize,
    ) -> rusqlite::Result<EventIds> {
        let mut committed = HashMap::new();
        let mut oldest: Option<i64> = None;
        let mut rows = conn.prepare("SELECT slot, check_hash, seen_at FROM dedupe_recent")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let seen_at: i64 = row.get(2)?;
            let check = row.get(1)?;
            committed.insert(row.get(0)?, Recorded { check, seen_at });
            oldest = Some(oldest.map_or(seen_at, |o| o.min(seen_at)));
        }
        Ok(EventIds {
            committed: Arc::new(Mutex::new(committed)),
            oldest,
            open: Vec::new(),
            open_slots: HashMap::new(),
            merge: None,
            step: Step::None,
            merged_all_at: None,
            merge_at: merge_at.max(1),
            chunk: chunk.max(1),
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
            .or_else(|| lock(&self.committed).get(&hash.slot).map(|r| r.check));
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
        debug_assert!(self.merged_all_at.is_none_or(|m| m <= mark));
        for (hash, _) in self.open.drain(mark..) {
            self.open_slots.remove(&hash.slot);
        }
    }

    /// A turn's share of merging, run first in the turn (so everything in
    /// `dedupe_recent` is committed): starts a merge once `merge_at` ids
    /// wait, or inserts the next chunk of the one under way, in a savepoint
    /// of its own — should it fail, the turn's ops still commit.
    pub(super) fn merge_step(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        debug_assert!(self.open.is_empty(), "run before the turn's ops");
        if self.merge.is_none() {
            if lock(&self.committed).len() < self.merge_at {
                return Ok(());
            }
            // From memory, which mirrors `dedupe_recent`: reading the table
            // back cost the turn that started a merge 20–65 ms.
            let rows = lock(&self.committed)
                .iter()
                .map(|(slot, r)| (*slot, r.check, r.seen_at))
                .collect();
            self.merge = Some(start_merge(conn, rows)?);
        }
        let Some(merge) = &self.merge else {
            return Ok(());
        };
        let to = (merge.next + self.chunk).min(merge.rows.len());
        self.step = in_savepoint(conn, |conn| {
            insert_rows(conn, &merge.rows[merge.next..to])?;
            if to < merge.rows.len() {
                return Ok(Step::Inserted(to));
            }
            execute(
                conn,
                "DELETE FROM dedupe_recent WHERE id <= ?1",
                [merge.upto],
            )?;
            let oldest =
                conn.query_row("SELECT MIN(seen_at) FROM dedupe_recent", [], |r| r.get(0))?;
            Ok(Step::Finished(oldest))
        })?;
        Ok(())
    }

    /// Before retention forgets the ids seen before `before`: if any waiting
    /// id is that old, merges every one at once, so it is forgotten too.
    pub(super) fn merge_older_than(
        &mut self,
        conn: &Connection,
        before: i64,
    ) -> rusqlite::Result<()> {
        let open_oldest = self.open[self.merged_all_at.unwrap_or(0)..]
            .iter()
            .map(|(_, at)| *at)
            .min();
        let oldest = match self.merged_all_at {
            Some(_) => open_oldest,
            None => self.oldest.into_iter().chain(open_oldest).min(),
        };
        if oldest.is_none_or(|at| at >= before) {
            return Ok(());
        }
        in_savepoint(conn, |conn| {
            execute(
                conn,
                // `WHERE true`: SQLite's grammar needs it before an upsert's ON.
                "INSERT INTO dedupe (slot, check_hash, seen_at)
                 SELECT slot, check_hash, seen_at FROM dedupe_recent WHERE true ORDER BY slot
                 ON CONFLICT (slot) DO NOTHING",
                [],
            )?;
            execute(conn, "DELETE FROM dedupe_recent", [])
        })?;
        self.merged_all_at = Some(self.open.len());
        Ok(())
    }

    /// The open transaction committed: its ids join the committed ones, and
    /// the merge moves on (those it finished leave memory).
    pub(super) fn committed(&mut self) {
        let mut committed = lock(&self.committed);
        let step = std::mem::replace(&mut self.step, Step::None);
        let from = match self.merged_all_at.take() {
            Some(m) => {
                committed.clear();
                self.oldest = None;
                self.merge = None;
                m
            }
            None => {
                match (step, &mut self.merge) {
                    (Step::Inserted(to), Some(merge)) => merge.next = to,
                    (Step::Finished(oldest), Some(merge)) => {
                        for (slot, _, _) in &merge.rows {
                            committed.remove(slot);
                        }
                        self.oldest = oldest;
                        self.merge = None;
                    }
                    _ => {}
                }
                0
            }
        };
        for (hash, seen_at) in self.open.drain(from..) {
            let check = hash.check;
            committed.insert(hash.slot, Recorded { check, seen_at });
            self.oldest = Some(self.oldest.map_or(seen_at, |o| o.min(seen_at)));
        }
        self.open.clear();
        self.open_slots.clear();
    }

    /// The open transaction was rolled back: nothing of it is kept (a merge
    /// goes on from where the last commit left it).
    pub(super) fn aborted(&mut self) {
        self.open.clear();
        self.open_slots.clear();
        self.step = Step::None;
        self.merged_all_at = None;
    }
}

/// A merge of `rows`, the committed ids: all of `dedupe_recent` (nothing of
/// the open transaction is in it yet), so it ends by deleting the table's
/// rows up to its last.
fn start_merge(conn: &Connection, mut rows: Vec<(i64, i64, i64)>) -> rusqlite::Result<Merge> {
    let started = std::time::Instant::now();
    let upto: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM dedupe_recent")?
        .query_row([], |r| r.get(0))?;
    rows.sort_unstable();
    tracing::debug!(
        ids = rows.len(),
        ms = started.elapsed().as_millis() as u64,
        "merging recent event ids"
    );
    Ok(Merge {
        rows,
        upto,
        next: 0,
    })
}

/// Inserts `rows` into `dedupe`; one already there is left as it is.
fn insert_rows(conn: &Connection, rows: &[(i64, i64, i64)]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO dedupe (slot, check_hash, seen_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (slot) DO NOTHING",
    )?;
    for row in rows {
        insert.execute(params![row.0, row.1, row.2])?;
    }
    Ok(())
}

/// The committed ids; a panic elsewhere while holding the lock leaves the
/// map whole (every change to it is a single insert or clear).
pub(super) fn lock(recent: &Recent) -> std::sync::MutexGuard<'_, HashMap<i64, Recorded>> {
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

    /// One writer turn: the merge's share first, then `ids` remembered.
    fn turn(ids: &mut EventIds, conn: &Connection, new: &[u32], at: i64) -> Vec<bool> {
        conn.execute_batch("BEGIN").unwrap();
        ids.merge_step(conn).unwrap();
        let fresh = new
            .iter()
            .map(|n| ids.remember(conn, id(*n), at).unwrap())
            .collect();
        conn.execute_batch("COMMIT").unwrap();
        ids.committed();
        fresh
    }

    fn tables(conn: &Connection) -> (i64, i64) {
        (count(conn, "dedupe"), count(conn, "dedupe_recent"))
    }

    #[test]
    fn an_id_is_recognised_before_during_and_after_its_merge() {
        let conn = db();
        // Merges start at 4 ids and insert 2 per turn.
        let mut ids = EventIds::load(&conn, 4, 2).unwrap();
        assert_eq!(turn(&mut ids, &conn, &[1, 1], 10), [true, false]);
        assert_eq!(
            turn(&mut ids, &conn, &[1, 2, 3, 4], 11),
            [false, true, true, true]
        );
        assert_eq!(tables(&conn), (0, 4));
        // The merge starts: 2 inserted; 5 arrives meanwhile.
        assert_eq!(turn(&mut ids, &conn, &[5, 1, 4], 12), [true, false, false]);
        assert_eq!(tables(&conn), (2, 5));
        // The last 2 of the 4 inserted, and the 4 deleted from the log.
        assert_eq!(turn(&mut ids, &conn, &[2], 13), [false]);
        assert_eq!(tables(&conn), (4, 1));
        assert_eq!(ids.recent().lock().unwrap().len(), 1, "only 5 waits");
        for n in 1..=5 {
            assert_eq!(turn(&mut ids, &conn, &[n], 14), [false], "Ev{n}");
        }
        assert_eq!(turn(&mut ids, &conn, &[6], 14), [true]);
    }

    #[test]
    fn a_merge_from_memory_inserts_each_id_with_its_time_and_empties_the_log() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 3, 10).unwrap();
        turn(&mut ids, &conn, &[1], 100);
        turn(&mut ids, &conn, &[2, 3], 200);
        // Read back on open, as after a restart, then merged from memory.
        let mut ids = EventIds::load(&conn, 3, 10).unwrap();
        turn(&mut ids, &conn, &[], 300);
        let mut merged: Vec<(i64, i64, i64)> = conn
            .prepare("SELECT slot, check_hash, seen_at FROM dedupe ORDER BY slot")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut expected: Vec<(i64, i64, i64)> = [(1, 100), (2, 200), (3, 200)]
            .iter()
            .map(|(n, at)| (id(*n).slot, id(*n).check, *at))
            .collect();
        expected.sort_unstable();
        merged.sort_unstable();
        assert_eq!(merged, expected);
        assert_eq!(tables(&conn), (3, 0));
        assert!(ids.recent().lock().unwrap().is_empty());
    }

    #[test]
    fn a_merges_progress_moves_only_with_a_commit() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 2, 1).unwrap();
        turn(&mut ids, &conn, &[1, 2], 10);
        conn.execute_batch("BEGIN").unwrap();
        ids.merge_step(&conn).unwrap();
        assert_eq!(tables(&conn), (1, 2));
        conn.execute_batch("ROLLBACK").unwrap();
        ids.aborted();
        assert_eq!(tables(&conn), (0, 2));
        // The same first row again, then the second and the deletion.
        turn(&mut ids, &conn, &[], 11);
        assert_eq!(tables(&conn), (1, 2));
        turn(&mut ids, &conn, &[], 11);
        assert_eq!(tables(&conn), (2, 0));
        assert_eq!(turn(&mut ids, &conn, &[1, 2], 12), [false, false]);
    }

    #[test]
    fn ids_of_an_undone_op_or_turn_are_forgotten() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 100, 100).unwrap();
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
        let mut ids = EventIds::load(&conn, 100, 100).unwrap();
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
    fn retention_during_a_merge_merges_everything_at_once() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 2, 1).unwrap();
        turn(&mut ids, &conn, &[1, 2, 3], 1_000);
        turn(&mut ids, &conn, &[], 1_000);
        assert_eq!(tables(&conn), (1, 3), "a merge under way");
        conn.execute_batch("BEGIN").unwrap();
        ids.merge_step(&conn).unwrap();
        ids.remember(&conn, id(4), 2_000).unwrap();
        ids.merge_older_than(&conn, 1_500).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        ids.committed();
        assert_eq!(tables(&conn), (4, 0));
        assert!(ids.recent().lock().unwrap().is_empty());
        assert_eq!(
            turn(&mut ids, &conn, &[1, 2, 3, 4, 5], 2_000),
            [false, false, false, false, true]
        );
        assert_eq!(tables(&conn), (4, 1), "no merge left under way");
    }

    #[test]
    fn ids_are_read_back_on_open() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 100, 100).unwrap();
        ids.remember(&conn, id(1), 5).unwrap();
        ids.committed();
        let mut again = EventIds::load(&conn, 100, 100).unwrap();
        assert!(!again.remember(&conn, id(1), 6).unwrap());
        again.merge_older_than(&conn, 6).unwrap();
        again.committed();
        assert_eq!(count(&conn, "dedupe"), 1, "its time was read back too");
    }

    #[test]
    fn a_slot_shared_by_another_id_lets_it_through_unremembered() {
        let conn = db();
        let mut ids = EventIds::load(&conn, 100, 100).unwrap();
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
