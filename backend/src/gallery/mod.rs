//! The lasting gallery: each mesh's files under an index of rows. The files live in the data folder
//! (`DIR/meshes/{id}/`, [`folder`]) or in a NATS object store shared by a cluster ([`nats`]); the index in SQLite
//! (`DIR/gallery.sqlite3`, [`sqlite`]) or in PostgreSQL shared by several servers ([`postgres`]).
//!
//! Crash safety: a mesh's files are written completely (all or nothing) and only then is the index row inserted.
//! A crash therefore leaves at most files without a row (re-indexed from their `metadata.json` at the next start,
//! or removed when incomplete), never an index row pointing at half-written files. A failed write removes what it
//! wrote. A row whose files vanished anyway (someone deleted them by hand) is reported and skipped, not an error.
//!
//! A job stores at most one final entry and one preview: when its job already stored one (it ran twice), an
//! insert removes what it wrote and answers with the earlier entry.
//!
//! Quick previews are kept for [`PREVIEW_TTL`] (their job has long ended by then) and dropped at every start.
//!
//! Ids are ULIDs (sortable by creation time); [`is_valid_id`] guards every path built from one, and file names
//! come from the fixed [`sf3d_shared::api::MESH_FILES`] list plus the cache file, so no request can reach outside
//! the data folder.

pub mod files;
pub mod folder;
pub mod index;
pub mod nats;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sf3d_shared::api::MESH_FILES;
use sf3d_shared::{MeshEntry, MeshList, MeshMetadata, MeshUrls};

use crate::cluster::ClusterName;
use files::MeshFiles;
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
    /// The NATS object store.
    #[error("gallery files: {0}")]
    Nats(String),
    /// Settings that cannot work together.
    #[error("gallery settings: {0}")]
    Config(String),
    /// A mesh with this id is stored already.
    #[error("mesh {0} exists already")]
    Exists(String),
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

impl IndexConfig {
    /// Whether other servers may use the same rows.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }
}

impl std::fmt::Debug for IndexConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite => f.write_str("Sqlite"),
            Self::Postgres { cluster, .. } => write!(f, "Postgres {{ cluster: {cluster} }}"),
        }
    }
}

/// Where the files live.
#[derive(Clone, Default)]
pub enum FilesConfig {
    /// `DIR/meshes/{id}/`.
    #[default]
    Folder,
    /// The cluster's NATS object store (needs a shared index).
    Nats {
        /// `nats://[user:password@]host:port`; may hold a password, so never logged.
        url: String,
        /// Whose bucket.
        cluster: ClusterName,
    },
}

impl std::fmt::Debug for FilesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Folder => f.write_str("Folder"),
            Self::Nats { cluster, .. } => write!(f, "Nats {{ cluster: {cluster} }}"),
        }
    }
}

/// Where a gallery keeps its rows and its files.
#[derive(Debug, Clone, Default)]
pub struct GalleryConfig {
    /// The rows.
    pub index: IndexConfig,
    /// The files.
    pub files: FilesConfig,
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

impl NewMesh {
    /// The files stored for it, its metadata given as `meta_json`.
    fn files<'a>(&'a self, meta_json: &'a [u8]) -> Vec<files::NamedBytes<'a>> {
        let mut files: Vec<files::NamedBytes<'a>> = vec![
            ("mesh.glb", &self.glb),
            ("input.png", &self.input_png),
            ("preprocessed.png", &self.preprocessed_png),
            ("metadata.json", meta_json),
        ];
        if let Some(c) = &self.cache {
            files.push((CACHE_FILE, c));
        }
        files
    }
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
    files: Box<dyn MeshFiles>,
}

