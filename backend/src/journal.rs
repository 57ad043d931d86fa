//! The job journal: every accepted job is a row of the `jobs` table in the gallery's SQLite file, and its
//! uploaded image a file `DATA/jobs/{id}/input`, written before the client hears `accepted`. A restart (a crash,
//! a deploy, a reboot) therefore loses no accepted job: [`Journal::open_jobs`] gives the queued and running ones
//! back in submission order, and a finished job stays answerable (`subscribe`, `GET /api/jobs/{id}`) for
//! [`RETENTION`].
//!
//! A row moves `queued → running → queued …` and ends once in `succeeded`, `failed` or `cancelled`, with the
//! stages it saw and the message that ended it. `attempts` counts the runs that started; a job found `running`
//! at start-up was cut short and runs again until it has started [`MAX_ATTEMPTS`] times.
//!
//! The image of a job is removed the moment the job ends (or is found ended): only waiting and running jobs
//! keep bytes on disk, and none in memory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sf3d_shared::{GenerateParams, JobState, ServerMessage, StageSnapshot};

use crate::gallery::{is_valid_id, sync_dir, write_atomic};
use crate::jobs::{JobInput, JobRequest};

/// How long a finished job stays answerable.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Runs a job may start before an interruption ends it with `interrupted`.
pub const MAX_ATTEMPTS: u32 = 2;
/// Name of a job's image in its folder.
const INPUT_FILE: &str = "input";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    input       TEXT NOT NULL,
    params      TEXT NOT NULL,
    request_id  TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    stages      TEXT,
    terminal    TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
";

/// Journal failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database.
    #[error("job journal database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A job's folder.
    #[error("job journal files: {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored value that is not what this version writes.
    #[error("job journal entry {id}: {message}")]
    Corrupt {
        /// The job.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// A write of the gallery's file helpers.
    #[error(transparent)]
    Gallery(#[from] crate::gallery::GalleryError),
    /// A poisoned lock (a panic while writing).
    #[error("job journal lock poisoned")]
    Poisoned,
}

type Result<T> = std::result::Result<T, JournalError>;

/// Where a journaled job's image is, as stored in the `input` column.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredInput {
    /// `DATA/jobs/{id}/input`.
    Upload { filename: Option<String> },
    /// The input of a gallery entry.
    FromMesh { mesh_id: String },
    /// A gallery entry's cached scene codes.
    Regenerate { parent_id: String },
}

/// A job that had not ended when the journal was last written.
#[derive(Debug)]
pub struct OpenJob {
    /// Its id.
    pub id: String,
    /// What it asked for (an upload as [`JobInput::Upload`]).
    pub request: JobRequest,
    /// The client's `request_id`.
    pub request_id: Option<String>,
    /// Runs started so far.
    pub attempts: u32,
    /// Whether it was running (cut short) rather than waiting.
    pub was_running: bool,
}

/// A job as the journal last saw it.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Its state.
    pub state: JobState,
    /// Runs started.
    pub attempts: u32,
    /// Stages of its last run (stored when it ended).
    pub stages: Vec<StageSnapshot>,
    /// The message that ended it.
    pub terminal: Option<ServerMessage>,
}

/// The journal.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    db: Mutex<Connection>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn parse_state(id: &str, s: &str) -> Result<JobState> {
    Ok(match s {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        "succeeded" => JobState::Succeeded,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        other => return Err(JournalError::Corrupt { id: id.into(), message: format!("unknown state {other:?}") }),
    })
}

fn json<T: Serialize>(v: &T) -> String {
    // Plain data types of this crate and sf3d-shared: serialising them cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

fn parse<T: for<'de> Deserialize<'de>>(id: &str, what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| JournalError::Corrupt { id: id.into(), message: format!("{what}: {e}") })
}

