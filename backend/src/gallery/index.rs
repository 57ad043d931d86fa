//! The gallery's index: one row per stored mesh, behind one interface with two back-ends — SQLite in the data
//! folder (the default, [`super::sqlite`]) and PostgreSQL shared by several servers ([`super::postgres`]). The
//! gallery keeps the files and the crash-safety rules; an index only stores, finds and removes rows.

use super::Result;

/// Whether an entry is listed in the gallery or only reachable by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A final mesh (listed).
    Final,
    /// A quick preview (reachable by id for a while, never listed).
    Preview,
}

impl Status {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Final => "succeeded",
            Self::Preview => "preview",
        }
    }
}

/// One index row, ready to store.
#[derive(Debug, Clone)]
pub struct IndexRow {
    /// The mesh id (a ULID).
    pub id: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// The mesh it was tweaked from.
    pub parent_id: Option<String>,
    /// Listed or preview.
    pub status: Status,
    /// Vertices of the mesh.
    pub vertex_count: i64,
    /// Triangles of the mesh.
    pub face_count: i64,
    /// Time of the run that made it.
    pub total_ms: f64,
    /// The generation parameters (JSON).
    pub params: String,
    /// The whole metadata (JSON), returned by the reads.
    pub metadata: String,
    /// The job that made it.
    pub job_id: Option<String>,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The row is stored.
    Stored,
    /// The job already stored an entry of this status (it ran twice, e.g. redelivered after its worker died):
    /// nothing was written.
    JobAlreadyStored,
}

/// An id and the stored metadata JSON of one row.
pub type IdAndMetadata = (String, String);

/// Storage of the gallery's rows. Every method is a short, blocking call.
pub trait MeshIndex: Send + Sync + std::fmt::Debug {
    /// Whether a row with this id exists (any status).
    fn contains(&self, id: &str) -> Result<bool>;
    /// Stores a row unless its job already stored one of the same status.
    fn insert(&self, row: &IndexRow) -> Result<Inserted>;
    /// The ids of every row of a status.
    fn ids_with_status(&self, status: Status) -> Result<Vec<String>>;
    /// The first (oldest) row job `job_id` stored with `status`.
    fn find_by_job(&self, job_id: &str, status: Status) -> Result<Option<IdAndMetadata>>;
    /// The metadata of a row (any status).
    fn metadata(&self, id: &str) -> Result<Option<String>>;
    /// Listed rows, newest first, ids below `before` when given, at most `limit`.
    fn page(&self, before: Option<&str>, limit: usize) -> Result<Vec<IdAndMetadata>>;
    /// Removes a row; whether there was one.
    fn delete(&self, id: &str) -> Result<bool>;
    /// Number of listed rows.
    fn count(&self) -> Result<u64>;
    /// Makes every write durable in the main store (graceful shutdown).
    fn flush(&self) -> Result<()>;
    /// Where the rows live, for logs (never a password).
    fn describe(&self) -> String;
    /// Whether other servers use the same rows.
    fn shared(&self) -> bool;
}
