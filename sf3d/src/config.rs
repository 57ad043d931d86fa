//! The official SF3D `config.yaml`, deserialised into one struct per block (field names as upstream), plus the
//! architectures of the two pretrained sub-backbones the config only names (DINOv2, OpenCLIP ViT).
//!
//! Design: docs/engine.md §2. Upstream: `sf3d/system.py` `SF3D.Config` and each block's `Config` dataclass
//! (commit `ff21fc4`). Keys absent from the yaml take the class defaults (docs/engine.md §2.1); unknown keys are
//! tolerated (the reference drops them with a warning), a missing or mistyped key is an error naming its path.
//! OmegaConf `${a.b}` interpolations are resolved before deserialisation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, de::DeserializeOwned};
use serde_yaml::Value;

use crate::error::{Error, Result};

/// Top level of `config.yaml` (what the SF3D system class reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sf3dConfig {
    /// Side of the square conditioning image (512 in the release).
    pub cond_image_size: usize,
    /// Resolution of the tetrahedral grid; also sets the deformation scale `1/res`.
    pub isosurface_resolution: usize,
    /// `sdf = density − threshold`.
    pub isosurface_threshold: f32,
    /// Half-side of the world cube `[-r, r]³`.
    pub radius: f32,
    /// Grey the conditioning image is blended on.
    pub background_color: [f32; 3],
    /// Field of view of the conditioning camera, degrees.
    pub default_fovy_deg: f64,
    /// Distance of the conditioning camera from the origin.
    pub default_distance: f64,
    /// `camera_embedder` block.
    pub camera_embedder: CameraEmbedderConfig,
    /// `image_tokenizer` block.
    pub image_tokenizer: ImageTokenizerConfig,
    /// `tokenizer` block (triplane tokens).
    pub tokenizer: TriplaneTokenizerConfig,
    /// `backbone` block.
    pub backbone: BackboneConfig,
    /// `post_processor` block.
    pub post_processor: PostProcessorConfig,
    /// `decoder` block.
    pub decoder: DecoderConfig,
    /// `image_estimator` block.
    pub image_estimator: ImageEstimatorConfig,
    /// `global_estimator` block.
    pub global_estimator: GlobalEstimatorConfig,
}

/// `sf3d.models.camera.LinearCameraEmbedder`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CameraEmbedderConfig {
    /// 16 (c2w) + 9 (normalised intrinsics).
    pub in_channels: usize,
    /// Embedding width (= DINOv2 `modulation_cond_dim`).
    pub out_channels: usize,
    /// Batch keys concatenated, in order.
    pub conditions: Vec<CameraCondition>,
}

/// A camera quantity the camera embedder concatenates (the reference's batch keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraCondition {
    /// The 4×4 camera-to-world matrix (16 values).
    C2wCond,
    /// The 3×3 intrinsics divided by the image size (9 values).
    IntrinsicNormedCond,
    /// The 3×3 intrinsics in pixels (9 values).
    IntrinsicCond,
}

/// `sf3d.models.tokenizers.image.DINOV2SingleImageTokenizer`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageTokenizerConfig {
    /// Hugging Face id (`facebook/dinov2-large`) or a folder next to config.yaml with a `config.json`.
    pub pretrained_model_name_or_path: String,
    /// Input width.
    #[serde(default = "default_image_size")]
    pub width: usize,
    /// Input height.
    #[serde(default = "default_image_size")]
    pub height: usize,
    /// Width of the AdaLN condition (the camera embedding).
    pub modulation_cond_dim: usize,
}

/// `sf3d.models.tokenizers.triplane.TriplaneLearnablePositionalEmbedding`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TriplaneTokenizerConfig {
    /// Side of each plane in tokens.
    pub plane_size: usize,
    /// Token width.
    pub num_channels: usize,
}