impl Journal {
    /// Opens the journal in the gallery database `db` (creating the table) with job folders under `data/jobs`.
    pub fn open(db: &Path, data: &Path) -> Result<Self> {
        let dir = data.join("jobs");
        std::fs::create_dir_all(&dir).map_err(|source| JournalError::Io { path: dir.clone(), source })?;
        let conn = Connection::open(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL (for this connection only; the gallery's keeps NORMAL): an `accepted` job survives a power cut too.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let j = Self { dir, db: Mutex::new(conn) };
        j.prune()?;
        j.sweep_folders()?;
        Ok(j)
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.db.lock().map_err(|_| JournalError::Poisoned)
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Writes an upload's bytes into the job's folder (before [`Self::insert`]), turning the request's input
    /// into [`JobInput::Upload`]; other inputs are returned as they are.
    pub fn store_input(&self, id: &str, input: JobInput) -> Result<JobInput> {
        match input {
            JobInput::Image { bytes, filename } => {
                let dir = self.job_dir(id);
                std::fs::create_dir_all(&dir).map_err(|source| JournalError::Io { path: dir.clone(), source })?;
                let path = dir.join(INPUT_FILE);
                if let Err(e) = write_atomic(&path, &bytes) {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e.into());
                }
                // The new names too, not only the bytes.
                sync_dir(&dir);
                sync_dir(&self.dir);
                Ok(JobInput::Upload { path, filename })
            }
            other => Ok(other),
        }
    }

    /// Records a new queued job (its image already stored by [`Self::store_input`]).
    pub fn insert(&self, id: &str, request: &JobRequest, request_id: Option<&str>) -> Result<()> {
        let stored = match &request.input {
            JobInput::Upload { filename, .. } => StoredInput::Upload { filename: filename.clone() },
            JobInput::FromMesh { mesh_id } => StoredInput::FromMesh { mesh_id: mesh_id.clone() },
            JobInput::Regenerate { parent_id } => StoredInput::Regenerate { parent_id: parent_id.clone() },
            JobInput::Image { .. } => {
                return Err(JournalError::Corrupt { id: id.into(), message: "image bytes were not stored".into() });
            }
        };
        let now = now_ms();
        let inserted = self.conn()?.execute(
            "INSERT INTO jobs (id, state, input, params, request_id, attempts, created_ms, updated_ms)
             VALUES (?1, 'queued', ?2, ?3, ?4, 0, ?5, ?5)",
            params![id, json(&stored), json(&request.params), request_id, now],
        );
        if let Err(e) = inserted {
            let _ = std::fs::remove_dir_all(self.job_dir(id));
            return Err(e.into());
        }
        Ok(())
    }

    /// A run of the job starts; returns the number of runs started, this one included.
    pub fn started(&self, id: &str) -> Result<u32> {
        let conn = self.conn()?;
        conn.execute(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_ms = ?2
             WHERE id = ?1 AND state IN ('queued', 'running')",
            params![id, now_ms()],
        )?;
        let attempts: i64 =
            conn.query_row("SELECT attempts FROM jobs WHERE id = ?1", [id], |r| r.get(0)).optional()?.unwrap_or(1);
        Ok(attempts as u32)
    }

    /// The job waits again (its worker died).
    pub fn requeued(&self, id: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE jobs SET state = 'queued', updated_ms = ?2 WHERE id = ?1 AND state = 'running'",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    /// The job ended with `terminal`; its image goes.
    pub fn finished(
        &self,
        id: &str,
        state: JobState,
        stages: &[StageSnapshot],
        terminal: &ServerMessage,
    ) -> Result<()> {
        self.conn()?.execute(
            "UPDATE jobs SET state = ?2, stages = ?3, terminal = ?4, updated_ms = ?5 WHERE id = ?1",
            params![id, state_name(state), json(&stages), json(terminal), now_ms()],
        )?;
        self.remove_files(id);
        Ok(())
    }

    fn remove_files(&self, id: &str) {
        let dir = self.job_dir(id);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove a finished job's files");
        }
    }

    /// The jobs that had not ended, in submission order. A row that cannot be read back (its image vanished,
    /// a value this version does not know) is ended as failed with the reason, not returned.
    pub fn open_jobs(&self) -> Result<Vec<OpenJob>> {
        type Row = (String, String, String, String, Option<String>, i64);
        let rows: Vec<Row> = {
            let conn = self.conn()?;
            let mut stmt = conn.prepare(
                "SELECT id, state, input, params, request_id, attempts FROM jobs
                 WHERE state IN ('queued', 'running') ORDER BY rowid",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
                .collect::<std::result::Result<_, _>>()?
        };
        let mut out = Vec::new();
        for (id, state, input, params, request_id, attempts) in rows {
            match self.read_open(&id, &state, &input, &params) {
                Ok((request, was_running)) => {
                    out.push(OpenJob { id, request, request_id, attempts: attempts as u32, was_running })
                }
                Err(e) => {
                    tracing::warn!(%id, error = %e, "a journaled job cannot be resumed; ending it as failed");
                    let msg = ServerMessage::Error {
                        job_id: Some(id.clone()),
                        code: sf3d_shared::ErrorCode::Internal,
                        message: format!("the job could not be resumed after a restart: {e}"),
                        field: None,
                        retry_after: None,
                    };
                    if let Err(e) = self.finished(&id, JobState::Failed, &[], &msg) {
                        tracing::error!(%id, error = %e, "cannot end an unresumable job in the journal");
                    }
                }
            }
        }
        Ok(out)
    }

    fn read_open(&self, id: &str, state: &str, input: &str, params: &str) -> Result<(JobRequest, bool)> {
        let was_running = parse_state(id, state)? == JobState::Running;
        let params: GenerateParams = parse(id, "params", params)?;
        let input = match parse::<StoredInput>(id, "input", input)? {
            StoredInput::Upload { filename } => {
                let path = self.job_dir(id).join(INPUT_FILE);
                if !path.is_file() {
                    return Err(JournalError::Corrupt { id: id.into(), message: "its uploaded image is gone".into() });
                }
                JobInput::Upload { path, filename }
            }
            StoredInput::FromMesh { mesh_id } => JobInput::FromMesh { mesh_id },
            StoredInput::Regenerate { parent_id } => JobInput::Regenerate { parent_id },
        };
        Ok((JobRequest { input, params }, was_running))
    }

    /// The journal's view of job `id`, if it knows it.
    pub fn lookup(&self, id: &str) -> Result<Option<JobRecord>> {
        type Row = (String, i64, Option<String>, Option<String>);
        let row: Option<Row> = self
            .conn()?
            .query_row("SELECT state, attempts, stages, terminal FROM jobs WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((state, attempts, stages, terminal)) = row else { return Ok(None) };
        Ok(Some(JobRecord {
            state: parse_state(id, &state)?,
            attempts: attempts as u32,
            stages: stages.map(|s| parse(id, "stages", &s)).transpose()?.unwrap_or_default(),
            terminal: terminal.map(|t| parse(id, "terminal", &t)).transpose()?,
        }))
    }

    /// Forgets jobs that ended more than [`RETENTION`] ago.
    pub fn prune(&self) -> Result<()> {
        let cutoff = now_ms() - RETENTION.as_millis() as i64;
        self.conn()?.execute(
            "DELETE FROM jobs WHERE state NOT IN ('queued', 'running') AND updated_ms < ?1",
            params![cutoff],
        )?;
        Ok(())
    }

    /// Removes job folders no open job owns (what a crash between writing an image and its row leaves). Only
    /// at start-up: while the server runs, a new job's folder exists a moment before its row.
    fn sweep_folders(&self) -> Result<()> {
        let open: std::collections::HashSet<String> = {
            let conn = self.conn()?;
            let mut stmt = conn.prepare("SELECT id FROM jobs WHERE state IN ('queued', 'running')")?;
            stmt.query_map([], |r| r.get(0))?.collect::<std::result::Result<_, _>>()?
        };
        let entries =
            std::fs::read_dir(&self.dir).map_err(|source| JournalError::Io { path: self.dir.clone(), source })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !open.contains(&name) {
                if is_valid_id(&name) || name.ends_with(".tmp") {
                    tracing::info!(job = %name, "removing the files of a job that is no longer open");
                }
                let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sf3d_shared::ErrorCode;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sf3d-journal-{name}-{}", crate::gallery::new_id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn upload(bytes: &[u8]) -> JobRequest {
        JobRequest {
            input: JobInput::Image { bytes: bytes.to_vec(), filename: Some("a.png".into()) },
            params: GenerateParams::default(),
        }
    }

    fn add(j: &Journal, id: &str, req: JobRequest) -> JobRequest {
        let input = j.store_input(id, req.input).unwrap();
        let req = JobRequest { input, params: req.params };
        j.insert(id, &req, Some("r")).unwrap();
        req
    }

    #[test]
    fn open_jobs_come_back_in_order_with_their_images_and_attempts() {
        let data = temp("order");
        let db = data.join("gallery.sqlite3");
        let (a, b, c) = (crate::gallery::new_id(), crate::gallery::new_id(), crate::gallery::new_id());
        {
            let j = Journal::open(&db, &data).unwrap();
            let ra = add(&j, &a, upload(b"first"));
            assert!(matches!(&ra.input, JobInput::Upload { path, .. } if std::fs::read(path).unwrap() == b"first"));
            add(&j, &b, JobRequest { input: JobInput::Regenerate { parent_id: "P".into() }, ..upload(b"") });
            add(&j, &c, upload(b"third"));
            assert_eq!(j.started(&a).unwrap(), 1);
            let done = ServerMessage::Cancelled { job_id: c.clone() };
            j.finished(&c, JobState::Cancelled, &[], &done).unwrap();
            assert!(!data.join("jobs").join(&c).exists(), "an ended job keeps no image");
        }
        // The process died here: a running, b queued.
        let j = Journal::open(&db, &data).unwrap();
        let open = j.open_jobs().unwrap();
        assert_eq!(open.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), [a.as_str(), b.as_str()]);
        assert!(open[0].was_running && open[0].attempts == 1 && !open[1].was_running);
        assert_eq!(open[0].request_id.as_deref(), Some("r"));
        assert!(matches!(&open[0].request.input, JobInput::Upload { filename: Some(f), .. } if f == "a.png"));
        assert!(matches!(&open[1].request.input, JobInput::Regenerate { parent_id } if parent_id == "P"));
        assert_eq!(j.started(&a).unwrap(), 2);
        let rec = j.lookup(&c).unwrap().unwrap();
        assert_eq!(rec.state, JobState::Cancelled);
        assert_eq!(rec.terminal, Some(ServerMessage::Cancelled { job_id: c.clone() }));
        assert!(j.lookup("nope").unwrap().is_none());
        std::fs::remove_dir_all(data).ok();
    }

    #[test]
    fn a_job_whose_image_vanished_ends_failed_and_stray_folders_go() {
        let data = temp("vanished");
        let db = data.join("gallery.sqlite3");
        let a = crate::gallery::new_id();
        {
            let j = Journal::open(&db, &data).unwrap();
            add(&j, &a, upload(b"x"));
        }
        std::fs::remove_dir_all(data.join("jobs").join(&a)).unwrap();
        std::fs::create_dir_all(data.join("jobs").join("stray")).unwrap();
        let j = Journal::open(&db, &data).unwrap();
        assert!(!data.join("jobs").join("stray").exists());
        assert!(j.open_jobs().unwrap().is_empty());
        let rec = j.lookup(&a).unwrap().unwrap();
        assert_eq!(rec.state, JobState::Failed);
        assert!(matches!(rec.terminal, Some(ServerMessage::Error { code: ErrorCode::Internal, message, .. })
            if message.contains("image is gone")));
        std::fs::remove_dir_all(data).ok();
    }
}
