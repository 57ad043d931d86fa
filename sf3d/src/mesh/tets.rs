//! The tetrahedral grid marching tetrahedra runs on (docs/engine.md §5.2).
//!
//! * [`TetGrid::load_npz`] reads the official format (`vertices` float `[N, 3]` in `[0, 1]`, `indices` integer
//!   `[T, 4]`), e.g. the release's `160_tets.npz`, with clear errors for a missing key, a wrong dtype or shape,
//!   or an out-of-range index.
//! * [`TetGrid::freudenthal`] generates our own grid: the regular `(n+1)³` lattice with every cube split into
//!   the 6 tetrahedra around its main diagonal (Freudenthal / Kuhn), exactly the grid the tiny-a golden set
//!   describes, positively oriented (`det[v1−v0, v2−v0, v3−v0] > 0`). With `n = 80` it has 531k vertices and
//!   3.07M tets, the budget of the release's Quartet grid; generation takes a few tens of milliseconds, so no
//!   cache is needed.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Axis permutations of the 6 tets of a cube, in the golden grid's order, with their parity.
const PERMUTATIONS: [([usize; 3], bool); 6] = [
    ([0, 1, 2], false),
    ([0, 2, 1], true),
    ([1, 0, 2], true),
    ([1, 2, 0], false),
    ([2, 0, 1], false),
    ([2, 1, 0], true),
];

/// A tetrahedral grid of the unit cube.
#[derive(Debug, Clone, PartialEq)]
pub struct TetGrid {
    /// Vertex positions in `[0, 1]³`.
    pub vertices: Vec<[f32; 3]>,
    /// Tetrahedra as vertex indices.
    pub tets: Vec<[u32; 4]>,
}

impl TetGrid {
    /// The Freudenthal grid with `n` cells per axis (see the module docs). Vertex `(i, j, k)` is at
    /// `(i, j, k)/n` with index `(i·(n+1) + j)·(n+1) + k`.
    pub fn freudenthal(n: usize) -> Result<Self> {
        if n == 0 || (n + 1).pow(3) > u32::MAX as usize {
            return Err(Error::Internal(format!("tet grid resolution {n} out of range")));
        }
        let m = n + 1;
        let inv = 1.0 / n as f32;
        let mut vertices = Vec::with_capacity(m * m * m);
        for i in 0..m {
            for j in 0..m {
                for k in 0..m {
                    vertices.push([i as f32 * inv, j as f32 * inv, k as f32 * inv]);
                }
            }
        }
        let stride = [m * m, m, 1];
        let mut tets = Vec::with_capacity(6 * n * n * n);
        for i in 0..n {
            for j in 0..n {
                for k in 0..n {
                    let a = i * stride[0] + j * stride[1] + k * stride[2];
                    let diag = a + stride[0] + stride[1] + stride[2];
                    for (p, odd) in PERMUTATIONS {
                        let v1 = a + stride[p[0]];
                        let v2 = v1 + stride[p[1]];
                        let t = if odd { [a, v1, diag, v2] } else { [a, v1, v2, diag] };
                        tets.push(t.map(|x| x as u32));
                    }
                }
            }
        }
        Ok(Self { vertices, tets })
    }

