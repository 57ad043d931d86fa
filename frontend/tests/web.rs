//! Component tests in a real browser (wasm-bindgen-test, headless Chromium through chromedriver):
//!
//! ```sh
//! CHROMEDRIVER=/usr/bin/chromedriver cargo test -p sf3d-frontend --target wasm32-unknown-unknown
//! ```
//!
//! Each test mounts one component with a fresh `Studio` in the context, drives the state the way server messages
//! and clicks do, and reads the DOM back. The whole-page flows (real socket, three.js) are in
//! `tests/browser/*.mjs`.
#![cfg(target_arch = "wasm32")]
// Test code: a panic is a failed test (clippy's allow-unwrap-in-tests does not cover helper functions).
#![allow(clippy::unwrap_used)]

use leptos::prelude::*;
use sf3d_frontend::api::ApiError;
use sf3d_frontend::app::{ConnState, Studio};
use sf3d_frontend::components::health::HealthBanner;
use sf3d_frontend::components::params::ParamsPanel;
use sf3d_frontend::components::progress::ProgressPanel;
use sf3d_frontend::job::JobView;
use sf3d_shared::protocol::ServerMessage;
use sf3d_shared::stage::{Stage, StageState};
use sf3d_shared::{ErrorCode, GenerateParams, HealthResponse};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{Element, HtmlElement, HtmlInputElement};

wasm_bindgen_test_configure!(run_in_browser);

/// A fresh element to mount into.
fn container() -> HtmlElement {
    let document = document();
    let div = document.create_element("div").unwrap();
    document.body().unwrap().append_child(&div).unwrap();
    div.unchecked_into()
}

fn find(root: &Element, testid: &str) -> Option<Element> {
    root.query_selector(&format!("[data-testid=\"{testid}\"]")).unwrap()
}

fn text(root: &Element, testid: &str) -> String {
    find(root, testid).unwrap_or_else(|| panic!("no {testid}")).text_content().unwrap_or_default()
}

fn health(test_model: bool, attribution: Option<&str>) -> HealthResponse {
    let mut h: HealthResponse = serde_json::from_str(
        r#"{"status": "ok", "version": "0.1.0", "protocol": 1, "device": {"kind": "cpu", "name": "cpu (2 threads)"},
            "model": {"id": "builtin-test", "test_model": true, "dtype": "f32"},
            "queue": {"waiting": 0, "running": 1, "capacity": 16}, "auth_required": false,
            "background_remover": "u2net"}"#,
    )
    .unwrap();
    h.model.test_model = test_model;
    h.model.attribution = attribution.map(str::to_owned);
    h
}

fn stage(stage: Stage, state: StageState, value: Option<u64>, max: Option<u64>) -> ServerMessage {
    ServerMessage::Stage { job_id: "J".into(), stage, state, value, max, elapsed_ms: 1500, label: None }
}

#[wasm_bindgen_test]
async fn progress_panel_lists_every_stage_and_follows_events() {
    let studio = Studio::new();
    let root = container();
    let _mounted = leptos::mount::mount_to(root.clone(), move || {
        provide_context(studio);
        view! { <ProgressPanel /> }
    });
    let rows = root.query_selector_all("[data-testid=\"stage-list\"] > li").unwrap();
    assert_eq!(rows.length() as usize, Stage::ALL.len());
    for (i, s) in Stage::ALL.iter().enumerate() {
        let row: Element = rows.item(i as u32).unwrap().unchecked_into();
        assert!(row.text_content().unwrap().contains(s.label()), "row {i} is {}", s.label());
        assert_eq!(row.get_attribute("data-state").as_deref(), Some("pending"));
    }

    studio.job.set(JobView::submitting("r1"));
    studio.job.update(|j| {
        j.apply(&ServerMessage::Accepted { job_id: "J".into(), request_id: Some("r1".into()), position: 2 });
    });
    leptos::task::tick().await;
    let phase = || find(&root, "progress").unwrap().get_attribute("data-phase");
    assert_eq!(phase().as_deref(), Some("queued"));
    assert!(text(&root, "queue-position").contains('3'), "2 jobs ahead: third in line");

    studio.job.update(|j| {
        j.apply(&stage(Stage::Decode, StageState::Finished, None, None));
        j.apply(&stage(Stage::RemoveBackground, StageState::Skipped, None, None));
        j.apply(&stage(Stage::Backbone, StageState::Progress, Some(2), Some(4)));
    });
    leptos::task::tick().await;
    let state = |s: Stage| find(&root, &format!("stage-{}", s.as_str())).unwrap().get_attribute("data-state");
    assert_eq!(phase().as_deref(), Some("running"));
    assert_eq!(state(Stage::Decode).as_deref(), Some("done"));
    assert_eq!(state(Stage::RemoveBackground).as_deref(), Some("skipped"));
    assert_eq!(state(Stage::Backbone).as_deref(), Some("progress"));
    assert!(text(&root, "stage-backbone").contains("2/4"));
    assert_eq!(text(&root, "stage-time-decode"), "1.5 s");
    assert!(find(&root, "queue-position").is_none(), "no queue position once running");

    studio.job.update(|j| {
        j.apply(&ServerMessage::Error {
            job_id: Some("J".into()),
            code: ErrorCode::NoSurface,
            message: "no surface found".into(),
            field: None,
            retry_after: None,
        });
    });
    leptos::task::tick().await;
    let error = text(&root, "job-error");
    assert!(error.contains("no surface found") && error.contains(ErrorCode::NoSurface.hint()), "{error}");
}

