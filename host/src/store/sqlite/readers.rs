//! Read-only connections for the queries that need not queue behind the
//! writer (claims and every change go through the writer thread). WAL lets
//! them read the last commit while the writer works. Each query runs on a
//! blocking thread; connections are kept for the next query, at most `max`
//! at once.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::store::StoreError;

pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl fmt::Debug for Readers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readers").field("path", &self.path).finish()
    }
}

impl Readers {
    /// Readers of the database at `path`, at most `max` queries at once.
    pub(super) fn new(path: PathBuf, max: usize) -> Self {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max.max(1)),
        }
    }

    /// The database they read.
    pub(super) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs `query` on a read-only connection.
    pub(super) async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conn = match self.lock().pop() {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = query(&conn);
            (conn, result)
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        self.lock().push(conn);
        Ok(result?)
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        super::tune(&conn)?;
        Ok(conn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic elsewhere leaves only idle connections behind; keep them.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
