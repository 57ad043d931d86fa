//! Drives the real UI in Debian's headless Chromium (Playwright-core) against a real server with the built-in
//! test model:
//!
//! * `tests/browser/ui.mjs`: upload, every stage, the viewer drawing the mesh, download, gallery after reload,
//!   delete, and a bad upload;
//! * `tests/browser/ui-flows.mjs`: the less common paths: gallery pages, validation and reset, paste and drop,
//!   preview then final, tweak/regenerate with cached stages, the linked-camera comparison, a failing job,
//!   queue position and cancel, re-attaching after a reload, and reconnecting after a server restart;
//! * `tests/browser/ui-auth.mjs`: a server with an API key: the key form, refusals without the key or with a
//!   wrong one, and with the saved key the gallery, a job, the download link and thumbnails (`?token=`), a
//!   reload, and forgetting the key;
//! * `tests/browser/harness.mjs`: what the three share: Chromium with its flags, the console watch, the step runner.
//!
//! Screenshots land in `SF3D_ARTIFACTS` (default `tests/artifacts`). Needs the frontend built into `dist/`
//! (`SF3D_DIST`), `node_modules` and `/usr/bin/chromium`; `cargo xtask test` provides all three and runs these
//! tests explicitly.
//!
//! A script may ask the harness to stop and start the server (same port, same data folder): it prints
//! `SF3D-CONTROL stop` or `SF3D-CONTROL start` on stdout and reads one line back on stdin, `SF3D-CONTROL ok …`
//! once done or `SF3D-CONTROL error …`. `SF3D_SERVER_CONTROL=stdio` tells the script it may.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{Options, TestServer, artifacts_dir, temp_dir, test_png};

/// Prefix of the control lines between a script and the harness.
const CONTROL: &str = "SF3D-CONTROL ";
/// Longest a script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(900);

/// The browser tests share two cores: one at a time, so their timings stay what the scripts expect.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    crate::support::manifest_dir().parent().map(Path::to_path_buf).unwrap_or_default()
}

fn dist() -> PathBuf {
    let dist = std::env::var_os("SF3D_DIST").map(PathBuf::from).unwrap_or_else(|| repo_root().join("dist"));
    assert!(dist.join("index.html").is_file(), "the UI is not built in {} (run cargo xtask frontend)", dist.display());
    dist
}

/// The product-like test PNG, written to a file for the file input.
fn test_image() -> PathBuf {
    let image = temp_dir("browser").join("product.png");
    std::fs::write(&image, test_png()).unwrap();
    image
}

/// Runs `tests/browser/<script>` with node against `srv` (`SF3D_URL`, `SF3D_ARTIFACTS`, `SF3D_TEST_IMAGE`, and
/// `SF3D_API_KEY` when the server has one),
/// echoing its output and answering its control requests; stops the server at the end.
async fn run_script(script: &str, srv: TestServer) -> ExitStatus {
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    let mut node = tokio::process::Command::new("node");
    if let Some(key) = &srv.restart_options().api_key {
        node.env("SF3D_API_KEY", key);
    }
    let mut child = node
        .arg(repo_root().join("tests").join("browser").join(script))
        .current_dir(repo_root())
        .env("SF3D_URL", &srv.base)
        .env("SF3D_ARTIFACTS", &artifacts)
        .env("SF3D_TEST_IMAGE", test_image())
        .env("SF3D_SERVER_CONTROL", "stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let restart = srv.restart_options();
    let mut server = Some(srv);
    while let Some(line) = lines.next_line().await.expect("the script's output") {
        let Some(request) = line.strip_prefix(CONTROL) else {
            println!("{line}");
            continue;
        };
        let t0 = std::time::Instant::now();
        let answer = match (request.trim(), server.take()) {
            ("stop", Some(s)) => {
                s.stop().await;
                "ok stopped".to_string()
            }
            ("start", None) => {
                server = Some(TestServer::start(restart.clone()).await);
                "ok started".to_string()
            }
            (other, s) => {
                let state = if s.is_some() { "running" } else { "stopped" };
                server = s;
                format!("error: cannot {other:?} while the server is {state}")
            }
        };
        println!("[harness] {request}: {answer} ({} ms)", t0.elapsed().as_millis());
        stdin.write_all(format!("{CONTROL}{answer}\n").as_bytes()).await.expect("the script's input");
        stdin.flush().await.expect("the script's input");
    }
    let status = child.wait().await.expect("node exits");
    if let Some(s) = server {
        s.stop().await;
    }
    status
}

async fn run_with_server(script: &str, opts: Options) {
    let _one = ONE_BROWSER.lock().await;
    let srv = TestServer::start(opts).await;
    let status = tokio::time::timeout(SCRIPT_TIMEOUT, run_script(script, srv))
        .await
        .unwrap_or_else(|_| panic!("{script} ran longer than {SCRIPT_TIMEOUT:?}"));
    assert!(status.success(), "the browser test {script} failed ({status})");
}

#[tokio::test]
#[ignore = "needs Chromium, node_modules and the built UI: run by `cargo xtask test`"]
async fn ui_generates_views_downloads_and_deletes_a_mesh() {
    run_with_server("ui.mjs", Options { dist: Some(dist()), ..Default::default() }).await;
}

#[tokio::test]
#[ignore = "needs Chromium, node_modules and the built UI: run by `cargo xtask test`"]
async fn ui_flows_pages_previews_tweaks_cancels_and_reconnects() {
    // A fresh data folder: the script seeds the gallery itself and checks its order.
    let data = temp_dir("flows-data");
    run_with_server("ui-flows.mjs", Options { dist: Some(dist()), data: Some(data), ..Default::default() }).await;
}

#[tokio::test]
#[ignore = "needs Chromium, node_modules and the built UI: run by `cargo xtask test`"]
async fn ui_with_an_api_key_asks_for_it_and_uses_it_everywhere() {
    let opts = Options {
        dist: Some(dist()),
        data: Some(temp_dir("auth-data")),
        api_key: Some("browser key/with+odd&chars".into()),
        ..Default::default()
    };
    run_with_server("ui-auth.mjs", opts).await;
}
