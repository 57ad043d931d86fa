//! SF3D's user-facing generation options ([`GenerateParams`]) with their defaults and validated ranges.
//!
//! Ranges follow the reference Gradio app (texture 512–2048, foreground ratio 0.5–1.0, vertex count −1…20000)
//! with one tightening: a positive vertex count below [`GenerateParams::VERTEX_COUNT_MIN`] is refused because
//! no useful mesh has fewer vertices.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::api::clip;

/// Optional remeshing applied after marching tetrahedra.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RemeshOption {
    /// Keep the marching-tetrahedra mesh (decimated with meshoptimizer when a vertex count is given).
    #[default]
    None,
    /// Isotropic triangle remeshing (Botsch–Kobbelt).
    Triangle,
    /// Field-aligned quad-dominant remeshing (Instant Meshes style), triangulated for export.
    Quad,
}

/// When to remove the image background before conditioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BackgroundMode {
    /// Keep a meaningful alpha channel; remove the background of opaque images.
    #[default]
    Auto,
    /// Always remove the background (the input alpha is ignored).
    Always,
    /// Never remove it (an opaque image is used as is).
    Never,
}

macro_rules! str_enum {
    ($ty:ident, $field:literal, $($variant:ident => $name:literal),+) => {
        impl $ty {
            /// Every value, in display order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The wire name (`snake_case`).
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = ParamError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let lower = s.trim().to_ascii_lowercase();
                $(if lower == $name { return Ok($ty::$variant); })+
                Err(ParamError::new(
                    $field,
                    format!("unknown value {}, expected one of: {}", quoted(s), [$($name),+].join(", ")),
                ))
            }
        }
    };
}

str_enum!(RemeshOption, "remesh", None => "none", Triangle => "triangle", Quad => "quad");
str_enum!(BackgroundMode, "background", Auto => "auto", Always => "always", Never => "never");

/// A parameter that failed validation; `field` is the wire name of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct ParamError {
    /// Wire name of the field (`texture_resolution`, `foreground_ratio`, …).
    pub field: String,
    /// What is wrong, with the accepted range.
    pub message: String,
}

impl ParamError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Everything a user can choose for one generation. Missing fields take their defaults
/// (`GenerateParams::default()`), unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct GenerateParams {
    /// Side of the square albedo and normal textures, in texels (512–2048).
    #[cfg_attr(feature = "openapi", schema(minimum = 512, maximum = 2048))]
    pub texture_resolution: u32,
    /// Fraction of the square conditioning image the object spans (0.5–1.0).
    #[cfg_attr(feature = "openapi", schema(minimum = 0.5, maximum = 1.0))]
    pub foreground_ratio: f32,
    /// Remeshing after marching tetrahedra.
    pub remesh: RemeshOption,
    /// Target vertex count: −1 keeps the extracted count, otherwise 100–20000.
    #[cfg_attr(feature = "openapi", schema(minimum = -1, maximum = 20000))]
    pub vertex_count: i32,
    /// Background removal policy.
    pub background: BackgroundMode,
    /// Ask for a quick preview asset (texture 512, no remesh) before the final one.
    pub preview: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            texture_resolution: Self::TEXTURE_RESOLUTION_DEFAULT,
            foreground_ratio: Self::FOREGROUND_RATIO_DEFAULT,
            remesh: RemeshOption::None,
            vertex_count: -1,
            background: BackgroundMode::Auto,
            preview: false,
        }
    }
}

impl GenerateParams {
    /// Smallest texture resolution.
    pub const TEXTURE_RESOLUTION_MIN: u32 = 512;
    /// Largest texture resolution.
    pub const TEXTURE_RESOLUTION_MAX: u32 = 2048;
    /// Default texture resolution (the reference's default).
    pub const TEXTURE_RESOLUTION_DEFAULT: u32 = 1024;
    /// Step of the UI slider (any value in range is accepted on the wire).
    pub const TEXTURE_RESOLUTION_STEP: u32 = 256;
    /// Smallest foreground ratio.
    pub const FOREGROUND_RATIO_MIN: f32 = 0.5;
    /// Largest foreground ratio.
    pub const FOREGROUND_RATIO_MAX: f32 = 1.0;
    /// Default foreground ratio (the reference's default).
    pub const FOREGROUND_RATIO_DEFAULT: f32 = 0.85;
    /// Smallest positive vertex count.
    pub const VERTEX_COUNT_MIN: i32 = 100;
    /// Largest vertex count.
    pub const VERTEX_COUNT_MAX: i32 = 20_000;
    /// Texture resolution of a preview asset.
    pub const PREVIEW_TEXTURE_RESOLUTION: u32 = 512;

    /// Checks every field against its range; the error names the first offending field.
    pub fn validate(&self) -> Result<(), ParamError> {
        let r = self.texture_resolution;
        if !(Self::TEXTURE_RESOLUTION_MIN..=Self::TEXTURE_RESOLUTION_MAX).contains(&r) {
            return Err(ParamError::new(
                "texture_resolution",
                format!("{r} is outside {}..={}", Self::TEXTURE_RESOLUTION_MIN, Self::TEXTURE_RESOLUTION_MAX),
            ));
        }
        let f = self.foreground_ratio;
        if !f.is_finite() || !(Self::FOREGROUND_RATIO_MIN..=Self::FOREGROUND_RATIO_MAX).contains(&f) {
            return Err(ParamError::new(
                "foreground_ratio",
                format!("{f} is outside {}..={}", Self::FOREGROUND_RATIO_MIN, Self::FOREGROUND_RATIO_MAX),
            ));
        }
        let v = self.vertex_count;
        if v != -1 && !(Self::VERTEX_COUNT_MIN..=Self::VERTEX_COUNT_MAX).contains(&v) {
            return Err(ParamError::new(
                "vertex_count",
                format!("{v} is neither -1 nor within {}..={}", Self::VERTEX_COUNT_MIN, Self::VERTEX_COUNT_MAX),
            ));
        }
        Ok(())
    }

