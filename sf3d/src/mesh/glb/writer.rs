//! The binary glTF 2.0 writer (docs/engine.md §7.2, §7.3).
//!
//! [`write_glb`] writes what trimesh writes (§7.2/§7.3): `POSITION` (with min/max), `NORMAL`, `TEXCOORD_0`,
//! u32 indices, triangles, one `pbrMetallicRoughness` material with `baseColorTexture`, `normalTexture` (scale 1),
//! `roughnessFactor`, `metallicFactor`, no sampler (glTF default: linear, repeat), both textures embedded in the
//! BIN chunk as `image/jpeg`, one node with identity transform. Differences from the reference file, all
//! deliberate:
//!
//! * **`TANGENT` is written** (the reference writes none): why, and which frame, is derived in `geometry.rs`.
//! * `asset.generator` names this project and version, and the SF3D attribution the Stability AI licence asks for
//!   ("Powered by Stability AI") is carried in `asset.extras.attribution` and the material's
//!   `extras.attribution` when the caller gives one.
//! * Every bufferView of vertex/index data has its `target` set (the validator hints about it otherwise).
//! * Non-finite or non-unit input is rejected ([`Error::InvalidMesh`]) rather than written.
//!
//! # `doubleSided`
//!
//! Not set (glTF default `false`, which this writer spells out, as trimesh does): the exported mesh is closed and
//! faces outwards (positive signed volume, checked in the tests), so back faces are never visible and culling
//! them is correct and cheaper. `doubleSided: true` would also hide an orientation bug instead of showing it.

use gltf_json as json;
use json::validation::{Checked::Valid, USize64};

use super::{ExportMesh, GlbInfo, GlbMaterial, check_indexed, tangents};
use crate::error::{Error, Result};
use crate::mesh::length;

/// glTF `normalTexture.scale` (the reference leaves the default).
const NORMAL_TEXTURE_SCALE: f32 = 1.0;
/// How far from unit length a `NORMAL` may be before [`write_glb`] refuses it (the Khronos validator's own
/// tolerance is tighter than any float32 rounding we produce, far looser than a real mistake).
const UNIT_LENGTH_TOLERANCE: f32 = 1e-3;
/// GLB chunk and bufferView alignment in bytes.
pub(super) const GLB_ALIGNMENT: usize = 4;
/// Every JPEG stream starts with the SOI marker followed by another marker.
const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];
/// MIME type of both embedded textures.
pub(super) const JPEG_MIME: &str = "image/jpeg";
/// Key of the attribution in `asset.extras` and the material's `extras`.
pub const ATTRIBUTION_KEY: &str = "attribution";
/// Name given to the node, mesh and material.
const OBJECT_NAME: &str = "sf3d";

