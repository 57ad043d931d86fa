//! The wire format is a contract: every example in `docs/protocol.md` must parse into our types and serialise
//! back to the same JSON, and every message variant must have an example there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::collections::BTreeSet;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sf3d_shared::api::RegenerateRequest;
use sf3d_shared::{
    ClientMessage, ErrorBody, ErrorCode, GenerateParams, HealthResponse, ImageRef, MeshList, SeedHealth, ServerMessage,
    Stage, StageState,
};

fn protocol_doc() -> String {
    // The manifest dir at run time (builds may be shared between checkouts; see sf3d::golden::GoldenSet).
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let path = format!("{dir}/../docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md")
}

/// `(kind, json)` of every ```json KIND fence in the document.
fn examples() -> Vec<(String, String)> {
    let doc = protocol_doc();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(kind) = line.strip_prefix("```json ") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            out.push((kind.trim().to_string(), body.join("\n")));
        }
    }
    out
}

/// Parses `json` as `T`, serialises it again and checks nothing was lost or invented.
fn round_trip<T: Serialize + DeserializeOwned>(kind: &str, json: &str) -> T {
    let original: Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{kind} example is not JSON: {e}\n{json}"));
    let parsed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{kind} example does not parse: {e}\n{json}"));
    // Through the string form: that is what goes on the wire (f32 fields print as their shortest form).
    let again: Value = serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
    assert_eq!(strip_defaults(&again), strip_defaults(&original), "{kind} example does not round-trip:\n{json}");
    parsed
}

/// Removes keys whose values are the serde defaults we fill in (`false`, empty params), so that an example may
/// omit them.
fn strip_defaults(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| {
                    !(matches!(v, Value::Bool(false)) || (k.as_str() == "skipped" && *v == &Value::from(0)))
                })
                .map(|(k, v)| (k.clone(), strip_defaults(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_defaults).collect()),
        other => other.clone(),
    }
}

fn fill_params(v: &mut Value) {
    // `params` objects in examples may be partial; compare against the full default-filled form.
    if let Value::Object(m) = v {
        for (k, child) in m.iter_mut() {
            if k == "params" && child.is_object() {
                let p: GenerateParams = serde_json::from_value(child.clone()).unwrap();
                *child = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            } else {
                fill_params(child);
            }
        }
    }
}

fn round_trip_filled<T: Serialize + DeserializeOwned>(kind: &str, json: &str) -> T {
    let mut v: Value = serde_json::from_str(json).unwrap();
    fill_params(&mut v);
    round_trip(kind, &v.to_string())
}

fn tag(v: &impl Serialize) -> String {
    serde_json::to_value(v).unwrap()["type"].as_str().unwrap().to_string()
}

#[test]
fn every_protocol_example_round_trips() {
    let mut client_types = BTreeSet::new();
    let mut server_types = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for (kind, json) in examples() {
        kinds.insert(kind.clone());
        match kind.as_str() {
            "client" => {
                client_types.insert(tag(&round_trip_filled::<ClientMessage>(&kind, &json)));
            }
            "server" => {
                server_types.insert(tag(&round_trip_filled::<ServerMessage>(&kind, &json)));
            }
            "params" => {
                round_trip::<GenerateParams>(&kind, &json).validate().unwrap();
            }
            "error" => {
                round_trip::<ErrorBody>(&kind, &json);
            }
            "health" => {
                round_trip::<HealthResponse>(&kind, &json);
            }
            "seed_health" => {
                round_trip::<SeedHealth>(&kind, &json);
            }
            "job_status" => {
                round_trip_filled::<sf3d_shared::api::JobStatus>(&kind, &json);
            }
            "mesh_list" => {
                round_trip_filled::<MeshList>(&kind, &json);
            }
            other => panic!("unknown example kind {other:?} in docs/protocol.md"),
        }
    }
    let want_client: BTreeSet<String> =
        ["auth", "generate", "regenerate", "cancel", "subscribe"].into_iter().map(String::from).collect();
    let want_server: BTreeSet<String> =
        ["hello", "accepted", "queue", "status", "stage", "preview", "done", "cancelled", "error"]
            .into_iter()
            .map(String::from)
            .collect();
    assert_eq!(client_types, want_client, "every client message needs an example");
    assert_eq!(server_types, want_server, "every server message needs an example");
    for k in ["params", "error", "health", "seed_health", "mesh_list", "job_status"] {
        assert!(kinds.contains(k), "missing a {k} example");
    }
}

/// The exact JSON of the messages clients parse most, spelled out (a change here is a protocol change).
#[test]
fn golden_json_of_core_messages() {
    let msg = ClientMessage::Generate {
        request_id: None,
        params: GenerateParams::default(),
        image: ImageRef::Binary { size: 10, filename: None },
    };
    assert_eq!(
        serde_json::to_string(&msg).unwrap(),
        r#"{"type":"generate","params":{"texture_resolution":1024,"foreground_ratio":0.85,"remesh":"none","vertex_count":-1,"background":"auto","preview":false},"image":{"kind":"binary","size":10}}"#
    );
    let msg = ServerMessage::Stage {
        job_id: "j".into(),
        stage: Stage::UnwrapUv,
        state: StageState::Finished,
        value: None,
        max: None,
        elapsed_ms: 7,
        label: None,
    };
    assert_eq!(
        serde_json::to_string(&msg).unwrap(),
        r#"{"type":"stage","job_id":"j","stage":"unwrap_uv","state":"finished","elapsed_ms":7}"#
    );
    let msg = ServerMessage::error(ErrorCode::QueueFull, "full");
    assert_eq!(serde_json::to_string(&msg).unwrap(), r#"{"type":"error","code":"queue_full","message":"full"}"#);
}

#[test]
fn malformed_messages_are_refused() {
    for bad in [
        r#"{"type":"explode"}"#,
        r#"{"type":"cancel"}"#,
        r#"{"type":"generate","image":{"kind":"binary"}}"#,
        r#"{"type":"generate","params":{"colour":"red"},"image":{"kind":"mesh","mesh_id":"x"}}"#,
        r#"{"type":"generate","params":{"remesh":"cubes"},"image":{"kind":"mesh","mesh_id":"x"}}"#,
        r#"not json"#,
    ] {
        assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad} was accepted");
    }
}

#[test]
fn regenerate_request_defaults_params() {
    let r: RegenerateRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(r.params, GenerateParams::default());
}

#[test]
fn every_error_code_has_a_status_and_a_hint() {
    let codes = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidParams,
        ErrorCode::UnsupportedImage,
        ErrorCode::ImageTooLarge,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NoForeground,
        ErrorCode::NoSurface,
        ErrorCode::QueueFull,
        ErrorCode::NotFound,
        ErrorCode::Unauthorized,
        ErrorCode::ProtocolMismatch,
        ErrorCode::UnknownMessage,
        ErrorCode::Cancelled,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];
    let doc = protocol_doc();
    for c in codes {
        assert!((400..600).contains(&c.http_status()));
        assert!(!c.hint().is_empty());
        assert_eq!(serde_json::to_value(c).unwrap(), Value::from(c.as_str()));
        assert!(
            doc.contains(&format!("`{}` {}", c.as_str(), c.http_status())),
            "docs/protocol.md lacks `{}` {}",
            c.as_str(),
            c.http_status()
        );
    }
}
