//! REST against a real server: generation (ours and the seed's aliases), health, gallery, limits, auth,
//! persistence across a restart, and regeneration from cached scene codes.

use sf3d_shared::api::{HEADER_MESH_ID, HEADER_SERVER_TIMING, HEADER_STAGE_TIMINGS};
use sf3d_shared::{ErrorBody, ErrorCode, HealthResponse, MeshEntry, MeshList, SeedHealth, StageState, StageTiming};

use sf3d_backend::gallery::GalleryConfig;
use sf3d_backend::test_services::TestCluster;

use crate::support::{Options, TestServer, check_glb, get, temp_dir, test_png};

fn form(image: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(image).file_name("shirt.png"))
}

async fn post_form(base: &str, path: &str, form: reqwest::multipart::Form, token: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(format!("{base}{path}")).multipart(form);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

async fn error_of(r: reqwest::Response) -> (u16, ErrorBody) {
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn rest_generate_returns_the_glb_with_id_and_timings() {
    let srv = TestServer::start(Options::default()).await;
    let r = post_form(&srv.base, "/api/generate", form(test_png()).text("texture_resolution", "512"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "model/gltf-binary");
    let id = r.headers()[HEADER_MESH_ID].to_str().unwrap().to_string();
    let timings: Vec<StageTiming> = serde_json::from_str(r.headers()[HEADER_STAGE_TIMINGS].to_str().unwrap()).unwrap();
    assert_eq!(timings.len(), sf3d_shared::Stage::ALL.len());
    assert!(r.headers()[HEADER_SERVER_TIMING].to_str().unwrap().contains("backbone;dur="));
    let bytes = r.bytes().await.unwrap();
    check_glb("rest_generate", &bytes);
    let entry: MeshEntry = get(&srv.base, &format!("/api/meshes/{id}"), None).await.json().await.unwrap();
    assert_eq!(entry.metadata.params.texture_resolution, 512);
    assert_eq!(entry.metadata.source_name.as_deref(), Some("shirt.png"));
    assert!(entry.cached);
    srv.stop().await;
}

/// The seed's planned Python client: `POST /generate` (field `image`, `texture_resolution`, `remesh_option`)
/// and `GET /health`.
#[tokio::test]
async fn seed_aliases_work_unchanged() {
    let srv = TestServer::start(Options::default()).await;
    let h: SeedHealth = get(&srv.base, "/health", None).await.json().await.unwrap();
    assert_eq!((h.status.as_str(), h.gpu.as_str(), h.model_loaded), ("ok", "cpu", true));
    let raw: serde_json::Value = get(&srv.base, "/health", None).await.json().await.unwrap();
    for k in ["status", "gpu", "model_loaded"] {
        assert!(raw.get(k).is_some(), "{k}");
    }
    let f = form(test_png()).text("texture_resolution", "512").text("remesh_option", "none");
    let r = post_form(&srv.base, "/generate", f, None).await;
    assert_eq!(r.status(), 200);
    check_glb("seed_generate", &r.bytes().await.unwrap());
    let health: HealthResponse = get(&srv.base, "/api/health", None).await.json().await.unwrap();
    assert_eq!(health.status, "ok");
    assert!(health.model.test_model);
    srv.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let srv = TestServer::start(Options { max_upload_bytes: 100_000, ..Default::default() }).await;
    // Invalid parameter → 422 naming the field.
    let (s, e) =
        error_of(post_form(&srv.base, "/api/generate", form(test_png()).text("foreground_ratio", "0.3"), None).await)
            .await;
    assert_eq!((s, e.error.code, e.error.field.as_deref()), (422, ErrorCode::InvalidParams, Some("foreground_ratio")));
    let (s, e) =
        error_of(post_form(&srv.base, "/api/generate", form(test_png()).text("colour", "red"), None).await).await;
    assert_eq!((s, e.error.field.as_deref()), (422, Some("colour")));
    // Corrupt image → 415.
    let (s, e) = error_of(post_form(&srv.base, "/api/generate", form(b"GIF89a nope".to_vec()), None).await).await;
    assert_eq!((s, e.error.code), (415, ErrorCode::UnsupportedImage));
    // Oversize upload → 413, refused while streaming.
    let (s, e) = error_of(post_form(&srv.base, "/api/generate", form(vec![0u8; 300_000]), None).await).await;
    assert_eq!((s, e.error.code), (413, ErrorCode::PayloadTooLarge));
    // No image field → 400.
    let f = reqwest::multipart::Form::new().text("texture_resolution", "512");
    let (s, e) = error_of(post_form(&srv.base, "/api/generate", f, None).await).await;
    assert_eq!((s, e.error.code), (400, ErrorCode::BadRequest));
    // Not multipart at all → 400.
    let r = reqwest::Client::new().post(format!("{}/api/generate", srv.base)).body("x").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // The server is still fine.
    assert_eq!(get(&srv.base, "/api/health", None).await.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn gallery_paths_cannot_escape_and_unknown_ids_are_404() {
    let srv = TestServer::start(Options::default()).await;
    for path in [
        "/api/meshes/..%2F..%2Fetc%2Fpasswd",
        "/api/meshes/../gallery.sqlite3",
        "/api/meshes/01JDQ3ZK4W9X6YV2B8E5R7T1NM",
        "/api/meshes/01JDQ3ZK4W9X6YV2B8E5R7T1NM/mesh.glb",
        "/api/meshes/01JDQ3ZK4W9X6YV2B8E5R7T1NM/..%2F..%2Fgallery.sqlite3",
        "/api/meshes/%2E%2E/mesh.glb",
    ] {
        let r = get(&srv.base, path, None).await;
        assert!(r.status() == 404 || r.status() == 400, "{path}: {}", r.status());
        let body = r.text().await.unwrap();
        assert!(!body.contains("SQLite"), "{path} leaked the database");
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/meshes/01JDQ3ZK4W9X6YV2B8E5R7T1NM/regenerate", srv.base))
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(r).await;
    assert_eq!((s, e.error.code), (404, ErrorCode::NotFound));
    srv.stop().await;
}

#[tokio::test]
async fn api_key_is_required_when_set() {
    let srv = TestServer::start(Options { api_key: Some("k3y-0123456789abcdef".into()), ..Default::default() }).await;
    let (s, e) = error_of(get(&srv.base, "/api/meshes", None).await).await;
    assert_eq!((s, e.error.code), (401, ErrorCode::Unauthorized));
    assert_eq!(get(&srv.base, "/api/meshes", Some("wrong")).await.status(), 401);
    assert_eq!(get(&srv.base, "/api/meshes", Some("k3y-0123456789abcdef")).await.status(), 200);
    // `?token=` works where browsers cannot send headers (images, downloads); a wrong one does not.
    assert_eq!(get(&srv.base, "/api/meshes?limit=1&token=k3y-0123456789abcdef", None).await.status(), 200);
    assert_eq!(get(&srv.base, "/api/meshes?token=k3y-0123456789abcdef%21", None).await.status(), 401);
    assert_eq!(post_form(&srv.base, "/generate", form(test_png()), None).await.status(), 401);
    assert_eq!(
        post_form(
            &srv.base,
            "/api/generate",
            form(test_png()).text("texture_resolution", "512"),
            Some("k3y-0123456789abcdef")
        )
        .await
        .status(),
        200
    );
    // Health stays readable (it only says that auth is required).
    let h: HealthResponse = get(&srv.base, "/api/health", None).await.json().await.unwrap();
    assert!(h.auth_required);
    srv.stop().await;
}

/// Meshes survive a restart; a row whose files vanished is skipped, not a 500; delete removes files and row —
/// with the index in SQLite (the default) and in PostgreSQL (`--db`).
#[tokio::test]
async fn gallery_survives_restart_and_deletes() {
    gallery_survives_restart_and_deletes_on(GalleryConfig::default()).await;
}

#[tokio::test]
async fn gallery_on_postgres_survives_restart_and_deletes() {
    let Some(cluster) = TestCluster::for_test("http-gallery") else { return };
    gallery_survives_restart_and_deletes_on(GalleryConfig { index: cluster.index(), ..Default::default() }).await;
}

async fn gallery_survives_restart_and_deletes_on(gallery: GalleryConfig) {
    let data = temp_dir("restart");
    let opts = Options { data: Some(data.clone()), gallery, ..Default::default() };
    let srv = TestServer::start(opts.clone()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = post_form(&srv.base, "/api/generate", form(test_png()).text("texture_resolution", "512"), None).await;
        assert_eq!(r.status(), 200);
        ids.push(r.headers()[HEADER_MESH_ID].to_str().unwrap().to_string());
    }
    srv.stop().await;

    let srv = TestServer::start(opts).await;
    let list: MeshList = get(&srv.base, "/api/meshes?limit=2", None).await.json().await.unwrap();
    assert_eq!(list.items.len(), 2);
    assert_eq!(list.items[0].id, ids[2], "newest first");
    let next = list.next_cursor.clone().unwrap();
    let page2: MeshList =
        get(&srv.base, &format!("/api/meshes?limit=2&cursor={next}"), None).await.json().await.unwrap();
    assert_eq!(page2.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), vec![ids[0].clone()]);
    assert!(page2.next_cursor.is_none());
    let glb = get(&srv.base, &format!("/api/meshes/{}/mesh.glb", ids[1]), None).await;
    assert_eq!(glb.status(), 200);
    check_glb("after_restart", &glb.bytes().await.unwrap());

    std::fs::remove_dir_all(data.join("meshes").join(&ids[0])).unwrap();
    let list: MeshList = get(&srv.base, "/api/meshes", None).await.json().await.unwrap();
    assert_eq!((list.items.len(), list.skipped), (2, 1));
    assert_eq!(get(&srv.base, &format!("/api/meshes/{}", ids[0]), None).await.status(), 404);

    let r = reqwest::Client::new().delete(format!("{}/api/meshes/{}", srv.base, ids[1])).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&srv.base, &format!("/api/meshes/{}", ids[1]), None).await.status(), 404);
    assert!(!data.join("meshes").join(&ids[1]).exists());
    srv.stop().await;
}

/// `POST /api/meshes/{id}/regenerate` with new mesh/texture parameters reuses the cached scene codes (the encode
/// stages are `cached`) and creates a child entry; a changed foreground ratio runs the network again; a damaged
/// cache file is recomputed after a restart.
#[tokio::test]
async fn regenerate_uses_cached_scene_codes() {
    let data = temp_dir("regen");
    let srv = TestServer::start(Options { data: Some(data.clone()), ..Default::default() }).await;
    let r = post_form(&srv.base, "/api/generate", form(test_png()).text("texture_resolution", "512"), None).await;
    let parent = r.headers()[HEADER_MESH_ID].to_str().unwrap().to_string();
    let regen = |body: serde_json::Value| {
        let url = format!("{}/api/meshes/{parent}/regenerate", srv.base);
        async move { reqwest::Client::new().post(url).json(&body).send().await.unwrap() }
    };
    let r = regen(serde_json::json!({"params": {"texture_resolution": 1024, "vertex_count": 500}})).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let timings: Vec<StageTiming> = serde_json::from_str(r.headers()[HEADER_STAGE_TIMINGS].to_str().unwrap()).unwrap();
    let child = r.headers()[HEADER_MESH_ID].to_str().unwrap().to_string();
    for t in &timings {
        if t.stage.is_encode() {
            assert_eq!(t.state, StageState::Cached, "{t:?}");
        }
    }
    let entry: MeshEntry = get(&srv.base, &format!("/api/meshes/{child}"), None).await.json().await.unwrap();
    assert_eq!(entry.metadata.parent_id.as_deref(), Some(parent.as_str()));
    assert_eq!(entry.metadata.params.texture_resolution, 1024);

    let r = regen(serde_json::json!({"params": {"texture_resolution": 512, "foreground_ratio": 0.7}})).await;
    assert_eq!(r.status(), 200);
    let timings: Vec<StageTiming> = serde_json::from_str(r.headers()[HEADER_STAGE_TIMINGS].to_str().unwrap()).unwrap();
    assert!(
        timings.iter().any(|t| t.stage == sf3d_shared::Stage::Backbone && t.state == StageState::Finished),
        "a changed ratio must miss"
    );
    let r = regen(serde_json::json!({"params": {"texture_resolution": 99}})).await;
    assert_eq!(r.status(), 422);
    srv.stop().await;

    // After a restart the memory cache is empty. The parent's damaged cache file is recomputed (with a warning);
    // the child's intact one serves from disk without running the network.
    std::fs::write(data.join("meshes").join(&parent).join("scene_codes.safetensors"), b"garbage").unwrap();
    let srv = TestServer::start(Options { data: Some(data.clone()), ..Default::default() }).await;
    let timings = regenerate_at_512(&srv.base, &child).await;
    assert!(timings.iter().filter(|t| t.stage.is_encode()).all(|t| t.state == StageState::Cached), "{timings:?}");
    // (The child's disk cache loaded the encode into memory; forget it by restarting once more.)
    srv.stop().await;
    let srv = TestServer::start(Options { data: Some(data.clone()), ..Default::default() }).await;
    let timings = regenerate_at_512(&srv.base, &parent).await;
    assert!(
        timings.iter().any(|t| t.stage == sf3d_shared::Stage::Backbone && t.state == StageState::Finished),
        "corrupt cache → recomputed: {timings:?}"
    );
    srv.stop().await;
}

/// `POST /api/meshes/{id}/regenerate` at texture 512; the stage timings of the new entry.
async fn regenerate_at_512(base: &str, id: &str) -> Vec<StageTiming> {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/meshes/{id}/regenerate"))
        .json(&serde_json::json!({"params": {"texture_resolution": 512}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_str(r.headers()[HEADER_STAGE_TIMINGS].to_str().unwrap()).unwrap()
}

/// A full queue answers 429 with Retry-After.
#[tokio::test]
async fn full_queue_is_429_with_retry_after() {
    let srv = TestServer::start(Options { max_queue: 1, ..Default::default() }).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let base = srv.base.clone();
        tasks.push(tokio::spawn(async move {
            let f = form(test_png()).text("texture_resolution", "2048");
            let r = post_form(&base, "/api/generate", f, None).await;
            (r.status().as_u16(), r.headers().get("retry-after").is_some())
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    println!("{statuses:?}");
    assert!(statuses.iter().any(|s| s.0 == 200));
    assert!(statuses.contains(&(429, true)), "{statuses:?}");
    srv.stop().await;
}
