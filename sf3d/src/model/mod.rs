//! The SF3D network. [`Sf3dNetwork::new`] only wires the top-level checkpoint prefixes (`camera_embedder`,
//! `image_tokenizer`, `tokenizer`, `backbone`, `post_processor`, `decoder`, `image_estimator`,
//! `global_estimator`, `bbox`); each block lives in the module of the same name.
//!
//! Precision (docs/engine.md §8.1): the image tokenizer, backbone and post-processor run in the compute dtype (f32
//! on CPU, bf16 allowed on CUDA); the camera embedder, CLIP estimator, global estimator, triplane query and decoder
//! always run in f32. On the CPU that is what the reference does; on CUDA the reference autocasts the blocks before
//! the scene codes to bf16, CLIP included, and we keep those small blocks in f32 (half precision in CLIP moves
//! roughness and metallic).

pub mod attention;
pub mod backbone;
pub mod camera_embedder;
pub mod decoder;
pub mod global_estimator;
pub mod image_estimator;
pub mod image_tokenizer;
pub mod interpolate;
pub mod linear;
pub mod ops;
pub mod post_processor;
pub mod tokenizer;
pub mod triplane;

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::{KeyLog, WeightSource};
use attention::AttentionOptions;
use backbone::{BackboneTrace, TwoStreamInterleaveTransformer};
use camera_embedder::{DefaultCamera, LinearCameraEmbedder};
use decoder::MaterialMlp;
use global_estimator::MultiHeadEstimator;
use image_estimator::{ClipBasedHeadEstimator, MaterialEstimate};
use image_tokenizer::Dinov2SingleImageTokenizer;
use image_tokenizer::dinov2::Dinov2Trace;
use post_processor::PixelShuffleUpsampleNetwork;
use tokenizer::TriplaneLearnablePositionalEmbedding;
use triplane::TriplaneSampler;

/// Default number of points per decoder batch (features `[N, 3C']` plus 64-wide hidden layers stay small).
pub const DEFAULT_POINT_BATCH: usize = 1 << 17;

/// What loading a checkpoint found.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Storage dtypes of the checkpoint tensors.
    pub checkpoint_dtypes: BTreeSet<String>,
    /// Number of tensors in the checkpoint.
    pub checkpoint_tensors: usize,
    /// Tensors the network read.
    pub used: BTreeSet<String>,
    /// Checkpoint tensors the network never reads (CLIP's text tower is expected here).
    pub unused: Vec<String>,
}

/// The whole network.
#[derive(Debug, Clone)]
pub struct Sf3dNetwork {
    /// The configuration it was built from.
    pub config: ModelConfig,
    /// Score-matrix budget of every attention.
    pub attention: AttentionOptions,
    /// Points per decoder batch.
    pub point_batch: usize,
    camera: DefaultCamera,
    camera_embedder: LinearCameraEmbedder,
    image_tokenizer: Dinov2SingleImageTokenizer,
    tokenizer: TriplaneLearnablePositionalEmbedding,
    backbone: TwoStreamInterleaveTransformer,
    post_processor: PixelShuffleUpsampleNetwork,
    decoder: MaterialMlp,
    image_estimator: ClipBasedHeadEstimator,
    global_estimator: MultiHeadEstimator,
    device: Device,
    dtype: DType,
}

impl Sf3dNetwork {
    /// Builds every block from `vb` (whose dtype is the compute dtype of the transformer stack).
    ///
    /// On the CPU, bf16 means bf16 products: every linear layer and attention of the stack multiplies
    /// bf16-rounded operands and sums in f32 ([`crate::kernels::bf16`], [`crate::kernels::attention`]), as the
    /// reference's bf16 autocast regions do, while activations, normalisations, softmax and convolutions stay f32.
    pub fn new(config: ModelConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if vb.device().is_cpu() && vb.dtype() == DType::BF16 {
            let mut net = linear::with_bf16_products(|| Self::build(config, vb.set_dtype(DType::F32)))?;
            net.dtype = DType::F32;
            net.attention.bf16_products = true;
            return Ok(net);
        }
        Self::build(config, vb)
    }

