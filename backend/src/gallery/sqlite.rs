//! The default index: `DIR/gallery.sqlite3` (WAL), one connection behind a mutex. The job journal keeps its own
//! table in the same file.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::index::{IdAndMetadata, IndexRow, Inserted, MeshIndex, Status};
use super::{GalleryError, Result};

/// The database's file name in the data folder.
pub const DB_FILE: &str = "gallery.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meshes (
    id           TEXT PRIMARY KEY,
    created_at   TEXT NOT NULL,
    parent_id    TEXT,
    status       TEXT NOT NULL,
    vertex_count INTEGER NOT NULL,
    face_count   INTEGER NOT NULL,
    total_ms     REAL NOT NULL,
    params       TEXT NOT NULL,
    metadata     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS meshes_parent ON meshes(parent_id);
";
/// Added after the first release: the job that made a mesh, so a job that ran twice writes one entry.
const MIGRATE_JOB_ID: &str = "
ALTER TABLE meshes ADD COLUMN job_id TEXT;
";

/// The SQLite index.
#[derive(Debug)]
pub struct SqliteIndex {
    path: PathBuf,
    db: Mutex<Connection>,
}

impl SqliteIndex {
    /// Opens (creating or upgrading) `DIR/gallery.sqlite3`.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(DB_FILE);
        let db = Connection::open(&path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        let has_job_id: bool =
            db.query_row("SELECT COUNT(*) FROM pragma_table_info('meshes') WHERE name = 'job_id'", [], |r| r.get(0))?;
        if !has_job_id {
            db.execute_batch(MIGRATE_JOB_ID)?;
        }
        // Also when a crash came between the two statements of the migration.
        db.execute_batch("CREATE INDEX IF NOT EXISTS meshes_job ON meshes(job_id);")?;
        Ok(Self { path, db: Mutex::new(db) })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        self.db.lock().map_err(|_| GalleryError::Poisoned)
    }
}

impl MeshIndex for SqliteIndex {
    fn contains(&self, id: &str) -> Result<bool> {
        let row: Option<i64> =
            self.conn()?.query_row("SELECT 1 FROM meshes WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(row.is_some())
    }

    fn insert(&self, row: &IndexRow) -> Result<Inserted> {
        // One statement under the connection's lock: the job check and the insert cannot interleave with another.
        let n = self.conn()?.execute(
            "INSERT INTO meshes (id, created_at, parent_id, status, vertex_count, face_count, total_ms, params, metadata,
                                 job_id)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10
             WHERE ?10 IS NULL OR NOT EXISTS (SELECT 1 FROM meshes WHERE job_id = ?10 AND status = ?4)",
            params![
                row.id,
                row.created_at,
                row.parent_id,
                row.status.as_str(),
                row.vertex_count,
                row.face_count,
                row.total_ms,
                row.params,
                row.metadata,
                row.job_id
            ],
        )?;
        Ok(if n == 1 { Inserted::Stored } else { Inserted::JobAlreadyStored })
    }

    fn ids_with_status(&self, status: Status) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT id FROM meshes WHERE status = ?1")?;
        let ids = stmt.query_map([status.as_str()], |r| r.get(0))?.collect::<std::result::Result<_, _>>()?;
        Ok(ids)
    }

    fn find_by_job(&self, job_id: &str, status: Status) -> Result<Option<IdAndMetadata>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT id, metadata FROM meshes WHERE job_id = ?1 AND status = ?2 ORDER BY id LIMIT 1",
                params![job_id, status.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn metadata(&self, id: &str) -> Result<Option<String>> {
        Ok(self.conn()?.query_row("SELECT metadata FROM meshes WHERE id = ?1", [id], |r| r.get(0)).optional()?)
    }

    fn page(&self, before: Option<&str>, limit: usize) -> Result<Vec<IdAndMetadata>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, metadata FROM meshes WHERE status = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![Status::Final.as_str(), before, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    fn delete(&self, id: &str) -> Result<bool> {
        Ok(self.conn()?.execute("DELETE FROM meshes WHERE id = ?1", [id])? > 0)
    }

    fn count(&self) -> Result<u64> {
        let n: i64 =
            self.conn()?
                .query_row("SELECT COUNT(*) FROM meshes WHERE status = ?1", [Status::Final.as_str()], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn flush(&self) -> Result<()> {
        self.conn()?.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }

    fn shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::{new_mesh, temp_dir};
    use crate::gallery::{Gallery, new_id};

    #[test]
    fn databases_from_before_the_job_column_gain_it() {
        let dir = temp_dir("sqlite-migrate");
        std::fs::create_dir_all(&dir).unwrap();
        Connection::open(dir.join(DB_FILE)).unwrap().execute_batch(SCHEMA).unwrap();
        let g = Gallery::open(&dir).unwrap();
        let id = new_id();
        let mut m = new_mesh(&id);
        m.metadata.job_id = Some("JOB1".into());
        g.insert(&m).unwrap();
        assert_eq!(g.find_by_job("JOB1", false).unwrap().unwrap().id, id);
        std::fs::remove_dir_all(dir).ok();
    }
}
