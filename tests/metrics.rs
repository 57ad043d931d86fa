//! `GET /metrics` scraped around real jobs: the counters, histograms and gauges move as the jobs run, and the key
//! guards the endpoint.

use sf3d_shared::api::HEADER_MESH_ID;

use crate::support::{Options, TestServer, WsClient, get, test_png};

const KEY: &str = "metrics-test-key-0123456789";

/// The value of one series (`name{labels}` exactly as the exposition writes it), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap_or_else(|e| panic!("{series}: {v:?}: {e}")))
}

async fn scrape(base: &str) -> String {
    let r = get(base, "/metrics", Some(KEY)).await;
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// A scrape once no job runs (or after 10 s): a REST answer leaves the moment its job's end is published; the
/// worker counts that end, goes idle and gives the job back a moment later.
async fn scrape_when_idle(base: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = scrape(base).await;
        if value(&text, "sf3d_running_jobs") == 0.0 || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_move_around_a_job_and_need_the_key() {
    let srv = TestServer::start(Options { api_key: Some(KEY.into()), ..Options::default() }).await;
    let r = get(&srv.base, "/metrics", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(get(&srv.base, "/metrics", Some("a-wrong-key-0123456789")).await.status(), 401);
    // `?token=` works as on every keyed route.
    assert_eq!(get(&srv.base, &format!("/metrics?token={KEY}"), None).await.status(), 200);

    let before = scrape(&srv.base).await;
    let succeeded = r#"sf3d_jobs_ended_total{code="none",state="succeeded"}"#;
    let failed = r#"sf3d_jobs_ended_total{code="unsupported_image",state="failed"}"#;
    let backbone = r#"sf3d_stage_duration_seconds_count{stage="backbone"}"#;
    let export = r#"sf3d_stage_duration_seconds_count{stage="export"}"#;
    let hits = r#"sf3d_scene_code_cache_total{result="hit"}"#;
    let misses = r#"sf3d_scene_code_cache_total{result="miss"}"#;
    assert_eq!(value(&before, succeeded), 0.0, "{before}");
    assert_eq!(value(&before, "sf3d_gallery_meshes"), 0.0);
    assert_eq!(value(&before, "sf3d_queue_capacity"), 16.0);
    assert_eq!(value(&before, r#"sf3d_workers{state="idle"}"#), 2.0);
    assert_eq!(value(&before, "sf3d_websocket_connections"), 0.0);

    // A WebSocket connection counts while it is open.
    let ws = WsClient::connect(&srv.ws_url(Some(KEY))).await.unwrap();
    let during = scrape(&srv.base).await;
    assert_eq!(value(&during, "sf3d_websocket_connections"), 1.0, "{during}");

    // One job through REST (the network runs: a cache miss), then a regenerate of its mesh (a hit).
    let form = |bytes: Vec<u8>| {
        reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(bytes).file_name("shirt.png"))
            .text("texture_resolution", "512")
    };
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/generate", srv.base))
        .bearer_auth(KEY)
        .multipart(form(test_png()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mesh_id = r.headers()[HEADER_MESH_ID].to_str().unwrap().to_string();
    let r = client
        .post(format!("{}/api/meshes/{mesh_id}/regenerate", srv.base))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"params": {"texture_resolution": 512}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // And one that fails: not an image.
    let r = client
        .post(format!("{}/api/generate", srv.base))
        .bearer_auth(KEY)
        .multipart(form(b"not an image".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let after = scrape_when_idle(&srv.base).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(moved(succeeded), 2.0, "{after}");
    assert_eq!(moved(failed), 1.0, "{after}");
    // The job that failed looked its image up too (a miss) before decoding failed.
    assert_eq!(moved(misses), 2.0, "{after}");
    assert_eq!(moved(hits), 1.0, "{after}");
    // The backbone ran once (the regenerate took the cached scene codes); extraction and export ran twice.
    assert_eq!(moved(backbone), 1.0, "{after}");
    assert_eq!(moved(export), 2.0, "{after}");
    let sum = value(&after, r#"sf3d_stage_duration_seconds_sum{stage="backbone"}"#);
    assert!(sum > 0.0, "{after}");
    let inf = value(&after, r#"sf3d_stage_duration_seconds_bucket{stage="backbone",le="+Inf"}"#);
    assert_eq!(inf, 1.0, "{after}");
    assert_eq!(value(&after, "sf3d_gallery_meshes"), 2.0, "{after}");
    assert_eq!(value(&after, "sf3d_queue_waiting_jobs"), 0.0);
    assert_eq!(value(&after, "sf3d_running_jobs"), 0.0, "{after}");
    assert_eq!(value(&after, r#"sf3d_workers{state="busy"}"#), 0.0, "{after}");
    assert_eq!(value(&after, r#"sf3d_workers{state="idle"}"#), 2.0, "{after}");
    assert!(value(&after, "sf3d_scene_code_cache_entries") >= 1.0, "{after}");
    assert!(value(&after, "sf3d_scene_code_cache_bytes") > 0.0, "{after}");

    ws.close().await;
    // The server notices the close on its next read.
    let mut open = 1.0;
    for _ in 0..100 {
        open = value(&scrape(&srv.base).await, "sf3d_websocket_connections");
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0.0);
    srv.stop().await;
}

#[tokio::test]
async fn servers_in_one_process_keep_their_own_figures() {
    let a = TestServer::start(Options { workers: 1, ..Options::default() }).await;
    let b = TestServer::start(Options { workers: 1, ..Options::default() }).await;
    let bad = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(b"not an image".to_vec()).file_name("x.png"));
    let r = reqwest::Client::new().post(format!("{}/api/generate", a.base)).multipart(bad).send().await.unwrap();
    assert_eq!(r.status(), 415);
    let series = r#"sf3d_jobs_ended_total{code="unsupported_image",state="failed"}"#;
    let text_a = get(&a.base, "/metrics", None).await.text().await.unwrap();
    let text_b = get(&b.base, "/metrics", None).await.text().await.unwrap();
    assert_eq!(value(&text_a, series), 1.0, "{text_a}");
    assert_eq!(value(&text_b, series), 0.0, "{text_b}");
    a.stop().await;
    b.stop().await;
}
