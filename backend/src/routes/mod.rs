//! The router: REST (`/api/*` and the seed's `/generate`, `/health`), the WebSocket `/ws`, Prometheus metrics at
//! `/metrics`, the OpenAPI document (`/api/openapi.json`) with its Swagger UI page (`/api/docs`), and the built
//! frontend at `/`. Auth (when an API key is set) is one middleware over everything but the static files, the
//! two health endpoints (which only say whether auth is required, so a UI can ask for the key) and the API's
//! description (the document and its page hold no data; the page is where a user enters the key). The
//! cross-site policy ([`guard`]) runs before everything, and request logs name the path without the query
//! (which may carry `?token=`).

mod gallery;
mod generate;
pub mod guard;
pub(crate) mod input;
pub(crate) mod openapi;
#[cfg(test)]
mod tests;
mod ws;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use sf3d_shared::api::JobStatus;
use sf3d_shared::{ErrorBody, ErrorCode, HealthResponse, SeedHealth};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::error::ApiError;

/// Room for multipart framing and form fields around the image.
pub(crate) const MULTIPART_OVERHEAD: u64 = 1 << 20;

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let body_limit = (state.config.max_upload_bytes + MULTIPART_OVERHEAD) as usize;
    let api = Router::new()
        .route("/api/generate", post(generate::generate))
        .route("/generate", post(generate::seed_generate))
        .route("/api/meshes", get(gallery::list))
        .route("/api/meshes/{id}", get(gallery::get_entry).delete(gallery::delete))
        .route("/api/meshes/{id}/regenerate", post(generate::regenerate))
        .route("/api/meshes/{id}/{file}", get(gallery::file))
        .route("/api/jobs/{id}", get(job_status))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), require_key));
    let public = Router::new()
        .route("/api/health", get(api_health))
        .route("/health", get(seed_health))
        .route("/api/openapi.json", get(openapi::document))
        .route("/ws", get(ws::handler))
        .merge(openapi::swagger_ui());
    let mut router = api
        .merge(public)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyTimeoutLayer::new(state.config.upload_timeout));
    router = match &state.config.dist {
        Some(dist) if dist.join("index.html").is_file() => {
            router.fallback_service(ServeDir::new(dist).fallback(ServeFile::new(dist.join("index.html"))))
        }
        _ => router.fallback(no_ui),
    };
    let site = &state.config.site;
    if site.any_origin() || !site.origins().is_empty() {
        let allow = if site.any_origin() {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(site.origins().iter().filter_map(|o| o.parse::<HeaderValue>().ok()))
        };
        router = router.layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([
                    header::HeaderName::from_static(sf3d_shared::api::HEADER_MESH_ID),
                    header::HeaderName::from_static(sf3d_shared::api::HEADER_JOB_ID),
                    header::HeaderName::from_static(sf3d_shared::api::HEADER_STAGE_TIMINGS),
                    header::HeaderName::from_static(sf3d_shared::api::HEADER_SERVER_TIMING),
                ]),
        );
    }
    router
        .layer(middleware::from_fn_with_state(state.clone(), guard::check_site))
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &Request| tracing::info_span!("request", method = %req.method(), path = req.uri().path()),
        ))
        .with_state(state)
}

async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    // `?token=` too, for what browsers cannot send headers with (`<img>`, download links), as on `/ws`.
    let query =
        req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")).map(percent_decode));
    if state.authorized(bearer) || (query.is_some() && state.authorized(query.as_deref())) {
        next.run(req).await
    } else {
        let mut resp =
            ApiError::new(ErrorCode::Unauthorized, "missing or wrong API key (send Authorization: Bearer KEY)")
                .into_response();
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    }
}

/// Decodes `%XX` escapes of a query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The server's state: model, device, queue, workers, whether a key is required. Needs no key.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "server",
    security(()),
    responses((status = 200, description = "`status` is `ok`, `degraded` (every worker dead) or `shutting_down`",
        body = HealthResponse))
)]
async fn api_health(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(state.health())
}

/// The seed pipeline's `GET /health`. Needs no key.
#[utoipa::path(
    get,
    path = "/health",
    tag = "server",
    security(()),
    responses((status = 200, description = "The seed client's health shape", body = SeedHealth))
)]
async fn seed_health(State(state): State<AppState>) -> impl IntoResponse {
    let h = state.health();
    axum::Json(SeedHealth {
        status: h.status,
        gpu: h.device.kind.as_str().to_string(),
        model_loaded: true,
        model: h.model.id,
        test_model: h.model.test_model,
        workers: h.workers,
    })
}

/// A job's state, live or from the journal (any job of the last 24 hours, across restarts).
///
/// `attempts` counts the runs that started, `stages` are those of the current (or last) run, and `terminal`
/// is the message that ended it, as on the WebSocket.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id (from `accepted` or `X-Job-Id`)")),
    responses(
        (status = 200, description = "The job", body = JobStatus),
        (status = 404, description = "`not_found`: unknown, or ended more than a day ago", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
async fn job_status(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<JobStatus>, ApiError> {
    let jobs = state.jobs.clone();
    let lookup = id.clone();
    // The journal is SQLite: read it off the async runtime.
    let job = tokio::task::spawn_blocking(move || jobs.get(&lookup))
        .await
        .map_err(|e| ApiError::internal("job lookup", e))?;
    match job {
        Some(job) => Ok(axum::Json(job.status())),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no job \"{}\" (finished jobs are kept for a day)", input::clip(&id)),
        )),
    }
}

/// Prometheus metrics of this server, in the text exposition format 0.0.4 (see `crate::metrics`).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "server",
    responses(
        (status = 200, description = "Jobs by final state and error code, stage durations, queue depth, workers, \
            WebSocket connections, gallery size, scene-code cache", body = String,
            content_type = "text/plain; version=0.0.4"),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (waiting, running, capacity) = state.jobs.occupancy();
    let gallery = state.engine.gallery.clone();
    // The gallery count is an SQLite query: off the async runtime.
    let meshes = tokio::task::spawn_blocking(move || gallery.count())
        .await
        .map_err(|e| ApiError::internal("metrics", e))?
        .inspect_err(|e| tracing::warn!(error = %e, "metrics: cannot count the gallery"))
        .ok();
    let snapshot = crate::metrics::Snapshot {
        waiting,
        running,
        capacity,
        workers: state.workers.iter().map(|w| w.info().state).collect(),
        gallery_meshes: meshes,
        cache: state.engine.cache.usage(),
    };
    let text = state.engine.metrics.render(&snapshot);
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text)
        .into_response())
}

async fn no_ui(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        return ApiError::new(ErrorCode::NotFound, format!("no route {}", input::clip(req.uri().path())))
            .into_response();
    }
    Html(
        "<!doctype html><title>SF3D Studio</title><h1>SF3D Studio</h1><p>The server runs, but the web UI was not \
         built. Run <code>cargo xtask run</code> (or pass <code>--dist DIR</code>). The API is at \
         <a href=\"/api/health\">/api/health</a>.</p>",
    )
    .into_response()
}
