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
    (parts.status, parts.headers, axum::body::to_bytes(body, 8 << 20).await.unwrap().to_vec())
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

/// `(path, methods)` of every `.route(...)` call in `routes/mod.rs`: the routes the router serves.
fn routes_of_the_router() -> Vec<(String, Vec<&'static str>)> {
    include_str!("mod.rs")
        .split(".route(\"")
        .skip(1)
        .map(|rest| {
            let (path, after) = rest.split_once('"').unwrap();
            let line = after.lines().next().unwrap_or_default();
            let methods = ["get", "post", "put", "patch", "delete"]
                .into_iter()
                .filter(|m| line.contains(&format!("{m}(")))
                .collect();
            (path.to_string(), methods)
        })
        .collect()
}

#[tokio::test]
async fn the_openapi_document_needs_no_key_and_describes_every_rest_route() {
    let s = server(Some(KEY));
    let (status, headers, body) = send(&s, get("/api/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/json");
    if let Some(out) = std::env::var_os("SF3D_OPENAPI_OUT") {
        std::fs::write(out, &body).unwrap(); // for a look at the document without a server
    }
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    let routes = routes_of_the_router();
    assert!(routes.len() >= 12, "{routes:?}");
    for (path, methods) in &routes {
        if path == "/ws" {
            continue; // the WebSocket protocol: docs/protocol.md
        }
        assert!(!methods.is_empty(), "no method found for {path}");
        for m in methods {
            let op = &paths.get(path).unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"))[m];
            assert!(op.is_object(), "{} {path} is not in the OpenAPI document", m.to_uppercase());
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("403"), "{m} {path}: {responses:?}");
        }
    }
    for (path, item) in paths {
        assert!(routes.iter().any(|(p, _)| p == path), "the document lists {path}, which the router does not serve");
        let ops = item.as_object().unwrap();
        let public = ["/api/health", "/health", "/api/openapi.json"].contains(&path.as_str());
        for (m, op) in ops {
            let has_401 = op["responses"].get("401").is_some();
            assert_eq!(has_401, !public, "{m} {path}: 401 is documented exactly where the key is required");
        }
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["token"]["in"], "query");
    assert_eq!(schemes["token"]["name"], "token");
    // Every error response carries the one error body.
    let generate = &paths["/api/generate"]["post"]["responses"];
    assert_eq!(generate["429"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody");
    assert!(generate["429"]["headers"].get("retry-after").is_some(), "{}", generate["429"]);
    s.stop();
}

#[tokio::test]
async fn swagger_ui_is_bundled_and_needs_no_key() {
    let s = server(Some(KEY));
    let (status, headers, _) = send(&s, get("/api/docs")).await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(headers.get(header::LOCATION).unwrap(), "/api/docs/");
    let (status, _, body) = send(&s, get("/api/docs/")).await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    assert!(!page.contains("https://"), "the page loads nothing from elsewhere:\n{page}");
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        let (status, _, body) = send(&s, get(&format!("/api/docs/{asset}"))).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(!body.is_empty(), "{asset}");
        if asset == "swagger-initializer.js" {
            assert!(String::from_utf8(body).unwrap().contains("/api/openapi.json"));
        }
    }
    s.stop();
}

#[tokio::test]
async fn metrics_need_the_key_and_speak_prometheus_text() {
    let s = server(Some(KEY));
    let (status, headers, body) = send(&s, get("/metrics")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    assert_eq!(error_code(&body), ErrorCode::Unauthorized);
    let req =
        Request::get("/metrics").header(header::AUTHORIZATION, format!("Bearer {KEY}")).body(Body::empty()).unwrap();
    let (status, headers, body) = send(&s, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(body).unwrap();
    for line in ["sf3d_queue_capacity 4", "sf3d_workers{state=\"idle\"} 1", "sf3d_gallery_meshes 0"] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    s.stop();
}

#[tokio::test]
async fn a_bad_gallery_query_is_a_json_400() {
    let s = server(None);
    let (status, _, body) = send(&s, get("/api/meshes?limit=-1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), ErrorCode::BadRequest);
    s.stop();
}
