//! `tokenizer.*` — `TriplaneLearnablePositionalEmbedding` (docs/engine.md §3.3): learned triplane tokens, and the
//! inverse `detokenize` that turns backbone output back into planes.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::TriplaneTokenizerConfig;

/// Learned `[3, C, P, P]` planes.
#[derive(Debug, Clone)]
pub struct TriplaneLearnablePositionalEmbedding {
    embeddings: Tensor,
    plane_size: usize,
    num_channels: usize,
}

impl TriplaneLearnablePositionalEmbedding {
    /// Loads `tokenizer.embeddings`.
    pub fn new(cfg: &TriplaneTokenizerConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let init = candle_nn::Init::Randn { mean: 0.0, stdev: 1.0 / (cfg.num_channels as f64).sqrt() };
        let embeddings =
            vb.get_with_hints((3, cfg.num_channels, cfg.plane_size, cfg.plane_size), "embeddings", init)?;
        Ok(Self { embeddings, plane_size: cfg.plane_size, num_channels: cfg.num_channels })
    }

    /// `[B, C, 3·P·P]` with token index `plane·P² + row·P + col`.
    pub fn forward(&self, batch: usize) -> Result<Tensor> {
        let (c, p) = (self.num_channels, self.plane_size);
        // [3, C, P, P] → [C, 3, P, P] → [C, 3·P·P]
        let t = self.embeddings.permute((1, 0, 2, 3))?.reshape((c, 3 * p * p))?;
        t.unsqueeze(0)?.broadcast_as((batch, c, 3 * p * p))?.contiguous()
    }

    /// Inverse of [`Self::forward`]'s layout: `[B, C, 3·P·P]` → `[B, 3, C, P, P]`.
    pub fn detokenize(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, c, n) = tokens.dims3()?;
        let p = self.plane_size;
        if n != 3 * p * p {
            candle_core::bail!("detokenize: {n} tokens, expected 3·{p}²");
        }
        tokens.reshape((b, c, 3, p, p))?.permute((0, 2, 1, 3, 4))?.contiguous()
    }
}
