//! The in-memory scene-code cache: [`sf3d::pipeline::Encoded`] results by encode key, least-recently used first
//! out, bounded by bytes. The on-disk copy beside each gallery entry (`scene_codes.safetensors`) survives
//! restarts; this one makes a repeated image or a tweak skip the network without reading the disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sf3d::pipeline::Encoded;

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<String, (Arc<Encoded>, u64)>,
    by_mesh: HashMap<String, String>,
    bytes: usize,
    tick: u64,
}

/// Encode results by key digest.
#[derive(Debug)]
pub struct EncodeCache {
    lru: Mutex<Lru>,
    budget: usize,
}

impl EncodeCache {
    /// A cache holding at most `budget` bytes (0 disables it).
    pub fn new(budget: usize) -> Self {
        Self { lru: Mutex::new(Lru::default()), budget }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for `digest`, marking it recently used.
    pub fn get(&self, digest: &str) -> Option<Arc<Encoded>> {
        let mut l = self.lock();
        l.tick += 1;
        let tick = l.tick;
        l.entries.get_mut(digest).map(|e| {
            e.1 = tick;
            e.0.clone()
        })
    }

    /// The entry a gallery mesh was made from, if still cached.
    pub fn get_for_mesh(&self, mesh_id: &str) -> Option<Arc<Encoded>> {
        let digest = self.lock().by_mesh.get(mesh_id).cloned()?;
        self.get(&digest)
    }

    /// Remembers that `mesh_id` was made from `digest`.
    pub fn link_mesh(&self, mesh_id: &str, digest: &str) {
        self.lock().by_mesh.insert(mesh_id.to_string(), digest.to_string());
    }

    /// Inserts an entry, evicting the least recently used ones beyond the budget. An entry larger than the
    /// whole budget is not kept.
    pub fn insert(&self, digest: &str, value: Arc<Encoded>) {
        let size = value.size_bytes();
        if size > self.budget {
            return;
        }
        let mut l = self.lock();
        l.tick += 1;
        let tick = l.tick;
        if let Some((old, _)) = l.entries.insert(digest.to_string(), (value, tick)) {
            l.bytes -= old.size_bytes();
        }
        l.bytes += size;
        while l.bytes > self.budget {
            let Some(oldest) = l.entries.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) else { break };
            if let Some((gone, _)) = l.entries.remove(&oldest) {
                l.bytes -= gone.size_bytes();
                tracing::debug!(digest = %oldest, "scene-code cache eviction");
            }
        }
    }

    /// `(entries, bytes)`.
    pub fn usage(&self) -> (usize, usize) {
        let l = self.lock();
        (l.entries.len(), l.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use sf3d::pipeline::EncodeKey;
    use sf3d_shared::GenerateParams;

    fn enc(tag: u8, floats: usize) -> Arc<Encoded> {
        Arc::new(Encoded {
            key: EncodeKey::new(&[tag], &GenerateParams::default(), "m", "builtin"),
            input: image::RgbaImage::new(1, 1),
            preprocessed: image::RgbaImage::new(1, 1),
            scene_codes: Tensor::zeros((3, floats, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap(),
            roughness: 0.5,
            metallic: 0.5,
            sg_amplitudes: None,
            background_removed_by: None,
            timings: vec![],
        })
    }

    #[test]
    fn evicts_least_recently_used_beyond_the_budget() {
        let one = enc(0, 100).size_bytes();
        let c = EncodeCache::new(2 * one);
        c.insert("a", enc(1, 100));
        c.insert("b", enc(2, 100));
        assert!(c.get("a").is_some()); // a is now the most recent
        c.insert("c", enc(3, 100));
        assert!(c.get("b").is_none(), "b was the least recently used");
        assert!(c.get("a").is_some() && c.get("c").is_some());
        assert_eq!(c.usage(), (2, 2 * one));
        c.insert("huge", enc(4, 1000));
        assert!(c.get("huge").is_none());
    }

    #[test]
    fn meshes_map_to_their_encode() {
        let c = EncodeCache::new(1 << 20);
        c.insert("d", enc(1, 10));
        c.link_mesh("m1", "d");
        assert!(c.get_for_mesh("m1").is_some());
        assert!(c.get_for_mesh("m2").is_none());
    }
}