    /// Reads an official-format `.npz` (any float dtype for `vertices`, any integer dtype for `indices`).
    pub fn load_npz(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| Error::bad_file(path, format!("not an .npz (zip) file: {e}")))?;
        let mut read = |name: &str| -> Result<Npy> {
            let mut entry = zip.by_name(&format!("{name}.npy")).map_err(|_| {
                Error::bad_file(path, format!("missing array {name:?} (an SF3D tet grid has `vertices` and `indices`)"))
            })?;
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(|e| Error::bad_file(path, format!("{name}: {e}")))?;
            Npy::parse(&bytes).map_err(|m| Error::bad_file(path, format!("{name}: {m}")))
        };
        let v = read("vertices")?;
        let t = read("indices")?;
        if v.shape.len() != 2 || v.shape[1] != 3 {
            return Err(Error::bad_file(path, format!("vertices has shape {:?}, expected [N, 3]", v.shape)));
        }
        if t.shape.len() != 2 || t.shape[1] != 4 {
            return Err(Error::bad_file(path, format!("indices has shape {:?}, expected [T, 4]", t.shape)));
        }
        let vf = v.to_f32().map_err(|m| Error::bad_file(path, format!("vertices: {m}")))?;
        let ti = t.to_i64().map_err(|m| Error::bad_file(path, format!("indices: {m}")))?;
        let n = v.shape[0];
        if let Some((pos, bad)) = ti.iter().enumerate().find(|(_, x)| **x < 0 || **x as usize >= n) {
            return Err(Error::bad_file(path, format!("indices[{}] = {bad} is outside 0..{n}", pos / 4)));
        }
        if let Some(bad) = vf.iter().find(|x| !x.is_finite()) {
            return Err(Error::bad_file(path, format!("vertices contain {bad}")));
        }
        Ok(Self {
            vertices: vf.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
            tets: ti.chunks_exact(4).map(|c| [c[0] as u32, c[1] as u32, c[2] as u32, c[3] as u32]).collect(),
        })
    }

    /// Signed volume ×6 of tet `t` (`det[v1−v0, v2−v0, v3−v0]`).
    pub fn det(&self, t: usize) -> f32 {
        let [a, b, c, d] = self.tets[t].map(|i| self.vertices[i as usize]);
        let (u, v, w) = (super::sub(b, a), super::sub(c, a), super::sub(d, a));
        super::dot(u, super::cross(v, w))
    }
}

