//! The lasting gallery: an SQLite index (`DIR/gallery.sqlite3`, WAL) over per-mesh folders
//! (`DIR/meshes/{id}/`).
//!
//! Crash safety: a mesh's files are written into `DIR/meshes/.tmp-{id}/` (each file itself via a temp name and a
//! rename), the folder is renamed into place, and only then is the index row inserted. A crash therefore leaves
//! at most a temp folder (removed at the next start) or a complete folder without its row (re-indexed from its
//! `metadata.json` at the next start, or removed when that is unreadable), never an index row pointing at
//! half-written files. A failed write removes what it wrote. A row whose folder vanished anyway (someone deleted it
//! by hand) is reported and skipped, not an error.
//!
//! Quick previews are kept for [`PREVIEW_TTL`] (their job has long ended by then) and dropped at every start.
//!
//! Ids are ULIDs (sortable by creation time); [`is_valid_id`] guards every path built from one, and file names
//! come from the fixed [`sf3d_shared::api::MESH_FILES`] list plus the cache file, so no request can reach outside
//! the data folder.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use sf3d_shared::api::MESH_FILES;
use sf3d_shared::{MeshEntry, MeshList, MeshMetadata, MeshUrls};

/// Name of the scene-code cache file stored beside a mesh (issue: regenerate from cache).
pub const CACHE_FILE: &str = "scene_codes.safetensors";
/// Index status of a final mesh (listed in the gallery).
const STATUS_FINAL: &str = "succeeded";
/// Index status of a quick preview (reachable by id, not listed).
const STATUS_PREVIEW: &str = "preview";
/// How long a preview entry outlives its creation.
pub const PREVIEW_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// Largest page of `GET /api/meshes`.
pub const MAX_PAGE: usize = 100;
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
    /// The database.
    #[error("gallery database: {0}")]
    Db(#[from] rusqlite::Error),
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

/// The gallery.
#[derive(Debug)]
pub struct Gallery {
    root: PathBuf,
    db: Mutex<Connection>,
}

impl Gallery {
    /// Opens (creating if needed) the gallery in `dir` and sweeps what an interrupted run left behind: temp
    /// folders, folders without an index row (re-indexed when complete) and previews.
    pub fn open(dir: &Path) -> Result<Self> {
        let meshes = dir.join("meshes");
        std::fs::create_dir_all(&meshes).map_err(|e| io(&meshes, e))?;
        let db = Connection::open(dir.join("gallery.sqlite3"))?;
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
        let g = Self { root: dir.to_path_buf(), db: Mutex::new(db) };
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
            if !is_valid_id(&name) || !path.is_dir() {
                continue;
            }
            let indexed: Option<i64> =
                self.conn()?.query_row("SELECT 1 FROM meshes WHERE id = ?1", [&name], |r| r.get(0)).optional()?;
            if indexed.is_some() {
                continue;
            }
            match read_orphan(&path, &name) {
                Some(m) if !m.preview => {
                    tracing::warn!(id = %name, "re-indexing a mesh folder whose index row was never written");
                    self.insert_row(&m)?;
                }
                _ => {
                    tracing::warn!(path = %path.display(), "removing an incomplete mesh folder without index row");
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
        Ok(())
    }

    /// Deletes preview entries older than `age`.
    fn prune_previews(&self, age: std::time::Duration) -> Result<()> {
        let ids: Vec<String> = {
            let conn = self.conn()?;
            let mut stmt = conn.prepare("SELECT id FROM meshes WHERE status = ?1")?;
            stmt.query_map([STATUS_PREVIEW], |r| r.get(0))?.collect::<std::result::Result<_, _>>()?
        };
        let now = std::time::SystemTime::now();
        for id in ids {
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

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.db.lock().map_err(|_| GalleryError::Poisoned)
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

    /// Stores a new mesh atomically (files first, then the index row); on failure nothing of it remains.
    /// Previews older than [`PREVIEW_TTL`] are dropped on the way.
    pub fn insert(&self, mesh: &NewMesh) -> Result<()> {
        if let Err(e) = self.prune_previews(PREVIEW_TTL) {
            tracing::warn!(error = %e, "pruning old previews failed");
        }
        let id = mesh.metadata.mesh_id.clone();
        let final_dir = self.mesh_dir(&id)?;
        let tmp = self.root.join("meshes").join(format!(".tmp-{id}"));
        let written = self.write_folder(mesh, &tmp, &final_dir);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = self.insert_row(&mesh.metadata) {
            let _ = std::fs::remove_dir_all(&final_dir);
            return Err(e);
        }
        Ok(())
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

    /// The index row of a mesh whose folder is in place.
    fn insert_row(&self, m: &MeshMetadata) -> Result<()> {
        let id = &m.mesh_id;
        let params =
            serde_json::to_string(&m.params).map_err(|source| GalleryError::Json { id: id.clone(), source })?;
        let meta = serde_json::to_string(m).map_err(|source| GalleryError::Json { id: id.clone(), source })?;
        self.conn()?.execute(
            "INSERT INTO meshes (id, created_at, parent_id, status, vertex_count, face_count, total_ms, params, metadata,
                                 job_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id,
                m.created_at,
                m.parent_id,
                if m.preview { STATUS_PREVIEW } else { STATUS_FINAL },
                m.vertex_count as i64,
                m.face_count as i64,
                m.total_ms,
                params,
                meta,
                m.job_id
            ],
        )?;
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
        let row: Option<(String, String)> = self
            .conn()?
            .query_row(
                "SELECT id, metadata FROM meshes WHERE job_id = ?1 AND status = ?2 ORDER BY id LIMIT 1",
                params![job_id, if preview { STATUS_PREVIEW } else { STATUS_FINAL }],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            Some((id, meta)) => self.entry_from_row(id, meta),
            None => Ok(None),
        }
    }

    /// The database file (the job journal keeps its table in the same file).
    pub fn db_path(&self) -> PathBuf {
        self.root.join("gallery.sqlite3")
    }

    /// The data folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// One entry.
    pub fn get(&self, id: &str) -> Result<MeshEntry> {
        self.mesh_dir(id)?;
        let row: Option<String> =
            self.conn()?.query_row("SELECT metadata FROM meshes WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        let meta = row.ok_or_else(|| GalleryError::NotFound(id.to_string()))?;
        self.entry_from_row(id.to_string(), meta)?.ok_or_else(|| GalleryError::NotFound(id.to_string()))
    }

    /// Newest first, `limit` per page, starting after `cursor` (an id from a previous page).
    pub fn list(&self, limit: usize, cursor: Option<&str>) -> Result<MeshList> {
        let limit = limit.clamp(1, MAX_PAGE);
        if let Some(c) = cursor {
            self.mesh_dir(c)?;
        }
        let rows: Vec<(String, String)> = {
            let conn = self.conn()?;
            let mut stmt = conn.prepare(
                "SELECT id, metadata FROM meshes WHERE status = 'succeeded' AND (?1 IS NULL OR id < ?1)
                 ORDER BY id DESC LIMIT ?2",
            )?;
            stmt.query_map(params![cursor, (limit + 1) as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<std::result::Result<_, _>>()?
        };
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
        let n = self.conn()?.execute("DELETE FROM meshes WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(GalleryError::NotFound(id.to_string()));
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        Ok(())
    }

    /// Number of listed (final) meshes.
    pub fn count(&self) -> Result<u64> {
        Ok(self
            .conn()?
            .query_row("SELECT COUNT(*) FROM meshes WHERE status = 'succeeded'", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Flushes the WAL into the database file (graceful shutdown).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn()?.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sf3d_shared::{DeviceInfo, DeviceKind, GenerateParams, ModelInfo};

    fn meta(id: &str) -> MeshMetadata {
        MeshMetadata {
            mesh_id: id.into(),
            parent_id: None,
            created_at: "2026-11-27T10:00:00Z".into(),
            source_name: None,
            params: GenerateParams::default(),
            model: ModelInfo { id: "m".into(), test_model: true, attribution: None, dtype: "f32".into() },
            device: DeviceInfo { kind: DeviceKind::Cpu, name: "cpu".into(), memory_total_bytes: None },
            worker: None,
            job_id: None,
            timings: vec![],
            total_ms: 1.0,
            vertex_count: 3,
            face_count: 1,
            roughness: 0.5,
            metallic: 0.5,
            sg_amplitudes: None,
            background_remover: None,
            glb_sha256: "x".into(),
            glb_bytes: 4,
            preview: false,
            generator: "t".into(),
            attribution: None,
            client: None,
        }
    }

    fn new_mesh(id: &str) -> NewMesh {
        NewMesh {
            metadata: meta(id),
            glb: b"glTF".to_vec(),
            input_png: vec![1],
            preprocessed_png: vec![2],
            cache: None,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sf3d-gallery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn folders_without_rows_are_reindexed_or_removed_and_previews_dropped() {
        let dir = temp_dir("orphans");
        let g = Gallery::open(&dir).unwrap();
        let (kept, partial, preview) = (new_id(), new_id(), new_id());
        let mut p = new_mesh(&preview);
        p.metadata.preview = true;
        g.insert(&p).unwrap();
        drop(g);
        // A crash between the folder rename and the INSERT, and one in the middle of writing the files.
        let g2 = Gallery::open(&temp_dir("orphans-src")).unwrap();
        g2.insert(&new_mesh(&kept)).unwrap();
        let src = g2.mesh_dir(&kept).unwrap();
        let dst = dir.join("meshes").join(&kept);
        std::fs::create_dir_all(&dst).unwrap();
        for f in MESH_FILES {
            std::fs::copy(src.join(f), dst.join(f)).unwrap();
        }
        std::fs::create_dir_all(dir.join("meshes").join(&partial)).unwrap();
        std::fs::write(dir.join("meshes").join(&partial).join("mesh.glb"), b"gl").unwrap();
        let g = Gallery::open(&dir).unwrap();
        assert_eq!(g.get(&kept).unwrap().id, kept);
        assert!(!dir.join("meshes").join(&partial).exists());
        assert!(matches!(g.get(&preview), Err(GalleryError::NotFound(_))));
        assert!(!g.mesh_dir(&preview).unwrap().exists());
        std::fs::remove_dir_all(dir).ok();
        std::fs::remove_dir_all(temp_dir("orphans-src")).ok();
    }

    #[test]
    fn a_failed_insert_leaves_nothing_behind() {
        let dir = temp_dir("failed-insert");
        let g = Gallery::open(&dir).unwrap();
        let id = new_id();
        g.insert(&new_mesh(&id)).unwrap();
        // The same id again: the files are written, the rename onto the existing folder fails.
        let other = dir.join("meshes").join(format!(".tmp-{id}"));
        assert!(g.insert(&new_mesh(&id)).is_err());
        assert!(!other.exists());
        assert_eq!(g.get(&id).unwrap().id, id);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn ids_are_checked() {
        assert!(is_valid_id(&ulid::Ulid::new().to_string()));
        for bad in [
            "../../etc/passwd",
            "",
            "01JDQ3ZK4W9X6YV2B8E5R7T1N",
            "01JDQ3ZK4W9X6YV2B8E5R7T1NU",
            "01jdq3zk4w9x6yv2b8e5r7t1nm",
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn insert_list_page_delete_and_survive_reopen() {
        let dir = temp_dir("crud");
        let ids: Vec<String> = (0..5).map(|_| new_id()).collect();
        {
            let g = Gallery::open(&dir).unwrap();
            for id in &ids {
                g.insert(&new_mesh(id)).unwrap();
            }
            let page = g.list(2, None).unwrap();
            assert_eq!(
                page.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
                vec![ids[4].clone(), ids[3].clone()]
            );
            let next = g.list(2, page.next_cursor.as_deref()).unwrap();
            assert_eq!(next.items[0].id, ids[2]);
            g.delete(&ids[0]).unwrap();
            assert!(matches!(g.delete(&ids[0]), Err(GalleryError::NotFound(_))));
            g.checkpoint().unwrap();
        }
        let g = Gallery::open(&dir).unwrap();
        assert_eq!(g.count().unwrap(), 4);
        assert_eq!(std::fs::read(g.file_path(&ids[1], "mesh.glb").unwrap()).unwrap(), b"glTF");
        assert!(g.file_path(&ids[1], "../gallery.sqlite3").is_err());
        assert!(g.file_path("..", "mesh.glb").is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn entries_are_found_by_their_job_even_when_reindexed_and_old_databases_gain_the_column() {
        let dir = temp_dir("byjob");
        {
            // A database from before the job column.
            std::fs::create_dir_all(&dir).unwrap();
            let db = Connection::open(dir.join("gallery.sqlite3")).unwrap();
            db.execute_batch(SCHEMA).unwrap();
        }
        let g = Gallery::open(&dir).unwrap();
        let (a, b) = (new_id(), new_id());
        let mut m = new_mesh(&a);
        m.metadata.job_id = Some("JOB1".into());
        g.insert(&m).unwrap();
        assert_eq!(g.find_by_job("JOB1", false).unwrap().unwrap().id, a);
        assert!(g.find_by_job("JOB1", true).unwrap().is_none());
        assert!(g.find_by_job("JOB2", false).unwrap().is_none());
        // A folder whose row was never written (a crash between the two) is re-indexed with its job.
        let mut m = new_mesh(&b);
        m.metadata.job_id = Some("JOB2".into());
        g.insert(&m).unwrap();
        g.conn().unwrap().execute("DELETE FROM meshes WHERE id = ?1", [&b]).unwrap();
        drop(g);
        let g = Gallery::open(&dir).unwrap();
        assert_eq!(g.find_by_job("JOB2", false).unwrap().unwrap().id, b);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn rows_whose_files_vanished_are_skipped_and_orphans_cleaned() {
        let dir = temp_dir("vanish");
        let g = Gallery::open(&dir).unwrap();
        let (a, b) = (new_id(), new_id());
        g.insert(&new_mesh(&a)).unwrap();
        g.insert(&new_mesh(&b)).unwrap();
        std::fs::remove_dir_all(g.mesh_dir(&a).unwrap()).unwrap();
        let list = g.list(10, None).unwrap();
        assert_eq!((list.items.len(), list.skipped), (1, 1));
        assert!(matches!(g.get(&a), Err(GalleryError::NotFound(_))));
        drop(g);
        std::fs::create_dir_all(dir.join("meshes/.tmp-XYZ")).unwrap();
        let _g = Gallery::open(&dir).unwrap();
        assert!(!dir.join("meshes/.tmp-XYZ").exists());
        std::fs::remove_dir_all(dir).ok();
    }
}