    fn build(config: ModelConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let c = &config.sf3d;
        let f32_vb = vb.clone().set_dtype(DType::F32);
        let bbox = f32_vb.get_with_hints((2, 3), "bbox", candle_nn::Init::Const(0.0))?;
        check_bbox(&bbox, c.radius)?;
        let net = Self {
            camera: DefaultCamera::from_config(c),
            camera_embedder: LinearCameraEmbedder::new(&c.camera_embedder, f32_vb.pp("camera_embedder"))?,
            image_tokenizer: Dinov2SingleImageTokenizer::new(&config, vb.pp("image_tokenizer"))?,
            tokenizer: TriplaneLearnablePositionalEmbedding::new(&c.tokenizer, vb.pp("tokenizer"))?,
            backbone: TwoStreamInterleaveTransformer::new(&c.backbone, vb.pp("backbone"))?,
            post_processor: PixelShuffleUpsampleNetwork::new(&c.post_processor, vb.pp("post_processor"))?,
            decoder: MaterialMlp::new(&c.decoder, f32_vb.pp("decoder"))?,
            image_estimator: ClipBasedHeadEstimator::new(
                &c.image_estimator,
                &config.clip,
                f32_vb.pp("image_estimator"),
            )?,
            global_estimator: MultiHeadEstimator::new(&c.global_estimator, f32_vb.pp("global_estimator"))?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
            attention: AttentionOptions::default(),
            point_batch: DEFAULT_POINT_BATCH,
            config,
        };
        Ok(net)
    }

    /// Loads `dir/config.yaml` + `dir/model.safetensors` (f32, f16 or bf16 storage; `dtype` is the compute
    /// dtype of the transformer stack). Fails at load time, naming the key, on a missing tensor or wrong shape.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<(Self, LoadReport)> {
        let config = ModelConfig::from_dir(dir)?;
        Self::load_with_config(config, &dir.join("model.safetensors"), device, dtype)
    }

    /// Like [`Self::load`] with an already parsed config.
    pub fn load_with_config(
        config: ModelConfig,
        weights: &Path,
        device: &Device,
        dtype: DType,
    ) -> Result<(Self, LoadReport)> {
        let source = WeightSource::safetensors(weights)?;
        let all = source.checkpoint_keys();
        let checkpoint_dtypes = source.checkpoint_dtypes();
        let log = source.key_log();
        let vb = source.into_var_builder(dtype, device);
        let net = Self::new(config, vb).map_err(|e| recover(&log, e))?;
        let used = log.keys();
        let unused = all.iter().filter(|k| !used.contains(*k) && !used_via_alias(&used, k)).cloned().collect();
        Ok((net, LoadReport { checkpoint_dtypes, checkpoint_tensors: all.len(), used, unused }))
    }

    /// Seeded random weights for any config (the built-in test model, full-size benchmarks).
    pub fn random(config: ModelConfig, seed: u64, device: &Device, dtype: DType) -> Result<Self> {
        let source = WeightSource::random(seed);
        let log = source.key_log();
        let vb = source.into_var_builder(dtype, device);
        Self::new(config, vb).map_err(|e| recover(&log, e))
    }

    /// The device the network lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Compute dtype of the transformer stack.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The decoder.
    pub fn decoder(&self) -> &MaterialMlp {
        &self.decoder
    }

    /// Mutable decoder (test-model calibration).
    pub fn decoder_mut(&mut self) -> &mut MaterialMlp {
        &mut self.decoder
    }

    /// The triplane tokenizer (for `detokenize`).
    pub fn tokenizer(&self) -> &TriplaneLearnablePositionalEmbedding {
        &self.tokenizer
    }

    /// The image tokenizer.
    pub fn image_tokenizer(&self) -> &Dinov2SingleImageTokenizer {
        &self.image_tokenizer
    }

    /// The backbone.
    pub fn backbone(&self) -> &TwoStreamInterleaveTransformer {
        &self.backbone
    }

    /// The post-processor.
    pub fn post_processor(&self) -> &PixelShuffleUpsampleNetwork {
        &self.post_processor
    }

    /// Camera embedding `[1, 1, C]` (f32).
    pub fn camera_embedding(&self) -> Result<Tensor> {
        Ok(self.camera_embedder.forward(&self.camera, &self.device)?)
    }

    /// `rgb_cond [B, H, W, 3]` (f32, grey-blended) → image tokens `[B, T, C]` in the compute dtype.
    pub fn encode_image(&self, rgb_cond: &Tensor, trace: Option<&mut Dinov2Trace>) -> Result<Tensor> {
        let b = rgb_cond.dim(0)?;
        let images = rgb_cond.to_device(&self.device)?.permute((0, 3, 1, 2))?.contiguous()?.to_dtype(self.dtype)?;
        let cond = self
            .camera_embedding()?
            .reshape((1, ()))?
            .broadcast_as((b, self.config.sf3d.camera_embedder.out_channels))?;
        let cond = cond.to_dtype(self.dtype)?.contiguous()?;
        Ok(self.image_tokenizer.forward(&images, &cond, &self.attention, trace)?)
    }

    /// Triplane tokens through the backbone: image tokens `[B, T, C]` → `[B, C_tri, 3P²]`.
    pub fn run_backbone(
        &self,
        image_tokens: &Tensor,
        trace: Option<&mut BackboneTrace>,
        on_block: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<Tensor> {
        let tokens = self.tokenizer.forward(image_tokens.dim(0)?)?.to_dtype(self.dtype)?;
        let image_tokens = image_tokens.to_dtype(self.dtype)?;
        self.backbone.forward(&tokens, &image_tokens, &self.attention, trace, on_block)
    }

    /// `[B, C_tri, 3P²]` → `(direct_codes [B, 3, C, P, P], scene_codes [B, 3, C', rP, rP])`.
    pub fn triplanes(&self, backbone_out: &Tensor) -> Result<(Tensor, Tensor)> {
        let direct = self.tokenizer.detokenize(&backbone_out.to_dtype(self.dtype)?)?;
        let scene = self.post_processor.forward(&direct)?;
        Ok((direct, scene))
    }

    /// Roughness / metallic from `rgb_cond [B, H, W, 3]` and `mask_cond [B, H, W, 1]` (f32).
    pub fn estimate_material(&self, rgb_cond: &Tensor, mask_cond: &Tensor) -> Result<MaterialEstimate> {
        let rgb = rgb_cond.to_device(&self.device)?.to_dtype(DType::F32)?;
        let mask = mask_cond.to_device(&self.device)?.to_dtype(DType::F32)?;
        // The estimator is outside the stack: always f32.
        let f32_attention = AttentionOptions { bf16_products: false, ..self.attention };
        Ok(self.image_estimator.forward(&rgb, &mask, &f32_attention)?)
    }

    /// Spherical-Gaussian amplitudes `[B, 24]` from `direct_codes` (f32).
    pub fn estimate_illumination(&self, direct_codes: &Tensor) -> Result<Vec<(String, Tensor)>> {
        Ok(self.global_estimator.forward(&direct_codes.to_dtype(DType::F32)?)?)
    }

    /// A sampler over the scene codes of one item `[3, C', R, R]`.
    pub fn sampler(&self, scene_codes_item: &Tensor) -> Result<TriplaneSampler> {
        Ok(TriplaneSampler::new(scene_codes_item, self.config.sf3d.radius)?)
    }

    /// Decoder heads `include` at world `points [N, 3]`, evaluated in batches of [`Self::point_batch`];
    /// returns one `[N, out]` f32 tensor per head (on the network's device).
    pub fn query(
        &self,
        sampler: &TriplaneSampler,
        points: &Tensor,
        include: &[&str],
        progress: &mut dyn crate::Progress,
    ) -> Result<Vec<Tensor>> {
        let n = points.dim(0)?;
        let points = points.to_device(&self.device)?;
        let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); include.len()];
        let mut start = 0;
        while start < n {
            let len = self.point_batch.min(n - start);
            let feats = sampler.query(&points.narrow(0, start, len)?)?;
            for (slot, out) in parts.iter_mut().zip(self.decoder.forward(&feats, include)?) {
                slot.push(out);
            }
            start += len;
            progress.report(start as u64, n as u64)?;
        }
        parts
            .into_iter()
            .map(|p| {
                if p.is_empty() { Err(Error::Internal("query of zero points".into())) } else { Ok(Tensor::cat(&p, 0)?) }
            })
            .collect()
    }
}