/// `sf3d.models.transformers.backbone.TwoStreamInterleaveTransformer`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BackboneConfig {
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Width of one head in the latent stream.
    pub attention_head_dim: usize,
    /// Width of the incoming triplane tokens.
    pub raw_triplane_channels: usize,
    /// Width of the triplane stream inside the backbone.
    pub triplane_channels: usize,
    /// Width of the incoming image tokens.
    pub raw_image_channels: usize,
    /// Learned latent tokens.
    pub num_latents: usize,
    /// Two-stream main blocks.
    pub num_blocks: usize,
    /// Basic transformer blocks per main block.
    pub num_basic_blocks: usize,
    /// Dropout (inference ignores it).
    #[serde(default)]
    pub dropout: f64,
    /// Std of `latent_init` at construction (random weights only).
    #[serde(default = "default_latent_init_std")]
    pub latent_init_std: f64,
    /// GroupNorm groups on the triplane input.
    #[serde(default = "default_norm_groups")]
    pub norm_num_groups: usize,
    /// Whether q/k/v projections have a bias (false in SF3D).
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether fuse blocks normalise their key/value input (false in SF3D).
    #[serde(default)]
    pub norm_x_input: bool,
    /// Width of the image tokens the basic blocks cross-attend to.
    #[serde(default = "default_cross_attention_dim")]
    pub cross_attention_dim: usize,
    /// Whether the latent stream starts with the projected image tokens (true in SF3D).
    #[serde(default = "enabled")]
    pub mix_latent: bool,
}

impl BackboneConfig {
    /// Width of the latent stream: `num_attention_heads · attention_head_dim`.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }
}

/// `sf3d.models.network.PixelShuffleUpsampleNetwork`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PostProcessorConfig {
    /// Input channels (triplane token width).
    pub in_channels: usize,
    /// Output channels per plane.
    pub out_channels: usize,
    /// PixelShuffle factor.
    pub scale_factor: usize,
    /// Number of convolutions.
    pub conv_layers: usize,
    /// Kernel size of every convolution.
    #[serde(default = "default_kernel_size")]
    pub conv_kernel_size: usize,
}

/// Activation names used by the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x·sigmoid(x)`.
    Silu,
    /// `max(x, 0)`.
    Relu,
    /// `exp(x)` in the forward pass.
    TruncExp,
    /// `1/(1+exp(−x))`.
    Sigmoid,
    /// `x / max(‖x‖, eps)` over the last axis.
    NormalizeChannelLast,
    /// `ln(1+exp(x))` (identity above 20).
    Softplus,
    /// Identity.
    Linear,
}

/// One head of the `MaterialMLP` decoder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecoderHeadConfig {
    /// Head name (`density`, `features`, `perturb_normal`, `vertex_offset`).
    pub name: String,
    /// Output width.
    pub out_channels: usize,
    /// Hidden Linear+activation layers before the output Linear.
    pub n_hidden_layers: usize,
    /// Output activation (identity when absent).
    #[serde(default)]
    pub output_activation: Option<Activation>,
    /// Constant added before the output activation.
    #[serde(default)]
    pub out_bias: f32,
}

/// `sf3d.models.network.MaterialMLP`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecoderConfig {
    /// Input width (3 planes × post-processor channels).
    pub in_channels: usize,
    /// Hidden width.
    pub n_neurons: usize,
    /// Hidden activation.
    #[serde(default = "default_decoder_activation")]
    pub activation: Activation,
    /// The heads.
    pub heads: Vec<DecoderHeadConfig>,
}

/// A head of the CLIP-based or global estimator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EstimatorHeadConfig {
    /// Head name.
    pub name: String,
    /// Output width (ignored by the CLIP estimator's Beta heads).
    pub out_channels: usize,
    /// Hidden layers.
    pub n_hidden_layers: usize,
    /// Output activation (identity when absent).
    #[serde(default)]
    pub output_activation: Option<Activation>,
    /// Constant added before the activation.
    #[serde(default)]
    pub output_bias: f32,
    /// Whether the value is fed to the decoder (bookkeeping only).
    #[serde(default)]
    pub add_to_decoder_features: bool,
    /// Output reshape, `-1` for the batch axis.
    #[serde(default)]
    pub shape: Option<Vec<i64>>,
}

