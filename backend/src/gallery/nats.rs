//! Mesh files in a NATS JetStream object store — bucket `sf3d-CLUSTER-meshes`, one object `{id}/{file}` per file —
//! so every server and worker of a cluster reads and writes them without a shared disk. The scene-code cache
//! (16–20 MB at full size) is stored there too, so a tweak of any mesh can run on any worker.
//!
//! The client is asynchronous and the gallery is not: the client runs on a small runtime of its own, and each
//! call waits for its answer (bounded by [`CALL_TIMEOUT`]). The client reconnects by itself after the NATS server
//! restarted.
//!
//! Files without an index row are only treated as left over from a crash when their id (a ULID, so a time) is
//! older than [`SETTLE`]: a younger one may be a mesh another process is writing right now.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::object_store::{self, DeleteErrorKind, GetErrorKind, InfoErrorKind, ObjectStore};
use futures_util::StreamExt;
use sf3d_shared::api::MESH_FILES;
use tokio::io::AsyncReadExt;

use super::files::{MeshFiles, NamedBytes};
use super::{CACHE_FILE, GalleryError, Result, is_valid_id};
use crate::cluster::bridge::Bridge;
use crate::cluster::{ClusterName, redacted_url};

/// Longest wait for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a caller waits for one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Age after which files without an index row count as left over from a crash.
pub const SETTLE: Duration = Duration::from_secs(600);

/// The cluster's object store.
pub struct NatsFiles {
    bridge: Bridge,
    js: async_nats::jetstream::Context,
    store: ObjectStore,
    bucket: String,
    target: String,
}

impl std::fmt::Debug for NatsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.target)
    }
}

/// Runs `fut` on the client's runtime and waits for it (from any thread, inside another runtime or not).
fn run_on<T: Send + 'static>(
    bridge: &Bridge,
    target: &str,
    fut: impl Future<Output = std::result::Result<T, String>> + Send + 'static,
) -> Result<T> {
    match bridge.run(CALL_TIMEOUT, fut) {
        Ok(r) => r.map_err(|e| GalleryError::Nats(format!("{target}: {e}"))),
        Err(e) => Err(GalleryError::Unavailable(format!("{target}: {e}"))),
    }
}

fn object(id: &str, file: &str) -> String {
    format!("{id}/{file}")
}

impl NatsFiles {
    /// Connects to the NATS server at `url` (`nats://[user:password@]host:port`) and opens (creating if needed)
    /// the cluster's bucket.
    pub fn open(url: &str, cluster: &ClusterName) -> Result<Self> {
        let bridge = Bridge::new("sf3d-nats-files").map_err(GalleryError::Unavailable)?;
        let bucket = cluster.bucket("meshes");
        let target = format!("NATS {}, bucket {bucket}", redacted_url(url));
        let url = url.to_string();
        let name = bucket.clone();
        let (js, store) = run_on(&bridge, &target, async move {
            let client = crate::cluster::connect(&url, CONNECT_TIMEOUT).await?;
            let js = async_nats::jetstream::new(client);
            let config = object_store::Config {
                bucket: name.clone(),
                description: Some("SF3D Studio gallery files".into()),
                ..Default::default()
            };
            let store = match js.create_object_store(config).await {
                Ok(s) => s,
                // Created by another process with other settings: use it as it is.
                Err(create) => js.get_object_store(&name).await.map_err(|e| format!("bucket: {create}; {e}"))?,
            };
            Ok((js, store))
        })?;
        Ok(Self { bridge, js, store, bucket, target })
    }

    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = std::result::Result<T, String>> + Send + 'static,
    ) -> Result<T> {
        run_on(&self.bridge, &self.target, fut)
    }

    /// Removes the cluster's bucket with every file in it (a deployment taken down; the tests' clean-up).
    pub fn drop_bucket(url: &str, cluster: &ClusterName) -> Result<()> {
        let files = Self::open(url, cluster)?;
        let (js, bucket) = (files.js.clone(), files.bucket.clone());
        files.run(async move { js.delete_object_store(&bucket).await.map_err(|e| e.to_string()) })
    }
}

