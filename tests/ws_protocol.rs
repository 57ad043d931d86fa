//! The WebSocket job protocol against a real server: full jobs, concurrency and the queue limit, cancellation,
//! re-attaching after a disconnect, malformed messages.

use sf3d_shared::{ClientMessage, ErrorCode, JobState, PROTOCOL_VERSION, ServerMessage, Stage, StageState};

use crate::support::{Options, TestServer, WsClient, check_glb, fast_params, get, test_jpeg_on_white, test_png};

fn stage_events(msgs: &[ServerMessage]) -> Vec<(Stage, StageState)> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMessage::Stage { stage, state, .. } => Some((*stage, *state)),
            _ => None,
        })
        .collect()
}

/// A job pushes every stage in pipeline order (started then one terminal state each), then `done` with URLs
/// that serve a valid GLB and the metadata.
#[tokio::test]
async fn full_job_reports_every_stage_in_order_and_the_glb_downloads() {
    let srv = TestServer::start(Options::default()).await;
    let mut c = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    match &c.hello {
        ServerMessage::Hello { protocol, model, auth_required, .. } => {
            assert_eq!(*protocol, PROTOCOL_VERSION);
            assert!(model.test_model);
            assert!(!auth_required);
        }
        other => panic!("{other:?}"),
    }
    c.generate(&fast_params(), &test_png(), "r1").await.unwrap();
    let msgs = c.until_terminal().await.unwrap();
    assert!(
        matches!(&msgs[0], ServerMessage::Accepted { request_id: Some(r), position: 0, .. } if r == "r1"),
        "{:?}",
        msgs[0]
    );
    let events = stage_events(&msgs);
    let mut terminal: Vec<Stage> = Vec::new();
    for (stage, state) in &events {
        if state.is_terminal() {
            assert!(!terminal.contains(stage), "{stage} ended twice");
            terminal.push(*stage);
        }
    }
    assert_eq!(terminal, Stage::ALL.to_vec(), "every stage, in order: {events:?}");
    // Skipped: background (the PNG has alpha) and remesh (none); everything else started and finished.
    for (stage, state) in &events {
        if *state == StageState::Skipped {
            assert!(matches!(stage, Stage::RemoveBackground | Stage::Remesh), "{stage} skipped");
        }
    }
    assert!(events.contains(&(Stage::Backbone, StageState::Progress)), "backbone reports progress");
    let ServerMessage::Done { mesh_id, urls, metadata, .. } = msgs.last().unwrap() else { panic!("{:?}", msgs.last()) };
    assert_eq!(&metadata.mesh_id, mesh_id);
    assert!(metadata.model.test_model);
    assert_eq!(metadata.timings.len(), Stage::ALL.len());
    let glb = get(&srv.base, &urls.glb, None).await;
    assert_eq!(glb.status(), 200);
    assert_eq!(glb.headers()["content-type"], "model/gltf-binary");
    let bytes = glb.bytes().await.unwrap();
    let (v, f) = check_glb("ws_full_job", &bytes);
    assert_eq!((v as u64, f as u64), (metadata.vertex_count, metadata.face_count));
    for url in [&urls.input, &urls.preprocessed, &urls.metadata] {
        assert_eq!(get(&srv.base, url, None).await.status(), 200, "{url}");
    }
    c.close().await;
    srv.stop().await;
}

/// An opaque JPEG on white goes through background removal (not skipped).
#[tokio::test]
async fn opaque_jpeg_gets_its_background_removed() {
    let srv = TestServer::start(Options::default()).await;
    let mut c = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    c.generate(&fast_params(), &test_jpeg_on_white(), "jpeg").await.unwrap();
    let msgs = c.until_terminal().await.unwrap();
    assert!(stage_events(&msgs).contains(&(Stage::RemoveBackground, StageState::Finished)), "{msgs:?}");
    assert!(matches!(msgs.last(), Some(ServerMessage::Done { .. })), "{:?}", msgs.last());
    srv.stop().await;
}

/// Eight clients at once against a queue of two: every client gets either a mesh or `queue_full`, and at least
/// one of each happens.
#[tokio::test]
async fn eight_concurrent_clients_with_a_small_queue() {
    let srv = TestServer::start(Options { max_queue: 2, ..Default::default() }).await;
    let png = test_png();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = srv.ws_url(None);
        let png = png.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = WsClient::connect(&url).await.unwrap();
            c.generate(&fast_params(), &png, &format!("c{i}")).await.unwrap();
            loop {
                match c.next().await.unwrap() {
                    ServerMessage::Done { .. } => return "done",
                    ServerMessage::Error { code: ErrorCode::QueueFull, job_id: None, retry_after, .. } => {
                        assert!(retry_after.is_some_and(|s| s > 0), "queue_full without retry_after");
                        return "queue_full";
                    }
                    ServerMessage::Error { code, message, .. } => panic!("client {i}: {code:?} {message}"),
                    _ => {}
                }
            }
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let done = outcomes.iter().filter(|o| **o == "done").count();
    println!("outcomes: {outcomes:?}");
    assert!(done >= 1, "{outcomes:?}");
    assert_eq!(done + outcomes.iter().filter(|o| **o == "queue_full").count(), 8);
    srv.stop().await;
}

