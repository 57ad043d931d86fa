//! A cluster of real processes: `sf3d serve --nats --db` web tiers and `sf3d worker --device cpu` workers on the
//! test NATS and PostgreSQL (or a `nats-server` of the test's own, to restart it). Jobs spread over the workers;
//! a worker killed with SIGKILL mid-job hands its job to another (one gallery row, and the client that started it
//! sees `done` without reconnecting); a web tier killed mid-job leaves the job running, and the client finds its
//! end on the restarted tier; a job started through one tier is followed and downloaded through another; a full
//! queue answers 429; tiers and workers come back by themselves after NATS restarted.
//!
//! Needs the test services ([`sf3d_backend::test_services`]); skips loudly without them, fails under
//! `SF3D_REQUIRE_SERVICES=1` (`cargo xtask test`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use sf3d_backend::test_services::{OwnNatsServer, TestCluster, test_postgres};
use sf3d_shared::api::{HEADER_MESH_ID, HEADER_STAGE_TIMINGS, JobStatus};
use sf3d_shared::{
    ClientMessage, ErrorCode, GenerateParams, HealthResponse, ImageRef, JobState, MeshList, ServerMessage, StageState,
    StageTiming,
};
use tokio_tungstenite::tungstenite::Message;

mod procs;
use procs::{Proc, Ws, connect, free_port, image, next};

/// Ack wait of the test clusters: a dead worker's job moves on after this.
const ACK_WAIT: &str = "3";

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sf3d-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Where a test's cluster lives.
struct Cluster {
    nats: String,
    db: String,
    name: String,
    dir: PathBuf,
}

impl Cluster {
    fn sf3d(&self, role: &str, extra: &[&str]) -> Proc {
        let data = self.dir.join(format!("{role}-{}", free_port()));
        Proc(
            Command::new(env!("CARGO_BIN_EXE_sf3d"))
                .arg(role)
                .args(["--nats", &self.nats, "--db", &self.db, "--cluster", &self.name, "--ack-wait", ACK_WAIT])
                .args(["--data", data.to_str().unwrap()])
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("sf3d starts"),
        )
    }

    /// A web tier on `port`.
    fn tier(&self, port: u16, extra: &[&str]) -> Proc {
        let port = port.to_string();
        let mut args = vec!["--port", port.as_str()];
        args.extend_from_slice(extra);
        self.sf3d("serve", &args)
    }

    /// A worker process named `name` with one CPU worker.
    fn worker(&self, name: &str, extra: &[&str]) -> Proc {
        let mut args = vec!["--device", "cpu", "--name", name];
        args.extend_from_slice(extra);
        self.sf3d("worker", &args)
    }
}

