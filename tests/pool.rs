//! The worker pool and the job journal in one process: two CPU workers at once, a worker that dies, every
//! worker dead, a job past its deadline, and finished jobs answerable after a restart.

use std::time::{Duration, Instant};

use sf3d_backend::worker::TestHooks;
use sf3d_shared::api::{JobStatus, WorkerState};
use sf3d_shared::{ClientMessage, ErrorCode, HealthResponse, JobState, MeshList, ServerMessage};

use crate::support::{Options, TestServer, WsClient, fast_params, get, test_png};

/// One job on its own connection: its id, when its first stage started, when it ended, and how.
struct Run {
    job_id: String,
    first_stage: Option<Instant>,
    ended: Instant,
    terminal: ServerMessage,
}

async fn run_one(server: &TestServer, request_id: &str) -> Run {
    let mut c = WsClient::connect(&server.ws_url(None)).await.unwrap();
    c.generate(&fast_params(), &test_png(), request_id).await.unwrap();
    let mut job_id = String::new();
    let mut first_stage = None;
    loop {
        let m = c.next().await.unwrap();
        match &m {
            ServerMessage::Accepted { job_id: id, .. } => job_id = id.clone(),
            ServerMessage::Stage { .. } => {
                first_stage.get_or_insert_with(Instant::now);
            }
            ServerMessage::Done { .. } | ServerMessage::Error { .. } | ServerMessage::Cancelled { .. } => {
                c.close().await;
                return Run { job_id, first_stage, ended: Instant::now(), terminal: m };
            }
            _ => {}
        }
    }
}

async fn health(server: &TestServer) -> HealthResponse {
    get(&server.base, "/api/health", None).await.json().await.unwrap()
}

async fn job_status(server: &TestServer, id: &str) -> JobStatus {
    let r = get(&server.base, &format!("/api/jobs/{id}"), None).await;
    assert_eq!(r.status(), 200, "GET /api/jobs/{id}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cpu_workers_run_two_jobs_at_once() {
    let server = TestServer::start(Options { workers: 2, ..Default::default() }).await;
    let h = health(&server).await;
    assert_eq!(h.workers.len(), 2, "{h:?}");
    assert!(h.workers.iter().all(|w| w.state == WorkerState::Idle && w.jobs_done == 0));

    let (a, b) = tokio::join!(run_one(&server, "a"), run_one(&server, "b"));
    for r in [&a, &b] {
        assert!(matches!(r.terminal, ServerMessage::Done { .. }), "{:?}", r.terminal);
    }
    // Both were running at once: each started before the other ended.
    let (sa, sb) = (a.first_stage.unwrap(), b.first_stage.unwrap());
    assert!(sa < b.ended && sb < a.ended, "the two jobs ran one after the other");

    let workers: Vec<u32> = [&a, &b]
        .iter()
        .map(|r| match &r.terminal {
            ServerMessage::Done { metadata, .. } => {
                assert_eq!(metadata.job_id.as_deref(), Some(r.job_id.as_str()));
                metadata.worker.unwrap()
            }
            _ => unreachable!(),
        })
        .collect();
    assert_ne!(workers[0], workers[1], "both jobs ran on one worker");
    let list: MeshList = get(&server.base, "/api/meshes", None).await.json().await.unwrap();
    assert_eq!(list.items.len(), 2);
    // A worker counts a job right after publishing its end: give it a moment.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(&server).await;
        if h.workers.iter().map(|w| w.jobs_done).sum::<u64>() == 2 && h.queue.running == 0 {
            break;
        }
        assert!(Instant::now() < until, "the workers never counted both jobs: {:?}", h.workers);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = job_status(&server, &a.job_id).await;
    assert_eq!((done.state, done.attempts), (JobState::Succeeded, 1));
    assert!(matches!(done.terminal, Some(ServerMessage::Done { .. })));
    assert_eq!(get(&server.base, "/api/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", None).await.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_outside_a_job_is_reported_and_its_job_finishes_on_the_other() {
    let hooks = TestHooks::panic_on_first_take();
    let server = TestServer::start(Options { workers: 2, test_hooks: hooks, ..Default::default() }).await;
    let run = run_one(&server, "survivor").await;
    let ServerMessage::Done { metadata, .. } = &run.terminal else { panic!("{:?}", run.terminal) };
    let h = health(&server).await;
    assert_eq!(h.status, "ok", "one worker is still alive");
    let dead: Vec<_> = h.workers.iter().filter(|w| w.state == WorkerState::Dead).collect();
    assert_eq!(dead.len(), 1, "{:?}", h.workers);
    assert_ne!(Some(dead[0].id), metadata.worker, "the job finished on the worker that lived");
    let status = job_status(&server, &run.job_id).await;
    assert_eq!(status.attempts, 2, "the dead worker's run counts as an attempt");
    // The survivor keeps taking jobs.
    assert!(matches!(run_one(&server, "next").await.terminal, ServerMessage::Done { .. }));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_worker_is_dead_health_is_degraded_and_jobs_get_503() {
    let hooks = TestHooks::panic_on_first_take();
    let server = TestServer::start(Options { workers: 1, test_hooks: hooks, ..Default::default() }).await;
    let run = run_one(&server, "doomed").await;
    match &run.terminal {
        ServerMessage::Error { code: ErrorCode::Unavailable, .. } => {}
        other => panic!("{other:?}"),
    }
    let h = health(&server).await;
    assert_eq!(h.status, "degraded");
    let form =
        reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(test_png()).file_name("a.png"));
    let r = reqwest::Client::new().post(format!("{}/api/generate", server.base)).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    // Over the WebSocket too.
    let mut c = WsClient::connect(&server.ws_url(None)).await.unwrap();
    c.generate(&fast_params(), &test_png(), "late").await.unwrap();
    match c.next().await.unwrap() {
        ServerMessage::Error { code: ErrorCode::Unavailable, .. } => {}
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_fails_and_the_worker_takes_the_next() {
    let hooks = TestHooks::stall_first_job(Duration::from_secs(4));
    let server = TestServer::start(Options {
        workers: 1,
        job_timeout: Some(Duration::from_millis(1500)),
        test_hooks: hooks,
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let stuck = run_one(&server, "stuck").await;
    match &stuck.terminal {
        ServerMessage::Error { code: ErrorCode::DeadlineExceeded, message, .. } => {
            assert!(message.contains("--job-timeout"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(4), "the deadline error came only when the stage returned");
    let next = run_one(&server, "next").await;
    assert!(matches!(next.terminal, ServerMessage::Done { .. }), "{:?}", next.terminal);
    let list: MeshList = get(&server.base, "/api/meshes", None).await.json().await.unwrap();
    assert_eq!(list.items.len(), 1, "the stuck job stored nothing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_answerable_after_a_restart() {
    let server = TestServer::start(Options { workers: 1, ..Default::default() }).await;
    let done = run_one(&server, "before").await;
    assert!(matches!(done.terminal, ServerMessage::Done { .. }));
    let opts = server.restart_options();
    server.stop().await;
    let server = TestServer::start(opts).await;
    let status = job_status(&server, &done.job_id).await;
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(status.terminal, Some(done.terminal.clone()));
    let mut c = WsClient::connect(&server.ws_url(None)).await.unwrap();
    c.send(&ClientMessage::Subscribe { job_id: done.job_id.clone() }).await.unwrap();
    match c.next().await.unwrap() {
        ServerMessage::Status { state: JobState::Succeeded, stages, .. } => assert!(!stages.is_empty()),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.next().await.unwrap(), done.terminal);
    server.stop().await;
}