/// Writes `mesh` with `material` as a binary glTF 2.0 file (exactly what it contains is listed in
/// `mesh/glb/writer.rs`).
///
/// Preconditions (else an error, nothing written): `mesh` satisfies the [`ExportMesh`] guarantees and has at least
/// one face ([`Error::InvalidMesh`]); both textures are JPEG streams ([`Error::UnsupportedImage`]); roughness and
/// metallic are finite and in `[0, 1]`, and `info.extras` is a JSON object or null ([`Error::Internal`]: these
/// come from the engine, not from a user).
///
/// Guarantees: the result is a GLB with one JSON and one BIN chunk, every bufferView 4-byte aligned and the BIN
/// chunk padded so that `buffer.byteLength` equals its length; the Khronos glTF-Validator reports no error and no
/// warning for it (tested).
pub fn write_glb(mesh: &ExportMesh, material: &GlbMaterial, info: &GlbInfo) -> Result<Vec<u8>> {
    check_export_mesh(mesh)?;
    check_material(material)?;
    let tangents = tangents(mesh);
    let mut glb = GlbBuilder::new(info)?;

    // geometry: one tightly packed bufferView per accessor
    use json::accessor::{ComponentType, Type};
    use json::buffer::Target;
    use json::mesh::Semantic;
    let faces = glb.accessor(
        &flat_bytes(&mesh.faces, u32::to_le_bytes),
        Target::ElementArrayBuffer,
        mesh.faces.len() * 3,
        (ComponentType::U32, Type::Scalar),
        None,
    );
    let n = mesh.positions.len();
    let attributes = std::collections::BTreeMap::from([
        (
            Valid(Semantic::Positions),
            glb.vertex_attribute(
                &flat_bytes(&mesh.positions, f32::to_le_bytes),
                n,
                Type::Vec3,
                Some(bounds(&mesh.positions)),
            ),
        ),
        (
            Valid(Semantic::Normals),
            glb.vertex_attribute(&flat_bytes(&mesh.normals, f32::to_le_bytes), n, Type::Vec3, None),
        ),
        (
            Valid(Semantic::Tangents),
            glb.vertex_attribute(&flat_bytes(&tangents, f32::to_le_bytes), n, Type::Vec4, None),
        ),
        (
            Valid(Semantic::TexCoords(0)),
            glb.vertex_attribute(&flat_bytes(&mesh.uvs, f32::to_le_bytes), n, Type::Vec2, None),
        ),
    ]);

    // material
    let albedo = glb.jpeg_texture(&material.albedo_jpeg, "albedo");
    let normal_map = glb.jpeg_texture(&material.normal_jpeg, "normal");
    let material = glb.root.push(json::Material {
        name: Some(OBJECT_NAME.into()),
        pbr_metallic_roughness: json::material::PbrMetallicRoughness {
            base_color_texture: Some(json::texture::Info {
                index: albedo,
                tex_coord: 0,
                extensions: None,
                extras: None,
            }),
            metallic_factor: json::material::StrengthFactor(material.metallic),
            roughness_factor: json::material::StrengthFactor(material.roughness),
            ..Default::default()
        },
        normal_texture: Some(json::material::NormalTexture {
            index: normal_map,
            scale: NORMAL_TEXTURE_SCALE,
            tex_coord: 0,
            extensions: None,
            extras: None,
        }),
        double_sided: false,
        extras: attribution_extras(info.attribution.as_deref())?,
        ..Default::default()
    });

    // scene: one node, identity transform
    let mesh = glb.root.push(json::Mesh {
        name: Some(OBJECT_NAME.into()),
        primitives: vec![json::mesh::Primitive {
            attributes,
            indices: Some(faces),
            material: Some(material),
            mode: Valid(json::mesh::Mode::Triangles),
            targets: None,
            extensions: None,
            extras: None,
        }],
        weights: None,
        extensions: None,
        extras: None,
    });
    let node = glb.root.push(json::Node { name: Some(OBJECT_NAME.into()), mesh: Some(mesh), ..Default::default() });
    let scene = glb.root.push(json::Scene { name: None, nodes: vec![node], extensions: None, extras: None });
    glb.root.scene = Some(scene);
    glb.finish()
}

/// The glTF JSON under construction together with its single buffer, the BIN chunk.
struct GlbBuilder {
    root: json::Root,
    bin: Vec<u8>,
    buffer: json::Index<json::Buffer>,
}

impl GlbBuilder {
    /// An empty document with `asset` filled from `info` and one buffer.
    fn new(info: &GlbInfo) -> Result<Self> {
        let mut root = json::Root::default();
        root.asset.generator = Some(info.generator.clone());
        root.asset.extras = asset_extras(info)?;
        let buffer = root.push(json::Buffer {
            byte_length: USize64(0), // set by `finish`
            name: None,
            uri: None,
            extensions: None,
            extras: None,
        });
        Ok(Self { root, bin: Vec::new(), buffer })
    }