    /// The target vertex count, `None` for −1.
    pub fn target_vertex_count(&self) -> Option<u32> {
        u32::try_from(self.vertex_count).ok()
    }

    /// The parameters of the quick preview that precedes this request's final asset.
    pub fn preview_params(&self) -> Self {
        Self {
            texture_resolution: Self::PREVIEW_TEXTURE_RESOLUTION,
            remesh: RemeshOption::None,
            vertex_count: -1,
            preview: false,
            ..self.clone()
        }
    }

    /// Sets one field from its textual form (multipart form fields, query strings, CLI).
    ///
    /// Accepts the wire names plus the seed client's aliases `remesh_option` and `target_vertex_count`.
    /// The value is parsed but not range-checked: call [`GenerateParams::validate`] afterwards.
    pub fn set_field(&mut self, name: &str, value: &str) -> Result<(), ParamError> {
        let value = value.trim();
        match name {
            "texture_resolution" => self.texture_resolution = parse_num(name, value)?,
            "foreground_ratio" => self.foreground_ratio = parse_num(name, value)?,
            "remesh" | "remesh_option" => self.remesh = value.parse()?,
            "vertex_count" | "target_vertex_count" => self.vertex_count = parse_num(name, value)?,
            "background" => self.background = value.parse()?,
            "preview" => {
                self.preview = match value.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" | "" => false,
                    _ => return Err(ParamError::new(name, format!("{} is not a boolean", quoted(value)))),
                }
            }
            _ => return Err(ParamError::new(clip(name), "unknown parameter")),
        }
        Ok(())
    }

    /// Whether `name` is a field [`GenerateParams::set_field`] understands.
    pub fn is_field(name: &str) -> bool {
        matches!(
            name,
            "texture_resolution"
                | "foreground_ratio"
                | "remesh"
                | "remesh_option"
                | "vertex_count"
                | "target_vertex_count"
                | "background"
                | "preview"
        )
    }
}

fn parse_num<T: FromStr>(field: &str, value: &str) -> Result<T, ParamError> {
    value.parse().map_err(|_| ParamError::new(field, format!("{} is not a valid number", quoted(value))))
}

/// A client's value as an error message repeats it: clipped ([`clip`]), quoted and escaped.
fn quoted(value: &str) -> String {
    format!("{:?}", clip(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_reference() {
        let p = GenerateParams::default();
        p.validate().unwrap();
        assert_eq!(p.texture_resolution, 1024);
        assert_eq!(p.foreground_ratio, 0.85);
        assert_eq!(p.remesh, RemeshOption::None);
        assert_eq!(p.vertex_count, -1);
        assert_eq!(p.background, BackgroundMode::Auto);
    }

    #[test]
    fn each_range_names_its_field() {
        let cases: [(&str, GenerateParams); 6] = [
            ("texture_resolution", GenerateParams { texture_resolution: 511, ..Default::default() }),
            ("texture_resolution", GenerateParams { texture_resolution: 4096, ..Default::default() }),
            ("foreground_ratio", GenerateParams { foreground_ratio: 0.4, ..Default::default() }),
            ("foreground_ratio", GenerateParams { foreground_ratio: f32::NAN, ..Default::default() }),
            ("vertex_count", GenerateParams { vertex_count: 99, ..Default::default() }),
            ("vertex_count", GenerateParams { vertex_count: -2, ..Default::default() }),
        ];
        for (field, p) in cases {
            assert_eq!(p.validate().unwrap_err().field, field, "{p:?}");
        }
        let edges = GenerateParams {
            texture_resolution: 2048,
            foreground_ratio: 0.5,
            vertex_count: 20_000,
            ..Default::default()
        };
        edges.validate().unwrap();
    }

    #[test]
    fn set_field_accepts_seed_aliases_and_rejects_garbage() {
        let mut p = GenerateParams::default();
        p.set_field("remesh_option", "Quad").unwrap();
        p.set_field("texture_resolution", " 2048 ").unwrap();
        p.set_field("target_vertex_count", "5000").unwrap();
        assert_eq!((p.remesh, p.texture_resolution, p.vertex_count), (RemeshOption::Quad, 2048, 5000));
        assert_eq!(p.set_field("remesh", "cubes").unwrap_err().field, "remesh");
        assert_eq!(p.set_field("foreground_ratio", "big").unwrap_err().field, "foreground_ratio");
        assert_eq!(p.set_field("colour", "red").unwrap_err().field, "colour");
    }

    #[test]
    fn preview_params_are_cheap() {
        let p = GenerateParams { remesh: RemeshOption::Quad, vertex_count: 5000, preview: true, ..Default::default() };
        let q = p.preview_params();
        assert_eq!((q.texture_resolution, q.remesh, q.vertex_count, q.preview), (512, RemeshOption::None, -1, false));
        assert_eq!(q.foreground_ratio, p.foreground_ratio);
    }
}
