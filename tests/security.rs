//! Safety on a shared network, against a real server: the cross-site policy (Origin, Host, JSON content type),
//! the WebSocket's bounds (auth deadline, frame sizes, announced sizes, slow readers, per-connection caps), the
//! HTTP server's timeouts and connection limit, and memory after many cancelled uploads.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sf3d_shared::{ClientMessage, ErrorBody, ErrorCode, GenerateParams, ImageRef, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Options, TestServer, WsClient, fast_params, test_png};

const EVIL: &str = "http://evil.example";

/// One raw HTTP/1.1 request (any `Host`, any headers); returns the status and the body.
async fn raw(base: &str, request: &str) -> (u16, String) {
    raw_bytes(base, request.as_bytes()).await
}

fn code_of(body: &str) -> ErrorCode {
    serde_json::from_str::<ErrorBody>(body).unwrap_or_else(|e| panic!("{e}: {body}")).error.code
}

/// A WebSocket handshake with an `Origin` header; `Err(status)` when the server refuses it.
async fn ws_with_origin(srv: &TestServer, origin: &str) -> Result<WsClient, u16> {
    let mut req = srv.ws_url(None).into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(WsClient::from_stream(ws).await.unwrap()),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// A page on another site can neither open the WebSocket nor post a job; the server's own page and listed
/// origins can; requests without `Origin` (scripts) are unaffected.
#[tokio::test]
async fn cross_origin_websocket_and_posts_are_refused() {
    let srv =
        TestServer::start(Options { cors_origins: vec!["http://laptop.lan:8080".into()], ..Default::default() }).await;
    assert_eq!(ws_with_origin(&srv, EVIL).await.err(), Some(403));
    assert_eq!(ws_with_origin(&srv, "null").await.err(), Some(403));
    let mut own = ws_with_origin(&srv, &srv.base).await.expect("same origin");
    own.generate(&fast_params(), &test_png(), "own").await.unwrap();
    assert!(matches!(own.until_terminal().await.unwrap().last(), Some(ServerMessage::Done { .. })));
    assert!(ws_with_origin(&srv, "http://laptop.lan:8080").await.is_ok());

    let host = srv.base.trim_start_matches("http://").to_string();
    let png = test_png();
    let boundary = "sf3dboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&png);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let post = |origin: &str| {
        let mut r = format!(
            "POST /api/generate HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nConnection: close\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    let before = gallery_count(&srv).await;
    let (status, text) = raw_bytes(&srv.base, &post(EVIL)).await;
    assert_eq!((status, code_of(&text)), (403, ErrorCode::Forbidden), "{text}");
    assert!(text.contains("evil.example") && text.contains("--cors-origin"), "{text}");
    let (status, _) = raw(
        &srv.base,
        &format!("DELETE /api/meshes/01JDQ40A3G7ZC1T5PHXW2N9M6B HTTP/1.1\r\nHost: {host}\r\nOrigin: {EVIL}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(gallery_count(&srv).await, before, "the refused post ran no job");
    // The same form from the server's own page works.
    let (status, _) = raw_bytes(&srv.base, &post(&srv.base)).await;
    assert_eq!(status, 200);
    srv.stop().await;
}

/// [`raw`] with a binary body.
async fn raw_bytes(base: &str, request: &[u8]) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

async fn gallery_count(srv: &TestServer) -> usize {
    let list: sf3d_shared::MeshList = crate::support::get(&srv.base, "/api/meshes", None).await.json().await.unwrap();
    list.items.len()
}

/// DNS rebinding: a request naming a foreign host is refused; loopback, the listed names and `*` are served.
#[tokio::test]
async fn foreign_host_names_are_refused() {
    let srv = TestServer::start(Options { allowed_hosts: vec!["sf3d.lab.example".into()], ..Default::default() }).await;
    let get = |host: &str| format!("GET /api/meshes HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (status, body) = raw(&srv.base, &get("attacker.example:9299")).await;
    assert_eq!((status, code_of(&body)), (403, ErrorCode::Forbidden));
    assert!(body.contains("--allowed-host"), "{body}");
    assert_eq!(raw(&srv.base, &get("localhost:9299")).await.0, 200);
    assert_eq!(raw(&srv.base, &get("127.0.0.1")).await.0, 200);
    assert_eq!(raw(&srv.base, &get("sf3d.lab.example:9299")).await.0, 200);
    assert_eq!(raw(&srv.base, "GET /api/meshes HTTP/1.1\r\nConnection: close\r\n\r\n").await.0, 400);
    // The WebSocket handshake goes through the same check.
    let ws = "GET /ws HTTP/1.1\r\nHost: attacker.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    assert_eq!(raw(&srv.base, ws).await.0, 403);
    srv.stop().await;
    let any = TestServer::start(Options { allowed_hosts: vec!["*".into()], ..Default::default() }).await;
    assert_eq!(raw(&any.base, &get("anything.example")).await.0, 200);
    any.stop().await;
}

/// A JSON body must be sent as JSON (a cross-site form post cannot set that type without a preflight) and is
/// bounded.
#[tokio::test]
async fn json_bodies_need_their_content_type() {
    let srv = TestServer::start(Options::default()).await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/meshes/01JDQ40A3G7ZC1T5PHXW2N9M6B/regenerate", srv.base))
        .header("content-type", "text/plain")
        .body(r#"{"params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error.code, ErrorCode::UnsupportedMediaType);
    let r = reqwest::Client::new()
        .post(format!("{}/api/meshes/01JDQ40A3G7ZC1T5PHXW2N9M6B/regenerate", srv.base))
        .json(&serde_json::json!({"params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "with the right type the request reaches the handler");
    let r = reqwest::Client::new()
        .post(format!("{}/api/meshes/01JDQ40A3G7ZC1T5PHXW2N9M6B/regenerate", srv.base))
        .header("content-type", "application/json")
        .body(format!(r#"{{"params":{{}},"pad":"{}"}}"#, "x".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "a JSON body is bounded");
    srv.stop().await;
}

/// `generate` announcing more than the limit is refused at once; an 18 MB image (above the WebSocket library's
/// default 16 MiB frame limit, below the server's 20 MB) goes through as one frame; oversized text frames are
/// refused without closing the connection.
#[tokio::test]
async fn upload_sizes_follow_the_advertised_limit() {
    let srv = TestServer::start(Options::default()).await;
    let mut c = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    let limit = match c.hello {
        ServerMessage::Hello { max_upload_bytes, .. } => max_upload_bytes,
        _ => unreachable!(),
    };
    let t = Instant::now();
    c.send(&ClientMessage::Generate {
        request_id: None,
        params: fast_params(),
        image: ImageRef::Binary { size: limit + 1, filename: None },
    })
    .await
    .unwrap();
    assert!(matches!(c.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::PayloadTooLarge, .. }));
    assert!(t.elapsed() < Duration::from_secs(1), "refused within a second, not after waiting for the frame");

    c.send_text(&format!(r#"{{"type":"cancel","job_id":"{}"}}"#, "x".repeat(70_000))).await.unwrap();
    match c.next().await.unwrap() {
        ServerMessage::Error { code: ErrorCode::BadRequest, message, .. } => assert!(message.len() < 300, "{message}"),
        other => panic!("{other:?}"),
    }

    let big = noise_png(18_000_000);
    assert!(big.len() > 16 << 20 && (big.len() as u64) < limit, "{} bytes", big.len());
    c.generate(&fast_params(), &big, "big").await.unwrap();
    let msgs = c.until_terminal().await.unwrap();
    assert!(matches!(msgs[0], ServerMessage::Accepted { .. }), "{:?}", msgs[0]);
    // The connection survived the large frame.
    c.send(&ClientMessage::Subscribe { job_id: "01JDQ40A3G7ZC1T5PHXW2N9M6B".into() }).await.unwrap();
    assert!(matches!(c.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::NotFound, .. }));
    srv.stop().await;
}

/// An opaque PNG of random pixels of at least `bytes` bytes (noise does not compress).
fn noise_png(bytes: usize) -> Vec<u8> {
    let side = ((bytes / 3) as f64).sqrt().ceil() as u32 + 8;
    let mut x: u32 = 0x1234_5678;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// With a key, a connection without a valid `?token=` must authenticate first and keeps small frames; anything
/// else as its first frame, or silence past the auth deadline, closes it.
#[tokio::test]
async fn websocket_auth_is_required_first_and_in_time() {
    let key = "0123456789abcdef-key";
    let srv = TestServer::start(Options { api_key: Some(key.into()), ..Default::default() }).await;
    // A wrong token opens a small, unauthenticated socket: the first frame that is not `auth` ends it.
    let mut wrong = WsClient::connect(&srv.ws_url(Some("wrong-0123456789abcdef"))).await.unwrap();
    assert!(matches!(wrong.hello, ServerMessage::Hello { max_upload_bytes: 65536, .. }), "{:?}", wrong.hello);
    wrong.send(&ClientMessage::Subscribe { job_id: "01JDQ40A3G7ZC1T5PHXW2N9M6B".into() }).await.unwrap();
    assert!(matches!(wrong.next().await.unwrap(), ServerMessage::Error { code: ErrorCode::Unauthorized, .. }));
    assert!(wrong.next().await.is_err(), "closed after the unauthorised frame");
    // A socket that authenticates by message keeps small frames (and says so in `hello`).
    let mut by_message = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    assert!(matches!(by_message.hello, ServerMessage::Hello { max_upload_bytes: 65536, .. }), "{:?}", by_message.hello);
    by_message.send(&ClientMessage::Auth { token: key.into() }).await.unwrap();
    by_message
        .send(&ClientMessage::Generate {
            request_id: None,
            params: fast_params(),
            image: ImageRef::Binary { size: 1 << 20, filename: None },
        })
        .await
        .unwrap();
    match by_message.next().await.unwrap() {
        ServerMessage::Error { code: ErrorCode::PayloadTooLarge, message, .. } => {
            assert!(message.contains("?token="), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let mut silent = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    let t = Instant::now();
    match silent.next().await {
        Ok(ServerMessage::Error { code: ErrorCode::Unauthorized, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(silent.next().await.is_err(), "closed after the auth deadline");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    srv.stop().await;
}

/// A client that keeps asking but never reads is disconnected instead of holding the server's memory.
#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected() {
    let srv = TestServer::start(Options::default()).await;
    let addr: std::net::SocketAddr = srv.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(srv.ws_url(None), stream).await.unwrap();
    let cancel = Message::Text(r#"{"type":"cancel","job_id":"01JDQ40A3G7ZC1T5PHXW2N9M6B"}"#.into());
    let t = Instant::now();
    let mut sent = 0u32;
    // Sending stops when the server has hung up (or, were it still reading, when the minute is over).
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while sent < 400_000 {
            if ws.feed(cancel.clone()).await.is_err() {
                break;
            }
            sent += 1;
            if sent.is_multiple_of(256) && ws.flush().await.is_err() {
                break;
            }
        }
    })
    .await;
    // Now read: the server must have dropped the connection, so the stream ends (rather than delivering an
    // answer to every request and then waiting).
    let mut answers = 0u32;
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
            answers += 1;
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open ({answers} answers read, {sent} requests)");
    assert!(answers < sent, "every request was answered ({answers}); the client was never cut off");
    eprintln!("slow reader: {sent} requests sent, {answers} answers read before the disconnect, {:?}", t.elapsed());
    srv.stop().await;
}

/// One connection cannot fill the queue: beyond its cap it gets `queue_full`, while another connection is
/// served.
#[tokio::test]
async fn one_connection_cannot_fill_the_queue() {
    let srv = TestServer::start(Options { max_jobs_per_connection: 2, ..Default::default() }).await;
    let mut greedy = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    for i in 0..3 {
        greedy.generate(&fast_params(), &test_png(), &format!("g{i}")).await.unwrap();
    }
    let mut accepted = 0;
    let mut refused = 0;
    while accepted + refused < 3 {
        match greedy.next().await.unwrap() {
            ServerMessage::Accepted { .. } => accepted += 1,
            ServerMessage::Error { code: ErrorCode::QueueFull, job_id: None, message, retry_after, .. } => {
                assert!(message.contains("this connection"), "{message}");
                assert!(retry_after.is_some_and(|s| s > 0), "queue_full without retry_after");
                refused += 1
            }
            _ => {}
        }
    }
    assert_eq!((accepted, refused), (2, 1));
    let mut other = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    other.generate(&fast_params(), &test_png(), "o").await.unwrap();
    assert!(matches!(other.next().await.unwrap(), ServerMessage::Accepted { .. }));
    srv.stop().await;
}

/// A client that opens a connection and never finishes its headers is disconnected after the header-read
/// timeout; an upload that stalls ends with 408 after the upload timeout.
#[tokio::test]
async fn slow_headers_and_stalled_uploads_time_out() {
    let srv = TestServer::start(Options {
        header_read_timeout: Some(Duration::from_secs(1)),
        upload_timeout: Some(Duration::from_secs(2)),
        ..Default::default()
    })
    .await;
    let addr = srv.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the half-sent request was not cut off");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/generate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary=b\r\n\
         Content-Length: 1000000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // A body that trickles in (a byte every half second, never idle for the timeout) is cut off by the total.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let t = Instant::now();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            if wr.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut buf)).await;
    trickle.abort();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408") && text.contains("within"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    srv.stop().await;
}

/// Connections beyond the limit wait until one closes.
#[tokio::test]
async fn connections_are_limited() {
    let srv = TestServer::start(Options { max_connections: 3, ..Default::default() }).await;
    let addr = srv.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    assert!(client.get(format!("{}/api/health", srv.base)).send().await.is_err(), "a 4th connection was served");
    held.pop();
    let r = reqwest::Client::new().get(format!("{}/api/health", srv.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    drop(held);
    srv.stop().await;

    // One client address cannot take every slot: beyond its own limit its connections are closed at once.
    let srv = TestServer::start(Options { max_connections_per_client: 2, ..Default::default() }).await;
    let addr = srv.base.trim_start_matches("http://").to_string();
    let held =
        [tokio::net::TcpStream::connect(&addr).await.unwrap(), tokio::net::TcpStream::connect(&addr).await.unwrap()];
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the third connection of one client was kept: {closed:?}");
    drop(held);
    srv.stop().await;
}

/// Submitting and cancelling uploads in a loop does not pin their bytes: the images of cancelled jobs are
/// released at once, not when the job registry forgets them (an hour later). 300 uploads of 4 MiB would hold
/// 1.2 GB (with what else runs, RSS then grows by about 1.5 GB); the bound leaves room for what the busy worker
/// and the tests running beside this one allocate (a few hundred MB).
#[tokio::test]
async fn submit_and_cancel_keeps_memory_flat() {
    let srv = TestServer::start(Options::default()).await;
    // Keep the worker busy so that the uploads below wait in the queue when they are cancelled.
    let mut busy = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    let heavy = GenerateParams { texture_resolution: 2048, ..Default::default() };
    for i in 0..8 {
        busy.generate(&heavy, &test_png(), &format!("busy{i}")).await.unwrap();
    }
    let mut c = WsClient::connect(&srv.ws_url(None)).await.unwrap();
    let upload = vec![0x5au8; 4 << 20];
    for _ in 0..10 {
        submit_and_cancel(&mut c, &upload).await;
    }
    let before = rss_bytes();
    let t = Instant::now();
    let mut queued = 0;
    for _ in 0..300 {
        queued += u32::from(submit_and_cancel(&mut c, &upload).await);
    }
    let grown = rss_bytes().saturating_sub(before);
    eprintln!(
        "RSS after 300 submit-and-cancel rounds of 4 MiB in {:?} ({queued} cancelled while queued): +{} MiB",
        t.elapsed(),
        grown >> 20
    );
    assert!(queued >= 200, "only {queued} of 300 uploads were still queued when cancelled");
    assert!(grown < 700 << 20, "RSS grew by {} MiB over 1.2 GB of cancelled uploads", grown >> 20);
    srv.stop().await;
}

/// One upload, cancelled as soon as it is accepted; whether it was still queued (no stage had started).
async fn submit_and_cancel(c: &mut WsClient, upload: &[u8]) -> bool {
    c.send(&ClientMessage::Generate {
        request_id: None,
        params: GenerateParams::default(),
        image: ImageRef::Binary { size: upload.len() as u64, filename: None },
    })
    .await
    .unwrap();
    c.send_binary(upload.to_vec()).await.unwrap();
    let job_id = loop {
        if let ServerMessage::Accepted { job_id, .. } = c.next().await.unwrap() {
            break job_id;
        }
    };
    c.send(&ClientMessage::Cancel { job_id }).await.unwrap();
    let msgs = c.until_terminal().await.unwrap();
    matches!(msgs.last(), Some(ServerMessage::Cancelled { .. }))
        && !msgs.iter().any(|m| matches!(m, ServerMessage::Stage { .. }))
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
