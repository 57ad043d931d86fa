//! Turning one text frame into a [`ClientMessage`], or into the error frame that answers it.
//!
//! The frame is bounded before it is parsed ([`MAX_TEXT_BYTES`]) and parsed once (into a JSON value, which
//! the message and, on failure, the per-parameter diagnosis are read from). Nothing the client sent is echoed
//! at more than [`ECHO_MAX`] characters ([`clip`]), and ids that are not ULIDs are refused here, so an error frame never
//! carries unbounded client text.

use serde::Deserialize;
use sf3d_shared::{ClientMessage, ErrorCode, GenerateParams, ImageRef, PROTOCOL_VERSION, ParamError};

use crate::error::ApiError;
use crate::gallery::is_valid_id;
use crate::routes::input::{check_filename, check_request_id, clip};

/// Largest text frame (protocol messages are a few hundred bytes; images travel as binary frames).
pub(crate) const MAX_TEXT_BYTES: usize = 64 << 10;
/// The message types of this protocol version.
const KNOWN_TYPES: [&str; 5] = ["auth", "generate", "regenerate", "cancel", "subscribe"];

fn bad_request(message: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

/// Parses and bounds one text frame. `max_upload` is the server's upload limit: a `generate` announcing more is
/// refused here, before its binary frame arrives.
pub(crate) fn parse(text: &str, max_upload: u64) -> Result<ClientMessage, ApiError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(bad_request(format!(
            "text frames are limited to {MAX_TEXT_BYTES} bytes (this one has {}); send the image as a binary frame",
            text.len()
        )));
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad_request(format!("not a protocol message: {}", clip(&e.to_string()))))?;
    let kind = value.get("type").and_then(|t| t.as_str());
    let msg = match ClientMessage::deserialize(&value) {
        Ok(m) => m,
        Err(e) => {
            return Err(match kind {
                Some(t) if !KNOWN_TYPES.contains(&t) => ApiError::new(
                    ErrorCode::UnknownMessage,
                    format!("unknown message type \"{}\" (protocol {PROTOCOL_VERSION})", clip(t)),
                ),
                Some(t) => match value.get("params").and_then(params_error) {
                    Some(err) => ApiError::from(err),
                    None => bad_request(format!("invalid {t} message: {}", clip(&e.to_string()))),
                },
                None => bad_request(format!("not a protocol message: {}", clip(&e.to_string()))),
            });
        }
    };
    check(&msg, max_upload)?;
    Ok(msg)
}

/// Bounds a parsed message: name lengths, ids, the announced upload size.
fn check(msg: &ClientMessage, max_upload: u64) -> Result<(), ApiError> {
    match msg {
        ClientMessage::Auth { .. } => {}
        ClientMessage::Generate { request_id, image, .. } => {
            if let Some(r) = request_id {
                check_request_id(r)?;
            }
            match image {
                ImageRef::Binary { size, filename } => {
                    if let Some(f) = filename {
                        check_filename(f)?;
                    }
                    if *size > max_upload {
                        return Err(ApiError::new(
                            ErrorCode::PayloadTooLarge,
                            format!("the image has {size} bytes; the limit is {max_upload}"),
                        ));
                    }
                    if *size == 0 {
                        return Err(ApiError::new(ErrorCode::UnsupportedImage, "the image is empty"));
                    }
                }
                ImageRef::Mesh { mesh_id } => check_mesh_id(mesh_id)?,
            }
        }
        ClientMessage::Regenerate { request_id, mesh_id, .. } => {
            if let Some(r) = request_id {
                check_request_id(r)?;
            }
            check_mesh_id(mesh_id)?;
        }
        ClientMessage::Cancel { job_id } | ClientMessage::Subscribe { job_id } => {
            if !is_valid_id(job_id) {
                return Err(ApiError::new(ErrorCode::NotFound, "no such job (not a job id)"));
            }
        }
    }
    Ok(())
}

fn check_mesh_id(id: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::NotFound, format!("no mesh \"{}\" (not a mesh id)", clip(id))))
    }
}