#[wasm_bindgen_test]
async fn params_panel_validates_before_sending_and_resets() {
    let studio = Studio::new();
    let root = container();
    let _mounted = leptos::mount::mount_to(root.clone(), move || {
        provide_context(studio);
        view! { <ParamsPanel /> }
    });
    leptos::task::tick().await;
    let input = |id: &str| -> HtmlInputElement { find(&root, id).unwrap().unchecked_into() };
    let texture = input("param-texture_resolution");
    let defaults = GenerateParams::default();
    assert_eq!(texture.value(), defaults.texture_resolution.to_string());
    assert_eq!(texture.min(), GenerateParams::TEXTURE_RESOLUTION_MIN.to_string());
    assert_eq!(texture.max(), GenerateParams::TEXTURE_RESOLUTION_MAX.to_string());
    assert_eq!(texture.step(), GenerateParams::TEXTURE_RESOLUTION_STEP.to_string());
    assert_eq!(input("param-vertex_count").value(), "-1");
    assert!(find(&root, "error-vertex_count").unwrap().has_attribute("hidden"));

    studio.params.update(|p| p.vertex_count = 50);
    studio.start();
    leptos::task::tick().await;
    let error = find(&root, "error-vertex_count").unwrap();
    assert!(!error.has_attribute("hidden"), "the error shows next to the field");
    assert!(error.text_content().unwrap().contains("50"));
    assert!(!studio.job.with_untracked(JobView::is_active), "nothing was sent");

    find(&root, "reset-params").unwrap().unchecked_into::<HtmlElement>().click();
    leptos::task::tick().await;
    assert!(find(&root, "error-vertex_count").unwrap().has_attribute("hidden"));
    assert_eq!(input("param-vertex_count").value(), "-1");
    assert_eq!(studio.params.get_untracked(), defaults);

    // Values set from outside (a gallery "tweak") reach the inputs.
    studio.params.update(|p| {
        p.texture_resolution = 2048;
        p.foreground_ratio = 0.6;
    });
    leptos::task::tick().await;
    assert_eq!(input("param-texture_resolution").value(), "2048");
    assert_eq!(input("param-foreground_ratio").value(), "0.6");
    assert_eq!(text(&root, "value-foreground_ratio"), "0.60");
}

#[wasm_bindgen_test]
async fn health_banner_warns_about_the_test_model_and_credits_the_weights() {
    let studio = Studio::new();
    let root = container();
    let _mounted = leptos::mount::mount_to(root.clone(), move || {
        provide_context(studio);
        view! { <HealthBanner /> }
    });
    studio.health.set(Some(Ok(health(true, None))));
    leptos::task::tick().await;
    assert!(find(&root, "test-model-warning").is_some());
    assert!(find(&root, "attribution").is_none());
    assert_eq!(text(&root, "health-device"), "cpu (2 threads)");
    assert_eq!(text(&root, "health-remover"), "U²-Net (u2net)");

    studio.health.set(Some(Ok(health(false, Some("Powered by Stability AI")))));
    leptos::task::tick().await;
    assert!(find(&root, "test-model-warning").is_none());
    assert_eq!(text(&root, "attribution"), "Powered by Stability AI");

    studio.conn.set(ConnState::Retrying { retry_in_ms: 2000 });
    studio.health.set(Some(Err(ApiError::Unreachable("connection refused".into()))));
    leptos::task::tick().await;
    let banner = text(&root, "server-unreachable");
    assert!(banner.contains("Server unreachable") && banner.contains("connection refused"), "{banner}");
    assert!(text(&root, "conn-state").contains("retrying in 2.0 s"));
}
