//! Drives the real UI in Debian's headless Chromium (Playwright-core, `tests/browser/ui.mjs`) against a real
//! server with the built-in test model: upload, every stage, the viewer drawing the mesh, download, gallery after
//! reload, delete, and a bad upload. Screenshots land in `SF3D_ARTIFACTS` (default `tests/artifacts`).
//!
//! Needs the frontend built into `dist/` (`SF3D_DIST`), `node_modules` and `/usr/bin/chromium`; `cargo xtask test`
//! provides all three and runs this test explicitly.

use std::path::{Path, PathBuf};

use crate::support::{Options, TestServer, artifacts_dir, temp_dir, test_png};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs Chromium, node_modules and the built UI: run by `cargo xtask test`"]
async fn ui_generates_views_downloads_and_deletes_a_mesh() {
    let dist = std::env::var_os("SF3D_DIST").map(PathBuf::from).unwrap_or_else(|| repo_root().join("dist"));
    assert!(dist.join("index.html").is_file(), "the UI is not built in {} (run cargo xtask frontend)", dist.display());
    let srv = TestServer::start(Options { dist: Some(dist), ..Default::default() }).await;
    let image = temp_dir("browser").join("product.png");
    std::fs::write(&image, test_png()).unwrap();
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    let script = repo_root().join("tests").join("browser").join("ui.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(repo_root())
        .env("SF3D_URL", &srv.base)
        .env("SF3D_ARTIFACTS", &artifacts)
        .env("SF3D_TEST_IMAGE", &image)
        .output()
        .await
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    srv.stop().await;
    assert!(out.status.success(), "the browser test failed ({})", out.status);
}