impl MeshFiles for NatsFiles {
    fn put_mesh(&self, id: &str, files: &[NamedBytes<'_>]) -> Result<()> {
        let store = self.store.clone();
        let owned: Vec<(String, Vec<u8>)> = files.iter().map(|(n, b)| (object(id, n), b.to_vec())).collect();
        self.run(async move {
            let mut written = Vec::new();
            for (name, bytes) in &owned {
                if let Err(e) = store.put(name.as_str(), &mut bytes.as_slice()).await {
                    for w in written {
                        let _ = store.delete(w).await;
                    }
                    return Err(format!("writing {name}: {e}"));
                }
                written.push(name.as_str());
            }
            Ok(())
        })
    }

    fn read(&self, id: &str, file: &str) -> Result<Option<Vec<u8>>> {
        let store = self.store.clone();
        let name = object(id, file);
        self.run(async move {
            match store.get(&name).await {
                Ok(mut obj) => {
                    let mut buf = Vec::new();
                    obj.read_to_end(&mut buf).await.map_err(|e| format!("reading {name}: {e}"))?;
                    Ok(Some(buf))
                }
                Err(e) if e.kind() == GetErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("reading {name}: {e}")),
            }
        })
    }

    fn has(&self, id: &str, file: &str) -> Result<bool> {
        let store = self.store.clone();
        let name = object(id, file);
        self.run(async move {
            match store.info(&name).await {
                Ok(info) => Ok(!info.deleted),
                Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(false),
                Err(e) => Err(format!("looking up {name}: {e}")),
            }
        })
    }

    fn remove_mesh(&self, id: &str) -> Result<()> {
        let store = self.store.clone();
        let names: Vec<String> = MESH_FILES.iter().chain(&[CACHE_FILE]).map(|f| object(id, f)).collect();
        self.run(async move {
            for name in names {
                match store.delete(&name).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == DeleteErrorKind::NotFound => {}
                    Err(e) => return Err(format!("removing {name}: {e}")),
                }
            }
            Ok(())
        })
    }

    fn clean_leftovers(&self) -> Result<()> {
        // An interrupted put leaves no object under a name: nothing to clean.
        Ok(())
    }

    fn mesh_ids(&self) -> Result<Vec<String>> {
        let store = self.store.clone();
        self.run(async move {
            let mut list = store.list().await.map_err(|e| format!("listing: {e}"))?;
            let mut ids = BTreeSet::new();
            while let Some(info) = list.next().await {
                let info = info.map_err(|e| format!("listing: {e}"))?;
                if let Some((id, _)) = info.name.split_once('/')
                    && is_valid_id(id)
                {
                    ids.insert(id.to_string());
                }
            }
            Ok(ids.into_iter().collect())
        })
    }

    fn settled(&self, id: &str) -> bool {
        let Ok(ulid) = ulid::Ulid::from_string(id) else { return false };
        std::time::SystemTime::now().duration_since(ulid.datetime()).is_ok_and(|age| age >= SETTLE)
    }

    fn describe(&self) -> String {
        self.target.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_services::OwnNatsServer;

    #[test]
    fn the_files_come_back_by_themselves_after_the_nats_server_restarted() {
        let Some(mut server) = OwnNatsServer::start("files-restart") else { return };
        let cluster = ClusterName::default();
        let files = NatsFiles::open(&server.url(), &cluster).unwrap();
        let (a, b) = (crate::gallery::new_id(), crate::gallery::new_id());
        files.put_mesh(&a, &[("mesh.glb", b"glTF")]).unwrap();
        server.kill();
        server.restart();
        // The client reconnects on its own (with backoff); no call from us is needed for that.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let back = loop {
            match files.read(&a, "mesh.glb") {
                Ok(Some(bytes)) => break bytes,
                other => {
                    assert!(std::time::Instant::now() < deadline, "still failing after the restart: {other:?}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        assert_eq!(back, b"glTF");
        files.put_mesh(&b, &[("mesh.glb", b"more")]).unwrap();
        assert_eq!(files.mesh_ids().unwrap(), [a, b]);
    }

    #[test]
    fn an_absent_server_fails_clearly_without_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let err = NatsFiles::open(&format!("nats://sf3d:hunter2secret@127.0.0.1:{port}"), &ClusterName::default())
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < CALL_TIMEOUT, "{err}");
        assert!(err.contains("cannot connect") && err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
