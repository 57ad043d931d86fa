//! Test support: a real `sf3d serve` (the backend library, built-in test model) on an ephemeral loopback port,
//! a WebSocket client speaking the protocol, and a few fixtures.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sf3d::pipeline::PipelineOptions;
use sf3d_backend::auth::ApiKey;
use sf3d_backend::cache::EncodeCache;
use sf3d_backend::gallery::{Gallery, GalleryConfig};
use sf3d_backend::model_source::{DeviceChoice, ModelSource, load_pipelines};
use sf3d_backend::routes::guard::SitePolicy;
use sf3d_backend::worker::{Engine, TestHooks};
use sf3d_backend::{Server, ServerConfig};
use sf3d_shared::{ClientMessage, GenerateParams, ImageRef, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for one server message.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("sf3d-e2e-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A product-like RGBA PNG (a soft disc with a colour gradient on a transparent background).
pub fn test_png() -> Vec<u8> {
    sf3d::pipeline::png_bytes(&sf3d::test_model::bench_image(256)).expect("png")
}

/// An opaque JPEG of an object on a white backdrop (exercises background removal).
pub fn test_jpeg_on_white() -> Vec<u8> {
    let img = image::RgbImage::from_fn(200, 160, |x, y| {
        let (dx, dy) = (x as f32 - 100.0, y as f32 - 80.0);
        if dx * dx / 3600.0 + dy * dy / 2500.0 < 1.0 {
            image::Rgb([40, 90, (x % 255) as u8])
        } else {
            image::Rgb([255, 255, 255])
        }
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .expect("jpeg");
    out
}

/// Fast parameters for tests.
pub fn fast_params() -> GenerateParams {
    GenerateParams { texture_resolution: 512, ..Default::default() }
}

/// Options of a test server.
#[derive(Debug, Clone)]
pub struct Options {
    pub api_key: Option<String>,
    pub max_queue: u32,
    pub max_upload_bytes: u64,
    pub data: Option<PathBuf>,
    pub dist: Option<PathBuf>,
    /// Loopback port to listen on (`None`: an ephemeral one).
    pub port: Option<u16>,
    /// WebSocket `(ping interval, client timeout)`; the server's defaults when `None`.
    pub heartbeat: Option<(Duration, Duration)>,
    /// `--allowed-host` values.
    pub allowed_hosts: Vec<String>,
    /// `--cors-origin` values.
    pub cors_origins: Vec<String>,
    /// Header-read timeout (the server's default when `None`).
    pub header_read_timeout: Option<Duration>,
    /// Upload timeout (the server's default when `None`).
    pub upload_timeout: Option<Duration>,
    /// Queued or running jobs per WebSocket connection.
    pub max_jobs_per_connection: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one client address may hold.
    pub max_connections_per_client: usize,
    /// CPU workers (`--device cpu,cpu` is 2); they share the test model's weights.
    pub workers: usize,
    /// `--job-timeout` (the server's default when `None`).
    pub job_timeout: Option<Duration>,
    /// `--test-hook` values.
    pub test_hooks: TestHooks,
    /// `--bg-model` as resolved: a U²-Net ONNX file, or `None` for the built-in remover.
    pub background_model: Option<PathBuf>,
    /// Where the gallery's index and files live (`--db`, `--nats`, `--cluster`).
    pub gallery: GalleryConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api_key: None,
            max_queue: 16,
            max_upload_bytes: 20_000_000,
            data: None,
            dist: None,
            port: None,
            heartbeat: None,
            allowed_hosts: vec![],
            cors_origins: vec![],
            header_read_timeout: None,
            upload_timeout: None,
            max_jobs_per_connection: 8,
            max_connections: sf3d_backend::MAX_CONNECTIONS,
            max_connections_per_client: sf3d_backend::MAX_CONNECTIONS_PER_CLIENT,
            workers: 2,
            job_timeout: None,
            test_hooks: TestHooks::default(),
            background_model: None,
            gallery: GalleryConfig::default(),
        }
    }
}

/// A running server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The options it runs with, its port and data folder filled in.
    options: Options,
    server: Option<Server>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server with the built-in test model. Server logs (warnings and errors) go to the test output.
    pub async fn start(opts: Options) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let data = opts.data.clone().unwrap_or_else(|| temp_dir("data"));
        let d = data.clone();
        let workers = opts.workers.max(1);
        let options = PipelineOptions { background_model: opts.background_model.clone(), ..Default::default() };
        let storage = opts.gallery.clone();
        let engine = tokio::task::spawn_blocking(move || {
            let devices = vec![DeviceChoice::Cpu; workers];
            let pipelines = load_pipelines(&ModelSource::Builtin, &devices, None, options).expect("test model");
            let gallery = std::sync::Arc::new(Gallery::open_with(&d, &storage).expect("gallery"));
            Engine::with_workers(pipelines[0].clone(), pipelines[1..].to_vec(), gallery, EncodeCache::new(256 << 20))
        })
        .await
        .expect("engine task");
        let config = ServerConfig {
            api_key: opts.api_key.as_deref().map(|k| ApiKey::new(k).expect("test key")),
            max_upload_bytes: opts.max_upload_bytes,
            site: SitePolicy::new(&opts.allowed_hosts, &opts.cors_origins, opts.api_key.is_some())
                .expect("site policy"),
            dist: opts.dist.clone(),
            shutdown_grace: Duration::from_secs(10),
            ping_interval: opts.heartbeat.map_or(sf3d_backend::PING_INTERVAL, |h| h.0),
            client_timeout: opts.heartbeat.map_or(sf3d_backend::CLIENT_TIMEOUT, |h| h.1),
            header_read_timeout: opts.header_read_timeout.unwrap_or(sf3d_backend::HEADER_READ_TIMEOUT),
            upload_timeout: opts.upload_timeout.unwrap_or(sf3d_backend::UPLOAD_TIMEOUT),
            max_jobs_per_connection: opts.max_jobs_per_connection,
            max_connections: opts.max_connections,
            max_connections_per_client: opts.max_connections_per_client,
            job_timeout: opts.job_timeout,
            test_hooks: opts.test_hooks.clone(),
            ..ServerConfig::default()
        };
        let server = Server::start(engine, config, opts.max_queue).expect("server");
        let listener = bind(opts.port.unwrap_or(0)).await;
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = server.state.clone();
        let task = tokio::spawn(sf3d_backend::serve(listener, state, async move {
            let _ = rx.await;
        }));
        let options = Options { data: Some(data), port: Some(addr.port()), ..opts };
        Self { base: format!("http://{addr}"), options, server: Some(server), stop: Some(tx), task: Some(task) }
    }

    /// Options that start the same server again: same port, same data folder (for a restart after
    /// [`Self::stop`]).
    pub fn restart_options(&self) -> Options {
        self.options.clone()
    }

    /// `ws://…/ws` (with `?token=` when given).
    pub fn ws_url(&self, token: Option<&str>) -> String {
        let ws = self.base.replacen("http://", "ws://", 1) + "/ws";
        match token {
            Some(t) => format!("{ws}?token={t}"),
            None => ws,
        }
    }

    /// Stops the server (graceful) and drains the worker.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(mut t) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(30), &mut t).await.is_err()
        {
            // Connections that never closed: drop them, so the port is free for a restart.
            t.abort();
            let _ = t.await;
        }
        if let Some(s) = self.server.take() {
            let _ = tokio::task::spawn_blocking(move || s.stop()).await;
        }
    }
}