    /// Appends `bytes` to the BIN chunk at a 4-byte aligned offset, pads the chunk back to alignment, and adds
    /// the bufferView describing them.
    fn view(&mut self, bytes: &[u8], target: Option<json::buffer::Target>) -> json::Index<json::buffer::View> {
        debug_assert_eq!(self.bin.len() % GLB_ALIGNMENT, 0, "the BIN chunk is kept aligned after every view");
        let offset = self.bin.len();
        self.bin.extend_from_slice(bytes);
        self.bin.resize(self.bin.len().next_multiple_of(GLB_ALIGNMENT), 0);
        self.root.push(json::buffer::View {
            buffer: self.buffer,
            byte_length: USize64::from(bytes.len()),
            byte_offset: Some(USize64::from(offset)),
            byte_stride: None,
            name: None,
            target: target.map(Valid),
            extensions: None,
            extras: None,
        })
    }

    /// Adds `bytes` as their own bufferView and a tightly packed accessor of `count` elements over it, with
    /// `min`/`max` when `bounds` is given.
    fn accessor(
        &mut self,
        bytes: &[u8],
        target: json::buffer::Target,
        count: usize,
        (component, type_): (json::accessor::ComponentType, json::accessor::Type),
        bounds: Option<([f32; 3], [f32; 3])>,
    ) -> json::Index<json::Accessor> {
        let view = self.view(bytes, Some(target));
        let (min, max) = bounds
            .map_or((None, None), |(lo, hi)| (Some(json::Value::from(&lo[..])), Some(json::Value::from(&hi[..]))));
        self.root.push(json::Accessor {
            buffer_view: Some(view),
            byte_offset: None,
            count: USize64::from(count),
            component_type: Valid(json::accessor::GenericComponentType(component)),
            type_: Valid(type_),
            min,
            max,
            name: None,
            normalized: false,
            sparse: None,
            extensions: None,
            extras: None,
        })
    }

    /// [`Self::accessor`] for a float vertex attribute (`ARRAY_BUFFER`, `FLOAT`).
    fn vertex_attribute(
        &mut self,
        bytes: &[u8],
        count: usize,
        type_: json::accessor::Type,
        bounds: Option<([f32; 3], [f32; 3])>,
    ) -> json::Index<json::Accessor> {
        let float = json::accessor::ComponentType::F32;
        self.accessor(bytes, json::buffer::Target::ArrayBuffer, count, (float, type_), bounds)
    }

    /// Embeds a JPEG and adds the image and a sampler-less texture (glTF default sampling) for it.
    fn jpeg_texture(&mut self, jpeg: &[u8], name: &str) -> json::Index<json::Texture> {
        let view = self.view(jpeg, None);
        let image = self.root.push(json::Image {
            buffer_view: Some(view),
            mime_type: Some(json::image::MimeType(JPEG_MIME.into())),
            name: Some(name.into()),
            uri: None,
            extensions: None,
            extras: None,
        });
        self.root.push(json::Texture {
            name: Some(name.into()),
            sampler: None,
            source: image,
            extensions: None,
            extras: None,
        })
    }

    /// Serialises the JSON and wraps JSON and BIN into the GLB container (gltf's writer pads the JSON chunk
    /// with spaces; the BIN chunk is already aligned, so `buffer.byteLength` equals its length).
    fn finish(mut self) -> Result<Vec<u8>> {
        self.root.buffers[self.buffer.value()].byte_length = USize64::from(self.bin.len());
        let json = json::serialize::to_vec(&self.root)
            .map_err(|e| Error::Internal(format!("cannot serialise glTF JSON: {e}")))?;
        gltf::binary::Glb {
            header: gltf::binary::Header { magic: *b"glTF", version: 2, length: 0 }, // to_vec computes the length
            json: json.into(),
            bin: Some(self.bin.into()),
        }
        .to_vec()
        .map_err(|e| Error::Internal(format!("cannot write GLB container: {e}")))
    }
}

