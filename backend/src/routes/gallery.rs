//! Gallery endpoints: list (newest first, cursor pages), one entry, its files, delete.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sf3d_shared::{ErrorBody, ErrorCode, MeshEntry, MeshList, MeshMetadata};

use crate::AppState;
use crate::error::ApiError;
use crate::routes::input::clip;
use crate::routes::openapi::{Binary, MeshFile};

/// Default page size.
const DEFAULT_LIMIT: usize = 20;

/// The query of `GET /api/meshes`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Entries per page (default 20; clamped to 1..=100).
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List the gallery, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/meshes",
    tag = "gallery",
    params(ListQuery),
    responses(
        (status = 200, description = "One page; `next_cursor` while more remain", body = MeshList),
        (status = 400, description = "`bad_request`: `limit` is not a number", body = ErrorBody),
        (status = 404, description = "`not_found`: `cursor` is not a mesh id", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("bad query: {}", clip(&e.body_text()))))?;
    let g = s.engine.gallery.clone();
    let list = tokio::task::spawn_blocking(move || g.list(q.limit.unwrap_or(DEFAULT_LIMIT), q.cursor.as_deref()))
        .await
        .map_err(|e| ApiError::internal("gallery task", e))??;
    Ok(axum::Json(list).into_response())
}

/// One gallery entry.
#[utoipa::path(
    get,
    path = "/api/meshes/{id}",
    tag = "gallery",
    params(("id" = String, Path, description = "Gallery id")),
    responses(
        (status = 200, description = "The entry", body = MeshEntry),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub(crate) async fn get_entry(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let g = s.engine.gallery.clone();
    let entry =
        tokio::task::spawn_blocking(move || g.get(&id)).await.map_err(|e| ApiError::internal("gallery task", e))??;
    Ok(axum::Json(entry).into_response())
}

/// Delete a gallery entry and its files.
#[utoipa::path(
    delete,
    path = "/api/meshes/{id}",
    tag = "gallery",
    params(("id" = String, Path, description = "Gallery id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub(crate) async fn delete(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let g = s.engine.gallery.clone();
    tokio::task::spawn_blocking(move || g.delete(&id)).await.map_err(|e| ApiError::internal("gallery task", e))??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One file of a gallery entry (immutable: cached for a year).
#[utoipa::path(
    get,
    path = "/api/meshes/{id}/{file}",
    tag = "gallery",
    params(
        ("id" = String, Path, description = "Gallery id"),
        ("file" = MeshFile, Path, description = "Which file"),
    ),
    responses(
        (status = 200, description = "The file", content(
            (Binary = "model/gltf-binary"),
            (Binary = "image/png"),
            (MeshMetadata = "application/json"),
        )),
        (status = 404, description = "`not_found`: no such mesh or file", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub(crate) async fn file(
    State(s): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if file == crate::gallery::CACHE_FILE {
        return Err(crate::gallery::GalleryError::UnknownFile(file).into());
    }
    let g = s.engine.gallery.clone();
    let (read_id, read_file) = (id.clone(), file.clone());
    let bytes = tokio::task::spawn_blocking(move || g.read_file(&read_id, &read_file))
        .await
        .map_err(|e| ApiError::internal("gallery file", e))??;
    let mime = match file.rsplit('.').next() {
        Some("glb") => "model/gltf-binary",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    // Ids are immutable: a mesh's files never change.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    if file == "mesh.glb"
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"sf3d-{id}.glb\""))
    {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
