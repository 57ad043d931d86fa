//! The gallery's tests, run on every storage: SQLite index with files in the folder always; PostgreSQL index with
//! files in the folder, and with files in NATS, when the test services answer ([`crate::test_services`]). Each
//! test gets its own cluster, so its own schema and bucket, removed at the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sf3d_shared::{DeviceInfo, DeviceKind, GenerateParams, MeshMetadata, ModelInfo};

use super::{Gallery, GalleryConfig, GalleryError, NewMesh, Stored, is_valid_id, new_id};
use crate::test_services::TestCluster;

pub(crate) fn meta(id: &str) -> MeshMetadata {
    MeshMetadata {
        mesh_id: id.into(),
        parent_id: None,
        created_at: "2026-11-27T10:00:00Z".into(),
        source_name: None,
        params: GenerateParams::default(),
        model: ModelInfo { id: "m".into(), test_model: true, attribution: None, dtype: "f32".into() },
        device: DeviceInfo { kind: DeviceKind::Cpu, name: "cpu".into(), memory_total_bytes: None },
        worker: None,
        node: None,
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

pub(crate) fn new_mesh(id: &str) -> NewMesh {
    NewMesh { metadata: meta(id), glb: b"glTF".to_vec(), input_png: vec![1], preprocessed_png: vec![2], cache: None }
}

pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sf3d-gallery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `body` with a fresh folder on every storage.
fn each_storage(test: &str, body: impl Fn(&GalleryConfig, &Path)) {
    let dir = temp_dir(&format!("{test}-sqlite"));
    eprintln!("{test}: SQLite index, files in the folder");
    body(&GalleryConfig::default(), &dir);
    std::fs::remove_dir_all(dir).ok();
    for shared in [false, true] {
        let name = format!("{test}-{}", if shared { "nats" } else { "pg" });
        let cluster = if shared { TestCluster::shared_for_test(&name) } else { TestCluster::for_test(&name) };
        let Some(cluster) = cluster else { continue };
        let dir = temp_dir(&name);
        let config = cluster.gallery();
        eprintln!("{test}: {config:?}, cluster {}", cluster.cluster);
        body(&config, &dir);
        std::fs::remove_dir_all(dir).ok();
    }
}

/// A new id whose time lies `age` in the past (files of a crash that long ago).
fn id_from(age: Duration) -> String {
    let t = SystemTime::now() - age;
    ulid::Ulid::from_datetime(t).to_string()
}

/// Writes the files of a mesh (all that [`Gallery::insert`] writes for `m`, or only `only`) without its row, as a
/// crash between the two leaves them.
fn put(g: &Gallery, m: &NewMesh, only: Option<&[u8]>) {
    let json = serde_json::to_vec(&m.metadata).unwrap();
    let files = match only {
        None => m.files(&json),
        Some(glb) => vec![("mesh.glb", glb)],
    };
    g.files.put_mesh(&m.metadata.mesh_id, &files).unwrap();
}

#[test]
fn files_without_rows_are_reindexed_or_removed_and_previews_dropped() {
    each_storage("orphans", |config, dir| {
        let g = Gallery::open_with(dir, config).unwrap();
        let preview = new_id();
        let mut p = new_mesh(&preview);
        p.metadata.preview = true;
        g.insert(&p).unwrap();
        // A crash between the files and the row, one in the middle of writing the files, and a write another
        // server is doing right now (a young id): only the settled ones are swept.
        let long_ago = Duration::from_secs(3600);
        let (kept, partial, young) = (id_from(long_ago), id_from(long_ago), new_id());
        put(&g, &new_mesh(&kept), None);
        put(&g, &new_mesh(&partial), Some(b"gl"));
        put(&g, &new_mesh(&young), Some(b"gl"));
        drop(g);
        let g = Gallery::open_with(dir, config).unwrap();
        assert_eq!(g.get(&kept).unwrap().id, kept);
        assert_eq!(g.read_file(&kept, "mesh.glb").unwrap(), b"glTF");
        assert!(!g.files.has(&partial, "mesh.glb").unwrap());
        assert_eq!(g.files.has(&young, "mesh.glb").unwrap(), !g.files.settled(&young));
        if config.index.is_shared() {
            // Another server's job may still serve its fresh preview.
            assert_eq!(g.get(&preview).unwrap().id, preview);
        } else {
            assert!(matches!(g.get(&preview), Err(GalleryError::NotFound(_))));
            assert!(!g.files.has(&preview, "mesh.glb").unwrap());
        }
        g.files.remove_mesh(&young).unwrap();
    });
}

#[test]
fn a_failed_insert_leaves_nothing_behind_and_never_touches_an_existing_entry() {
    each_storage("failed-insert", |config, dir| {
        let g = Gallery::open_with(dir, config).unwrap();
        let id = new_id();
        g.insert(&new_mesh(&id)).unwrap();
        let mut again = new_mesh(&id);
        again.glb = b"other".to_vec();
        assert!(matches!(g.insert(&again), Err(GalleryError::Exists(_))));
        assert_eq!(g.read_file(&id, "mesh.glb").unwrap(), b"glTF");
        // An id that is no ULID is refused before anything is written.
        assert!(matches!(g.insert(&new_mesh("../x")), Err(GalleryError::InvalidId(_))));
        assert_eq!(g.list(10, None).unwrap().items.len(), 1);
    });
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
    each_storage("crud", |config, dir| {
        let ids: Vec<String> = (0..5).map(|_| new_id()).collect();
        {
            let g = Gallery::open_with(dir, config).unwrap();
            for id in &ids {
                assert!(matches!(g.insert(&new_mesh(id)).unwrap(), Stored::New));
            }
            let page = g.list(2, None).unwrap();
            assert_eq!(
                page.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
                vec![ids[4].clone(), ids[3].clone()]
            );
            let next = g.list(2, page.next_cursor.as_deref()).unwrap();
            assert_eq!(next.items[0].id, ids[2]);
            let last = g.list(2, next.next_cursor.as_deref()).unwrap();
            assert_eq!((last.items.len(), last.next_cursor), (1, None));
            g.delete(&ids[0]).unwrap();
            assert!(matches!(g.delete(&ids[0]), Err(GalleryError::NotFound(_))));
            assert!(!g.files.has(&ids[0], "mesh.glb").unwrap());
            g.checkpoint().unwrap();
        }
        let g = Gallery::open_with(dir, config).unwrap();
        assert_eq!(g.count().unwrap(), 4);
        assert_eq!(g.read_file(&ids[1], "mesh.glb").unwrap(), b"glTF");
        assert_eq!(g.read_file(&ids[1], "input.png").unwrap(), [1]);
        assert!(matches!(g.read_file(&ids[1], "../gallery.sqlite3"), Err(GalleryError::UnknownFile(_))));
        assert!(matches!(g.read_file("..", "mesh.glb"), Err(GalleryError::InvalidId(_))));
        assert!(matches!(g.read_file(&ids[0], "mesh.glb"), Err(GalleryError::NotFound(_))));
        assert!(matches!(g.list(10, Some("../x")), Err(GalleryError::InvalidId(_))));
    });
}

#[test]
fn entries_are_found_by_their_job_even_when_reindexed() {
    each_storage("byjob", |config, dir| {
        let g = Gallery::open_with(dir, config).unwrap();
        let a = new_id();
        let mut m = new_mesh(&a);
        m.metadata.job_id = Some("JOB1".into());
        m.cache = Some(b"codes".to_vec());
        g.insert(&m).unwrap();
        let found = g.find_by_job("JOB1", false).unwrap().unwrap();
        assert_eq!((found.id.as_str(), found.cached), (a.as_str(), true));
        assert!(g.find_by_job("JOB1", true).unwrap().is_none());
        assert!(g.find_by_job("JOB2", false).unwrap().is_none());
        // Files whose row was never written (a crash between the two, an hour ago) are re-indexed with their job.
        let b = id_from(Duration::from_secs(3600));
        let mut m = new_mesh(&b);
        m.metadata.job_id = Some("JOB2".into());
        put(&g, &m, None);
        drop(g);
        let g = Gallery::open_with(dir, config).unwrap();
        assert_eq!(g.find_by_job("JOB2", false).unwrap().unwrap().id, b);
    });
}

#[test]
fn a_job_stores_one_final_entry_and_one_preview() {
    each_storage("one-per-job", |config, dir| {
        let g = Gallery::open_with(dir, config).unwrap();
        let with_job = |id: &str, preview: bool| {
            let mut m = new_mesh(id);
            m.metadata.job_id = Some("JOBX".into());
            m.metadata.preview = preview;
            m
        };
        let (first, again, preview) = (new_id(), new_id(), new_id());
        assert!(matches!(g.insert(&with_job(&first, false)).unwrap(), Stored::New));
        // The job ran a second time (redelivered): its second result is dropped, the first one answers.
        match g.insert(&with_job(&again, false)).unwrap() {
            Stored::Existing(e) => assert_eq!(e.id, first),
            Stored::New => panic!("a job stored two entries"),
        }
        assert!(!g.files.has(&again, "mesh.glb").unwrap());
        assert!(matches!(g.get(&again), Err(GalleryError::NotFound(_))));
        assert!(matches!(g.insert(&with_job(&preview, true)).unwrap(), Stored::New));
        // Entries without a job are never merged.
        assert!(matches!(g.insert(&new_mesh(&new_id())).unwrap(), Stored::New));
        assert!(matches!(g.insert(&new_mesh(&new_id())).unwrap(), Stored::New));
        assert_eq!(g.count().unwrap(), 3);
    });
}

#[test]
fn rows_whose_files_vanished_are_skipped() {
    each_storage("vanish", |config, dir| {
        let g = Gallery::open_with(dir, config).unwrap();
        let (a, b) = (new_id(), new_id());
        g.insert(&new_mesh(&a)).unwrap();
        g.insert(&new_mesh(&b)).unwrap();
        g.files.remove_mesh(&a).unwrap();
        let list = g.list(10, None).unwrap();
        assert_eq!((list.items.len(), list.skipped), (1, 1));
        assert!(matches!(g.get(&a), Err(GalleryError::NotFound(_))));
    });
}

#[test]
fn files_in_nats_need_a_shared_index() {
    let config = GalleryConfig {
        files: super::FilesConfig::Nats { url: "nats://127.0.0.1:1".into(), cluster: Default::default() },
        ..Default::default()
    };
    let dir = temp_dir("nats-needs-db");
    let err = Gallery::open_with(&dir, &config).unwrap_err().to_string();
    assert!(err.contains("--db"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
