//! Jobs outlive the process: `kill -9` a real `sf3d serve` while one job runs and two wait, start it again on
//! the same data folder, and every job ends `done` exactly once in the gallery, in the old order; a client that
//! subscribes to each id after the restart sees its end. The running job is killed after it stored its result
//! and before it reported it: its second run must find that result instead of storing another.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use sf3d_shared::api::JobStatus;
use sf3d_shared::{ClientMessage, GenerateParams, ImageRef, JobState, MeshList, ServerMessage, Stage, StageState};
use tokio_tungstenite::tungstenite::Message;

mod procs;
use procs::{Proc, connect, free_port, image, next};

fn serve(data: &Path, port: u16, extra: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_sf3d"))
            .args(["serve", "--device", "cpu", "--port", &port.to_string(), "--data", data.to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("sf3d serve starts"),
    )
}

async fn wait_ready(base: &str, server: &mut Proc) {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/api/health")).await
            && r.status() == 200
        {
            return;
        }
        assert!(server.running(), "the server exited before it was ready");
        assert!(Instant::now() < until, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn meshes(base: &str) -> MeshList {
    reqwest::get(format!("{base}/api/meshes")).await.unwrap().json().await.unwrap()
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("sf3d-durable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn kill_9_loses_no_job_and_duplicates_none() {
    let data = temp_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The first job stalls after storing its result, long enough to be killed there.
        let mut first = serve(&data, port, &["--test-hook", "stall-after-store=120000"]);
        wait_ready(&base, &mut first).await;
        let mut ws = connect(port).await;
        let params = GenerateParams { texture_resolution: 512, ..Default::default() };
        let img = image();
        // In submission order (accepted messages of one connection may arrive in any order).
        let mut ids = vec![String::new(); 3];
        for i in 0..3 {
            let generate = ClientMessage::Generate {
                request_id: Some(format!("r{i}")),
                params: params.clone(),
                image: ImageRef::Binary { size: img.len() as u64, filename: Some(format!("item{i}.png")) },
            };
            ws.send(Message::Text(serde_json::to_string(&generate).unwrap().into())).await.unwrap();
            ws.send(Message::Binary(img.clone().into())).await.unwrap();
        }
        let mut stored = false;
        let mut accepted = 0;
        while accepted < 3 || !stored {
            match next(&mut ws).await {
                ServerMessage::Accepted { job_id, request_id: Some(r), .. } => {
                    ids[r.trim_start_matches('r').parse::<usize>().unwrap()] = job_id;
                    accepted += 1;
                }
                ServerMessage::Stage { job_id, stage: Stage::Export, state: StageState::Finished, .. }
                    if ids.first() == Some(&job_id) =>
                {
                    // Its entry is written right after the export: wait for it in the gallery.
                    let until = Instant::now() + Duration::from_secs(60);
                    while meshes(&base).await.items.is_empty() {
                        assert!(Instant::now() < until, "the first job's entry never appeared");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    stored = true;
                }
                ServerMessage::Error { code, message, .. } => panic!("{code:?}: {message}"),
                _ => {}
            }
        }
        let status: JobStatus =
            reqwest::get(format!("{base}/api/jobs/{}", ids[0])).await.unwrap().json().await.unwrap();
        assert_eq!(status.state, JobState::Running, "killed while it runs");
        first.kill_9();
        drop(ws);

        let mut second = serve(&data, port, &[]);
        wait_ready(&base, &mut second).await;
        let mut ws = connect(port).await;
        for id in &ids {
            ws.send(Message::Text(
                serde_json::to_string(&ClientMessage::Subscribe { job_id: id.clone() }).unwrap().into(),
            ))
            .await
            .unwrap();
        }
        let mut ended = Vec::new();
        let mut statuses = 0;
        while ended.len() < 3 {
            match next(&mut ws).await {
                ServerMessage::Status { job_id, state, .. } => {
                    assert!(ids.contains(&job_id));
                    assert_ne!(state, JobState::Failed, "{job_id} failed across the restart");
                    statuses += 1;
                }
                ServerMessage::Done { job_id, metadata, .. } => {
                    assert_eq!(metadata.job_id.as_ref(), Some(&job_id));
                    ended.push(job_id);
                }
                m @ (ServerMessage::Error { .. } | ServerMessage::Cancelled { .. }) => panic!("{m:?}"),
                _ => {}
            }
        }
        assert_eq!(statuses, 3, "every subscribe is answered with the job's state");
        assert_eq!(ended, ids, "the jobs resumed in their old order");

        let client = reqwest::Client::new();
        let first_job: JobStatus =
            client.get(format!("{base}/api/jobs/{}", ids[0])).send().await.unwrap().json().await.unwrap();
        assert_eq!(first_job.state, JobState::Succeeded);
        assert_eq!(first_job.attempts, 2, "the killed run counts as the first attempt");
        for id in &ids[1..] {
            let s: JobStatus = client.get(format!("{base}/api/jobs/{id}")).send().await.unwrap().json().await.unwrap();
            assert_eq!((s.state, s.attempts), (JobState::Succeeded, 1));
        }
        let list = meshes(&base).await;
        let jobs: Vec<_> = list.items.iter().filter_map(|e| e.metadata.job_id.clone()).collect();
        assert_eq!(jobs.len(), 3, "{jobs:?}");
        assert_eq!(jobs.iter().collect::<HashSet<_>>().len(), 3, "a job stored twice: {jobs:?}");
        assert!(std::fs::read_dir(data.join("jobs")).unwrap().next().is_none(), "finished jobs keep no image on disk");
        drop(second);
    });
    std::fs::remove_dir_all(&data).ok();
}