impl Gallery {
    /// Opens (creating if needed) the gallery in `dir`: files in its folder, index in its SQLite file; see
    /// [`Gallery::open_with`].
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, &GalleryConfig::default())
    }

    /// Opens (creating if needed) the gallery's index and files, and sweeps what an interrupted run left behind:
    /// temp files, files without an index row (re-indexed when complete) and previews — all of them with an index
    /// of its own, only those older than [`PREVIEW_TTL`] with a shared one (other servers' jobs may be serving
    /// theirs).
    pub fn open_with(dir: &Path, config: &GalleryConfig) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let index: Box<dyn MeshIndex> = match &config.index {
            IndexConfig::Sqlite => Box::new(sqlite::SqliteIndex::open(dir)?),
            IndexConfig::Postgres { url, cluster } => Box::new(postgres::PgIndex::open(url, cluster)?),
        };
        let files: Box<dyn MeshFiles> = match &config.files {
            FilesConfig::Folder => Box::new(folder::FolderFiles::open(dir)?),
            FilesConfig::Nats { .. } if !index.shared() => {
                return Err(GalleryError::Config(
                    "files in NATS need the index in PostgreSQL (--db): several servers share those files, and \
                     each would take the others' meshes for leftovers of its own"
                        .into(),
                ));
            }
            FilesConfig::Nats { url, cluster } => Box::new(nats::NatsFiles::open(url, cluster)?),
        };
        let g = Self { root: dir.to_path_buf(), index, files };
        g.prune_previews(if g.index.shared() { PREVIEW_TTL } else { std::time::Duration::ZERO })?;
        g.sweep()?;
        Ok(g)
    }

    /// Removes leftovers and re-indexes (or removes) settled files that have no index row.
    fn sweep(&self) -> Result<()> {
        self.files.clean_leftovers()?;
        for id in self.files.mesh_ids()? {
            if !self.files.settled(&id) || self.index.contains(&id)? {
                continue;
            }
            let reindexed = match self.read_orphan(&id) {
                Some(m) if !m.preview => {
                    tracing::warn!(%id, "re-indexing a mesh whose index row was never written");
                    self.index.insert(&index_row(&m)?)? == Inserted::Stored
                }
                _ => false,
            };
            if !reindexed {
                tracing::warn!(%id, "removing the files of a mesh without index row");
                self.files.remove_mesh(&id)?;
            }
        }
        Ok(())
    }

    /// The metadata of a mesh whose files are all there, or `None`.
    fn read_orphan(&self, id: &str) -> Option<MeshMetadata> {
        if !MESH_FILES.iter().all(|f| self.files.has(id, f).unwrap_or(false)) {
            return None;
        }
        let bytes = self.files.read(id, "metadata.json").ok()??;
        let m: MeshMetadata = serde_json::from_slice(&bytes).ok()?;
        (m.mesh_id == id).then_some(m)
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

    /// `id` if it is a valid one.
    fn check_id<'a>(&self, id: &'a str) -> Result<&'a str> {
        if is_valid_id(id) { Ok(id) } else { Err(GalleryError::InvalidId(id.to_string())) }
    }

    /// The bytes of `file` of mesh `id`; `file` must be one of [`MESH_FILES`] or [`CACHE_FILE`].
    pub fn read_file(&self, id: &str, file: &str) -> Result<Vec<u8>> {
        if !MESH_FILES.contains(&file) && file != CACHE_FILE {
            return Err(GalleryError::UnknownFile(file.to_string()));
        }
        self.files.read(self.check_id(id)?, file)?.ok_or_else(|| GalleryError::NotFound(id.to_string()))
    }

    /// Stores a new mesh atomically (files first, then the index row); on failure nothing of it remains. When its
    /// job already stored an entry of the same kind, nothing of it remains either and the earlier entry is
    /// returned. Previews older than [`PREVIEW_TTL`] are dropped on the way.
    pub fn insert(&self, mesh: &NewMesh) -> Result<Stored> {
        if let Err(e) = self.prune_previews(PREVIEW_TTL) {
            tracing::warn!(error = %e, "pruning old previews failed");
        }
        let id = self.check_id(&mesh.metadata.mesh_id)?;
        // Never overwrite (and on failure remove) the files of an entry that exists.
        if self.index.contains(id)? {
            return Err(GalleryError::Exists(id.to_string()));
        }
        let row = index_row(&mesh.metadata)?;
        let meta_json = serde_json::to_vec_pretty(&mesh.metadata)
            .map_err(|source| GalleryError::Json { id: id.to_string(), source })?;
        self.files.put_mesh(id, &mesh.files(&meta_json))?;
        let inserted = self.index.insert(&row);
        if !matches!(inserted, Ok(Inserted::Stored))
            && let Err(e) = self.files.remove_mesh(id)
        {
            tracing::warn!(%id, error = %e, "cannot remove the files of an entry that was not stored");
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

    fn entry_from_row(&self, id: String, meta: String) -> Result<Option<MeshEntry>> {
        if !self.files.has(self.check_id(&id)?, "mesh.glb")? {
            tracing::warn!(%id, "gallery row without its files; skipped");
            return Ok(None);
        }
        let metadata: MeshMetadata =
            serde_json::from_str(&meta).map_err(|source| GalleryError::Json { id: id.clone(), source })?;
        let cached = self.files.has(&id, CACHE_FILE)?;
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

    /// Where the index and the files live (for logs; never a password).
    pub fn describe(&self) -> String {
        format!("index: {}; files: {}", self.index.describe(), self.files.describe())
    }

    /// One entry.
    pub fn get(&self, id: &str) -> Result<MeshEntry> {
        self.check_id(id)?;
        let meta = self.index.metadata(id)?.ok_or_else(|| GalleryError::NotFound(id.to_string()))?;
        self.entry_from_row(id.to_string(), meta)?.ok_or_else(|| GalleryError::NotFound(id.to_string()))
    }

    /// Newest first, `limit` per page, starting after `cursor` (an id from a previous page).
    pub fn list(&self, limit: usize, cursor: Option<&str>) -> Result<MeshList> {
        let limit = limit.clamp(1, MAX_PAGE);
        if let Some(c) = cursor {
            self.check_id(c)?;
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

    /// Deletes a mesh (row first, then its files).
    pub fn delete(&self, id: &str) -> Result<()> {
        if !self.index.delete(self.check_id(id)?)? {
            return Err(GalleryError::NotFound(id.to_string()));
        }
        self.files.remove_mesh(id)
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