/// The first parameter of a JSON `params` object that does not parse, checked field by field.
fn params_error(params: &serde_json::Value) -> Option<ParamError> {
    let obj = params.as_object()?;
    let mut p = GenerateParams::default();
    for (k, v) in obj {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !GenerateParams::is_field(k) || matches!(k.as_str(), "remesh_option" | "target_vertex_count") {
            return Some(ParamError::new(clip(k), "unknown parameter"));
        }
        if let Err(e) = p.set_field(k, &text) {
            return Some(e);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sf3d_shared::api::ECHO_MAX;

    const LIMIT: u64 = 20_000_000;
    const ID: &str = "01JDQ7Z6Z8A1B2C3D4E5F6G7H8";

    fn code(r: Result<ClientMessage, ApiError>) -> ErrorCode {
        match r {
            Err(e) => e.code,
            Ok(m) => panic!("expected an error, got {m:?}"),
        }
    }

    fn message(r: Result<ClientMessage, ApiError>) -> String {
        match r {
            Err(e) => e.message,
            Ok(m) => panic!("expected an error, got {m:?}"),
        }
    }

    #[test]
    fn messages_parse_and_are_bounded() {
        assert!(parse(r#"{"type":"cancel","job_id":"01JDQ7Z6Z8A1B2C3D4E5F6G7H8"}"#, LIMIT).is_ok());
        let announce = |size: u64| format!(r#"{{"type":"generate","image":{{"kind":"binary","size":{size}}}}}"#);
        assert!(parse(&announce(LIMIT), LIMIT).is_ok());
        assert_eq!(code(parse(&announce(LIMIT + 1), LIMIT)), ErrorCode::PayloadTooLarge);
        assert_eq!(code(parse(&"x".repeat(MAX_TEXT_BYTES + 1), LIMIT)), ErrorCode::BadRequest);
        let long_type = format!(r#"{{"type":"{}"}}"#, "z".repeat(10_000));
        let m = message(parse(&long_type, LIMIT));
        assert!(m.len() < 200, "{m}");
        assert_eq!(code(parse(&long_type, LIMIT)), ErrorCode::UnknownMessage);
        let long_job = format!(r#"{{"type":"subscribe","job_id":"{}"}}"#, "j".repeat(10_000));
        assert!(message(parse(&long_job, LIMIT)).len() < 200);
        let rid = format!(r#"{{"type":"regenerate","mesh_id":"{ID}","request_id":"{}"}}"#, "r".repeat(129));
        assert_eq!(code(parse(&rid, LIMIT)), ErrorCode::BadRequest);
        let name =
            format!(r#"{{"type":"generate","image":{{"kind":"binary","size":5,"filename":"{}"}}}}"#, "n".repeat(256));
        assert_eq!(code(parse(&name, LIMIT)), ErrorCode::BadRequest);
        let param = r#"{"type":"generate","params":{"texture_resolution":"huge"},"image":{"kind":"binary","size":5}}"#;
        assert_eq!(code(parse(param, LIMIT)), ErrorCode::InvalidParams);
    }

    /// Arbitrary and mutated frames never panic and always produce a message or a bounded error frame.
    /// `SF3D_FUZZ_CASES` sets the number of inputs (a long campaign); the suite runs a short one.
    #[test]
    fn fuzz_the_message_parser() {
        let cases: u64 = std::env::var("SF3D_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
        let seeds = [
            r#"{"type":"auth","token":"0123456789abcdef"}"#.to_string(),
            r#"{"type":"generate","request_id":"r1","params":{"texture_resolution":1024,"remesh":"quad"},"image":{"kind":"binary","size":1000,"filename":"a.png"}}"#.to_string(),
            format!(r#"{{"type":"generate","image":{{"kind":"mesh","mesh_id":"{ID}"}}}}"#),
            format!(r#"{{"type":"regenerate","mesh_id":"{ID}","params":{{"vertex_count":5000}}}}"#),
            format!(r#"{{"type":"cancel","job_id":"{ID}"}}"#),
            format!(r#"{{"type":"subscribe","job_id":"{ID}"}}"#),
        ];
        let mut fuzz = crate::fuzz::Mutator::new(0x5f3d);
        for _ in 0..cases {
            let seed = seeds[fuzz.below(seeds.len())].as_bytes();
            let bytes = fuzz.mutate(seed, &[b"{", b"}", b"\"", b":", b",", b"[", b"null", b"\\u0000", b"1e999"]);
            let text = String::from_utf8_lossy(&bytes);
            if let Err(ApiError { message, field, .. }) = parse(&text, LIMIT) {
                assert!(message.len() <= 400, "unbounded error text for {text:?}: {message}");
                assert!(field.is_none_or(|f| f.len() <= 4 * ECHO_MAX), "unbounded field for {text:?}");
            }
        }
        eprintln!("message parser: {cases} inputs, no panic");
    }
}
