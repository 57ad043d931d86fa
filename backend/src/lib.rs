//! SF3D Studio's server: axum routes (WebSocket jobs, REST, gallery) around one engine instance.
