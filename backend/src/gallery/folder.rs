//! Mesh files in the data folder, `DIR/meshes/{id}/`. A mesh is written into `DIR/meshes/.tmp-{id}/` (each file
//! via a temp name and a rename) and the folder renamed into place, so a folder under an id is always complete.

use std::path::{Path, PathBuf};

use super::files::{MeshFiles, NamedBytes};
use super::{Result, io, is_valid_id, sync_dir, write_atomic};

/// Prefix of the folder a mesh is written into before it is renamed into place.
const TMP_PREFIX: &str = ".tmp-";

/// The data folder's files.
#[derive(Debug)]
pub struct FolderFiles {
    meshes: PathBuf,
}

impl FolderFiles {
    /// Uses (creating it if needed) `DIR/meshes`.
    pub fn open(dir: &Path) -> Result<Self> {
        let meshes = dir.join("meshes");
        std::fs::create_dir_all(&meshes).map_err(|e| io(&meshes, e))?;
        Ok(Self { meshes })
    }

    fn write(&self, tmp: &Path, final_dir: &Path, files: &[NamedBytes<'_>]) -> Result<()> {
        std::fs::create_dir_all(tmp).map_err(|e| io(tmp, e))?;
        for (name, bytes) in files {
            write_atomic(&tmp.join(name), bytes)?;
        }
        sync_dir(tmp);
        std::fs::rename(tmp, final_dir).map_err(|e| io(final_dir, e))?;
        sync_dir(&self.meshes);
        Ok(())
    }
}

impl MeshFiles for FolderFiles {
    fn put_mesh(&self, id: &str, files: &[NamedBytes<'_>]) -> Result<()> {
        let tmp = self.meshes.join(format!("{TMP_PREFIX}{id}"));
        let written = self.write(&tmp, &self.meshes.join(id), files);
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        written
    }

    fn read(&self, id: &str, file: &str) -> Result<Option<Vec<u8>>> {
        let path = self.meshes.join(id).join(file);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn has(&self, id: &str, file: &str) -> Result<bool> {
        Ok(self.meshes.join(id).join(file).is_file())
    }

    fn remove_mesh(&self, id: &str) -> Result<()> {
        let dir = self.meshes.join(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir, e)),
            _ => Ok(()),
        }
    }

    fn clean_leftovers(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.meshes).map_err(|e| io(&self.meshes, e))?;
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                tracing::warn!(path = %e.path().display(), "removing the leftovers of an interrupted write");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    }

    fn mesh_ids(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.meshes).map_err(|e| io(&self.meshes, e))?;
        Ok(entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| is_valid_id(name))
            .collect())
    }

    fn settled(&self, _id: &str) -> bool {
        // Only this process writes its data folder, and it sweeps before it writes.
        true
    }

    fn describe(&self) -> String {
        format!("folder {}", self.meshes.display())
    }
}

#[cfg(test)]
mod tests {
    use crate::gallery::Gallery;
    use crate::gallery::tests::temp_dir;

    #[test]
    fn interrupted_writes_leave_nothing_after_a_restart() {
        let dir = temp_dir("folder-leftovers");
        drop(Gallery::open(&dir).unwrap());
        std::fs::create_dir_all(dir.join("meshes/.tmp-XYZ")).unwrap();
        std::fs::write(dir.join("meshes/.tmp-XYZ/mesh.glb"), b"gl").unwrap();
        let _g = Gallery::open(&dir).unwrap();
        assert!(!dir.join("meshes/.tmp-XYZ").exists());
        std::fs::remove_dir_all(dir).ok();
    }
}
