//! Learned background removal: rembg's U²-Net (`u2net.onnx`, `u2netp.onnx`), the remover the reference pipeline
//! runs (docs/engine.md §4.2), read from rembg's own ONNX file and run in candle on the pipeline's device.
//!
//! | part | file |
//! |---|---|
//! | ONNX protobuf subset: nodes, attributes, float initializers | `onnx.rs` |
//! | the two published architectures and their forward pass | `arch.rs` |
//! | the file's `Conv`/`BatchNormalization`/`Resize` nodes mapped onto the architecture | `load.rs` |
//! | rembg's preprocessing, mask and cut-out | `rembg.rs` |
//!
//! The file is mapped onto an own candle module rather than interpreted as a graph: its `Conv` nodes, in file
//! order, must match the architecture's convolutions shape for shape (batch norms folded into them), its resize
//! nodes give the bilinear sampling rule, and its first output must be the sigmoid of the fusing convolution. The
//! shape arithmetic exporters put around `Resize` is not evaluated (the module knows every size), and the
//! network runs as plain convolutions on whatever device the pipeline uses.

mod arch;
mod load;
pub mod onnx;
#[doc(hidden)]
pub mod reference;
mod rembg;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::{GrayImage, RgbaImage};

pub use arch::{Sampling, Variant};
pub use rembg::{INPUT_SIDE, cutout, mask_from_prediction, normalize};

use crate::error::{Error, Result};

/// A loaded U²-Net on a device.
#[derive(Debug, Clone)]
pub struct U2Net {
    net: arch::Network,
    device: Device,
    path: PathBuf,
}

impl U2Net {
    /// Loads rembg's `u2net.onnx` or `u2netp.onnx` (or any export of the same architectures) onto `device`.
    ///
    /// Errors: [`Error::Io`] when the file cannot be read; [`Error::BadFile`], naming the file, when it is not
    /// an ONNX model or its graph is not U²-Net / U²-NetP (the first mismatching node and shape are named).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let graph = onnx::Graph::read(path)?;
        let net = load::network(&graph, device)?;
        Ok(Self { net, device: device.clone(), path: path.to_path_buf() })
    }

    /// Which architecture the file holds.
    pub fn variant(&self) -> Variant {
        self.net.variant
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bilinear sampling rule of the file's resize nodes.
    pub fn sampling(&self) -> Sampling {
        self.net.sampling
    }

    /// The network's first output, `sigmoid(d0)`, for a normalised `[3, H, W]` input (channel-major), as
    /// `H·W` values.
    pub fn predict(&self, input: &[f32], height: usize, width: usize) -> Result<Vec<f32>> {
        let x = Tensor::from_slice(input, (1, 3, height, width), &self.device)?;
        let y = self.net.forward(&x)?;
        Ok(y.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?)
    }

    /// rembg's mask for `img` at the image's size: [`normalize`] at 320², [`U2Net::predict`],
    /// [`mask_from_prediction`], Pillow's Lanczos resize back.
    ///
    /// Errors: [`Error::NoForeground`] when the prediction is constant (no mask can be normalised).
    pub fn mask(&self, img: &RgbaImage) -> Result<GrayImage> {
        let side = INPUT_SIDE as usize;
        let input = normalize(img);
        let pred = self.predict(&input, side, side)?;
        let small = mask_from_prediction(&pred, INPUT_SIDE)?;
        Ok(crate::preprocess::pil_resize_lanczos_gray(&small, img.width(), img.height()))
    }

    /// `rembg.remove(img, session)` with rembg's defaults: the cut-out of [`U2Net::mask`] ([`cutout`]: every
    /// channel, alpha included, multiplied by the mask).
    ///
    /// Errors: [`Error::NoForeground`] when the mask is empty or constant.
    pub fn remove_background(&self, img: &RgbaImage) -> Result<RgbaImage> {
        let mask = self.mask(img)?;
        let out = cutout(img, &mask);
        if !out.pixels().any(|p| p.0[3] > 0) {
            return Err(Error::NoForeground(format!(
                "{} found no object in the image (its mask is empty)",
                self.variant().name()
            )));
        }
        Ok(out)
    }
}
