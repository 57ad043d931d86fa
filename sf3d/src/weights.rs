//! Where the network's tensors come from: the official `model.safetensors` (memory-mapped, any of f32/f16/bf16,
//! converted to the compute dtype) or seeded random initialisation (the built-in test model and full-size
//! benchmarks). Both go through candle's `VarBuilder`, so `vb.pp(..)` paths equal the checkpoint keys.
//!
//! [`WeightSource`] wraps either backend and
//! * turns a missing key or a wrong shape into a typed [`Error`] naming the key and both shapes,
//! * resolves the one documented alias: AdaLN modulation weights stored as `image_tokenizer.modulations.{k}.*`
//!   instead of `image_tokenizer.model.encoder.layer.{l}.norm{1,2}_modulation.*` (docs/engine.md §3.0),
//! * records every key the network asked for, for the key-coverage report.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct LogInner {
    keys: BTreeSet<String>,
    first_error: Option<Error>,
}

/// Keys requested while building a model, and the first typed load error (candle's error type cannot carry
/// ours through `VarBuilder`, so it is parked here and recovered by [`KeyLog::take_error`]).
#[derive(Debug, Default, Clone)]
pub struct KeyLog(Arc<Mutex<LogInner>>);

impl KeyLog {
    fn insert(&self, key: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.keys.insert(key.to_string());
        }
    }

    fn fail(&self, e: Error) -> candle_core::Error {
        let msg = e.to_string();
        if let Ok(mut s) = self.0.lock() {
            s.first_error.get_or_insert(e);
        }
        candle_core::Error::Msg(msg)
    }

    /// The keys requested so far.
    pub fn keys(&self) -> BTreeSet<String> {
        self.0.lock().map(|s| s.keys.clone()).unwrap_or_default()
    }

    /// The first missing-key / shape error met while loading, if any.
    pub fn take_error(&self) -> Option<Error> {
        self.0.lock().ok().and_then(|mut s| s.first_error.take())
    }

    /// Converts a construction error, preferring the parked typed error.
    pub fn convert(&self, e: candle_core::Error) -> Error {
        self.take_error().unwrap_or(Error::Candle(e))
    }
}

enum Inner {
    Safetensors(candle_core::safetensors::MmapedSafetensors),
    Random { seed: u64 },
}

/// Tensors handed out by a random source, by name (to edit them and rebuild from the map).
pub type Captured = Arc<Mutex<std::collections::HashMap<String, Tensor>>>;

/// A candle weight backend with typed errors, aliasing and a key log.
pub struct WeightSource {
    inner: Inner,
    log: KeyLog,
    capture: Option<Captured>,
}

/// The checkpoint key a modulation weight may be stored under instead of the canonical one (docs/engine.md
/// §3.0: the tokenizer registers each AdaLN module twice; `save_model` keeps the lexicographically smallest name,
/// which is the canonical `model.encoder.layer.L.normN_modulation` one, but other exporters may keep the flat
/// list).
pub fn modulation_alias(key: &str) -> Option<String> {
    let rest = key.strip_prefix("image_tokenizer.model.encoder.layer.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (slot, rest) = if let Some(r) = rest.strip_prefix("norm1_modulation.") {
        (0, r)
    } else if let Some(r) = rest.strip_prefix("norm2_modulation.") {
        (1, r)
    } else {
        return None;
    };
    Some(format!("image_tokenizer.modulations.{}.{rest}", 2 * layer + slot))
}

impl WeightSource {
    /// Memory-maps `path` (safetensors).
    pub fn safetensors(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
        }
        // SAFETY: the file is mapped read-only; like every mmap it must not be truncated while in use, which
        // is the documented contract of candle's `MmapedSafetensors` (model files are not edited in place).
        #[allow(unsafe_code)]
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
            .map_err(|e| Error::bad_file(path, format!("not a readable safetensors file: {e}")))?;
        Ok(Self { inner: Inner::Safetensors(st), log: KeyLog::default(), capture: None })
    }

    /// Deterministic random initialisation from candle's `Init` hints, keyed by (seed, tensor name): the same
    /// seed gives the same weights whatever the construction order.
    pub fn random(seed: u64) -> Self {
        Self { inner: Inner::Random { seed }, log: KeyLog::default(), capture: None }
    }

    /// Like [`WeightSource::random`], also recording every generated tensor by name.
    pub fn random_capturing(seed: u64) -> (Self, Captured) {
        let cap = Captured::default();
        (Self { inner: Inner::Random { seed }, log: KeyLog::default(), capture: Some(cap.clone()) }, cap)
    }

    /// The log of requested keys (shared with the VarBuilder built from this source).
    pub fn key_log(&self) -> KeyLog {
        self.log.clone()
    }

    /// Every tensor name in the checkpoint (empty for random weights).
    pub fn checkpoint_keys(&self) -> BTreeSet<String> {
        match &self.inner {
            Inner::Safetensors(st) => st.tensors().into_iter().map(|(k, _)| k).collect(),
            Inner::Random { .. } => BTreeSet::new(),
        }
    }

    /// Storage dtypes present in the checkpoint.
    pub fn checkpoint_dtypes(&self) -> BTreeSet<String> {
        match &self.inner {
            Inner::Safetensors(st) => st.tensors().into_iter().map(|(_, v)| format!("{:?}", v.dtype())).collect(),
            Inner::Random { .. } => BTreeSet::new(),
        }
    }

    /// A VarBuilder over this source.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    fn resolve(&self, name: &str) -> Option<String> {
        let Inner::Safetensors(st) = &self.inner else { return Some(name.to_string()) };
        if st.get(name).is_ok() {
            return Some(name.to_string());
        }
        modulation_alias(name).filter(|alias| st.get(alias).is_ok())
    }
}

