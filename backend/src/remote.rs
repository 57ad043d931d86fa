//! `sf3d remote`: a client of `sf3d serve`, the piece the seed's pipeline needs on the laptop.
//!
//! For each image: open `ws://SERVER/ws`, check the protocol version, send `generate` + the image, follow the
//! stage events (progress callback), then download the GLB over HTTP and write `mesh.glb` + `metadata.json`.
//! Connection set-up and downloads are retried (they are idempotent); a submitted job is never resubmitted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use sf3d_shared::{ClientInfo, ClientMessage, GenerateParams, ImageRef, MeshMetadata, PROTOCOL_VERSION, ServerMessage};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Attempts for idempotent network steps.
const ATTEMPTS: u32 = 3;
/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence from the server while a job runs (it pings every 15 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where to reach the server.
#[derive(Clone)]
pub struct RemoteServer {
    /// Base URL (`http://host:9299`).
    pub base: String,
    /// API key, if the server needs one.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for RemoteServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteServer")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One event seen while the job runs.
#[derive(Debug, Clone)]
pub enum RemoteEvent {
    /// Connected; the server's hello.
    Connected(ServerMessage),
    /// Queue position.
    Queued(u32),
    /// A stage event.
    Stage(ServerMessage),
}

/// The outcome of one remote generation.
#[derive(Debug, Clone)]
pub struct RemoteResult {
    /// The GLB.
    pub glb: Vec<u8>,
    /// Server metadata plus client figures.
    pub metadata: MeshMetadata,
}

impl RemoteServer {
    fn ws_url(&self) -> anyhow::Result<String> {
        let base = self.base.trim_end_matches('/');
        let ws = if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}/ws")
        } else if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}/ws")
        } else {
            bail!("server URL {base:?} must start with http://")
        };
        Ok(match &self.api_key {
            Some(k) => format!("{ws}?token={}", urlencode(k)),
            None => ws,
        })
    }

    fn http(&self) -> anyhow::Result<reqwest::Client> {
        reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build().context("cannot build the HTTP client")
    }

    /// Generates a mesh from `image` with `params`, reporting events to `on_event`.
    pub async fn generate(
        &self,
        image: &[u8],
        filename: Option<String>,
        params: &GenerateParams,
        mut on_event: impl FnMut(RemoteEvent),
    ) -> anyhow::Result<RemoteResult> {
        params.validate()?;
        let started = Instant::now();
        let url = self.ws_url()?;
        let mut ws = connect(&url).await?;
        let hello = next_message(&mut ws).await?;
        match &hello {
            ServerMessage::Hello { protocol, .. } if *protocol == PROTOCOL_VERSION => {}
            ServerMessage::Hello { protocol, server_version, .. } => bail!(
                "the server speaks protocol {protocol} (sf3d-studio {server_version}); this client speaks {PROTOCOL_VERSION}: update one of them"
            ),
            other => bail!("the server did not greet with hello: {other:?}"),
        }
        on_event(RemoteEvent::Connected(hello));
        let msg = ClientMessage::Generate {
            request_id: Some("remote-1".into()),
            params: params.clone(),
            image: ImageRef::Binary { size: image.len() as u64, filename },
        };
        ws.send(Message::Text(serde_json::to_string(&msg)?.into())).await.context("sending the request")?;
        ws.send(Message::Binary(image.to_vec().into())).await.context("uploading the image")?;
        let mut queued_at: Option<Instant> = None;
        let mut queue_ms = 0.0;
        let (mesh_id, urls, mut metadata) = loop {
            match next_message(&mut ws).await? {
                ServerMessage::Accepted { position, .. } | ServerMessage::Queue { position, .. } => {
                    queued_at.get_or_insert_with(Instant::now);
                    on_event(RemoteEvent::Queued(position));
                }
                m @ ServerMessage::Stage { .. } => {
                    if let Some(t) = queued_at.take() {
                        queue_ms = t.elapsed().as_secs_f64() * 1e3;
                    }
                    on_event(RemoteEvent::Stage(m));
                }
                ServerMessage::Done { mesh_id, urls, metadata, .. } => break (mesh_id, urls, *metadata),
                ServerMessage::Error { code, message, field, .. } => {
                    let field = field.map(|f| format!(" (field {f})")).unwrap_or_default();
                    bail!("the server refused or failed the job: {}{field}: {message}", code.as_str());
                }
                ServerMessage::Cancelled { .. } => bail!("the job was cancelled on the server"),
                ServerMessage::Preview { .. } | ServerMessage::Status { .. } | ServerMessage::Hello { .. } => {}
            }
        };
        let _ = ws.close(None).await;
        let glb = self.download(&urls.glb).await.with_context(|| format!("downloading mesh {mesh_id}"))?;
        metadata.client = Some(ClientInfo {
            server: self.base.clone(),
            round_trip_ms: started.elapsed().as_secs_f64() * 1e3,
            queue_ms,
        });
        Ok(RemoteResult { glb, metadata })
    }

    async fn download(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{}", self.base.trim_end_matches('/'), path);
        let client = self.http()?;
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let mut req = client.get(&url);
            if let Some(k) = &self.api_key {
                req = req.bearer_auth(k);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(r.bytes().await?.to_vec()),
                Ok(r) if r.status().is_client_error() => bail!("GET {url}: {}", r.status()),
                Ok(r) => last = Some(anyhow!("GET {url}: {}", r.status())),
                Err(e) => last = Some(anyhow!(e).context(format!("GET {url}"))),
            }
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        Err(last.unwrap_or_else(|| anyhow!("GET {url} failed")))
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        let req = url.into_client_request().context("bad server URL")?;
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req)).await {
            Ok(Ok((ws, _))) => return Ok(ws),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                let status = resp.status();
                if status == 401 {
                    bail!(
                        "the server at {} needs an API key (--api-key or SF3D_API_KEY), or the key is wrong",
                        redact(url)
                    );
                }
                bail!("the server at {} refused the WebSocket: HTTP {status}", redact(url));
            }
            Ok(Err(e)) => last = Some(anyhow!("cannot connect to {}: {e}", redact(url))),
            Err(_) => last = Some(anyhow!("connecting to {} timed out after {CONNECT_TIMEOUT:?}", redact(url))),
        }
        tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
    }
    Err(last.unwrap_or_else(|| anyhow!("cannot connect to {}", redact(url))))
}

