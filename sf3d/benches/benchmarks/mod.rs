//! One module per stage.

pub mod bake;
pub mod export;
pub mod isosurface;
pub mod network;
pub mod remesh;
pub mod uv_unwrap;
