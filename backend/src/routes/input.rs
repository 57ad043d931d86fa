//! Bounds on client-supplied text, shared by REST and WebSocket: the names clients attach to a job (an upload's
//! file name, stored in the gallery's metadata; a `request_id`, echoed back) and how much of anything a client
//! sent is quoted in an error message ([`clip`], shared with the parameter parser).

use sf3d_shared::ErrorCode;
pub use sf3d_shared::api::clip;

use crate::error::ApiError;

/// Longest file name, in bytes (what file systems allow).
pub const MAX_FILENAME_BYTES: usize = 255;
/// Longest `request_id`, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// An upload's file name: at most [`MAX_FILENAME_BYTES`] bytes, no control characters.
pub fn check_filename(name: &str) -> Result<(), ApiError> {
    if name.len() > MAX_FILENAME_BYTES {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("the file name has {} bytes; at most {MAX_FILENAME_BYTES} are accepted", name.len()),
        )
        .with_field("filename"));
    }
    if name.chars().any(char::is_control) {
        return Err(
            ApiError::new(ErrorCode::BadRequest, "the file name contains control characters").with_field("filename")
        );
    }
    Ok(())
}

/// A client's `request_id`: at most [`MAX_REQUEST_ID_BYTES`] bytes.
pub fn check_request_id(id: &str) -> Result<(), ApiError> {
    if id.len() > MAX_REQUEST_ID_BYTES {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("`request_id` has {} bytes; at most {MAX_REQUEST_ID_BYTES} are accepted", id.len()),
        )
        .with_field("request_id"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_clipped() {
        assert_eq!(clip("a\u{0}b"), "ab");
        assert_eq!(clip(&"x".repeat(1000)).chars().count(), sf3d_shared::api::ECHO_MAX + 1);
    }

    #[test]
    fn names_are_bounded() {
        assert!(check_filename("shirt.png").is_ok());
        assert!(check_filename(&"é".repeat(127)).is_ok());
        assert!(check_filename(&"é".repeat(128)).is_err());
        assert!(check_filename("a\nb.png").is_err());
        assert!(check_filename("a\u{7f}.png").is_err());
        assert!(check_request_id(&"r".repeat(128)).is_ok());
        assert_eq!(check_request_id(&"r".repeat(129)).map_err(|e| e.field), Err(Some("request_id".into())));
    }
}
