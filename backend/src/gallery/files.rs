//! Where the gallery's files live: one set of files per mesh id, behind one interface with two back-ends — the
//! data folder ([`super::folder`], the default) and a NATS JetStream object store shared by a cluster
//! ([`super::nats`]). The gallery checks ids and file names before calling; a back-end only stores, reads and
//! removes bytes.

use super::Result;

/// One file of a new mesh: its name and bytes.
pub type NamedBytes<'a> = (&'a str, &'a [u8]);

/// Storage of the gallery's files. Every method is a short, blocking call.
pub trait MeshFiles: Send + Sync + std::fmt::Debug {
    /// Stores the files of a new mesh, all or nothing: on failure, what was written is removed.
    fn put_mesh(&self, id: &str, files: &[NamedBytes<'_>]) -> Result<()>;
    /// One file's bytes; `None` when the mesh or the file is absent.
    fn read(&self, id: &str, file: &str) -> Result<Option<Vec<u8>>>;
    /// Whether one file is present.
    fn has(&self, id: &str, file: &str) -> Result<bool>;
    /// Removes every file of a mesh (nothing when it has none).
    fn remove_mesh(&self, id: &str) -> Result<()>;
    /// Removes what interrupted writes left behind that can never become a mesh (temp folders).
    fn clean_leftovers(&self) -> Result<()>;
    /// The ids that have files, complete or not.
    fn mesh_ids(&self) -> Result<Vec<String>>;
    /// Whether files of `id` without an index row are left over from a crash, rather than a write that another
    /// process may be finishing right now.
    fn settled(&self, id: &str) -> bool;
    /// Where the files live, for logs (never a password).
    fn describe(&self) -> String;
}
