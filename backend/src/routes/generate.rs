//! Blocking REST generation: `POST /api/generate` (and the seed's `POST /generate`) take a multipart upload and
//! answer with the GLB once the job ends; `POST /api/meshes/{id}/regenerate` re-extracts a stored mesh.
//!
//! The upload limit is enforced while streaming (a body past the limit is cut off with 413 in our error format,
//! not buffered); the whole upload must arrive within the upload timeout (408 otherwise), and so must a
//! regenerate's JSON body (at most 64 KiB). The job runs on the worker like every other; if the HTTP client goes
//! away, the job still finishes and lands in the gallery.

use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sf3d_shared::api::{HEADER_JOB_ID, HEADER_MESH_ID, HEADER_SERVER_TIMING, HEADER_STAGE_TIMINGS, RegenerateRequest};
use sf3d_shared::{ErrorBody, ErrorCode, GenerateParams, ServerMessage};

use crate::AppState;
use crate::error::ApiError;
use crate::jobs::{Job, JobInput, JobRequest};
use crate::routes::input::{check_filename, clip};
use crate::routes::openapi::{Binary, GenerateForm, SeedGenerateForm};

/// Multipart file field names accepted for the image.
const IMAGE_FIELDS: [&str; 2] = ["image", "file"];
/// Largest accepted text field (parameters).
const MAX_FIELD_BYTES: usize = 64 << 10;

fn too_large(limit: u64) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("the upload exceeds the limit of {limit} bytes"))
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else if stalled(&e) {
        ApiError::new(ErrorCode::RequestTimeout, "the upload stalled: no data arrived within the upload timeout")
    } else {
        ApiError::new(ErrorCode::BadRequest, format!("malformed multipart body: {}", e.body_text()))
    }
}

/// Whether the body stopped arriving (the body timeout of the router fired underneath the multipart parser).
fn stalled(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Reads the image and parameters of a multipart generate request.
async fn read_upload(
    multipart: Result<Multipart, MultipartRejection>,
    limit: u64,
) -> Result<(Vec<u8>, Option<String>, GenerateParams), ApiError> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("expected a multipart/form-data body with an `image` file: {}", e.body_text()),
        )
    })?;
    let mut image: Option<(Vec<u8>, Option<String>)> = None;
    let mut params = GenerateParams::default();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| multipart_error(e, limit))? {
        let name = field.name().unwrap_or_default().to_string();
        if IMAGE_FIELDS.contains(&name.as_str()) {
            let filename = field.file_name().map(str::to_string);
            if let Some(f) = &filename {
                check_filename(f)?;
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
                if bytes.len() as u64 + chunk.len() as u64 > limit {
                    return Err(too_large(limit));
                }
                bytes.extend_from_slice(&chunk);
            }
            image = Some((bytes, filename));
        } else if name == "params" {
            let text = read_text(field, &name).await?;
            params = serde_json::from_str(&text).map_err(|e| {
                ApiError::new(ErrorCode::InvalidParams, format!("the `params` field is not valid parameters JSON: {e}"))
            })?;
        } else if GenerateParams::is_field(&name) {
            let text = read_text(field, &name).await?;
            params.set_field(&name, &text)?;
        } else {
            return Err(ApiError::new(ErrorCode::InvalidParams, format!("unknown form field \"{}\"", clip(&name)))
                .with_field(&clip(&name)));
        }
    }
    let (bytes, filename) =
        image.ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "the multipart body has no `image` file field"))?;
    if bytes.is_empty() {
        return Err(ApiError::new(ErrorCode::UnsupportedImage, "the uploaded image is empty"));
    }
    params.validate()?;
    Ok((bytes, filename, params))
}

async fn read_text(mut field: axum::extract::multipart::Field<'_>, name: &str) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, MAX_FIELD_BYTES as u64))? {
        if buf.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::new(ErrorCode::BadRequest, format!("form field \"{}\" is too long", clip(name))));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf)
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, format!("form field \"{}\" is not UTF-8", clip(name))))
}