/// Listens on `127.0.0.1:port` (0: ephemeral); a fixed port that is still held (a server just stopped) is
/// retried for a few seconds.
async fn bind(port: u16) -> tokio::net::TcpListener {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut tries = 0;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if port != 0 && tries < 50 => {
                if tries == 0 {
                    eprintln!("bind {addr}: {e}; retrying");
                }
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A protocol client.
pub struct WsClient {
    ws: Ws,
    /// The server's greeting.
    pub hello: ServerMessage,
}

impl WsClient {
    /// Connects and reads `hello`.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Self::from_stream(ws).await
    }

    /// Wraps an open socket and reads `hello`.
    pub async fn from_stream(ws: Ws) -> anyhow::Result<Self> {
        let mut c = Self { ws, hello: ServerMessage::Cancelled { job_id: String::new() } };
        c.hello = c.next().await?;
        anyhow::ensure!(matches!(c.hello, ServerMessage::Hello { .. }), "first frame is not hello: {:?}", c.hello);
        Ok(c)
    }

    /// Sends a protocol message.
    pub async fn send(&mut self, m: &ClientMessage) -> anyhow::Result<()> {
        self.ws.send(Message::Text(serde_json::to_string(m)?.into())).await?;
        Ok(())
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, t: &str) -> anyhow::Result<()> {
        self.ws.send(Message::Text(t.to_string().into())).await?;
        Ok(())
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, b: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(b.into())).await?;
        Ok(())
    }

    /// `generate` + the image frame.
    pub async fn generate(&mut self, params: &GenerateParams, image: &[u8], request_id: &str) -> anyhow::Result<()> {
        self.send(&ClientMessage::Generate {
            request_id: Some(request_id.into()),
            params: params.clone(),
            image: ImageRef::Binary { size: image.len() as u64, filename: Some("test.png".into()) },
        })
        .await?;
        self.send_binary(image.to_vec()).await
    }

    /// The next protocol message (pings are skipped); errors on close or timeout.
    pub async fn next(&mut self) -> anyhow::Result<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(MESSAGE_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| anyhow::anyhow!("no message within {MESSAGE_TIMEOUT:?}"))?;
            match frame {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
                Some(Ok(Message::Close(c))) => anyhow::bail!("closed: {c:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => anyhow::bail!("socket error: {e}"),
                None => anyhow::bail!("socket ended"),
            }
        }
    }

    /// Messages until the job's terminal message (inclusive).
    pub async fn until_terminal(&mut self) -> anyhow::Result<Vec<ServerMessage>> {
        let mut out = Vec::new();
        loop {
            let m = self.next().await?;
            let end = matches!(m, ServerMessage::Done { .. } | ServerMessage::Cancelled { .. })
                || matches!(&m, ServerMessage::Error { job_id: Some(_), .. });
            out.push(m);
            if end {
                return Ok(out);
            }
        }
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// GETs a path.
pub async fn get(base: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("request")
}

/// Checks a GLB: it parses with the gltf crate, has one textured primitive, and is dumped for the Khronos
/// validator (`SF3D_GLB_DIR`).
pub fn check_glb(name: &str, bytes: &[u8]) -> (usize, usize) {
    sf3d::mesh::glb::dump_for_validation(name, bytes);
    let g = gltf::Gltf::from_slice(bytes).expect("valid GLB");
    let mesh = g.meshes().next().expect("a mesh");
    let prim = mesh.primitives().next().expect("a primitive");
    let verts = prim.get(&gltf::Semantic::Positions).expect("positions").count();
    let faces = prim.indices().expect("indices").count() / 3;
    assert!(prim.material().pbr_metallic_roughness().base_color_texture().is_some());
    assert!(prim.material().normal_texture().is_some());
    (verts, faces)
}

/// Where the browser test writes screenshots.
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("SF3D_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| manifest_dir().join("artifacts"))
}

/// This crate's folder, read at run time (cargo sets it for tests): builds are shared between checkouts
/// through one target dir, so a path baked in at compile time may name another checkout.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