/// `sf3d.models.image_estimator.clip_based_estimator.ClipBasedHeadEstimator`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageEstimatorConfig {
    /// open_clip model name (`ViT-B-32`) or a name described by `open_clip_config.json` next to config.yaml.
    #[serde(default = "default_clip_model")]
    pub model: String,
    /// Pretraining tag (informational: the weights come from the checkpoint).
    #[serde(default = "default_clip_pretrain")]
    pub pretrain: String,
    /// Output distribution of the heads.
    #[serde(default)]
    pub distribution: Distribution,
    /// How the distribution becomes a value.
    #[serde(default)]
    pub distribution_eval: DistributionEval,
    /// Hidden activation.
    #[serde(default = "default_estimator_activation")]
    pub activation: Activation,
    /// Hidden width of the heads.
    #[serde(default = "default_hidden_features")]
    pub hidden_features: usize,
    /// The heads (roughness, metallic).
    pub heads: Vec<EstimatorHeadConfig>,
}

/// `sf3d.models.global_estimator.multi_head_estimator.MultiHeadEstimator`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GlobalEstimatorConfig {
    /// Channels per plane of `direct_codes`.
    pub triplane_features: usize,
    /// Strided convolutions.
    #[serde(default = "default_estimator_layers")]
    pub n_layers: usize,
    /// Width of convolutions and heads.
    #[serde(default = "default_hidden_features")]
    pub hidden_features: usize,
    /// Hidden activation.
    #[serde(default = "default_estimator_activation")]
    pub activation: Activation,
    /// Spatial pooling before the heads.
    #[serde(default)]
    pub pool: Pool,
    /// The heads (sg_amplitudes).
    pub heads: Vec<EstimatorHeadConfig>,
}

/// Output distribution of the CLIP estimator's heads (only what SF3D uses is implemented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// A Beta distribution per head (two concentrations).
    #[default]
    Beta,
}

/// How a head's distribution becomes one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistributionEval {
    /// The mode.
    #[default]
    Mode,
}

/// Spatial pooling of the global estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Maximum over the spatial axes.
    #[default]
    Max,
}

/// The DINOv2 MLP activation (Hugging Face's `hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// Exact (erf) GELU.
    #[default]
    Gelu,
}

/// Side of the conditioning image the tokenizer is built for.
fn default_image_size() -> usize {
    512
}
/// Hidden width of the estimators.
fn default_hidden_features() -> usize {
    512
}
/// Width of the image tokens the backbone's basic blocks attend to (DINOv2-L).
fn default_cross_attention_dim() -> usize {
    1024
}
/// GroupNorm groups (the diffusers default).
fn default_norm_groups() -> usize {
    32
}
/// Convolution kernel side.
fn default_kernel_size() -> usize {
    3
}
/// RGB.
fn default_color_channels() -> usize {
    3
}
/// Strided convolutions of the global estimator.
fn default_estimator_layers() -> usize {
    2
}
fn enabled() -> bool {
    true
}
/// Std of the learned latents at construction.
fn default_latent_init_std() -> f64 {
    0.02
}
fn default_decoder_activation() -> Activation {
    Activation::Silu
}
fn default_estimator_activation() -> Activation {
    Activation::Relu
}
fn default_clip_model() -> String {
    "ViT-B-32".into()
}
fn default_clip_pretrain() -> String {
    "laion2b_s34b_b79k".into()
}

/// Hugging Face `Dinov2Config` fields the port uses (`config.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Dinov2Config {
    /// Token width.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// MLP width multiplier.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// MLP activation.
    #[serde(default)]
    pub hidden_act: HiddenAct,
    /// LayerNorm eps.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Pretraining image size (sets the position table: `(image_size/patch_size)² + 1` rows).
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "default_color_channels")]
    pub num_channels: usize,
    /// Whether q/k/v have biases.
    #[serde(default = "enabled")]
    pub qkv_bias: bool,
    /// Initial layer-scale value (random weights only).
    #[serde(default = "default_layerscale")]
    pub layerscale_value: f64,
    /// SwiGLU feed-forward (not supported: SF3D uses the plain MLP).
    #[serde(default)]
    pub use_swiglu_ffn: bool,
    /// Register tokens (not supported: plain DINOv2).
    #[serde(default)]
    pub num_register_tokens: usize,
}

fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_layer_norm_eps() -> f64 {
    1e-6
}
fn default_layerscale() -> f64 {
    1.0
}

impl Dinov2Config {
    /// `facebook/dinov2-large` (what the release names).
    pub fn dinov2_large() -> Self {
        Self {
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            mlp_ratio: 4.0,
            hidden_act: HiddenAct::Gelu,
            layer_norm_eps: 1e-6,
            image_size: 518,
            patch_size: 14,
            num_channels: 3,
            qkv_bias: true,
            layerscale_value: 1.0,
            use_swiglu_ffn: false,
            num_register_tokens: 0,
        }
    }

    /// Hidden width of the MLP.
    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    /// Side of the pretraining position grid.
    pub fn pos_grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

/// open_clip vision tower config (`vision_cfg`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    /// Input side.
    pub image_size: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Token width.
    pub width: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Width per head (heads = width / head_width).
    #[serde(default = "default_head_width")]
    pub head_width: usize,
    /// MLP width multiplier.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
}

fn default_head_width() -> usize {
    64
}

/// open_clip text tower config (`text_cfg`), only used to recognise the unused text keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    /// Token context.
    pub context_length: usize,
    /// Vocabulary.
    pub vocab_size: usize,
    /// Width.
    pub width: usize,
    /// Heads.
    pub heads: usize,
    /// Layers.
    pub layers: usize,
}

/// An open_clip model config (`open_clip_config.json` or a built-in preset).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipConfig {
    /// Joint embedding width (output of `visual.proj`).
    pub embed_dim: usize,
    /// Vision tower.
    pub vision_cfg: ClipVisionConfig,
    /// Text tower.
    pub text_cfg: ClipTextConfig,
    /// Name it is registered under.
    #[serde(default)]
    pub name: Option<String>,
}

impl ClipConfig {
    /// open_clip `ViT-B-32` (what the release names; GELU, not QuickGELU).
    pub fn vit_b_32() -> Self {
        Self {
            embed_dim: 512,
            vision_cfg: ClipVisionConfig {
                image_size: 224,
                layers: 12,
                width: 768,
                patch_size: 32,
                head_width: 64,
                mlp_ratio: 4.0,
            },
            text_cfg: ClipTextConfig { context_length: 77, vocab_size: 49408, width: 512, heads: 8, layers: 12 },
            name: Some("ViT-B-32".into()),
        }
    }

    /// Attention heads of the vision tower.
    pub fn vision_heads(&self) -> usize {
        self.vision_cfg.width / self.vision_cfg.head_width
    }
}

/// Everything needed to build the network: `config.yaml` plus the sub-backbone architectures.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `config.yaml`.
    pub sf3d: Sf3dConfig,
    /// The DINOv2 architecture.
    pub dinov2: Dinov2Config,
    /// The OpenCLIP architecture.
    pub clip: ClipConfig,
}

