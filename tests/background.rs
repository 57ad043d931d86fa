//! Background removal with rembg's U²-Net through the server: `auto` finds the file where rembg keeps it, jobs
//! run it (the stage list's label says so), health and metadata name the remover; without the file the
//! built-in remover runs.
//!
//! The U²-NetP file (random weights, rembg's layout) and a photo with a textured background come from
//! `sf3d/tests/u2net/make_reference.py`: these tests skip (loudly) without python3 + onnx + onnxruntime unless
//! `SF3D_REQUIRE_ONNXRUNTIME=1` (`cargo xtask test` sets it).

use sf3d::preprocess::{BgModel, U2NET_FILE};
use sf3d::u2net::reference::make_reference;
use sf3d_shared::{BackgroundMode, HealthResponse, ServerMessage, Stage, StageState};

use crate::support::{Options, TestServer, WsClient, fast_params, get, temp_dir};

async fn health(srv: &TestServer) -> HealthResponse {
    get(&srv.base, "/api/health", None).await.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_finds_rembgs_file_and_jobs_run_the_learned_remover() {
    let dir = temp_dir("u2net");
    let Some(dir) = make_reference(&dir, &["u2netp"]) else { return };
    // rembg's folder layout: $U2NET_HOME/u2net.onnx (here the small network under the default name).
    let home = temp_dir("u2net-home");
    std::fs::copy(dir.join("u2netp.onnx"), home.join(U2NET_FILE)).unwrap();
    let found = BgModel::Auto.file(Some(&home), None);
    assert_eq!(found, Some(home.join(U2NET_FILE)));

    let srv = TestServer::start(Options { workers: 1, background_model: found, ..Default::default() }).await;
    assert_eq!(health(&srv).await.background_remover, "u2netp");

    let photo = std::fs::read(dir.join("photo.png")).unwrap();
    let mut c = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    let params = sf3d_shared::GenerateParams { background: BackgroundMode::Always, ..fast_params() };
    c.generate(&params, &photo, "bg").await.unwrap();
    let msgs = c.until_terminal().await.unwrap();
    let labels: Vec<(StageState, Option<String>)> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Stage { stage: Stage::RemoveBackground, state, label, .. } => Some((*state, label.clone())),
            _ => None,
        })
        .collect();
    assert!(
        labels.contains(&(StageState::Finished, Some("U²-Net (u2netp)".into()))),
        "the stage list says which remover ran: {labels:?}"
    );
    let Some(ServerMessage::Done { metadata, .. }) = msgs.last() else { panic!("{:?}", msgs.last()) };
    assert_eq!(metadata.background_remover.as_deref(), Some("u2netp"));
    c.close().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_file_the_builtin_remover_runs_and_kept_alpha_names_none() {
    let empty = temp_dir("u2net-empty");
    assert_eq!(BgModel::Auto.file(Some(&empty), Some(&empty)), None);
    let srv = TestServer::start(Options { workers: 1, ..Default::default() }).await;
    assert_eq!(health(&srv).await.background_remover, "builtin");

    let mut c = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    c.generate(&fast_params(), &crate::support::test_jpeg_on_white(), "white").await.unwrap();
    let msgs = c.until_terminal().await.unwrap();
    let Some(ServerMessage::Done { metadata, .. }) = msgs.last() else { panic!("{:?}", msgs.last()) };
    assert_eq!(metadata.background_remover.as_deref(), Some("builtin"));
    // A PNG whose alpha already cuts the object out keeps it: no remover ran.
    c.generate(&fast_params(), &crate::support::test_png(), "alpha").await.unwrap();
    let msgs = c.until_terminal().await.unwrap();
    let Some(ServerMessage::Done { metadata, .. }) = msgs.last() else { panic!("{:?}", msgs.last()) };
    assert_eq!(metadata.background_remover, None);
    c.close().await;
    srv.stop().await;
}
