//! The `sf3d` binary: `run` (built-in test model, golden model, batches with bad images, the scene-code cache,
//! a hub model served by a local server the way the Hugging Face hub serves files), `check-golden`, `serve`'s
//! refusal to listen on the network without a key, and `remote` against a running server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sf3d_shared::MeshMetadata;

static N: AtomicUsize = AtomicUsize::new(0);

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "sf3d-cli-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn golden() -> PathBuf {
    sf3d::golden::GoldenSet::default_dir()
}

fn sf3d(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sf3d"));
    c.args(args).env("RUST_LOG", "warn");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("sf3d runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn png(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, sf3d::pipeline::png_bytes(&sf3d::test_model::bench_image(200)).unwrap()).unwrap();
    p
}

fn read_meta(dir: &Path) -> MeshMetadata {
    serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap()
}

fn glb_positions_and_faces(bytes: &[u8]) -> (Vec<[f32; 3]>, Vec<[u32; 3]>) {
    let g = gltf::Gltf::from_slice(bytes).unwrap();
    let blob = g.blob.clone().unwrap();
    let prim = g.meshes().next().unwrap().primitives().next().unwrap();
    let reader = prim.reader(|_| Some(&blob[..]));
    let pos: Vec<[f32; 3]> = reader.read_positions().unwrap().collect();
    let idx: Vec<u32> = reader.read_indices().unwrap().into_u32().collect();
    (pos, idx.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
}

/// With no model the built-in test model runs, every file is written and the output is labelled.
#[test]
fn run_with_the_builtin_test_model_writes_every_file() {
    let dir = temp_dir("builtin");
    let img = png(&dir, "thing.png");
    let out = dir.join("out");
    let o = sf3d(
        &["run", img.to_str().unwrap(), "--out", out.to_str().unwrap(), "--texture-resolution", "512"],
        &[("SF3D_MODEL", "")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("test model"), "{}", stderr(&o));
    let d = out.join("thing");
    for f in ["input.png", "preprocessed.png", "mesh.glb", "metadata.json"] {
        assert!(d.join(f).is_file(), "{f}");
    }
    let m = read_meta(&d);
    assert!(m.model.test_model);
    assert_eq!(m.params.texture_resolution, 512);
    assert_eq!(m.timings.len(), sf3d_shared::Stage::ALL.len());
    let glb = std::fs::read(d.join("mesh.glb")).unwrap();
    let digest: String = sha2_hex(&glb);
    assert_eq!(m.glb_sha256, digest);
    sf3d::mesh::glb::dump_for_validation("cli_builtin", &glb);
    let (pos, faces) = glb_positions_and_faces(&glb);
    assert_eq!((pos.len() as u64, faces.len() as u64), (m.vertex_count, m.face_count));
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A batch continues past a bad image, reports it in one line and exits non-zero.
#[test]
fn batch_continues_past_bad_images() {
    let dir = temp_dir("batch");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    png(&inputs, "a.png");
    std::fs::write(inputs.join("b.png"), b"not a png").unwrap();
    std::fs::write(inputs.join("notes.txt"), b"ignored").unwrap();
    let out = dir.join("out");
    let o =
        sf3d(&["run", inputs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--texture-resolution", "512"], &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("b.png: error: unsupported image"), "{err}");
    assert!(err.contains("1 of 2 images failed"), "{err}");
    assert!(out.join("a").join("mesh.glb").is_file());
    assert!(!out.join("notes").exists());
}

#[test]
fn bad_arguments_exit_non_zero_with_a_reason() {
    let dir = temp_dir("args");
    let img = png(&dir, "x.png");
    let o = sf3d(&["run", img.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--texture-resolution", "4096"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("texture_resolution"), "{}", stderr(&o));
    let o = sf3d(&["run", img.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--model", "/no/such/model"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/no/such/model"), "{}", stderr(&o));
    let o = sf3d(&["serve", "--host", "0.0.0.0", "--port", "0"], &[("SF3D_API_KEY", "")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--api-key"), "{}", stderr(&o));
}

/// `serve` refuses weak keys and unsafe or malformed site settings before loading the model (a model given as a
/// folder that does not exist shows that the refusal came first).
#[test]
fn serve_refuses_weak_keys_and_bad_site_settings_before_loading() {
    let dir = temp_dir("serve-refusals");
    let data = dir.to_str().unwrap();
    let refuse = |args: &[&str], envs: &[(&str, &str)], expect: &str| {
        let mut all = vec!["serve", "--port", "0", "--data", data, "--model", "/no/such/model"];
        all.extend_from_slice(args);
        let o = sf3d(&all, envs);
        assert!(!o.status.success(), "{args:?} started");
        let err = stderr(&o);
        assert!(err.contains(expect) && !err.contains("/no/such/model"), "{args:?}: {err}");
    };
    refuse(&["--api-key", "a"], &[], "too short (1 characters");
    refuse(&[], &[("SF3D_API_KEY", "0123456789")], "too short");
    let key_file = dir.join("key");
    std::fs::write(&key_file, "short\n").unwrap();
    refuse(&["--api-key-file", key_file.to_str().unwrap()], &[], "too short");
    refuse(&["--cors-origin", "*"], &[], "needs --api-key");
    refuse(&["--cors-origin", "laptop.lan"], &[], "--cors-origin \"laptop.lan\"");
    refuse(&["--allowed-host", "http://x/"], &[], "--allowed-host");
}

/// The key given to `serve` never reaches its log, even at debug level with `?token=` requests.
#[test]
fn the_api_key_never_reaches_the_log() {
    use std::io::{BufRead, Read, Write};
    let dir = temp_dir("serve-log");
    let key = "k-7f3a9c1e5b2d8046f1e9";
    let key_file = dir.join("key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sf3d"))
        .args(["-v", "serve", "--port", &port, "--data", dir.join("data").to_str().unwrap()])
        .args(["--api-key-file", key_file.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("the server exited: {log}");
        }
        log.push_str(&line);
        if line.contains("is serving") {
            break;
        }
    }
    let request = |path: &str| {
        let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(request(&format!("/api/meshes?token={key}")).starts_with("HTTP/1.1 200"));
    assert!(request("/api/meshes?token=wrong-but-long-enough").starts_with("HTTP/1.1 401"));
    let mut ws = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    write!(
        ws,
        "GET /ws?token={key} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    ws.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101", "the authenticated upgrade is accepted");
    drop(ws);
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    log.push_str(&rest);
    let _ = child.wait();
    assert!(log.contains("/api/meshes"), "requests are logged at debug level: {log}");
    assert!(!log.contains(key) && !log.contains("token="), "the key or the query reached the log: {log}");
}

/// The golden model through the CLI reproduces the reference's mesh.glb geometry: the same faces in the same
/// order, every face corner within 1e-4 (vertex welding differs where the unwrapper's layering does).
#[test]
fn run_on_the_golden_model_matches_the_reference_glb() {
    let dir = temp_dir("golden");
    let input = golden().join("input.png");
    let out = dir.join("out");
    let o = sf3d(
        &[
            "run",
            input.to_str().unwrap(),
            "--model",
            golden().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-crop",
            "--texture-resolution",
            "512",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ours = std::fs::read(out.join("input").join("mesh.glb")).unwrap();
    sf3d::mesh::glb::dump_for_validation("cli_golden", &ours);
    let reference = std::fs::read(golden().join("mesh.glb")).unwrap();
    let (pa, fa) = glb_positions_and_faces(&ours);
    let (pb, fb) = glb_positions_and_faces(&reference);
    assert_eq!(fa.len(), fb.len(), "face count");
    let mut max = 0f32;
    for (ta, tb) in fa.iter().zip(&fb) {
        for k in 0..3 {
            let (a, b) = (pa[ta[k] as usize], pb[tb[k] as usize]);
            for c in 0..3 {
                max = max.max((a[c] - b[c]).abs());
            }
        }
    }
    println!(
        "faces {}, our vertices {}, reference vertices {}, max corner error {max:.3e}",
        fa.len(),
        pa.len(),
        pb.len()
    );
    assert!(max <= 1e-4, "max corner error {max}");
    let m = read_meta(&out.join("input"));
    assert!(!m.model.test_model);
    assert_eq!(m.model.attribution, None, "tiny-a is not the release: no attribution");
}

/// Every golden set: `SF3D_GOLDEN` when set, else every folder with a `golden.safetensors` beside the default set
/// (`../shared/golden/*`: tiny-a, tiny-c, and any set added later).
fn golden_sets() -> Vec<PathBuf> {
    if std::env::var_os("SF3D_GOLDEN").is_some() {
        return vec![golden()];
    }
    let root = golden().parent().map(PathBuf::from).unwrap_or_default();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("golden.safetensors").is_file())
        .collect();
    sets.sort();
    sets
}

#[test]
fn check_golden_passes_on_every_set() {
    let sets = golden_sets();
    assert!(!sets.is_empty(), "no golden sets beside {}", golden().display());
    for set in sets {
        let o = sf3d(&["check-golden", set.to_str().unwrap()], &[]);
        let out = String::from_utf8_lossy(&o.stdout);
        println!("{out}");
        assert!(o.status.success(), "{}: {out}\n{}", set.display(), stderr(&o));
        assert!(!out.lines().any(|l| l.contains(" FAIL")), "{}: a FAIL row", set.display());
        for name in ["camera_embeds", "image_tokens", "backbone_out", "scene_codes", "grid_sdf", "mt_t_pos_idx"] {
            assert!(out.lines().any(|l| l.starts_with(name) && l.contains("pass")), "{name} row");
        }
        for name in ["unwrap face direction", "unwrap face layer", "mesh.glb face corners"] {
            assert!(out.lines().any(|l| l.starts_with(name) && l.contains("pass")), "{name} row");
        }
    }
    let o = sf3d(&["check-golden", "/no/such/golden"], &[]);
    assert!(!o.status.success());
}

/// `sf3d doctor` on this machine: what the binary is, what the host has, a verdict; exit 0 even without any
/// NVIDIA software.
#[test]
fn doctor_reports_build_host_and_verdict() {
    let o = sf3d(&["doctor"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    for prefix in ["binary:", "driver:", "libraries:", "verdict:"] {
        assert!(out.lines().any(|l| l.starts_with(prefix)), "{prefix} line missing:\n{out}");
    }
    if !cfg!(feature = "cuda") {
        assert!(out.contains("CPU build (no CUDA)"), "{out}");
    }
}

/// `--cache DIR`: the second run of the same image reports the encode stages as cached; a changed foreground
/// ratio misses; a corrupt cache file is recomputed with a warning.
#[test]
fn run_reuses_its_scene_code_cache() {
    let dir = temp_dir("cache");
    let img = png(&dir, "c.png");
    let cache = dir.join("cache");
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            img.to_str().unwrap(),
            "--texture-resolution",
            "512",
            "--cache",
            cache.to_str().unwrap(),
            "--out",
        ];
        let o = dir.join(out);
        let o = o.to_str().unwrap().to_string();
        args.push(&o);
        args.extend_from_slice(extra);
        let output = sf3d(&args, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        (read_meta(&dir.join(out).join("c")), stderr(&output))
    };
    let (first, _) = run("o1", &[]);
    assert!(first.timings.iter().all(|t| t.state != sf3d_shared::StageState::Cached));
    let (second, _) = run("o2", &["--remesh", "none", "--background", "auto"]);
    let cached: Vec<_> =
        second.timings.iter().filter(|t| t.state == sf3d_shared::StageState::Cached).map(|t| t.stage).collect();
    assert_eq!(cached.len(), 7, "{cached:?}");
    let (third, _) = run("o3", &["--foreground-ratio", "0.7"]);
    assert!(third.timings.iter().all(|t| t.state != sf3d_shared::StageState::Cached), "a changed ratio must miss");
    for entry in std::fs::read_dir(&cache).unwrap() {
        std::fs::write(entry.unwrap().path().join("scene_codes.safetensors"), b"broken").unwrap();
    }
    let (fourth, err) = run("o4", &[]);
    assert!(fourth.timings.iter().all(|t| t.state != sf3d_shared::StageState::Cached));
    assert!(err.contains("unusable"), "{err}");
}

/// `--model hf:ORG/NAME` downloads through hf-hub from `HF_ENDPOINT` into `HF_HOME`, here a local server that
/// answers like the hub (ranged GETs with `ETag`, `X-Repo-Commit`, `Content-Range`; 404 for absent files).
#[test]
fn hub_models_download_from_a_hub_compatible_server() {
    let dir = temp_dir("hub");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, requests) = rt.block_on(hub_server(golden()));
    let img = png(&dir, "h.png");
    let out = dir.join("out");
    let endpoint = format!("http://{addr}");
    let home = dir.join("hf-home");
    let args = [
        "run",
        img.to_str().unwrap(),
        "--model",
        "hf:test-org/tiny-a",
        "--out",
        out.to_str().unwrap(),
        "--texture-resolution",
        "512",
    ];
    let o =
        sf3d(&args, &[("HF_ENDPOINT", &endpoint), ("HF_HOME", home.to_str().unwrap()), ("HF_TOKEN", "hf_test_token")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_meta(&out.join("h"));
    assert_eq!(m.model.id, "hf:test-org/tiny-a");
    let seen = requests.lock().unwrap().clone();
    assert!(seen.iter().any(|r| r.contains("/test-org/tiny-a/resolve/main/model.safetensors")), "{seen:?}");
    assert!(seen.iter().all(|r| r.ends_with("auth=Bearer hf_test_token")), "the token is sent: {seen:?}");
    // Cached: a second run works with the server gone.
    drop(rt);
    let o = sf3d(&args, &[("HF_ENDPOINT", &endpoint), ("HF_HOME", home.to_str().unwrap())]);
    assert!(o.status.success(), "offline re-run from the cache: {}", stderr(&o));
}

type Requests = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

async fn hub_server(root: PathBuf) -> (std::net::SocketAddr, Requests) {
    use axum::extract::{Path as AxPath, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let requests: Requests = Default::default();
    let state = (root, requests.clone());
    async fn resolve(
        State((root, log)): State<(PathBuf, Requests)>,
        AxPath((_org, _name, _rev, file)): AxPath<(String, String, String, String)>,
        headers: HeaderMap,
        uri: axum::http::Uri,
    ) -> axum::response::Response {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        log.lock().unwrap().push(format!("{} auth={auth}", uri.path()));
        let Ok(bytes) = std::fs::read(root.join(&file)) else { return StatusCode::NOT_FOUND.into_response() };
        let total = bytes.len();
        let start: usize = headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let end = match headers.get("range").and_then(|v| v.to_str().ok()) {
            Some("bytes=0-0") => 0,
            _ => total - 1,
        };
        let body = bytes[start..=end].to_vec();
        let etag = format!("\"{}\"", sha2_hex(&bytes));
        let mut h = HeaderMap::new();
        h.insert("etag", etag.parse().unwrap());
        h.insert("x-repo-commit", "0123456789abcdef0123456789abcdef01234567".parse().unwrap());
        h.insert("content-range", format!("bytes {start}-{end}/{total}").parse().unwrap());
        (StatusCode::PARTIAL_CONTENT, h, body).into_response()
    }
    let app =
        axum::Router::new().route("/{org}/{name}/resolve/{rev}/{*file}", axum::routing::get(resolve)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, requests)
}

/// `sf3d remote` against a running server writes mesh.glb + metadata.json with client timings, and `--into`
/// merges a `mesh` section into an existing metadata.json without touching the other keys.
#[test]
fn remote_client_saves_results_and_merges_into_the_seed_folder() {
    let dir = temp_dir("remote");
    let data = dir.join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (base, stop) = rt.block_on(async {
        let pipeline = sf3d_backend::model_source::load_pipeline(
            &sf3d_backend::model_source::ModelSource::Builtin,
            sf3d_backend::model_source::DeviceChoice::Cpu,
            None,
            Default::default(),
        )
        .unwrap();
        let gallery = std::sync::Arc::new(sf3d_backend::gallery::Gallery::open(&data).unwrap());
        let engine =
            sf3d_backend::worker::Engine::new(pipeline, gallery, sf3d_backend::cache::EncodeCache::new(1 << 28));
        let server = sf3d_backend::Server::start(engine, Default::default(), 4).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sf3d_backend::serve(listener, server.state.clone(), async move {
            let _ = rx.await;
        }));
        (format!("http://{addr}"), (tx, server))
    });
    let img = png(&dir, "shirt.png");
    let out = dir.join("out");
    let o = sf3d(
        &[
            "remote",
            img.to_str().unwrap(),
            "--server",
            &base,
            "--out",
            out.to_str().unwrap(),
            "--texture-resolution",
            "512",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("Backbone") || err.contains("backbone"), "stage progress shown: {err}");
    let m = read_meta(&out.join("shirt"));
    let client = m.client.expect("client figures");
    assert!(client.round_trip_ms > 0.0 && client.server == base);
    assert!(out.join("shirt").join("mesh.glb").is_file());

    // The seed pipeline's folder.
    let seed = dir.join("20261127_103000");
    std::fs::create_dir_all(&seed).unwrap();
    for f in ["original_frame.png", "mask.png", "generated_clothing.png"] {
        std::fs::write(seed.join(f), b"x").unwrap();
    }
    std::fs::write(seed.join("metadata.json"), br#"{"prompt": "a red shirt", "timings": {"speech_ms": 812}}"#).unwrap();
    let gen_img = seed.join("generated_clothing.png");
    std::fs::write(&gen_img, sf3d::pipeline::png_bytes(&sf3d::test_model::bench_image(160)).unwrap()).unwrap();
    let o = sf3d(
        &[
            "remote",
            gen_img.to_str().unwrap(),
            "--server",
            &base,
            "--into",
            seed.to_str().unwrap(),
            "--texture-resolution",
            "512",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let merged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(seed.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(merged["prompt"], "a red shirt");
    assert_eq!(merged["timings"]["speech_ms"], 812);
    assert_eq!(merged["mesh"]["file"], "mesh.glb");
    assert!(merged["mesh"]["client"]["round_trip_ms"].as_f64().unwrap() > 0.0);
    assert!(seed.join("mesh.glb").is_file());

    // Connection refused and wrong server give one-line reasons and a non-zero exit.
    let o =
        sf3d(&["remote", img.to_str().unwrap(), "--server", "http://127.0.0.1:9", "--out", out.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));

    let (tx, server) = stop;
    let _ = tx.send(());
    rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(200)).await });
    server.stop();
}

/// An opaque PNG: the bench image's object on a white backdrop (background removal applies).
fn opaque_png(dir: &Path, name: &str) -> PathBuf {
    let mut img = sf3d::test_model::bench_image(200);
    for p in img.pixels_mut() {
        if p.0[3] < 128 {
            p.0 = [255, 255, 255, 255];
        }
        p.0[3] = 255;
    }
    let path = dir.join(name);
    std::fs::write(&path, sf3d::pipeline::png_bytes(&img).unwrap()).unwrap();
    path
}

/// `--bg-model auto` without rembg's file runs the built-in remover and says so in one log line; with the file in
/// `$U2NET_HOME` it runs U²-Net (skipped without python3 + onnxruntime, see sf3d::u2net::reference); a broken
/// file stops the run with the file's name.
#[test]
fn background_model_auto_falls_back_finds_rembgs_file_and_refuses_broken_ones() {
    let dir = temp_dir("bg-model");
    let empty = temp_dir("bg-empty");
    let img = opaque_png(&dir, "white.png");
    let (e, o1) = (empty.to_str().unwrap(), dir.join("out-builtin"));
    let o = sf3d(
        &["run", img.to_str().unwrap(), "--out", o1.to_str().unwrap(), "--texture-resolution", "512"],
        &[("SF3D_BG_MODEL", "auto"), ("U2NET_HOME", e), ("HOME", e)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("using the built-in remover").count(), 1, "{}", stderr(&o));
    assert_eq!(read_meta(&o1.join("white")).background_remover.as_deref(), Some("builtin"));

    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x96\x01 not an onnx model \xff\xff").unwrap();
    let o = sf3d(
        &["run", img.to_str().unwrap(), "--out", dir.join("out-bad").to_str().unwrap()],
        &[("SF3D_BG_MODEL", garbage.to_str().unwrap())],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(garbage.to_str().unwrap()) && stderr(&o).contains("not an ONNX model"),
        "{}",
        stderr(&o)
    );

    let Some(reference) = sf3d::u2net::reference::make_reference(&temp_dir("bg-reference"), &["u2netp"]) else {
        return;
    };
    let home = temp_dir("bg-home");
    std::fs::copy(reference.join("u2netp.onnx"), home.join(sf3d::preprocess::U2NET_FILE)).unwrap();
    let o2 = dir.join("out-learned");
    let photo = reference.join("photo.png");
    let o = sf3d(
        &["run", photo.to_str().unwrap(), "--out", o2.to_str().unwrap(), "--texture-resolution", "512"],
        &[("SF3D_BG_MODEL", "auto"), ("U2NET_HOME", home.to_str().unwrap()), ("HOME", e)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("using the built-in remover"), "{}", stderr(&o));
    assert_eq!(read_meta(&o2.join("photo")).background_remover.as_deref(), Some("u2netp"));
}