fn base(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

async fn health(port: u16) -> Option<HealthResponse> {
    reqwest::get(format!("{}/api/health", base(port))).await.ok()?.json().await.ok()
}

/// Waits until the tier on `port` answers and hears from exactly the worker processes `nodes`.
async fn wait_for_workers(port: u16, nodes: &[&str], procs: &mut [&mut Proc]) -> HealthResponse {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(h) = health(port).await {
            let heard: HashSet<&str> = h.workers.iter().filter_map(|w| w.node.as_deref()).collect();
            if heard == nodes.iter().copied().collect() {
                return h;
            }
        }
        for p in procs.iter_mut() {
            assert!(p.running(), "a process of the cluster exited");
        }
        assert!(Instant::now() < until, "the tier on {port} never heard from {nodes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(ws: &mut Ws, m: &ClientMessage) {
    ws.send(Message::Text(serde_json::to_string(m).unwrap().into())).await.unwrap();
}

fn params() -> GenerateParams {
    GenerateParams { texture_resolution: 512, ..Default::default() }
}

/// Sends `generate` with the image, tagged `request_id`.
async fn generate(ws: &mut Ws, request_id: &str) {
    let img = image();
    let generate = ClientMessage::Generate {
        request_id: Some(request_id.into()),
        params: params(),
        image: ImageRef::Binary { size: img.len() as u64, filename: Some(format!("{request_id}.png")) },
    };
    send(ws, &generate).await;
    ws.send(Message::Binary(img.into())).await.unwrap();
}

/// Reads until the end of `job_id`, which must be `done`; returns its mesh id.
async fn until_done(ws: &mut Ws, job_id: &str) -> String {
    loop {
        match next(ws).await {
            ServerMessage::Done { job_id: j, mesh_id, .. } if j == job_id => return mesh_id,
            m @ (ServerMessage::Error { .. } | ServerMessage::Cancelled { .. }) => panic!("{m:?}"),
            _ => {}
        }
    }
}

async fn job_status(port: u16, job_id: &str) -> JobStatus {
    reqwest::get(format!("{}/api/jobs/{job_id}", base(port))).await.unwrap().json().await.unwrap()
}

async fn meshes(port: u16) -> MeshList {
    reqwest::get(format!("{}/api/meshes", base(port))).await.unwrap().json().await.unwrap()
}

/// The test's cluster on the test NATS and PostgreSQL, or `None` (skipped) without them.
fn shared_cluster(test: &str) -> Option<(TestCluster, Cluster)> {
    let t = TestCluster::shared_for_test(test)?;
    let c =
        Cluster { nats: t.nats.clone().unwrap(), db: t.url.clone(), name: t.cluster.to_string(), dir: temp_dir(test) };
    Some((t, c))
}

#[test]
fn jobs_spread_over_two_workers_and_two_tiers_show_the_same_jobs() {
    let Some((_cleanup, c)) = shared_cluster("spread") else { return };
    let (pa, pb) = (free_port(), free_port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut a, mut b) = (c.tier(pa, &[]), c.tier(pb, &[]));
        let (mut w1, mut w2) = (c.worker("w1", &[]), c.worker("w2", &[]));
        let h = wait_for_workers(pa, &["w1", "w2"], &mut [&mut a, &mut b, &mut w1, &mut w2]).await;
        assert_eq!(h.status, "ok");
        assert!(h.model.test_model, "health names the workers' model: {:?}", h.model);
        wait_for_workers(pb, &["w1", "w2"], &mut [&mut a, &mut b]).await;

        // Four jobs through tier A.
        let mut ws = connect(pa).await;
        for i in 0..4 {
            generate(&mut ws, &format!("r{i}")).await;
        }
        let mut ids = Vec::new();
        let mut done = HashSet::new();
        while done.len() < 4 {
            match next(&mut ws).await {
                ServerMessage::Accepted { job_id, .. } => ids.push(job_id),
                ServerMessage::Done { job_id, .. } => {
                    done.insert(job_id);
                }
                m @ (ServerMessage::Error { .. } | ServerMessage::Cancelled { .. }) => panic!("{m:?}"),
                _ => {}
            }
        }
        assert_eq!(done, ids.iter().cloned().collect());
        // Health counts from the heartbeats, which may be a beat behind.
        let until = Instant::now() + Duration::from_secs(15);
        let per_node = loop {
            let h = health(pa).await.unwrap();
            let per_node: Vec<(String, u64)> =
                h.workers.iter().map(|w| (w.node.clone().unwrap(), w.jobs_done)).collect();
            if per_node.iter().map(|(_, n)| n).sum::<u64>() == 4 || Instant::now() > until {
                break per_node;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(per_node.iter().map(|(_, n)| n).sum::<u64>(), 4, "{per_node:?}");
        assert!(per_node.iter().all(|(_, n)| *n >= 1), "every worker ran a job: {per_node:?}");
        let rows = meshes(pb).await;
        assert_eq!(rows.items.len(), 4, "tier B lists the four meshes");
        let made_by: HashSet<String> = rows.items.iter().filter_map(|e| e.metadata.node.clone()).collect();
        assert_eq!(made_by, ["w1".to_string(), "w2".to_string()].into(), "each mesh names the process that made it");

        // A tweak through tier B runs on whichever worker is free, from the scene codes stored with the mesh.
        let parent = &rows.items[0].id;
        let r = reqwest::Client::new()
            .post(format!("{}/api/meshes/{parent}/regenerate", base(pb)))
            .json(&serde_json::json!({"params": {"texture_resolution": 512, "vertex_count": 400}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let timings: Vec<StageTiming> =
            serde_json::from_str(r.headers()[HEADER_STAGE_TIMINGS].to_str().unwrap()).unwrap();
        assert!(timings.iter().filter(|t| t.stage.is_encode()).all(|t| t.state == StageState::Cached), "{timings:?}");

        // A fifth job through A, followed through B from its start, then downloaded through B.
        generate(&mut ws, "r5").await;
        let id = loop {
            if let ServerMessage::Accepted { job_id, .. } = next(&mut ws).await {
                break job_id;
            }
        };
        let mut watcher = connect(pb).await;
        send(&mut watcher, &ClientMessage::Subscribe { job_id: id.clone() }).await;
        match next(&mut watcher).await {
            ServerMessage::Status { job_id, state, .. } => {
                assert_eq!(job_id, id);
                assert_ne!(state, JobState::Failed);
            }
            other => panic!("subscribe answers with the job's state first: {other:?}"),
        }
        let mesh_b = until_done(&mut watcher, &id).await;
        let mesh_a = until_done(&mut ws, &id).await;
        assert_eq!(mesh_a, mesh_b);
        let status = job_status(pb, &id).await;
        assert_eq!((status.state, status.attempts), (JobState::Succeeded, 1));
        let glb = |port| reqwest::get(format!("{}/api/meshes/{mesh_a}/mesh.glb", base(port)));
        let (ga, gb) = (glb(pa).await.unwrap(), glb(pb).await.unwrap());
        assert_eq!((ga.status().as_u16(), gb.status().as_u16()), (200, 200));
        assert_eq!(ga.bytes().await.unwrap(), gb.bytes().await.unwrap());
    });
    std::fs::remove_dir_all(&c.dir).ok();
}

#[test]
fn a_killed_workers_job_finishes_on_the_other_once() {
    let Some((_cleanup, c)) = shared_cluster("kill-worker") else { return };
    let port = free_port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut tier = c.tier(port, &[]);
        // The first worker stores the result, then stalls before it reports it: killed there, the job's next run
        // must find that result rather than store a second one.
        let mut w1 = c.worker("w1", &["--test-hook", "stall-after-store=120000"]);
        wait_for_workers(port, &["w1"], &mut [&mut tier, &mut w1]).await;
        let mut ws = connect(port).await;
        generate(&mut ws, "only").await;
        let id = loop {
            match next(&mut ws).await {
                ServerMessage::Accepted { job_id, .. } => break job_id,
                m @ ServerMessage::Error { .. } => panic!("{m:?}"),
                _ => {}
            }
        };
        let until = Instant::now() + Duration::from_secs(60);
        while meshes(port).await.items.is_empty() {
            assert!(Instant::now() < until, "the first run never stored its result");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut w2 = c.worker("w2", &[]);
        wait_for_workers(port, &["w1", "w2"], &mut [&mut tier, &mut w2]).await;
        assert_eq!(job_status(port, &id).await.state, JobState::Running);
        w1.kill_9();
        let killed = Instant::now();
        // The second run's first event (it carries the run's number) reaches the tier.
        let running_again = loop {
            if job_status(port, &id).await.attempts == 2 {
                break killed.elapsed();
            }
            assert!(killed.elapsed() < Duration::from_secs(60), "the job never ran again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // The same connection: no reconnect, no subscribe.
        let mesh = until_done(&mut ws, &id).await;
        eprintln!(
            "[measure] worker killed -> job running again: {running_again:?} (ack wait {ACK_WAIT} s); -> done: {:?}",
            killed.elapsed()
        );
        let rows: Vec<_> = meshes(port)
            .await
            .items
            .into_iter()
            .filter(|e| e.metadata.job_id.as_deref() == Some(id.as_str()))
            .collect();
        assert_eq!(rows.len(), 1, "one gallery row per job");
        assert_eq!(rows[0].id, mesh);
        assert_eq!(rows[0].metadata.node.as_deref(), Some("w1"), "the second run reported the first run's result");
        let status = job_status(port, &id).await;
        assert_eq!((status.state, status.attempts), (JobState::Succeeded, 2));
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let h = wait_for_workers(port, &["w2"], &mut [&mut tier, &mut w2]).await;
            if h.workers[0].jobs_done == 1 {
                break;
            }
            assert!(Instant::now() < until, "the second worker did not end the job: {:?}", h.workers);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    std::fs::remove_dir_all(&c.dir).ok();
}

#[test]
fn a_job_outlives_its_web_tier_and_a_full_queue_answers_429() {
    let Some((_cleanup, c)) = shared_cluster("kill-tier") else { return };
    let port = free_port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut tier = c.tier(port, &["--max-queue", "1"]);
        let mut w = c.worker("w1", &["--test-hook", "stall-first-job=4000"]);
        wait_for_workers(port, &["w1"], &mut [&mut tier, &mut w]).await;
        let mut ws = connect(port).await;
        generate(&mut ws, "long").await;
        let id = loop {
            match next(&mut ws).await {
                ServerMessage::Stage { job_id, state: StageState::Started, .. } => break job_id,
                m @ ServerMessage::Error { .. } => panic!("{m:?}"),
                _ => {}
            }
        };
        // The queue holds one job (running counts): the next is refused.
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(image()).file_name("more.png"));
        let r =
            reqwest::Client::new().post(format!("{}/api/generate", base(port))).multipart(form).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("retry-after"));

        tier.kill_9();
        drop(ws);
        let mut tier = c.tier(port, &["--max-queue", "1"]);
        wait_for_workers(port, &["w1"], &mut [&mut tier, &mut w]).await;
        let mut ws = connect(port).await;
        send(&mut ws, &ClientMessage::Subscribe { job_id: id.clone() }).await;
        assert!(matches!(next(&mut ws).await, ServerMessage::Status { .. }));
        let mesh = until_done(&mut ws, &id).await;
        let entry = reqwest::get(format!("{}/api/meshes/{mesh}", base(port))).await.unwrap();
        assert_eq!(entry.status(), 200);
        assert_eq!(job_status(port, &id).await.state, JobState::Succeeded);
    });
    std::fs::remove_dir_all(&c.dir).ok();
}

#[test]
fn tiers_and_workers_come_back_after_nats_restarted() {
    let Some(db) = test_postgres() else { return };
    let Some(mut nats) = OwnNatsServer::start("cluster-restart") else { return };
    // Dropped before the NATS server: the schema goes with it.
    let cleanup = TestCluster {
        url: db.clone(),
        nats: Some(nats.url()),
        cluster: format!("t{}-nats-restart", std::process::id()).parse().unwrap(),
    };
    let c = Cluster { nats: nats.url(), db, name: cleanup.cluster.to_string(), dir: temp_dir("nats-restart") };
    let port = free_port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut tier = c.tier(port, &[]);
        let mut w = c.worker("w1", &[]);
        wait_for_workers(port, &["w1"], &mut [&mut tier, &mut w]).await;
        let post = || async {
            let form = reqwest::multipart::Form::new()
                .part("image", reqwest::multipart::Part::bytes(image()).file_name("x.png"))
                .text("texture_resolution", "512");
            reqwest::Client::new().post(format!("{}/api/generate", base(port))).multipart(form).send().await.unwrap()
        };
        let first = post().await;
        assert_eq!(first.status(), 200, "{:?}", first.text().await);

        nats.kill();
        nats.restart();
        wait_for_workers(port, &["w1"], &mut [&mut tier, &mut w]).await;
        let until = Instant::now() + Duration::from_secs(60);
        let second = loop {
            let r = post().await;
            if r.status() == 200 || Instant::now() > until {
                break r;
            }
            // Right after the restart a call may still meet the old connection: a clear 503, then it works.
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], serde_json::json!(ErrorCode::Unavailable), "{body}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(second.status(), 200);
        assert!(second.headers().contains_key(HEADER_MESH_ID));
    });
    std::fs::remove_dir_all(&c.dir).ok();
}

#[test]
fn a_job_whose_every_worker_died_ends_interrupted_and_leaves_the_queue() {
    let Some((_cleanup, c)) = shared_cluster("exhausted") else { return };
    let port = free_port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut tier = c.tier(port, &[]);
        wait_for_workers(port, &[], &mut [&mut tier]).await;
        let mut ws = connect(port).await;
        let stall = ["--test-hook", "stall-first-job=120000"];
        let mut id = None;
        for name in ["w1", "w2"] {
            // Each worker stalls in its first job's first stage and dies there.
            let mut w = c.worker(name, &stall);
            wait_for_workers(port, &[name], &mut [&mut tier, &mut w]).await;
            if id.is_none() {
                generate(&mut ws, "doomed").await;
            }
            let started = loop {
                match next(&mut ws).await {
                    ServerMessage::Accepted { job_id, .. } => id = Some(job_id),
                    ServerMessage::Stage { job_id, state: StageState::Started, .. } => break job_id,
                    m @ ServerMessage::Error { .. } => panic!("{m:?}"),
                    _ => {}
                }
            };
            assert_eq!(Some(&started), id.as_ref());
            w.kill_9();
        }
        // JetStream notices a job past its deliveries when a worker asks for the next one.
        let mut w3 = c.worker("w3", &[]);
        wait_for_workers(port, &["w3"], &mut [&mut tier, &mut w3]).await;
        let id = id.unwrap();
        match next(&mut ws).await {
            ServerMessage::Error { job_id, code: ErrorCode::Interrupted, .. } => assert_eq!(job_id.as_ref(), Some(&id)),
            other => panic!("expected interrupted: {other:?}"),
        }
        let status = job_status(port, &id).await;
        assert_eq!((status.state, status.attempts), (JobState::Failed, 2));
        let h = health(port).await.unwrap();
        assert_eq!((h.queue.waiting, h.queue.running), (0, 0), "the job left the queue");
        assert_eq!(h.workers[0].jobs_done, 0, "the job never reached a third worker");
    });
    std::fs::remove_dir_all(&c.dir).ok();
}
