//! `camera_embedder.*` — `sf3d.models.camera.LinearCameraEmbedder` and the default conditioning camera.
//!
//! docs/engine.md §3.1 and §4.6: the flattened `c2w` (16 numbers) and normalised intrinsics (9) are concatenated in the
//! configured order and mapped by one Linear to the AdaLN condition of the image tokenizer.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

use crate::config::{CameraCondition, CameraEmbedderConfig, Sf3dConfig};

/// The conditioning camera every image is seen from.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultCamera {
    /// Camera-to-world (OpenGL axes), row-major.
    pub c2w: [[f32; 4]; 4],
    /// Pixel intrinsics for the conditioning size.
    pub intrinsic: [[f32; 3]; 3],
    /// Intrinsics divided by width (row 0) and height (row 1).
    pub intrinsic_normed: [[f32; 3]; 3],
}

impl DefaultCamera {
    /// The reference's camera: at `default_distance` on +x looking at the origin with +z up, focal length from
    /// `default_fovy_deg` (computed in f64, stored as f32 like the reference).
    pub fn from_config(cfg: &Sf3dConfig) -> Self {
        let d = cfg.default_distance as f32;
        let size = cfg.cond_image_size as f64;
        let f = 0.5 * size / (cfg.default_fovy_deg.to_radians() / 2.0).tan();
        let (f, c) = (f as f32, (size / 2.0) as f32);
        let s = cfg.cond_image_size as f32;
        Self {
            c2w: [[0.0, 0.0, 1.0, d], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
            intrinsic: [[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]],
            intrinsic_normed: [[f / s, 0.0, c / s], [0.0, f / s, c / s], [0.0, 0.0, 1.0]],
        }
    }
}

/// `LinearCameraEmbedder`: `Linear(concat(conditions…))`.
#[derive(Debug, Clone)]
pub struct LinearCameraEmbedder {
    linear: Linear,
    conditions: Vec<CameraCondition>,
}

impl LinearCameraEmbedder {
    /// Loads `camera_embedder.linear.{weight,bias}`.
    pub fn new(cfg: &CameraEmbedderConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let linear = linear(cfg.in_channels, cfg.out_channels, vb.pp("linear"))?;
        Ok(Self { linear, conditions: cfg.conditions.clone() })
    }

    /// Embeds a camera: `[1, 1, out_channels]` (batch and view axes of one).
    pub fn forward(&self, camera: &DefaultCamera, device: &Device) -> Result<Tensor> {
        let mut inputs: Vec<f32> = Vec::with_capacity(25);
        for condition in &self.conditions {
            match condition {
                CameraCondition::C2wCond => inputs.extend(camera.c2w.iter().flatten()),
                CameraCondition::IntrinsicNormedCond => inputs.extend(camera.intrinsic_normed.iter().flatten()),
                CameraCondition::IntrinsicCond => inputs.extend(camera.intrinsic.iter().flatten()),
            }
        }
        let n = inputs.len();
        let x = Tensor::from_vec(inputs, (1, 1, n), device)?.to_dtype(self.linear.weight().dtype())?;
        self.linear.forward(&x)
    }
}
