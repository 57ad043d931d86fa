//! End-to-end tests: a real `sf3d serve` (built-in test model) on an ephemeral port, real WebSocket and HTTP
//! clients, and a real headless Chromium. One test binary (one link), one module per area:

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

/// Background removal with rembg's U²-Net: selection, stage label, health and metadata.
mod background;
/// The headless-Chromium UI test (run by `cargo xtask test`: needs the built UI and Chromium).
mod browser;
/// The snippets of docs/clients.md, executed.
mod clients;
/// Servers sharing one gallery through PostgreSQL and NATS.
mod cluster;
/// REST: generation, seed aliases, limits, auth, gallery persistence, regenerate.
mod http_api;
/// `GET /metrics` scraped around real jobs.
mod metrics;
/// The OpenAPI document against the live server (Schemathesis).
mod openapi;
/// The worker pool and the job journal: parallel workers, dead workers, deadlines, restarts.
mod pool;
/// Safety on a shared network: cross-site policy, WebSocket and HTTP bounds, memory under abuse.
mod security;
/// Server, clients and fixtures shared by the tests.
mod support;
/// The WebSocket job protocol.
mod ws_protocol;