/// Checks the [`ExportMesh`] guarantees [`write_glb`] relies on.
fn check_export_mesh(mesh: &ExportMesh) -> Result<()> {
    let n = mesh.positions.len();
    if mesh.faces.is_empty() {
        return Err(Error::InvalidMesh("a glTF mesh needs at least one triangle".into()));
    }
    if mesh.normals.len() != n || mesh.uvs.len() != n {
        return Err(Error::InvalidMesh(format!(
            "{n} positions, {} normals and {} uvs: one of each per vertex",
            mesh.normals.len(),
            mesh.uvs.len()
        )));
    }
    check_indexed(n, &mesh.faces)?;
    let all_finite =
        mesh.positions.iter().flatten().chain(mesh.normals.iter().flatten()).chain(mesh.uvs.iter().flatten());
    if !all_finite.copied().all(f32::is_finite) {
        return Err(Error::InvalidMesh("non-finite position, normal or uv".into()));
    }
    if let Some((i, nrm)) =
        mesh.normals.iter().enumerate().find(|(_, nrm)| (length(**nrm) - 1.0).abs() > UNIT_LENGTH_TOLERANCE)
    {
        return Err(Error::InvalidMesh(format!("normal {i} {nrm:?} is not unit length")));
    }
    Ok(())
}

/// Checks the material inputs of [`write_glb`].
fn check_material(material: &GlbMaterial) -> Result<()> {
    for (name, bytes) in [("albedo", &material.albedo_jpeg), ("normal", &material.normal_jpeg)] {
        if !bytes.starts_with(&JPEG_MAGIC) {
            return Err(Error::UnsupportedImage(format!("the {name} texture is not a JPEG stream")));
        }
    }
    for (name, value) in [("roughness", material.roughness), ("metallic", material.metallic)] {
        if !(0.0..=1.0).contains(&value) {
            return Err(Error::Internal(format!("{name} factor {value} is not in [0, 1]")));
        }
    }
    Ok(())
}

/// `asset.extras`: `info.extras` plus the attribution; `None` when both are empty.
fn asset_extras(info: &GlbInfo) -> Result<json::Extras> {
    let mut extras = match &info.extras {
        serde_json::Value::Object(map) => map.clone(),
        serde_json::Value::Null => serde_json::Map::new(),
        other => {
            return Err(Error::Internal(format!("asset extras must be a JSON object, not {other}")));
        }
    };
    if let Some(text) = &info.attribution {
        extras.insert(ATTRIBUTION_KEY.into(), text.clone().into());
    }
    raw_object(extras)
}

/// `{"attribution": text}`, or `None` without attribution.
fn attribution_extras(attribution: Option<&str>) -> Result<json::Extras> {
    let mut extras = serde_json::Map::new();
    if let Some(text) = attribution {
        extras.insert(ATTRIBUTION_KEY.into(), text.into());
    }
    raw_object(extras)
}

/// A JSON object as glTF extras (`None` when empty, so that nothing is written).
fn raw_object(map: serde_json::Map<String, serde_json::Value>) -> Result<json::Extras> {
    if map.is_empty() {
        return Ok(None);
    }
    serde_json::value::to_raw_value(&serde_json::Value::Object(map))
        .map(Some)
        .map_err(|e| Error::Internal(format!("cannot serialise extras: {e}")))
}

/// Little-endian bytes of a slice of fixed-size rows.
fn flat_bytes<T: Copy, const N: usize, const B: usize>(rows: &[[T; N]], to_le: fn(T) -> [u8; B]) -> Vec<u8> {
    rows.iter().flatten().flat_map(|&x| to_le(x)).collect()
}

/// Component-wise `(min, max)` of non-empty `points` (glTF requires both on `POSITION`).
pub(super) fn bounds(points: &[[f32; 3]]) -> ([f32; 3], [f32; 3]) {
    let first = points.first().copied().unwrap_or_default();
    points.iter().fold((first, first), |(lo, hi), p| {
        (std::array::from_fn(|k| lo[k].min(p[k])), std::array::from_fn(|k| hi[k].max(p[k])))
    })
}
