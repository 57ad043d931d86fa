//! Gallery endpoints: list (newest first, cursor pages), one entry, its files, delete.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;

/// Default page size.
const DEFAULT_LIMIT: usize = 20;

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

pub(crate) async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let g = s.engine.gallery.clone();
    let list = tokio::task::spawn_blocking(move || g.list(q.limit.unwrap_or(DEFAULT_LIMIT), q.cursor.as_deref()))
        .await
        .map_err(|e| ApiError::internal("gallery task", e))??;
    Ok(axum::Json(list).into_response())
}

pub(crate) async fn get_entry(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let g = s.engine.gallery.clone();
    let entry =
        tokio::task::spawn_blocking(move || g.get(&id)).await.map_err(|e| ApiError::internal("gallery task", e))??;
    Ok(axum::Json(entry).into_response())
}

pub(crate) async fn delete(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let g = s.engine.gallery.clone();
    tokio::task::spawn_blocking(move || g.delete(&id)).await.map_err(|e| ApiError::internal("gallery task", e))??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn file(
    State(s): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let path = s.engine.gallery.file_path(&id, &file)?;
    if file == crate::gallery::CACHE_FILE {
        return Err(crate::gallery::GalleryError::UnknownFile(file).into());
    }
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(crate::gallery::GalleryError::NotFound(id).into());
        }
        Err(e) => return Err(ApiError::internal("gallery file", e)),
    };
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
