//! The pipeline's stages, in the order they run. This list is the single source of truth: the engine reports
//! progress with it, the server forwards it, the UI draws it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One step of image → GLB. The first seven ([`Stage::is_encode`]) only depend on the image and are cached by
/// the regenerate path; the rest only need the scene codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Decode the uploaded bytes (PNG, JPEG, WebP), apply EXIF orientation, convert to RGBA8.
    Decode,
    /// Remove the background (skipped when the alpha channel is already meaningful).
    RemoveBackground,
    /// Crop to the foreground, resize to the conditioning size, blend on grey.
    Prepare,
    /// Camera embedding and the DINOv2 image tokenizer.
    EncodeImage,
    /// Two-stream transformer from triplane tokens and image tokens.
    Backbone,
    /// Detokenize and post-process (PixelShuffle upsampling) into scene codes.
    Triplane,
    /// CLIP-based roughness / metallic estimation (and the optional illumination head).
    EstimateMaterial,
    /// Decoder on the tetrahedral grid and marching tetrahedra.
    ExtractMesh,
    /// Optional remeshing or decimation.
    Remesh,
    /// Box-projection UV unwrap.
    UnwrapUv,
    /// UV rasterisation, decoder on texels, normal map, padding.
    BakeTexture,
    /// Export transforms and GLB writing.
    Export,
}

impl Stage {
    /// Every stage in pipeline order.
    pub const ALL: [Stage; 12] = [
        Stage::Decode,
        Stage::RemoveBackground,
        Stage::Prepare,
        Stage::EncodeImage,
        Stage::Backbone,
        Stage::Triplane,
        Stage::EstimateMaterial,
        Stage::ExtractMesh,
        Stage::Remesh,
        Stage::UnwrapUv,
        Stage::BakeTexture,
        Stage::Export,
    ];

    /// The wire name (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::RemoveBackground => "remove_background",
            Stage::Prepare => "prepare",
            Stage::EncodeImage => "encode_image",
            Stage::Backbone => "backbone",
            Stage::Triplane => "triplane",
            Stage::EstimateMaterial => "estimate_material",
            Stage::ExtractMesh => "extract_mesh",
            Stage::Remesh => "remesh",
            Stage::UnwrapUv => "unwrap_uv",
            Stage::BakeTexture => "bake_texture",
            Stage::Export => "export",
        }
    }

    /// A short human label for progress displays.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Decode => "Decode image",
            Stage::RemoveBackground => "Remove background",
            Stage::Prepare => "Prepare input",
            Stage::EncodeImage => "Encode image (DINOv2)",
            Stage::Backbone => "Transformer backbone",
            Stage::Triplane => "Triplane upsampling",
            Stage::EstimateMaterial => "Estimate material",
            Stage::ExtractMesh => "Extract mesh",
            Stage::Remesh => "Remesh",
            Stage::UnwrapUv => "Unwrap UVs",
            Stage::BakeTexture => "Bake textures",
            Stage::Export => "Export GLB",
        }
    }

    /// Position in [`Stage::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the stage belongs to the image → scene-codes half (cacheable per image).
    pub fn is_encode(self) -> bool {
        self <= Stage::EstimateMaterial
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown stage {s:?}"))
    }
}

/// What happened to a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// The stage began.
    Started,
    /// Progress inside a long stage (`value` of `max`).
    Progress,
    /// The stage completed.
    Finished,
    /// The stage's result came from the scene-code cache (regenerate); nothing was computed.
    Cached,
    /// The stage did not apply to this request (e.g. background removal of an image with alpha).
    Skipped,
}

impl StageState {
    /// Whether no further event follows for this stage.
    pub fn is_terminal(self) -> bool {
        matches!(self, StageState::Finished | StageState::Cached | StageState::Skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order_and_round_trips() {
        for (i, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(s.as_str().parse::<Stage>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert!(Stage::EstimateMaterial.is_encode());
        assert!(!Stage::ExtractMesh.is_encode());
    }
}