/// Elements generated from one RNG stream (streams are independent, so generation runs in parallel and stays
/// deterministic).
const RANDOM_CHUNK: usize = 1 << 16;

fn random_tensor(
    seed: u64,
    name: &str,
    shape: &Shape,
    init: Init,
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    use rayon::prelude::*;
    // FNV-1a of the name, mixed with the seed: a stable per-tensor stream.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let n = shape.elem_count();
    let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> f32 {
        // Box–Muller.
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        (mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    };
    enum Dist {
        Const(f32),
        Normal(f64, f64),
        Uniform(f64, f64),
    }
    let dist = match init {
        Init::Const(v) => Dist::Const(v as f32),
        Init::Randn { mean, stdev } => Dist::Normal(mean, stdev),
        Init::Uniform { lo, up } => Dist::Uniform(lo, up),
        Init::Kaiming { dist, fan, non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape).max(1) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Uniform => Dist::Uniform(-(3f64.sqrt()) * std, 3f64.sqrt() * std),
                candle_nn::init::NormalOrUniform::Normal => Dist::Normal(0.0, std),
            }
        }
    };
    let mut data = vec![0f32; n];
    data.par_chunks_mut(RANDOM_CHUNK).enumerate().for_each(|(i, chunk)| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ h ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for x in chunk.iter_mut() {
            *x = match dist {
                Dist::Const(v) => v,
                Dist::Normal(m, s) => normal(&mut rng, m, s),
                Dist::Uniform(lo, up) => rng.random_range(lo..up) as f32,
            };
        }
    });
    Tensor::from_vec(data, shape.clone(), dev)?.to_dtype(dtype)
}

impl SimpleBackend for WeightSource {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.log.insert(name);
        match &self.inner {
            Inner::Random { seed } => {
                let t = random_tensor(*seed, name, &s, h, dtype, dev)?;
                if let Some(cap) = &self.capture
                    && let Ok(mut m) = cap.lock()
                {
                    m.insert(name.to_string(), t.clone());
                }
                Ok(t)
            }
            Inner::Safetensors(st) => {
                let key =
                    self.resolve(name).ok_or_else(|| self.log.fail(Error::MissingTensor { key: name.to_string() }))?;
                let view = st.get(&key)?;
                if view.shape() != s.dims() {
                    return Err(self.log.fail(Error::ShapeMismatch {
                        key: key.clone(),
                        expected: s.dims().to_vec(),
                        actual: view.shape().to_vec(),
                    }));
                }
                st.load(&key, dev)?.to_dtype(dtype)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.log.insert(name);
        match &self.inner {
            Inner::Random { .. } => {
                Err(self.log.fail(Error::Internal(format!("random weights need a shape for {name}"))))
            }
            Inner::Safetensors(st) => {
                let key =
                    self.resolve(name).ok_or_else(|| self.log.fail(Error::MissingTensor { key: name.to_string() }))?;
                st.load(&key, dev)?.to_dtype(dtype)
            }
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulation_aliases_follow_the_flat_list_order() {
        assert_eq!(
            modulation_alias("image_tokenizer.model.encoder.layer.3.norm2_modulation.linear2.weight").as_deref(),
            Some("image_tokenizer.modulations.7.linear2.weight")
        );
        assert_eq!(
            modulation_alias("image_tokenizer.model.encoder.layer.0.norm1_modulation.linear2.bias").as_deref(),
            Some("image_tokenizer.modulations.0.linear2.bias")
        );
        assert_eq!(modulation_alias("image_tokenizer.model.encoder.layer.0.norm1.weight"), None);
    }

    #[test]
    fn random_weights_are_deterministic_per_name() {
        let dev = Device::Cpu;
        let values = |name: &str| {
            let shape = Shape::from((4, 5));
            random_tensor(7, name, &shape, candle_nn::init::DEFAULT_KAIMING_NORMAL, DType::F32, &dev)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (a, b, c) = (values("x.weight"), values("x.weight"), values("y.weight"));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