impl ModelConfig {
    /// Reads `dir/config.yaml` and resolves the sub-backbone architectures: built-in presets for the names the
    /// release uses, otherwise `dir/<name>/config.json` (DINOv2) and `dir/open_clip_config.json` (CLIP).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join("config.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let sf3d = Sf3dConfig::from_yaml_str(&text, &path.display().to_string())?;
        let dinov2 = resolve_dinov2(dir, &sf3d.image_tokenizer.pretrained_model_name_or_path)?;
        let clip = resolve_clip(dir, &sf3d.image_estimator.model)?;
        let cfg = Self { sf3d, dinov2, clip };
        cfg.check(&path.display().to_string())?;
        Ok(cfg)
    }

    /// Consistency checks between blocks, so a wrong config fails at load time with the key's name.
    pub fn check(&self, file: &str) -> Result<()> {
        let c = &self.sf3d;
        let err = |key: &str, message: String| Err(Error::Config { file: file.into(), key: key.into(), message });
        if c.camera_embedder.out_channels != c.image_tokenizer.modulation_cond_dim {
            return err(
                "image_tokenizer.modulation_cond_dim",
                format!(
                    "{} differs from camera_embedder.out_channels {}",
                    c.image_tokenizer.modulation_cond_dim, c.camera_embedder.out_channels
                ),
            );
        }
        if c.backbone.raw_image_channels != self.dinov2.hidden_size {
            return err(
                "backbone.raw_image_channels",
                format!(
                    "{} differs from the DINOv2 hidden size {}",
                    c.backbone.raw_image_channels, self.dinov2.hidden_size
                ),
            );
        }
        if c.backbone.raw_triplane_channels != c.tokenizer.num_channels {
            return err(
                "backbone.raw_triplane_channels",
                format!(
                    "{} differs from tokenizer.num_channels {}",
                    c.backbone.raw_triplane_channels, c.tokenizer.num_channels
                ),
            );
        }
        if c.post_processor.in_channels != c.tokenizer.num_channels {
            return err(
                "post_processor.in_channels",
                format!(
                    "{} differs from tokenizer.num_channels {}",
                    c.post_processor.in_channels, c.tokenizer.num_channels
                ),
            );
        }
        if c.decoder.in_channels != 3 * c.post_processor.out_channels {
            return err(
                "decoder.in_channels",
                format!(
                    "{} is not 3 × post_processor.out_channels ({})",
                    c.decoder.in_channels, c.post_processor.out_channels
                ),
            );
        }
        if !c.backbone.triplane_channels.is_multiple_of(c.backbone.num_attention_heads) {
            return err(
                "backbone.triplane_channels",
                format!(
                    "{} is not divisible by num_attention_heads {}",
                    c.backbone.triplane_channels, c.backbone.num_attention_heads
                ),
            );
        }
        if !c.backbone.raw_triplane_channels.is_multiple_of(c.backbone.norm_num_groups) {
            return err(
                "backbone.norm_num_groups",
                format!(
                    "{} does not divide raw_triplane_channels {}",
                    c.backbone.norm_num_groups, c.backbone.raw_triplane_channels
                ),
            );
        }
        if !c.backbone.mix_latent {
            return err("backbone.mix_latent", "only true (SF3D's configuration) is implemented".into());
        }
        if c.backbone.norm_x_input {
            return err("backbone.norm_x_input", "only false (SF3D's configuration) is implemented".into());
        }
        if self.dinov2.use_swiglu_ffn || self.dinov2.num_register_tokens != 0 {
            return err(
                "image_tokenizer.pretrained_model_name_or_path",
                "SwiGLU / register-token DINOv2 variants are not supported".into(),
            );
        }
        for h in &c.decoder.heads {
            if !["density", "features", "perturb_normal", "vertex_offset"].contains(&h.name.as_str()) {
                return err("decoder.heads", format!("unknown head {:?}", h.name));
            }
        }
        Ok(())
    }
}

impl Sf3dConfig {
    /// Parses a `config.yaml` text; `file` only names it in errors.
    pub fn from_yaml_str(text: &str, file: &str) -> Result<Self> {
        let mut root: Value = serde_yaml::from_str(text).map_err(|e| Error::Config {
            file: file.into(),
            key: "<root>".into(),
            message: e.to_string(),
        })?;
        resolve_interpolations(&mut root, file)?;
        deserialize_named(root, file)
    }
}