/// Relative agreement required between the checkpoint's `bbox` buffer and the config's radius (bf16 rounding).
const BBOX_TOLERANCE: f32 = 5e-3;

fn check_bbox(bbox: &Tensor, radius: f32) -> Result<()> {
    let v = bbox.flatten_all()?.to_vec1::<f32>()?;
    // Random weights have no bbox buffer (all zeros): only a loaded checkpoint is checked.
    if v.iter().all(|&x| x == 0.0) {
        return Ok(());
    }
    // Half-precision checkpoints store 0.87 as 0.8701 (f16) or 0.8711 (bf16): allow their rounding.
    let tol = BBOX_TOLERANCE * radius.abs();
    let ok = v[..3].iter().all(|&x| (x + radius).abs() <= tol) && v[3..].iter().all(|&x| (x - radius).abs() <= tol);
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            file: "model.safetensors".into(),
            key: "bbox".into(),
            message: format!("{v:?} disagrees with radius {radius} of config.yaml"),
        })
    }
}

/// A candle error from construction, replaced by the typed error the weight source parked (missing key, shape).
fn recover(log: &KeyLog, e: Error) -> Error {
    match e {
        Error::Candle(c) => log.convert(c),
        other => other,
    }
}

fn used_via_alias(used: &BTreeSet<String>, key: &str) -> bool {
    used.iter().any(|u| crate::weights::modulation_alias(u).as_deref() == Some(key))
}
