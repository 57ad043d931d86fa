//! The lasting gallery: per-mesh folders (`DIR/meshes/{id}/`) under an index of rows — SQLite in the data folder
//! by default (`DIR/gallery.sqlite3`, [`sqlite`]), or PostgreSQL shared by several servers ([`postgres`]).
//!
//! Crash safety: a mesh's files are written into `DIR/meshes/.tmp-{id}/` (each file itself via a temp name and a
//! rename), the folder is renamed into place, and only then is the index row inserted. A crash therefore leaves
//! at most a temp folder (removed at the next start) or a complete folder without its row (re-indexed from its
//! `metadata.json` at the next start, or removed when that is unreadable), never an index row pointing at
//! half-written files. A failed write removes what it wrote. A row whose folder vanished anyway (someone deleted it
//! by hand) is reported and skipped, not an error.
//!
//! A job stores at most one final entry and one preview: when its job already stored one (it ran twice), an
//! insert removes what it wrote and answers with the earlier entry.
//!
//! Quick previews are kept for [`PREVIEW_TTL`] (their job has long ended by then) and dropped at every start.
//!
//! Ids are ULIDs (sortable by creation time); [`is_valid_id`] guards every path built from one, and file names
//! come from the fixed [`sf3d_shared::api::MESH_FILES`] list plus the cache file, so no request can reach outside
//! the data folder.

pub mod index;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sf3d_shared::api::MESH_FILES;
use sf3d_shared::{MeshEntry, MeshList, MeshMetadata, MeshUrls};

use crate::cluster::ClusterName;
use index::{IndexRow, Inserted, MeshIndex, Status};

/// Name of the scene-code cache file stored beside a mesh (issue: regenerate from cache).
pub const CACHE_FILE: &str = "scene_codes.safetensors";
/// How long a preview entry outlives its creation.
pub const PREVIEW_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// Largest page of `GET /api/meshes`.
pub const MAX_PAGE: usize = 100;

/// Gallery failures.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// The id is not a ULID (or tries to escape the data folder).
    #[error("invalid mesh id {0:?}")]
    InvalidId(String),
    /// No such mesh.
    #[error("mesh {0} not found")]
    NotFound(String),
    /// The file is not one a mesh has.
    #[error("unknown file {0:?}")]
    UnknownFile(String),
    /// The SQLite index.
    #[error("gallery database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The PostgreSQL index.
    #[error("gallery database (PostgreSQL): {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The index cannot be reached or did not answer in time.
    #[error("gallery database unavailable: {0}")]
    Unavailable(String),
    /// The index's schema cannot be used by this program.
    #[error("gallery database schema: {0}")]
    Schema(String),
    /// The file system.
    #[error("gallery files: {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Stored metadata is not valid JSON.
    #[error("gallery metadata of {id}: {source}")]
    Json {
        /// The mesh.
        id: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A poisoned lock (a panic while writing).
    #[error("gallery lock poisoned")]
    Poisoned,
}

type Result<T> = std::result::Result<T, GalleryError>;

fn io(path: &Path, source: std::io::Error) -> GalleryError {
    GalleryError::Io { path: path.to_path_buf(), source }
}

/// A new id: a ULID, strictly increasing even within one millisecond, so ids sort in creation order.
pub fn new_id() -> String {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut g = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    let generator = g.get_or_insert_with(ulid::Generator::new);
    // Overflow of the random part within one millisecond (2^80 ids) cannot happen in practice; fall back anyway.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new()).to_string()
}

/// Whether `id` is a well-formed ULID (26 Crockford base-32 characters) — the only ids we create.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 26 && id.bytes().all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
}

/// Where the index lives.
#[derive(Clone, Default)]
pub enum IndexConfig {
    /// `DIR/gallery.sqlite3`.
    #[default]
    Sqlite,
    /// A PostgreSQL database, in the cluster's own schema.
    Postgres {
        /// `postgres://user:password@host:port/db` or `host=… dbname=…`; may hold a password, so never logged.
        url: String,
        /// Whose schema.
        cluster: ClusterName,
    },
}

