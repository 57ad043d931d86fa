//! REST calls to the server that served this page (same origin), decoded into the `sf3d-shared` types.
//!
//! Every call returns [`ApiError`], which separates "nobody answered" (the server is down, or the page is served
//! by something that is not `sf3d serve`) from the server's own error body (`ErrorBody`), so the UI can say in
//! words what happened and what to do about it.

use std::fmt;

use js_sys::ArrayBuffer;
use serde::de::DeserializeOwned;
use sf3d_shared::{ErrorBody, ErrorDetail, HealthResponse, MeshEntry, MeshList};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

/// Why a REST call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// No HTTP answer at all: the server is down, the network failed, or the browser blocked the request.
    Unreachable(String),
    /// The server answered with its error body (`{"error": {...}}`).
    Server {
        /// HTTP status.
        status: u16,
        /// The decoded error.
        detail: ErrorDetail,
    },
    /// Something answered, but not with what an SF3D server sends (a static file server's 404 page, a proxy
    /// error, a body that does not decode).
    Unexpected {
        /// HTTP status (200 when the body did not decode).
        status: u16,
        /// What was wrong.
        message: String,
    },
}

impl ApiError {
    /// Whether this means "there is no SF3D server behind this page" (as opposed to a refused request).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Unreachable(_) | ApiError::Unexpected { .. })
    }

    /// What the user can do about it, in words.
    pub fn hint(&self) -> &'static str {
        match self {
            ApiError::Unreachable(_) => "Check that `sf3d serve` is running and reachable; the page retries by itself.",
            ApiError::Server { detail, .. } => detail.code.hint(),
            ApiError::Unexpected { .. } => {
                "This page must be served by `sf3d serve` (the API lives on the same address)."
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unreachable(why) => write!(f, "server unreachable: {why}"),
            ApiError::Server { detail, .. } => f.write_str(&detail.message),
            ApiError::Unexpected { status, message } => {
                write!(f, "unexpected answer (HTTP {status}): {message}")
            }
        }
    }
}

/// Reads a JS exception as text.
pub(crate) fn js_error_text(err: &JsValue) -> String {
    if let Some(e) = err.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    err.as_string().unwrap_or_else(|| format!("{err:?}"))
}

fn unreachable(err: JsValue) -> ApiError {
    ApiError::Unreachable(js_error_text(&err))
}

/// Where the API key of a keyed server is kept (this browser only).
const API_KEY_STORAGE: &str = "sf3d.api_key";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

/// The API key the user entered for this server, if any.
pub fn api_key() -> Option<String> {
    storage().and_then(|s| s.get_item(API_KEY_STORAGE).ok().flatten()).filter(|k| !k.is_empty())
}

/// Stores (or, with `None`, forgets) the API key.
pub fn set_api_key(key: Option<&str>) {
    if let Some(s) = storage() {
        let _ = match key.map(str::trim).filter(|k| !k.is_empty()) {
            Some(k) => s.set_item(API_KEY_STORAGE, k),
            None => s.remove_item(API_KEY_STORAGE),
        };
    }
}

/// `url` with the API key as a `token` query parameter, for the places a header cannot be sent (`<img>`,
/// download links, the WebSocket); `url` unchanged without a key.
pub fn authed_url(url: &str) -> String {
    match api_key() {
        Some(k) => format!("{url}{}token={}", if url.contains('?') { '&' } else { '?' }, encode_query_value(&k)),
        None => url.to_owned(),
    }
}

/// Sends one request and returns the response when its status is 2xx, the decoded error otherwise.
async fn send(method: &str, url: &str) -> Result<Response, ApiError> {
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(key) = api_key() {
        let headers = web_sys::Headers::new().map_err(unreachable)?;
        headers.set("Authorization", &format!("Bearer {key}")).map_err(unreachable)?;
        init.set_headers(&headers);
    }
    let request = Request::new_with_str_and_init(url, &init).map_err(unreachable)?;
    let window = web_sys::window().ok_or_else(|| ApiError::Unreachable("no window".into()))?;
    let value = JsFuture::from(window.fetch_with_request(&request)).await.map_err(unreachable)?;
    let response: Response = value.dyn_into().map_err(unreachable)?;
    if response.ok() {
        return Ok(response);
    }
    let status = response.status();
    let body = text_of(&response).await.unwrap_or_default();
    Err(error_from_body(status, &response.status_text(), &body))
}

