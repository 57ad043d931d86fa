//! Router-level tests: requests handed to the router in-process (`tower::ServiceExt::oneshot`), for what a real
//! socket adds nothing to — auth, refusals and their error bodies. The end-to-end suite (`tests/`) covers the
//! rest over real connections.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use sf3d_shared::{ErrorBody, ErrorCode, SeedHealth};
use tower::ServiceExt;

use crate::auth::ApiKey;
use crate::cache::EncodeCache;
use crate::gallery::Gallery;
use crate::model_source::{DeviceChoice, ModelSource, load_pipeline};
use crate::worker::Engine;
use crate::{Server, ServerConfig, app};

const KEY: &str = "router-test-key-0123";

fn server(api_key: Option<&str>) -> Server {
    let data = std::env::temp_dir().join(format!("sf3d-router-{}", crate::gallery::new_id()));
    let pipeline = load_pipeline(&ModelSource::Builtin, DeviceChoice::Cpu, None, Default::default()).unwrap();
    let gallery = std::sync::Arc::new(Gallery::open(&data).unwrap());
    let engine = Engine::new(pipeline, gallery, EncodeCache::new(1 << 20));
    let config = ServerConfig { api_key: api_key.map(|k| ApiKey::new(k).unwrap()), ..ServerConfig::default() };
    Server::start(engine, config, 4).unwrap()
}

async fn send(server: &Server, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app(server.state.clone()).oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn error_code(body: &[u8]) -> ErrorCode {
    serde_json::from_slice::<ErrorBody>(body).unwrap().error.code
}

#[tokio::test]
async fn with_a_key_api_routes_need_it_and_the_health_endpoints_do_not() {
    let s = server(Some(KEY));
    let (status, headers, body) = send(&s, get("/api/meshes")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    assert_eq!(error_code(&body), ErrorCode::Unauthorized);
    let wrong = Request::get("/api/meshes").header(header::AUTHORIZATION, "Bearer nope").body(Body::empty()).unwrap();
    assert_eq!(send(&s, wrong).await.0, StatusCode::UNAUTHORIZED);
    let right =
        Request::get("/api/meshes").header(header::AUTHORIZATION, format!("Bearer {KEY}")).body(Body::empty()).unwrap();
    assert_eq!(send(&s, right).await.0, StatusCode::OK);
    assert_eq!(send(&s, get(&format!("/api/meshes?token={KEY}"))).await.0, StatusCode::OK);
    let (status, _, body) = send(&s, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    let seed: SeedHealth = serde_json::from_slice(&body).unwrap();
    assert_eq!((seed.status.as_str(), seed.gpu.as_str(), seed.model_loaded), ("ok", "cpu", true));
    assert_eq!(seed.workers.len(), 1);
    assert_eq!(send(&s, get("/api/health")).await.0, StatusCode::OK);
    s.stop();
}

#[tokio::test]
async fn unknown_routes_jobs_and_meshes_are_json_404s() {
    let s = server(None);
    for path in ["/api/nope", "/api/jobs/not-a-job", "/api/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/api/meshes/x"] {
        let (status, headers, body) = send(&s, get(path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/json", "{path}");
        assert_eq!(error_code(&body), ErrorCode::NotFound, "{path}");
    }
    s.stop();
}

#[tokio::test]
async fn a_foreign_page_cannot_post_and_json_bodies_must_say_so() {
    let s = server(None);
    let post = Request::post("/api/generate")
        .header(header::HOST, "127.0.0.1:9299")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&s, post).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), ErrorCode::Forbidden);
    // A foreign host name (DNS rebinding) is refused on the job route too.
    let rebound = Request::get("/api/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV")
        .header(header::HOST, "evil.example:9299")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&s, rebound).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), ErrorCode::Forbidden);
    let form_post = Request::post("/api/meshes/01ARZ3NDEKTSV4RRFFQ69G5FAV/regenerate")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{\"params\": {}}"))
        .unwrap();
    let (status, _, body) = send(&s, form_post).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(&body), ErrorCode::UnsupportedMediaType);
    s.stop();
}
