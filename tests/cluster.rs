//! Servers with workers of their own sharing one gallery: the index in PostgreSQL and the files in a NATS object
//! store — the storage every process of a cluster shares (`backend/tests/cluster.rs` runs the cluster's web tiers
//! and worker processes themselves). Needs the test services ([`sf3d_backend::test_services`]); skips loudly without
//! them, fails under `SF3D_REQUIRE_SERVICES=1` (`cargo xtask test`).

use sf3d_backend::test_services::TestCluster;
use sf3d_shared::api::{HEADER_MESH_ID, HEADER_STAGE_TIMINGS};
use sf3d_shared::{MeshEntry, MeshList, StageState, StageTiming};

use crate::support::{Options, TestServer, check_glb, get, temp_dir, test_png};

/// A mesh made through one server is listed, downloaded, tweaked from its cached scene codes and deleted through
/// another; neither keeps mesh files on its own disk.
#[tokio::test]
async fn two_servers_share_one_gallery_through_postgres_and_nats() {
    let Some(cluster) = TestCluster::shared_for_test("two-servers") else { return };
    let (data_a, data_b) = (temp_dir("tier-a"), temp_dir("tier-b"));
    let opts = |data| Options { data: Some(data), gallery: cluster.gallery(), workers: 1, ..Default::default() };
    let (a, b) = tokio::join!(TestServer::start(opts(data_a.clone())), TestServer::start(opts(data_b.clone())));

    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(test_png()).file_name("shirt.png"))
        .text("texture_resolution", "512");
    let r = reqwest::Client::new().post(format!("{}/api/generate", a.base)).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()[HEADER_MESH_ID].to_str().unwrap().to_string();
    let glb_a = r.bytes().await.unwrap();

    let list: MeshList = get(&b.base, "/api/meshes", None).await.json().await.unwrap();
    assert_eq!(list.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    assert!(list.items[0].cached, "the scene codes are stored with the mesh");
    let glb_b = get(&b.base, &format!("/api/meshes/{id}/mesh.glb"), None).await;
    assert_eq!(glb_b.status(), 200);
    let glb_b = glb_b.bytes().await.unwrap();
    assert_eq!(glb_a, glb_b);
    check_glb("shared_gallery", &glb_b);

    // B never encoded this image: its tweak runs from the scene codes in the object store.
    let r = reqwest::Client::new()
        .post(format!("{}/api/meshes/{id}/regenerate", b.base))
        .json(&serde_json::json!({"params": {"texture_resolution": 512, "vertex_count": 400}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let timings: Vec<StageTiming> = serde_json::from_str(r.headers()[HEADER_STAGE_TIMINGS].to_str().unwrap()).unwrap();
    assert!(timings.iter().filter(|t| t.stage.is_encode()).all(|t| t.state == StageState::Cached), "{timings:?}");
    let child = r.headers()[HEADER_MESH_ID].to_str().unwrap().to_string();
    let entry: MeshEntry = get(&a.base, &format!("/api/meshes/{child}"), None).await.json().await.unwrap();
    assert_eq!(entry.metadata.parent_id.as_deref(), Some(id.as_str()));

    let r = reqwest::Client::new().delete(format!("{}/api/meshes/{child}", a.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&b.base, &format!("/api/meshes/{child}"), None).await.status(), 404);
    assert_eq!(get(&b.base, &format!("/api/meshes/{child}/mesh.glb"), None).await.status(), 404);
    for data in [&data_a, &data_b] {
        assert!(!data.join("meshes").exists(), "mesh files on a server's disk: {}", data.display());
    }
    tokio::join!(a.stop(), b.stop());
}