/// A parsed `.npy` array (little-endian, C order).
struct Npy {
    descr: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Npy {
    fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err("not a .npy array".into());
        }
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
            v => return Err(format!("unsupported .npy version {v}")),
        };
        let header = bytes.get(start..start + header_len).ok_or("truncated .npy header")?;
        let header = std::str::from_utf8(header).map_err(|_| "non-UTF-8 .npy header")?;
        let field = |key: &str| -> std::result::Result<&str, String> {
            let at = header.find(&format!("'{key}'")).ok_or(format!("header lacks {key}"))?;
            Ok(header[at + key.len() + 2..].trim_start().trim_start_matches(':').trim_start())
        };
        let descr = field("descr")?.trim_start_matches('\'').split('\'').next().unwrap_or_default().to_string();
        if field("fortran_order")?.starts_with("True") {
            return Err("Fortran-ordered arrays are not supported".into());
        }
        let shape_text = field("shape")?;
        let inner = shape_text.trim_start_matches('(').split(')').next().unwrap_or_default();
        let shape = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {inner:?}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let data = bytes[start + header_len..].to_vec();
        let npy = Self { descr, shape, data };
        let want = npy.shape.iter().product::<usize>() * npy.item_size()?;
        if npy.data.len() < want {
            return Err(format!("{} data bytes, shape {:?} needs {want}", npy.data.len(), npy.shape));
        }
        Ok(npy)
    }

    fn item_size(&self) -> std::result::Result<usize, String> {
        let d = self.descr.trim_start_matches(['<', '|', '=']);
        if self.descr.starts_with('>') {
            return Err(format!("big-endian dtype {} is not supported", self.descr));
        }
        match d {
            "f4" | "i4" | "u4" => Ok(4),
            "f8" | "i8" | "u8" => Ok(8),
            "i2" | "u2" | "f2" => Ok(2),
            "i1" | "u1" => Ok(1),
            other => Err(format!("unsupported dtype {other}")),
        }
    }

    fn count(&self) -> usize {
        self.shape.iter().product()
    }

    fn to_f32(&self) -> std::result::Result<Vec<f32>, String> {
        let n = self.count();
        let d = &self.data;
        match self.descr.trim_start_matches(['<', '|', '=']) {
            "f4" => Ok(d.chunks_exact(4).take(n).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
            "f8" => Ok(d
                .chunks_exact(8)
                .take(n)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect()),
            other => Err(format!("dtype {other} is not a float type")),
        }
    }

    fn to_i64(&self) -> std::result::Result<Vec<i64>, String> {
        let n = self.count();
        let d = &self.data;
        match self.descr.trim_start_matches(['<', '|', '=']) {
            "i8" => Ok(d.chunks_exact(8).take(n).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect()),
            "u8" => Ok(d
                .chunks_exact(8)
                .take(n)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])).min(i64::MAX as u64) as i64)
                .collect()),
            "i4" => {
                Ok(d.chunks_exact(4).take(n).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect())
            }
            "u4" => {
                Ok(d.chunks_exact(4).take(n).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect())
            }
            "i2" => Ok(d.chunks_exact(2).take(n).map(|b| i16::from_le_bytes([b[0], b[1]]) as i64).collect()),
            "u2" => Ok(d.chunks_exact(2).take(n).map(|b| u16::from_le_bytes([b[0], b[1]]) as i64).collect()),
            other => Err(format!("dtype {other} is not an integer type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn generated_grid_is_positively_oriented_and_fills_the_cube() {
        let g = TetGrid::freudenthal(3).unwrap();
        assert_eq!(g.vertices.len(), 64);
        assert_eq!(g.tets.len(), 6 * 27);
        // Each of the 6 tets of a cube has volume 1/6 of the cube: det = 6·vol = (1/n)³.
        let vol = (1.0f32 / 3.0).powi(3);
        for t in 0..g.tets.len() {
            assert!((g.det(t) - vol).abs() < 1e-6, "tet {t}: det {}", g.det(t));
        }
    }

    /// Our generator reproduces the golden set's grid exactly (same vertex order, same tets).
    #[test]
    fn generated_grid_equals_tiny_a_npz() {
        let path = crate::golden::GoldenSet::shared_dir("tiny-a").join("32_tets.npz");
        let loaded = TetGrid::load_npz(&path).unwrap();
        let ours = TetGrid::freudenthal(32).unwrap();
        assert_eq!(loaded.tets, ours.tets);
        assert_eq!(loaded.vertices.len(), ours.vertices.len());
        for (a, b) in loaded.vertices.iter().zip(&ours.vertices) {
            for k in 0..3 {
                assert!((a[k] - b[k]).abs() < 1e-7);
            }
        }
    }

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    fn write_npz(path: &Path, arrays: &[(&str, Vec<u8>)]) {
        let f = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        for (name, bytes) in arrays {
            z.start_file(format!("{name}.npy"), zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn bad_npz_files_give_clear_errors() {
        let dir = std::env::temp_dir().join(format!("sf3d-tets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let verts: Vec<u8> =
            [0f64, 0., 0., 1., 0., 0., 0., 1., 0., 0., 0., 1.].iter().flat_map(|x| x.to_le_bytes()).collect();
        let good_idx: Vec<u8> = [0i64, 1, 2, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
        let bad_idx: Vec<u8> = [0i64, 1, 2, 9].iter().flat_map(|x| x.to_le_bytes()).collect();

        let p = dir.join("ok.npz");
        write_npz(&p, &[("vertices", npy("<f8", "(4, 3)", &verts)), ("indices", npy("<i8", "(1, 4)", &good_idx))]);
        let g = TetGrid::load_npz(&p).unwrap();
        assert_eq!(g.tets, vec![[0, 1, 2, 3]]);
        assert!(g.det(0) > 0.0);

        let p = dir.join("missing.npz");
        write_npz(&p, &[("vertices", npy("<f8", "(4, 3)", &verts))]);
        assert!(TetGrid::load_npz(&p).unwrap_err().to_string().contains("indices"));

        let p = dir.join("range.npz");
        write_npz(&p, &[("vertices", npy("<f8", "(4, 3)", &verts)), ("indices", npy("<i8", "(1, 4)", &bad_idx))]);
        assert!(TetGrid::load_npz(&p).unwrap_err().to_string().contains("outside"));

        let p = dir.join("dtype.npz");
        write_npz(&p, &[("vertices", npy("<i8", "(4, 3)", &verts)), ("indices", npy("<i8", "(1, 4)", &good_idx))]);
        assert!(TetGrid::load_npz(&p).unwrap_err().to_string().contains("not a float"));

        let p = dir.join("notzip.npz");
        std::fs::write(&p, b"hello").unwrap();
        assert!(TetGrid::load_npz(&p).unwrap_err().to_string().contains("zip"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
