//! # sf3d — Stable Fast 3D in candle
//!
//! A re-implementation of Stability AI's SF3D ("Stable Fast 3D: Fast 3D Asset Reconstruction from a Single
//! Image", arXiv 2408.00653; reference code `Stability-AI/stable-fast-3d` commit `ff21fc4`) that loads the
//! official `config.yaml` + `model.safetensors` unchanged.
//!
//! This crate is a library: no argument parsing, no network, no printing. The `sf3d` binary in
//! `sf3d-backend` is the only thing that talks to the outside world.

pub mod config;
pub mod error;
pub mod golden;
pub mod kernels;
pub mod mesh;
pub mod model;
pub mod parity;
pub mod pipeline;
pub mod preprocess;
pub mod progress;
pub mod test_model;
pub mod u2net;
pub mod weights;

pub use error::{Error, Result};
pub use progress::{CancelToken, NoProgress, Progress};