/// Waits for the job's terminal message.
pub(crate) async fn wait_terminal(job: &Arc<Job>) -> ServerMessage {
    let (_, replay, mut rx) = job.subscribe();
    if let Some(t) = replay.into_iter().find(|m| {
        matches!(m, ServerMessage::Done { .. } | ServerMessage::Error { .. } | ServerMessage::Cancelled { .. })
    }) {
        return t;
    }
    loop {
        match rx.recv().await {
            Ok(m @ (ServerMessage::Done { .. } | ServerMessage::Error { .. } | ServerMessage::Cancelled { .. })) => {
                return m;
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Some(t) = job.terminal() {
                    return t;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return job
                    .terminal()
                    .unwrap_or_else(|| ApiError::internal("job", "event stream closed").to_message(None));
            }
        }
    }
}

/// Runs a job to its end and answers with its GLB.
async fn respond_with_glb(state: &AppState, job: Arc<Job>) -> Result<Response, ApiError> {
    match wait_terminal(&job).await {
        ServerMessage::Done { mesh_id, metadata, .. } => {
            let g = state.engine.gallery.clone();
            let id = mesh_id.clone();
            let glb = tokio::task::spawn_blocking(move || g.read_file(&id, "mesh.glb"))
                .await
                .map_err(|e| ApiError::internal("reading the new GLB", e))??;
            let mut resp = glb.into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("model/gltf-binary"));
            let mut put = |name: &'static str, value: String| {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    h.insert(HeaderName::from_static(name), v);
                }
            };
            put(HEADER_MESH_ID, mesh_id.clone());
            put(HEADER_JOB_ID, job.id.clone());
            put(HEADER_STAGE_TIMINGS, serde_json::to_string(&metadata.timings).unwrap_or_default());
            put(
                HEADER_SERVER_TIMING,
                metadata.timings.iter().map(|t| format!("{};dur={:.1}", t.stage, t.ms)).collect::<Vec<_>>().join(", "),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"sf3d-{mesh_id}.glb\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(resp)
        }
        ServerMessage::Error { code, message, field, retry_after, .. } => {
            Err(ApiError { code, message, field, retry_after })
        }
        _ => Err(ApiError::new(ErrorCode::Cancelled, "the job was cancelled")),
    }
}

/// A body that did not arrive within the upload timeout.
fn upload_late(timeout: std::time::Duration) -> ApiError {
    ApiError::new(ErrorCode::RequestTimeout, format!("the upload did not arrive within {} s", timeout.as_secs()))
}

/// A JSON body must say so: a page cannot send `Content-Type: application/json` across sites without a CORS
/// preflight, so this keeps "simple" cross-site form posts out even where no `Origin` is sent.
fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("send the body as Content-Type: application/json (got \"{}\")", clip(ct)),
        ))
    }
}

/// Generate a mesh from one image; answers with the GLB once the job ends.
///
/// Blocks until the job ends (a full queue is refused at once with `429`). The job also lands in the gallery,
/// and it runs to its end even if the client goes away.
#[utoipa::path(
    post,
    path = "/api/generate",
    tag = "generate",
    request_body(content = GenerateForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The GLB of the new mesh", content_type = "model/gltf-binary", body = Binary,
            headers(
                ("x-mesh-id" = String, description = "Gallery id of the new mesh"),
                ("x-job-id" = String, description = "The job"),
                ("x-stage-timings" = String, description = "JSON array of {\"stage\", \"ms\", \"state\"}"),
                ("server-timing" = String, description = "The timings as `decode;dur=3.1, backbone;dur=120.5, …`"),
            )),
        (status = 400, description = "`bad_request`: not a multipart body, no `image` field, a bad file name",
            body = ErrorBody),
        (status = 408, description = "`request_timeout`: the upload did not arrive in time", body = ErrorBody),
        (status = 409, description = "`cancelled`: a client cancelled the job", body = ErrorBody),
        (status = 413, description = "`payload_too_large`, `image_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_image`: not a PNG, JPEG or WebP image", body = ErrorBody),
        (status = 422, description = "`invalid_params` (with `field`), `no_foreground`, `no_surface`",
            body = ErrorBody),
        (status = 429, description = "`queue_full`", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "`internal`, `interrupted`", body = ErrorBody),
        (status = 503, description = "`shutting_down`, `unavailable` (every worker is dead)", body = ErrorBody),
        (status = 504, description = "`deadline_exceeded`: the job ran past `--job-timeout`", body = ErrorBody),
    )
)]
pub(crate) async fn generate(
    State(state): State<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let timeout = state.config.upload_timeout;
    let (bytes, filename, params) =
        tokio::time::timeout(timeout, read_upload(multipart, state.config.max_upload_bytes))
            .await
            .map_err(|_| upload_late(timeout))??;
    let job = submit(&state, JobRequest { input: JobInput::Image { bytes, filename }, params }).await?;
    respond_with_glb(&state, job).await
}

