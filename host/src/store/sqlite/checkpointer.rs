//! Checkpoints beside a writer: a thread of its own copies committed WAL
//! frames back into the database file, so commits do not wait for it.
//!
//! SQLite checkpoints inside the commit that takes the WAL past
//! `wal_autocheckpoint` pages: that commit copies up to that many pages to
//! random places in the file and fsyncs twice while everyone waiting on it
//! waits too. Measured under sustained load, that was about half of each
//! commit's time on the main database. Here a passive checkpoint runs every
//! `INTERVAL` on another connection, concurrently with the writer (WAL
//! allows it: it takes no write lock), so the writer's own checkpoint — kept,
//! at a larger threshold, because only it can catch up completely and let
//! the WAL start over from its beginning — finds little left to copy.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

/// How often the checkpointer looks for frames to copy.
const INTERVAL: Duration = Duration::from_millis(25);

/// The writer's own checkpoint threshold, in pages (SQLite's default is
/// 1,000): a backstop that resets the WAL now and then.
pub(super) const WRITER_AUTOCHECKPOINT: i64 = 4_000;

/// Stops its thread (after a last checkpoint) when dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing the WAL database at `path` on a thread named
    /// `name`.
    pub(super) fn spawn(path: &Path, name: &str) -> std::io::Result<Checkpointer> {
        let (stop, stopped) = mpsc::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(path, stopped))?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn run(path: PathBuf, stopped: mpsc::Receiver<()>) {
    let conn = match open(&path) {
        Ok(conn) => conn,
        Err(e) => {
            // The writer's own checkpoints still keep the WAL in bounds.
            tracing::warn!(error = %e, "cannot start the checkpointer");
            return;
        }
    };
    loop {
        let stopping = matches!(
            stopped.recv_timeout(INTERVAL),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
        // PASSIVE never waits: frames a reader still needs are left for the
        // next pass.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "checkpoint skipped");
        }
        if stopping {
            return;
        }
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // The WAL is fsynced before frames are copied, the file after.
    conn.pragma_update(None, "synchronous", "full")?;
    conn.busy_timeout(Duration::from_millis(100))?;
    Ok(conn)
}