/// Turns a non-2xx answer into an [`ApiError`]: the server's `ErrorBody` when the body is one.
pub fn error_from_body(status: u16, status_text: &str, body: &str) -> ApiError {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(b) => ApiError::Server { status, detail: b.error },
        Err(_) => ApiError::Unexpected {
            status,
            message: if status_text.is_empty() { format!("HTTP {status}") } else { status_text.to_owned() },
        },
    }
}

async fn text_of(response: &Response) -> Result<String, ApiError> {
    let promise = response.text().map_err(unreachable)?;
    let value = JsFuture::from(promise).await.map_err(unreachable)?;
    value
        .as_string()
        .ok_or_else(|| ApiError::Unexpected { status: response.status(), message: "body is not text".into() })
}

async fn get_json<T: DeserializeOwned>(url: &str) -> Result<T, ApiError> {
    let response = send("GET", url).await?;
    let text = text_of(&response).await?;
    serde_json::from_str(&text).map_err(|e| ApiError::Unexpected {
        status: response.status(),
        message: format!("the answer of {url} does not decode: {e}"),
    })
}

/// `GET /api/health`.
pub async fn health() -> Result<HealthResponse, ApiError> {
    get_json("/api/health").await
}

/// The URL of one gallery page: `limit` entries, starting after `cursor` (`None`: the newest).
pub fn meshes_url(limit: u32, cursor: Option<&str>) -> String {
    match cursor {
        Some(c) => format!("/api/meshes?limit={limit}&cursor={}", encode_query_value(c)),
        None => format!("/api/meshes?limit={limit}"),
    }
}

/// Percent-encodes everything outside the URL-safe unreserved set (cursors are ULIDs, but do not rely on it).
fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /api/meshes?limit&cursor`: one page of the gallery, newest first.
pub async fn meshes(limit: u32, cursor: Option<&str>) -> Result<MeshList, ApiError> {
    get_json(&meshes_url(limit, cursor)).await
}

/// `GET /api/meshes/{id}`: one gallery entry.
pub async fn mesh(id: &str) -> Result<MeshEntry, ApiError> {
    get_json(&format!("/api/meshes/{}", encode_query_value(id))).await
}

/// `DELETE /api/meshes/{id}`.
pub async fn delete_mesh(id: &str) -> Result<(), ApiError> {
    send("DELETE", &format!("/api/meshes/{}", encode_query_value(id))).await.map(|_| ())
}

/// `GET url` as raw bytes (a `mesh.glb`).
pub async fn bytes(url: &str) -> Result<ArrayBuffer, ApiError> {
    let response = send("GET", url).await?;
    let promise = response.array_buffer().map_err(unreachable)?;
    let value = JsFuture::from(promise).await.map_err(unreachable)?;
    value.dyn_into().map_err(unreachable)
}

#[cfg(test)]
mod tests {
    use sf3d_shared::ErrorCode;

    use super::*;

    #[test]
    fn server_error_bodies_are_decoded() {
        let body = r#"{"error": {"code": "not_found", "message": "no mesh 01X"}}"#;
        let err = error_from_body(404, "Not Found", body);
        assert_eq!(
            err,
            ApiError::Server {
                status: 404,
                detail: ErrorDetail { code: ErrorCode::NotFound, message: "no mesh 01X".into(), field: None }
            }
        );
        assert!(!err.is_unreachable());
        assert_eq!(err.hint(), ErrorCode::NotFound.hint());
    }

    #[test]
    fn a_static_file_server_counts_as_unreachable() {
        let err = error_from_body(404, "File not found", "<html>404</html>");
        assert!(err.is_unreachable());
        assert!(err.to_string().contains("404"), "{err}");
    }

    #[test]
    fn cursors_are_encoded() {
        assert_eq!(meshes_url(20, None), "/api/meshes?limit=20");
        assert_eq!(meshes_url(5, Some("01JD Q&x")), "/api/meshes?limit=5&cursor=01JD%20Q%26x");
    }
}