/// Deserialises with the path of the offending key in the error.
fn deserialize_named<T: DeserializeOwned>(value: Value, file: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        Error::Config {
            file: file.into(),
            key: if path == "." { "<root>".into() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

const MAX_INTERPOLATION_DEPTH: usize = 32;

/// Resolves OmegaConf `${a.b.c}` references (absolute dotted paths, list indices as numbers). A value that is
/// exactly one reference takes the referenced value (any type); references inside a longer string are
/// substituted as text.
pub fn resolve_interpolations(root: &mut Value, file: &str) -> Result<()> {
    let snapshot = root.clone();
    resolve_node(root, &snapshot, file, 0)
}

fn resolve_node(node: &mut Value, root: &Value, file: &str, depth: usize) -> Result<()> {
    match node {
        Value::Mapping(m) => {
            for (_, v) in m.iter_mut() {
                resolve_node(v, root, file, depth)?;
            }
        }
        Value::Sequence(s) => {
            for v in s.iter_mut() {
                resolve_node(v, root, file, depth)?;
            }
        }
        Value::String(s) if s.contains("${") => {
            *node = interpolate_string(s, root, file, depth)?;
        }
        _ => {}
    }
    Ok(())
}

fn interpolate_string(s: &str, root: &Value, file: &str, depth: usize) -> Result<Value> {
    let cfg_err = |message: String| Error::Config { file: file.into(), key: s.into(), message };
    if depth > MAX_INTERPOLATION_DEPTH {
        return Err(cfg_err("interpolation cycle".into()));
    }
    let lookup = |path: &str| -> Result<Value> {
        let mut cur = root;
        for seg in path.trim().trim_start_matches('.').split('.') {
            cur = match cur {
                Value::Mapping(m) => m.get(Value::String(seg.into())),
                Value::Sequence(v) => seg.parse::<usize>().ok().and_then(|i| v.get(i)),
                _ => None,
            }
            .ok_or_else(|| cfg_err(format!("interpolation refers to missing key {path:?}")))?;
        }
        let mut v = cur.clone();
        resolve_node(&mut v, root, file, depth + 1)?;
        Ok(v)
    };
    let trimmed = s.trim();
    if let Some(inner) = trimmed.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !inner.contains("${")
        && !inner.contains('}')
    {
        return lookup(inner);
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or_else(|| cfg_err("unterminated ${".into()))? + start;
        let v = lookup(&rest[start + 2..end])?;
        match v {
            Value::String(t) => out.push_str(&t),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::Bool(b) => out.push_str(&b.to_string()),
            other => return Err(cfg_err(format!("cannot substitute {other:?} into a string"))),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| Error::Config {
        file: path.display().to_string(),
        key: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

fn resolve_dinov2(dir: &Path, name: &str) -> Result<Dinov2Config> {
    let local: PathBuf = dir.join(name).join("config.json");
    if local.is_file() {
        return read_json(&local);
    }
    match name {
        "facebook/dinov2-large" => Ok(Dinov2Config::dinov2_large()),
        _ => Err(Error::Config {
            file: dir.join("config.yaml").display().to_string(),
            key: "image_tokenizer.pretrained_model_name_or_path".into(),
            message: format!(
                "{name:?} is neither a built-in preset (facebook/dinov2-large) nor a folder with config.json at {}",
                local.display()
            ),
        }),
    }
}

fn resolve_clip(dir: &Path, name: &str) -> Result<ClipConfig> {
    let local = dir.join("open_clip_config.json");
    if local.is_file() {
        let cfg: ClipConfig = read_json(&local)?;
        if cfg.name.as_deref().is_none_or(|n| n == name) {
            return Ok(cfg);
        }
    }
    match name {
        "ViT-B-32" => Ok(ClipConfig::vit_b_32()),
        _ => Err(Error::Config {
            file: dir.join("config.yaml").display().to_string(),
            key: "image_estimator.model".into(),
            message: format!("{name:?} is neither a built-in preset (ViT-B-32) nor described by {}", local.display()),
        }),
    }
}

impl ModelConfig {
    /// The released SF3D configuration (docs/engine.md §2), for random-weight benchmarks of the full-size network.
    pub fn release() -> Self {
        let sf3d = Sf3dConfig::from_yaml_str(RELEASE_CONFIG_YAML, "<built-in release config>")
            .unwrap_or_else(|e| unreachable!("the built-in release config is valid: {e}"));
        Self { sf3d, dinov2: Dinov2Config::dinov2_large(), clip: ClipConfig::vit_b_32() }
    }
}

/// The release `config.yaml` (docs/engine.md §2; the gated original has the same values).
pub const RELEASE_CONFIG_YAML: &str = include_str!("release_config.yaml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_a_config_loads_with_its_sub_backbones() {
        let dir = crate::golden::GoldenSet::shared_dir("tiny-a");
        let cfg = ModelConfig::from_dir(&dir).unwrap();
        assert_eq!(cfg.sf3d.cond_image_size, 112);
        assert_eq!(cfg.sf3d.backbone.norm_num_groups, 8);
        assert_eq!(cfg.dinov2.hidden_size, 96);
        assert_eq!(cfg.clip.vision_cfg.width, 64);
        assert_eq!(cfg.clip.vision_heads(), 2);
        assert_eq!(cfg.sf3d.decoder.heads[0].output_activation, Some(Activation::TruncExp));
        assert_eq!(cfg.sf3d.decoder.heads[3].output_activation, None);
        assert_eq!(cfg.sf3d.image_estimator.activation, Activation::Relu);
    }

    #[test]
    fn release_config_has_the_spec_values() {
        let cfg = ModelConfig::release();
        let c = &cfg.sf3d;
        assert_eq!((c.cond_image_size, c.isosurface_resolution, c.radius), (512, 160, 0.87));
        assert_eq!(c.backbone.inner_dim(), 1024);
        assert_eq!((c.backbone.num_latents, c.backbone.num_blocks, c.backbone.num_basic_blocks), (1792, 4, 3));
        assert_eq!((c.backbone.cross_attention_dim, c.backbone.norm_num_groups), (1024, 32));
        assert_eq!(c.decoder.in_channels, 120);
        cfg.check("release").unwrap();
    }

    #[test]
    fn missing_and_mistyped_keys_are_named() {
        let text = RELEASE_CONFIG_YAML.replace("radius: 0.87\n", "");
        let e = Sf3dConfig::from_yaml_str(&text, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("radius"), "{e}");
        let text = RELEASE_CONFIG_YAML.replace("num_latents: 1792", "num_latents: many");
        let e = Sf3dConfig::from_yaml_str(&text, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("backbone.num_latents"), "{e}");
    }

    #[test]
    fn values_outside_the_closed_sets_are_config_errors_naming_their_key() {
        let cases = [
            ("distribution: beta", "distribution: normal", "image_estimator.distribution"),
            ("distribution_eval: mode", "distribution_eval: mean", "image_estimator.distribution_eval"),
            ("conditions: [c2w_cond, intrinsic_normed_cond]", "conditions: [c2w_cond, depth]", "conditions"),
        ];
        for (from, to, key) in cases {
            assert!(RELEASE_CONFIG_YAML.contains(from), "{from}");
            let text = RELEASE_CONFIG_YAML.replace(from, to);
            let e = Sf3dConfig::from_yaml_str(&text, "x.yaml").unwrap_err().to_string();
            assert!(e.contains(key), "{to}: {e}");
        }
        let text = RELEASE_CONFIG_YAML.replace("global_estimator:\n", "global_estimator:\n  pool: mean\n");
        let e = Sf3dConfig::from_yaml_str(&text, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("global_estimator.pool"), "{e}");
        let mut cfg = ModelConfig::release();
        cfg.sf3d.backbone.norm_x_input = true;
        let e = cfg.check("x.yaml").unwrap_err().to_string();
        assert!(e.contains("backbone.norm_x_input"), "{e}");
        let c = ModelConfig::release();
        assert_eq!((c.sf3d.global_estimator.pool, c.dinov2.hidden_act), (Pool::Max, HiddenAct::Gelu));
        assert_eq!(c.sf3d.camera_embedder.conditions, [CameraCondition::C2wCond, CameraCondition::IntrinsicNormedCond]);
    }

    #[test]
    fn interpolations_resolve_and_unknown_keys_are_tolerated() {
        let text = RELEASE_CONFIG_YAML
            .replace("cond_image_size: 512", "cond_image_size: 512\nsome_future_key: 3")
            .replace("  width: 512\n  height: 512", "  width: ${cond_image_size}\n  height: ${cond_image_size}");
        let c = Sf3dConfig::from_yaml_str(&text, "x.yaml").unwrap();
        assert_eq!((c.image_tokenizer.width, c.image_tokenizer.height), (512, 512));
        let bad = RELEASE_CONFIG_YAML.replace("  width: 512", "  width: ${nope.key}");
        let e = Sf3dConfig::from_yaml_str(&bad, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("nope.key"), "{e}");
        let cyc = "a: ${b}\nb: ${a}\n";
        let mut v: Value = serde_yaml::from_str(cyc).unwrap();
        assert!(resolve_interpolations(&mut v, "c.yaml").is_err());
    }
}
