//! Remeshing (being implemented on the `remesh` branch; this placeholder lets the pipeline build meanwhile).

use sf3d_shared::RemeshOption;

use super::TriMesh;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Applies SF3D's remesh option with an optional target vertex count.
pub fn remesh(
    mesh: &TriMesh,
    option: RemeshOption,
    vertex_count: Option<u32>,
    _progress: &mut dyn Progress,
) -> Result<TriMesh> {
    match (option, vertex_count) {
        (RemeshOption::None, None) => Ok(mesh.clone()),
        _ => Err(Error::Internal("remeshing is not merged yet".into())),
    }
}