/// The seed pipeline's `POST /generate`: the same as `POST /api/generate`.
///
/// Besides the fields of `/api/generate` it accepts the seed client's names `remesh_option` (for `remesh`)
/// and `target_vertex_count` (for `vertex_count`).
#[utoipa::path(
    post,
    path = "/generate",
    tag = "generate",
    request_body(content = SeedGenerateForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The GLB of the new mesh (headers as for `/api/generate`)",
            content_type = "model/gltf-binary", body = Binary),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 409, description = "`cancelled`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`, `image_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_image`", body = ErrorBody),
        (status = 422, description = "`invalid_params`, `no_foreground`, `no_surface`", body = ErrorBody),
        (status = 429, description = "`queue_full`", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "`internal`, `interrupted`", body = ErrorBody),
        (status = 503, description = "`shutting_down`, `unavailable`", body = ErrorBody),
        (status = 504, description = "`deadline_exceeded`", body = ErrorBody),
    )
)]
pub(crate) async fn seed_generate(
    state: State<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    generate(state, multipart).await
}

/// Re-extract a stored mesh with new parameters; answers with the new GLB.
///
/// The network is skipped (its stages report `cached`) when `foreground_ratio` and `background` equal the
/// parent's. The result is a new gallery entry whose `parent_id` is `{id}`. An empty body keeps the defaults.
#[utoipa::path(
    post,
    path = "/api/meshes/{id}/regenerate",
    tag = "generate",
    params(("id" = String, Path, description = "Gallery id of the parent mesh")),
    request_body(content = Option<RegenerateRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The GLB of the new mesh (headers as for `/api/generate`)",
            content_type = "model/gltf-binary", body = Binary),
        (status = 404, description = "`not_found`: no such mesh", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 409, description = "`cancelled`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body without `Content-Type: application/json`",
            body = ErrorBody),
        (status = 422, description = "`invalid_params`, `no_surface`", body = ErrorBody),
        (status = 429, description = "`queue_full`", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "`internal`, `interrupted`", body = ErrorBody),
        (status = 503, description = "`shutting_down`, `unavailable`", body = ErrorBody),
        (status = 504, description = "`deadline_exceeded`", body = ErrorBody),
    )
)]
pub(crate) async fn regenerate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let timeout = state.config.upload_timeout;
    let body = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_FIELD_BYTES)).await {
        Err(_) => return Err(upload_late(timeout)),
        Ok(Err(_)) => {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is unreadable or over {MAX_FIELD_BYTES} bytes"),
            ));
        }
        Ok(Ok(b)) => b,
    };
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        GenerateParams::default()
    } else {
        require_json(&headers)?;
        serde_json::from_slice::<RegenerateRequest>(&body)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidParams,
                    format!("body is not {{\"params\": {{...}}}}: {}", clip(&e.to_string())),
                )
            })?
            .params
    };
    params.validate()?;
    // 404 before queueing, so an unknown id never occupies the queue (off the runtime: the index may be remote).
    let g = state.engine.gallery.clone();
    let parent = id.clone();
    tokio::task::spawn_blocking(move || g.get(&parent)).await.map_err(|e| ApiError::internal("gallery", e))??;
    let job = submit(&state, JobRequest { input: JobInput::Regenerate { parent_id: id }, params }).await?;
    respond_with_glb(&state, job).await
}

/// Queues a job off the async runtime: journaling writes the upload to disk and the database.
async fn submit(state: &AppState, request: JobRequest) -> Result<Arc<Job>, ApiError> {
    let jobs = state.jobs.clone();
    Ok(tokio::task::spawn_blocking(move || jobs.submit(request, None))
        .await
        .map_err(|e| ApiError::internal("job submission", e))??)
}