/// A queued job is cancelled at once; a running one stops at its next check. One slow job per worker keeps
/// every worker busy, so the last job waits.
#[tokio::test]
async fn cancel_queued_and_running_jobs() {
    let opts = Options::default();
    let workers = opts.workers;
    let srv = TestServer::start(opts).await;
    let mut c = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    let slow = sf3d_shared::GenerateParams { texture_resolution: 2048, ..Default::default() };
    for i in 0..=workers {
        c.generate(&slow, &test_png(), &format!("job{i}")).await.unwrap();
    }
    let mut ids = vec![String::new(); workers + 1];
    let mut accepted = 0;
    while accepted <= workers {
        if let ServerMessage::Accepted { job_id, request_id: Some(r), .. } = c.next().await.unwrap() {
            ids[r.trim_start_matches("job").parse::<usize>().unwrap()] = job_id;
            accepted += 1;
        }
    }
    let queued = ids[workers].clone();
    let running: Vec<String> = ids[..workers].to_vec();
    // The last waits behind the others: cancel it while queued.
    c.send(&ClientMessage::Cancel { job_id: queued.clone() }).await.unwrap();
    // Cancel each of the others once it is running.
    let mut cancelled_running = Vec::new();
    let mut got = Vec::new();
    while got.len() <= workers {
        match c.next().await.unwrap() {
            ServerMessage::Stage { job_id, stage: Stage::Backbone, state: StageState::Started, .. }
                if running.contains(&job_id) && !cancelled_running.contains(&job_id) =>
            {
                c.send(&ClientMessage::Cancel { job_id: job_id.clone() }).await.unwrap();
                cancelled_running.push(job_id);
            }
            ServerMessage::Cancelled { job_id } => got.push(job_id),
            ServerMessage::Done { job_id, .. } => panic!("job {job_id} finished despite the cancel"),
            _ => {}
        }
    }
    assert!(ids.iter().all(|id| got.contains(id)), "{got:?}");
    assert_eq!(got[0], queued, "the queued job is cancelled at once");
    c.send(&ClientMessage::Cancel { job_id: "01JDQ40A3G7ZC1T5PHXW2N9M6B".into() }).await.unwrap();
    assert!(matches!(c.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::NotFound, .. }));
    srv.stop().await;
}

/// Closing the socket does not cancel the job: a new connection re-attaches with `subscribe`, gets a `status`
/// snapshot and then the result; the result is in the gallery either way.
#[tokio::test]
async fn disconnect_then_resubscribe() {
    let srv = TestServer::start(Options::default()).await;
    let mut c = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    c.generate(&fast_params(), &test_png(), "gone").await.unwrap();
    let job_id = loop {
        if let ServerMessage::Accepted { job_id, .. } = c.next().await.unwrap() {
            break job_id;
        }
    };
    c.close().await;
    let mut c2 = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    c2.send(&ClientMessage::Subscribe { job_id: job_id.clone() }).await.unwrap();
    let status = c2.next().await.unwrap();
    assert!(matches!(&status, ServerMessage::Status { job_id: j, .. } if *j == job_id), "{status:?}");
    let msgs = c2.until_terminal().await.unwrap();
    let ServerMessage::Done { mesh_id, .. } = msgs.last().unwrap() else { panic!("{msgs:?}") };
    let list: sf3d_shared::MeshList = get(&srv.base, "/api/meshes", None).await.json().await.unwrap();
    assert!(list.items.iter().any(|e| &e.id == mesh_id));
    // A late subscriber of a finished job gets the snapshot and the result at once.
    c2.send(&ClientMessage::Subscribe { job_id: job_id.clone() }).await.unwrap();
    match c2.next().await.unwrap() {
        ServerMessage::Status { state, .. } => assert_eq!(state, JobState::Succeeded),
        other => panic!("{other:?}"),
    }
    assert!(matches!(c2.next().await.unwrap(), ServerMessage::Done { .. }));
    srv.stop().await;
}

