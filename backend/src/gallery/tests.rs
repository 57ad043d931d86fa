//! The gallery's tests, run on every index back-end: SQLite always, PostgreSQL when the test database answers
//! ([`crate::test_services`]). Each test gets its own cluster, so its own schema, dropped at the end.

use std::path::{Path, PathBuf};

use sf3d_shared::api::MESH_FILES;
use sf3d_shared::{DeviceInfo, DeviceKind, GenerateParams, MeshMetadata, ModelInfo};

use super::{Gallery, GalleryError, IndexConfig, NewMesh, Stored, is_valid_id, new_id};
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

/// Runs `body` with a fresh folder on every back-end.
fn each_backend(test: &str, body: impl Fn(&IndexConfig, &Path)) {
    let dir = temp_dir(&format!("{test}-sqlite"));
    body(&IndexConfig::Sqlite, &dir);
    std::fs::remove_dir_all(dir).ok();
    if let Some(cluster) = TestCluster::for_test(test) {
        let dir = temp_dir(&format!("{test}-postgres"));
        eprintln!("{test}: on PostgreSQL, cluster {}", cluster.cluster);
        body(&cluster.index(), &dir);
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn folders_without_rows_are_reindexed_or_removed_and_previews_dropped() {
    each_backend("orphans", |config, dir| {
        let g = Gallery::open_with(dir, config).unwrap();
        let (kept, partial, preview) = (new_id(), new_id(), new_id());
        let mut p = new_mesh(&preview);
        p.metadata.preview = true;
        g.insert(&p).unwrap();
        drop(g);
        // A crash between the folder rename and the INSERT, and one in the middle of writing the files.
        let src_dir = temp_dir("orphans-src");
        let src = Gallery::open(&src_dir).unwrap();
        src.insert(&new_mesh(&kept)).unwrap();
        let from = src.mesh_dir(&kept).unwrap();
        let to = dir.join("meshes").join(&kept);
        std::fs::create_dir_all(&to).unwrap();
        for f in MESH_FILES {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
        std::fs::create_dir_all(dir.join("meshes").join(&partial)).unwrap();
        std::fs::write(dir.join("meshes").join(&partial).join("mesh.glb"), b"gl").unwrap();
        let g = Gallery::open_with(dir, config).unwrap();
        assert_eq!(g.get(&kept).unwrap().id, kept);
        assert!(!dir.join("meshes").join(&partial).exists());
        assert!(matches!(g.get(&preview), Err(GalleryError::NotFound(_))));
        assert!(!g.mesh_dir(&preview).unwrap().exists());
        std::fs::remove_dir_all(src_dir).ok();
    });
}

#[test]
fn a_failed_insert_leaves_nothing_behind() {
    each_backend("failed-insert", |config, dir| {
        let g = Gallery::open_with(dir, config).unwrap();
        let id = new_id();
        g.insert(&new_mesh(&id)).unwrap();
        // The same id again: the files are written, the rename onto the existing folder fails.
        let other = dir.join("meshes").join(format!(".tmp-{id}"));
        assert!(g.insert(&new_mesh(&id)).is_err());
        assert!(!other.exists());
        assert_eq!(g.get(&id).unwrap().id, id);
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
    each_backend("crud", |config, dir| {
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
            g.checkpoint().unwrap();
        }
        let g = Gallery::open_with(dir, config).unwrap();
        assert_eq!(g.count().unwrap(), 4);
        assert_eq!(std::fs::read(g.file_path(&ids[1], "mesh.glb").unwrap()).unwrap(), b"glTF");
        assert!(g.file_path(&ids[1], "../gallery.sqlite3").is_err());
        assert!(g.file_path("..", "mesh.glb").is_err());
        assert!(matches!(g.list(10, Some("../x")), Err(GalleryError::InvalidId(_))));
    });
}

#[test]
fn entries_are_found_by_their_job_even_when_reindexed() {
    each_backend("byjob", |config, dir| {
        let g = Gallery::open_with(dir, config).unwrap();
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
        assert!(g.index.delete(&b).unwrap());
        drop(g);
        let g = Gallery::open_with(dir, config).unwrap();
        assert_eq!(g.find_by_job("JOB2", false).unwrap().unwrap().id, b);
    });
}

#[test]
fn a_job_stores_one_final_entry_and_one_preview() {
    each_backend("one-per-job", |config, dir| {
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
        assert!(!g.mesh_dir(&again).unwrap().exists());
        assert!(matches!(g.get(&again), Err(GalleryError::NotFound(_))));
        assert!(matches!(g.insert(&with_job(&preview, true)).unwrap(), Stored::New));
        // Entries without a job are never merged.
        assert!(matches!(g.insert(&new_mesh(&new_id())).unwrap(), Stored::New));
        assert!(matches!(g.insert(&new_mesh(&new_id())).unwrap(), Stored::New));
        assert_eq!(g.count().unwrap(), 3);
    });
}

#[test]
fn rows_whose_files_vanished_are_skipped_and_orphans_cleaned() {
    each_backend("vanish", |config, dir| {
        let g = Gallery::open_with(dir, config).unwrap();
        let (a, b) = (new_id(), new_id());
        g.insert(&new_mesh(&a)).unwrap();
        g.insert(&new_mesh(&b)).unwrap();
        std::fs::remove_dir_all(g.mesh_dir(&a).unwrap()).unwrap();
        let list = g.list(10, None).unwrap();
        assert_eq!((list.items.len(), list.skipped), (1, 1));
        assert!(matches!(g.get(&a), Err(GalleryError::NotFound(_))));
        drop(g);
        std::fs::create_dir_all(dir.join("meshes/.tmp-XYZ")).unwrap();
        let _g = Gallery::open_with(dir, config).unwrap();
        assert!(!dir.join("meshes/.tmp-XYZ").exists());
    });
}
