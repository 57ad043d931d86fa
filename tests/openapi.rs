//! The OpenAPI document checked against the live server by a real OpenAPI tool: Schemathesis (PyPI, pinned by
//! `cargo xtask test`) generates requests for every operation from the document — valid and invalid ones —
//! sends them to a real server (built-in test model, with an API key) and checks every answer: no 5xx, a
//! documented status code and content type, a body that matches its schema, declared headers, and that
//! operations that need the key refuse requests without it.
//!
//! Missing Schemathesis is a failure, not a skip: the message says how to install it.

use std::time::Duration;

use crate::support::{Options, TestServer, temp_dir};

/// The version `cargo xtask test` installs.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Test cases per operation and phase: enough to reach every documented error of every operation, few enough
/// for a 2-core machine (the run takes about a minute).
const MAX_EXAMPLES: &str = "12";
/// The run is killed after this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
const KEY: &str = "openapi-test-key-0123456789";

fn install_hint() -> String {
    format!(
        "install it with `python3 -m pip install schemathesis=={SCHEMATHESIS_VERSION}` (`cargo xtask test` does this)"
    )
}

/// `python3 -m schemathesis.cli …` (the module, so that no `st` script on the PATH is needed).
fn schemathesis() -> tokio::process::Command {
    let mut c = tokio::process::Command::new("python3");
    c.args(["-m", "schemathesis.cli"]);
    // Nothing leaves this machine.
    c.env("SCHEMATHESIS_TELEMETRY", "false");
    c.kill_on_drop(true);
    c
}

#[tokio::test]
async fn schemathesis_finds_the_live_server_true_to_its_document() {
    let version = schemathesis().arg("--version").output().await;
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "Schemathesis is not installed ({}); {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default(),
            install_hint()
        ),
        Err(e) => panic!("cannot run python3 ({e}); Schemathesis needs Python 3 and {}", install_hint()),
    };
    let Some(installed) = version.split_whitespace().last() else { panic!("odd version line {version:?}") };
    assert!(
        installed.starts_with("4."),
        "Schemathesis {installed} is installed; this test speaks the command line of 4.x: {}",
        install_hint()
    );
    if installed != SCHEMATHESIS_VERSION {
        eprintln!("note: Schemathesis {installed} (the pinned version is {SCHEMATHESIS_VERSION})");
    }

    let srv = TestServer::start(Options { api_key: Some(KEY.into()), workers: 1, ..Options::default() }).await;
    let work = temp_dir("schemathesis");
    let mut cmd = schemathesis();
    cmd.current_dir(&work)
        .arg("run")
        .arg(format!("{}/api/openapi.json", srv.base))
        // The document's paths are absolute; its servers list is empty, so the base is the server itself.
        .args(["--url", &srv.base])
        .args(["--header", &format!("Authorization: Bearer {KEY}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,\
             response_schema_conformance,ignored_auth",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", "20"])
        .args(["--workers", "1"])
        .args(["--request-timeout", "120"])
        // No example database left behind (the folder is removed anyway).
        .args(["--generation-database", "none"])
        .arg("--no-color")
        .arg("--continue-on-failure");
    eprintln!("running {cmd:?}");
    let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("Schemathesis did not finish within {RUN_TIMEOUT:?}"))
        .expect("run Schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    srv.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        out.status.success(),
        "Schemathesis {installed} found the server at odds with its OpenAPI document ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // A run that tested nothing would pass too: every operation must have been exercised.
    assert!(stdout.contains("passed"), "{stdout}");
    let summary: Vec<&str> = stdout.lines().rev().take(25).collect();
    eprintln!("Schemathesis {installed}:\n{}", summary.into_iter().rev().collect::<Vec<_>>().join("\n"));
}