/// Bad messages get error frames and the connection stays usable.
#[tokio::test]
async fn malformed_messages_get_error_frames_and_keep_the_connection() {
    let srv = TestServer::start(Options::default()).await;
    let mut c = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    c.send_text(r#"{"type":"explode"}"#).await.unwrap();
    assert!(matches!(
        c.next().await.unwrap(),
        ServerMessage::Error { code: ErrorCode::UnknownMessage, job_id: None, .. }
    ));
    c.send_text("not json").await.unwrap();
    assert!(matches!(c.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::BadRequest, .. }));
    c.send_text(r#"{"type":"generate","params":{"texture_resolution":4096},"image":{"kind":"binary","size":3}}"#)
        .await
        .unwrap();
    c.send_binary(vec![1, 2, 3]).await.unwrap();
    match c.next().await.unwrap() {
        ServerMessage::Error { code: ErrorCode::InvalidParams, field, .. } => {
            assert_eq!(field.as_deref(), Some("texture_resolution"))
        }
        other => panic!("{other:?}"),
    }
    c.send_text(r#"{"type":"generate","params":{"remesh":"cubes"},"image":{"kind":"binary","size":3}}"#).await.unwrap();
    match c.next().await.unwrap() {
        ServerMessage::Error { code: ErrorCode::InvalidParams, field, .. } => {
            assert_eq!(field.as_deref(), Some("remesh"))
        }
        other => panic!("{other:?}"),
    }
    c.send_binary(vec![9; 10]).await.unwrap();
    assert!(matches!(c.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::BadRequest, .. }));
    // A corrupt image is accepted as a job and fails with unsupported_image.
    c.generate(&fast_params(), b"this is not an image", "bad").await.unwrap();
    let msgs = c.until_terminal().await.unwrap();
    assert!(
        matches!(msgs.last(), Some(ServerMessage::Error { code: ErrorCode::UnsupportedImage, job_id: Some(_), .. })),
        "{msgs:?}"
    );
    // Still alive: a good job works.
    c.generate(&fast_params(), &test_png(), "ok").await.unwrap();
    assert!(matches!(c.until_terminal().await.unwrap().last(), Some(ServerMessage::Done { .. })));
    srv.stop().await;
}

/// With an API key, the socket needs `?token=` or an `auth` first message; anything else is refused and closed.
#[tokio::test]
async fn websocket_auth() {
    let srv =
        TestServer::start(Options { api_key: Some("s3cret-0123456789abcdef".into()), ..Default::default() }).await;
    let mut anon = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    assert!(matches!(anon.hello, ServerMessage::Hello { auth_required: true, .. }));
    anon.generate(&fast_params(), &test_png(), "x").await.unwrap();
    assert!(matches!(anon.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::Unauthorized, .. }));
    assert!(anon.next().await.is_err(), "the connection is closed after an unauthorised message");

    let mut by_query = WsClient::connect(&srv.ws_url(Some("s3cret-0123456789abcdef"))).await.unwrap();
    by_query.generate(&fast_params(), &test_png(), "q").await.unwrap();
    assert!(matches!(by_query.until_terminal().await.unwrap().last(), Some(ServerMessage::Done { .. })));

    let mut by_message = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    by_message.send(&ClientMessage::Auth { token: "s3cret-0123456789abcdef".into() }).await.unwrap();
    by_message.send(&ClientMessage::Subscribe { job_id: "01JDQ40A3G7ZC1T5PHXW2N9M6B".into() }).await.unwrap();
    assert!(matches!(by_message.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::NotFound, .. }));

    let mut wrong = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    wrong.send(&ClientMessage::Auth { token: "nope".into() }).await.unwrap();
    assert!(matches!(wrong.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::Unauthorized, .. }));
    srv.stop().await;
}

/// The server pings; a client that never answers (it stops reading, so its library sends no pongs) is dropped
/// after the timeout, while one that keeps reading stays connected.
#[tokio::test]
async fn silent_clients_are_dropped_after_the_heartbeat_timeout() {
    use std::time::Duration;
    let heartbeat = Some((Duration::from_millis(300), Duration::from_millis(1200)));
    let srv = TestServer::start(Options { heartbeat, ..Default::default() }).await;
    let mut silent = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    let mut lively = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    // The lively client reads (and so answers pings) for a while.
    let keep = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(3), lively.next()).await;
        lively
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = silent.next().await.unwrap_err().to_string();
    assert!(err.contains("closed") || err.contains("ended") || err.contains("error"), "{err}");
    let mut lively = keep.await.unwrap();
    lively.send(&ClientMessage::Subscribe { job_id: "01JDQ40A3G7ZC1T5PHXW2N9M6B".into() }).await.unwrap();
    assert!(matches!(lively.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::NotFound, .. }));
    srv.stop().await;
}