async fn next_message(ws: &mut Ws) -> anyhow::Result<ServerMessage> {
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, ws.next())
            .await
            .map_err(|_| anyhow!("the server sent nothing for {IDLE_TIMEOUT:?}"))?;
        match frame {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str())
                    .with_context(|| format!("unexpected message from the server: {t}"));
            }
            Some(Ok(Message::Close(c))) => {
                bail!("the server closed the connection{}", c.map(|c| format!(": {}", c.reason)).unwrap_or_default())
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("connection error: {e}"),
            None => bail!("the server closed the connection"),
        }
    }
}

fn redact(url: &str) -> String {
    match url.split_once("?token=") {
        Some((u, _)) => format!("{u}?token=…"),
        None => url.to_string(),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Writes `mesh.glb` and `metadata.json` into `dir` (created).
pub fn write_outputs(dir: &Path, result: &RemoteResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::gallery::write_atomic(&dir.join("mesh.glb"), &result.glb)?;
    crate::gallery::write_atomic(&dir.join("metadata.json"), &serde_json::to_vec_pretty(&result.metadata)?)?;
    Ok(())
}

/// The seed pipeline's case: `mesh.glb` into an existing output folder, and a `mesh` section merged into its
/// `metadata.json` without touching the other keys.
pub fn write_into(dir: &Path, result: &RemoteResult) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        bail!("{} is not an existing folder (--into expects the pipeline's output folder)", dir.display());
    }
    crate::gallery::write_atomic(&dir.join("mesh.glb"), &result.glb)?;
    let meta_path = dir.join("metadata.json");
    let mut root: serde_json::Value = match std::fs::read(&meta_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", meta_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", meta_path.display()))),
    };
    let obj = root.as_object_mut().ok_or_else(|| anyhow!("{} is not a JSON object", meta_path.display()))?;
    let mut section = serde_json::to_value(&result.metadata)?;
    if let Some(s) = section.as_object_mut() {
        s.insert("file".into(), serde_json::Value::from("mesh.glb"));
    }
    obj.insert("mesh".into(), section);
    crate::gallery::write_atomic(&meta_path, &serde_json::to_vec_pretty(&root)?)?;
    Ok(meta_path)
}