impl std::fmt::Debug for IndexConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite => f.write_str("Sqlite"),
            Self::Postgres { cluster, .. } => write!(f, "Postgres {{ cluster: {cluster} }}"),
        }
    }
}

/// The files of one new mesh.
#[derive(Debug, Clone)]
pub struct NewMesh {
    /// Its metadata (with `mesh_id` set).
    pub metadata: MeshMetadata,
    /// `mesh.glb`.
    pub glb: Vec<u8>,
    /// `input.png`.
    pub input_png: Vec<u8>,
    /// `preprocessed.png`.
    pub preprocessed_png: Vec<u8>,
    /// The scene-code cache (safetensors), if any.
    pub cache: Option<Vec<u8>>,
}

/// What [`Gallery::insert`] did.
#[derive(Debug)]
pub enum Stored {
    /// The mesh is stored under its id.
    New,
    /// Its job had stored an entry of the same kind already (the job ran twice); nothing of the new one remains
    /// and this is the earlier entry.
    Existing(Box<MeshEntry>),
}

/// The gallery.
#[derive(Debug)]
pub struct Gallery {
    root: PathBuf,
    index: Box<dyn MeshIndex>,
}

impl Gallery {
    /// Opens (creating if needed) the gallery in `dir` with its SQLite index; see [`Gallery::open_with`].
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, &IndexConfig::Sqlite)
    }

    /// Opens (creating if needed) the gallery's files in `dir` and its index, and sweeps what an interrupted run
    /// left behind: temp folders, folders without an index row (re-indexed when complete) and previews.
    pub fn open_with(dir: &Path, config: &IndexConfig) -> Result<Self> {
        let meshes = dir.join("meshes");
        std::fs::create_dir_all(&meshes).map_err(|e| io(&meshes, e))?;
        let index: Box<dyn MeshIndex> = match config {
            IndexConfig::Sqlite => Box::new(sqlite::SqliteIndex::open(dir)?),
            IndexConfig::Postgres { url, cluster } => Box::new(postgres::PgIndex::open(url, cluster)?),
        };
        let g = Self { root: dir.to_path_buf(), index };
        g.prune_previews(std::time::Duration::ZERO)?;
        g.sweep_folders()?;
        Ok(g)
    }

    /// Removes temp folders and re-indexes (or removes) mesh folders that have no index row.
    fn sweep_folders(&self) -> Result<()> {
        let meshes = self.root.join("meshes");
        let entries = std::fs::read_dir(&meshes).map_err(|e| io(&meshes, e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with(".tmp-") {
                tracing::warn!(path = %path.display(), "removing the leftovers of an interrupted write");
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if !is_valid_id(&name) || !path.is_dir() || self.index.contains(&name)? {
                continue;
            }
            let reindexed = match read_orphan(&path, &name) {
                Some(m) if !m.preview => {
                    tracing::warn!(id = %name, "re-indexing a mesh folder whose index row was never written");
                    self.index.insert(&index_row(&m)?)? == Inserted::Stored
                }
                _ => false,
            };
            if !reindexed {
                tracing::warn!(path = %path.display(), "removing a mesh folder without index row");
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        Ok(())
    }

    /// Deletes preview entries older than `age`.
    fn prune_previews(&self, age: std::time::Duration) -> Result<()> {
        let now = std::time::SystemTime::now();
        for id in self.index.ids_with_status(Status::Preview)? {
            let created = ulid::Ulid::from_string(&id).map(|u| u.datetime()).unwrap_or(now);
            if now.duration_since(created).unwrap_or_default() >= age {
                match self.delete(&id) {
                    Ok(()) | Err(GalleryError::NotFound(_)) => {}
                    Err(e) => tracing::warn!(%id, error = %e, "cannot remove an old preview"),
                }
            }
        }
        Ok(())
    }

    /// Folder of mesh `id` (checked).
    pub fn mesh_dir(&self, id: &str) -> Result<PathBuf> {
        if !is_valid_id(id) {
            return Err(GalleryError::InvalidId(id.to_string()));
        }
        Ok(self.root.join("meshes").join(id))
    }

    /// Path of `file` of mesh `id`; `file` must be one of [`MESH_FILES`] or [`CACHE_FILE`].
    pub fn file_path(&self, id: &str, file: &str) -> Result<PathBuf> {
        if !MESH_FILES.contains(&file) && file != CACHE_FILE {
            return Err(GalleryError::UnknownFile(file.to_string()));
        }
        Ok(self.mesh_dir(id)?.join(file))
    }

    /// Stores a new mesh atomically (files first, then the index row); on failure nothing of it remains. When its
    /// job already stored an entry of the same kind, nothing of it remains either and the earlier entry is
    /// returned. Previews older than [`PREVIEW_TTL`] are dropped on the way.
    pub fn insert(&self, mesh: &NewMesh) -> Result<Stored> {
        if let Err(e) = self.prune_previews(PREVIEW_TTL) {
            tracing::warn!(error = %e, "pruning old previews failed");
        }
        let id = mesh.metadata.mesh_id.clone();
        let final_dir = self.mesh_dir(&id)?;
        let row = index_row(&mesh.metadata)?;
        let tmp = self.root.join("meshes").join(format!(".tmp-{id}"));
        let written = self.write_folder(mesh, &tmp, &final_dir);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let inserted = self.index.insert(&row);
        if !matches!(inserted, Ok(Inserted::Stored)) {
            let _ = std::fs::remove_dir_all(&final_dir);
        }
        match inserted? {
            Inserted::Stored => Ok(Stored::New),
            Inserted::JobAlreadyStored => {
                let job = mesh.metadata.job_id.as_deref().unwrap_or_default();
                tracing::info!(job_id = %job, %id, "the job had stored this entry already; keeping the earlier one");
                self.find_by_job(job, mesh.metadata.preview)?
                    .map(|e| Stored::Existing(Box::new(e)))
                    .ok_or_else(|| GalleryError::NotFound(format!("the entry of job {job}")))
            }
        }
    }

    /// Writes the files into `tmp` and renames it to `final_dir`.
    fn write_folder(&self, mesh: &NewMesh, tmp: &Path, final_dir: &Path) -> Result<()> {
        let id = &mesh.metadata.mesh_id;
        std::fs::create_dir_all(tmp).map_err(|e| io(tmp, e))?;
        let meta_json = serde_json::to_vec_pretty(&mesh.metadata)
            .map_err(|source| GalleryError::Json { id: id.clone(), source })?;
        let mut files: Vec<(&str, &[u8])> = vec![
            ("mesh.glb", &mesh.glb),
            ("input.png", &mesh.input_png),
            ("preprocessed.png", &mesh.preprocessed_png),
            ("metadata.json", &meta_json),
        ];
        if let Some(c) = &mesh.cache {
            files.push((CACHE_FILE, c));
        }
        for (name, bytes) in files {
            write_atomic(&tmp.join(name), bytes)?;
        }
        sync_dir(tmp);
        std::fs::rename(tmp, final_dir).map_err(|e| io(final_dir, e))?;
        sync_dir(&self.root.join("meshes"));
        Ok(())
    }

    fn entry_from_row(&self, id: String, meta: String) -> Result<Option<MeshEntry>> {
        let dir = self.mesh_dir(&id)?;
        if !dir.join("mesh.glb").is_file() {
            tracing::warn!(%id, "gallery row without its files; skipped");
            return Ok(None);
        }
        let metadata: MeshMetadata =
            serde_json::from_str(&meta).map_err(|source| GalleryError::Json { id: id.clone(), source })?;
        let cached = dir.join(CACHE_FILE).is_file();
        Ok(Some(MeshEntry { urls: MeshUrls::for_mesh(&id), id, metadata, cached }))
    }

    /// The entry job `job_id` wrote (its preview when `preview`), if it wrote one.
    pub fn find_by_job(&self, job_id: &str, preview: bool) -> Result<Option<MeshEntry>> {
        let status = if preview { Status::Preview } else { Status::Final };
        match self.index.find_by_job(job_id, status)? {
            Some((id, meta)) => self.entry_from_row(id, meta),
            None => Ok(None),
        }
    }

    /// The SQLite file of this data folder; the job journal keeps its table there (also when the index is
    /// elsewhere).
    pub fn db_path(&self) -> PathBuf {
        self.root.join(sqlite::DB_FILE)
    }

    /// The data folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the index lives (for logs; never a password).
    pub fn describe_index(&self) -> String {
        self.index.describe()
    }

    /// One entry.
    pub fn get(&self, id: &str) -> Result<MeshEntry> {
        self.mesh_dir(id)?;
        let meta = self.index.metadata(id)?.ok_or_else(|| GalleryError::NotFound(id.to_string()))?;
        self.entry_from_row(id.to_string(), meta)?.ok_or_else(|| GalleryError::NotFound(id.to_string()))
    }

    /// Newest first, `limit` per page, starting after `cursor` (an id from a previous page).
    pub fn list(&self, limit: usize, cursor: Option<&str>) -> Result<MeshList> {
        let limit = limit.clamp(1, MAX_PAGE);
        if let Some(c) = cursor {
            self.mesh_dir(c)?;
        }
        let rows = self.index.page(cursor, limit + 1)?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(limit);
        let mut skipped = 0;
        let mut last = None;
        for (id, meta) in rows.into_iter().take(limit) {
            last = Some(id.clone());
            match self.entry_from_row(id, meta)? {
                Some(e) => items.push(e),
                None => skipped += 1,
            }
        }
        Ok(MeshList { items, next_cursor: if more { last } else { None }, skipped })
    }

    /// Deletes a mesh (row first, then its folder).
    pub fn delete(&self, id: &str) -> Result<()> {
        let dir = self.mesh_dir(id)?;
        if !self.index.delete(id)? {
            return Err(GalleryError::NotFound(id.to_string()));
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        Ok(())
    }

    /// Number of listed (final) meshes.
    pub fn count(&self) -> Result<u64> {
        self.index.count()
    }

    /// Makes every index write durable in its main store (graceful shutdown).
    pub fn checkpoint(&self) -> Result<()> {
        self.index.flush()
    }
}

/// The index row of a mesh's metadata.
fn index_row(m: &MeshMetadata) -> Result<IndexRow> {
    let json = |source| GalleryError::Json { id: m.mesh_id.clone(), source };
    Ok(IndexRow {
        id: m.mesh_id.clone(),
        created_at: m.created_at.clone(),
        parent_id: m.parent_id.clone(),
        status: if m.preview { Status::Preview } else { Status::Final },
        vertex_count: i64::try_from(m.vertex_count).unwrap_or(i64::MAX),
        face_count: i64::try_from(m.face_count).unwrap_or(i64::MAX),
        total_ms: m.total_ms,
        params: serde_json::to_string(&m.params).map_err(json)?,
        metadata: serde_json::to_string(m).map_err(json)?,
        job_id: m.job_id.clone(),
    })
}

/// The metadata of a mesh folder that has every file of a mesh, or `None`.
fn read_orphan(dir: &Path, id: &str) -> Option<MeshMetadata> {
    if !MESH_FILES.iter().all(|f| dir.join(f).is_file()) {
        return None;
    }
    let bytes = std::fs::read(dir.join("metadata.json")).ok()?;
    let m: MeshMetadata = serde_json::from_slice(&bytes).ok()?;
    (m.mesh_id == id).then_some(m)
}

/// Writes `bytes` to `path` via a temp name and a rename, syncing the data first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// Syncs a folder, so the names created in it survive a power cut (best effort).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}
