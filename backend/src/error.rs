//! One error type for the HTTP layer ([`ApiError`], rendered as the shared [`ErrorBody`]) and the mapping of
//! engine errors to wire error codes, shared by REST and WebSocket.
//!
//! Client mistakes are reported as they are; internal failures get a generic message with an incident id and
//! the details go to the log once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sf3d_shared::{ErrorBody, ErrorCode, ErrorDetail, ServerMessage};

use crate::gallery::GalleryError;
use crate::routes::input::clip;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The code (sets the status).
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// The offending parameter.
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header (queue full).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error without field.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None, retry_after: None }
    }

    /// An internal error: logged with an incident id, reported generically.
    pub fn internal(context: &str, detail: impl std::fmt::Display) -> Self {
        let incident = ulid::Ulid::new();
        tracing::error!(%incident, "{context}: {detail}");
        Self::new(ErrorCode::Internal, format!("internal error (incident {incident}); the server log has the details"))
    }

    /// Sets the offending field.
    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }

    /// The same error as a WebSocket frame.
    pub fn to_message(&self, job_id: Option<String>) -> ServerMessage {
        ServerMessage::Error {
            job_id,
            code: self.code,
            message: self.message.clone(),
            field: self.field.clone(),
            retry_after: self.retry_after,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message, field: self.field } };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<sf3d_shared::ParamError> for ApiError {
    fn from(e: sf3d_shared::ParamError) -> Self {
        Self { code: ErrorCode::InvalidParams, field: Some(e.field.clone()), message: e.to_string(), retry_after: None }
    }
}

impl From<GalleryError> for ApiError {
    fn from(e: GalleryError) -> Self {
        match e {
            GalleryError::InvalidId(id) => {
                Self::new(ErrorCode::NotFound, format!("no mesh \"{}\" (not a valid id)", clip(&id)))
            }
            GalleryError::NotFound(id) => Self::new(ErrorCode::NotFound, format!("mesh {} not found", clip(&id))),
            GalleryError::UnknownFile(f) => {
                Self::new(ErrorCode::NotFound, format!("meshes have no file \"{}\"", clip(&f)))
            }
            other => Self::internal("gallery", other),
        }
    }
}

impl From<crate::jobs::SubmitError> for ApiError {
    fn from(e: crate::jobs::SubmitError) -> Self {
        if let crate::jobs::SubmitError::Journal(detail) = &e {
            return Self::internal("job journal", detail);
        }
        let mut err = Self::new(e.code(), e.to_string());
        if matches!(e, crate::jobs::SubmitError::QueueFull(_)) {
            err.retry_after = Some(crate::RETRY_AFTER_SECS);
        }
        err
    }
}

/// Maps an engine error to its wire form. Bad input is reported as it is; anything else is internal.
pub fn engine_error(e: &sf3d::Error) -> ApiError {
    use sf3d::Error as E;
    match e {
        E::UnsupportedImage(_) => ApiError::new(ErrorCode::UnsupportedImage, e.to_string()),
        E::ImageTooLarge(_) => ApiError::new(ErrorCode::ImageTooLarge, e.to_string()),
        E::NoForeground(_) => ApiError::new(ErrorCode::NoForeground, e.to_string()),
        E::NoSurface(_) => ApiError::new(ErrorCode::NoSurface, e.to_string()),
        E::Param(p) => p.clone().into(),
        E::Cancelled => ApiError::new(ErrorCode::Cancelled, "the job was cancelled"),
        other => ApiError::internal("engine", other),
    }
}
