//! A hand-written, activation-only backward from the class logits to the post-softmax
//! attention of blocks `from..L`, for K cotangents at once (GETAM, Sun et al., arXiv
//! 2112.02841, Eq. 3-4, needs `∂y_c/∂A_l` for every requested class c).
//!
//! candle's autograd would also differentiate the weights' uses, keep one node per small
//! op and, for K classes, either run K backwards or a forward at batch K. Here the forward
//! runs once at batch 1 and caches what the backward reads (normalised activations and
//! reciprocal standard deviations of both LayerNorms, q, k, v, the attention and the GELU
//! derivative), and the backward carries the K cotangents as a leading batch axis:
//! every product with a weight matrix is one `[K·R, ·] × [·, ·]` GEMM, and every product
//! with a cached activation folds K into a GEMM dimension, batched over the h heads only.
//!
//! Only *rows* that matter are propagated. With class-token pooling the cotangent of the
//! last block's output is non-zero on the T class-token rows only, so that block's MLP,
//! LayerNorm and projection backward run on T rows; the attention backward then spreads
//! the cotangent to all N tokens (through k and v). At the first block `from` only the
//! class-token rows of `∂y/∂A` are asked for, and these depend only on the class-token
//! rows of that block's output cotangent: the whole block backward runs on T rows and
//! stops there (no gradient with respect to its input).
//!
//! Per block (N tokens, D channels, h heads, MLP width 4D), each pass is, with K
//! cotangents: LayerNorm / GELU / softmax backward O(K·(N·D + h·N²)); the weight GEMMs
//! O(K·N·12·D²) (the same as a forward at batch K); the attention GEMMs O(K·N²·D).
//! Total O((L − from)·K·(N·D² + N²·D)) time beside one forward at batch 1, memory
//! O((L − from)·(N·D + h·N²)) for the cache plus O(K·(h·N² + N·D)) transient.

use candle_core::{bail, DType, Module, Result, Tensor, D};

use crate::fused::{gelu_erf, gelu_erf_grad};
use crate::layers::{softmax_last_dim, LayerNorm};
use crate::model::{Block, Vit};
use crate::GlobalPool;

/// What [`Vit::class_row_attention_gradients`] returns.
#[derive(Debug, Clone)]
pub struct ClassRowGradients {
    /// Logits [1, C] of the forward (equal to [`Vit::forward`]'s up to rounding).
    pub logits: Tensor,
    /// The token grid (gh, gw).
    pub grid: (usize, usize),
    /// The blocks covered, `from..L`, in increasing order.
    pub layers: Vec<usize>,
    /// Class-token rows of the post-softmax attention, [1, h, T, N] per block.
    pub attention: Vec<Tensor>,
    /// Class-token rows of `∂(g_k·y)/∂A_l`, [K, h, T, N] per block (row k for cotangent
    /// `g_k`).
    pub gradients: Vec<Tensor>,
}

/// The normalised rows `x̂ = (x − μ)·r` and `r = 1/sqrt(σ² + eps)` of one LayerNorm.
#[derive(Debug, Clone)]
struct NormCache {
    normed: Tensor,
    rstd: Tensor,
}

impl NormCache {
    /// # Shapes
    /// - `xs`: [N, D]; caches [N, D] and [N, 1]. O(N·D).
    fn new(xs: &Tensor, eps: f64) -> Result<Self> {
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let rstd = (variance + eps)?.sqrt()?.recip()?;
        Ok(Self {
            normed: centred.broadcast_mul(&rstd)?,
            rstd,
        })
    }

    fn affine(&self, norm: &LayerNorm) -> Result<Tensor> {
        self.normed
            .broadcast_mul(&norm.weight)?
            .broadcast_add(&norm.bias)
    }

    /// `∂/∂x` of the LayerNorm for a cotangent on its first R rows:
    /// `r·(γ⊙g − mean(γ⊙g) − x̂·mean(γ⊙g⊙x̂))`.
    ///
    /// # Shapes
    /// - `grad`: [K, R, D] with R ≤ N; returns [K, R, D]. O(K·R·D).
    fn backward(&self, grad: &Tensor, weight: &Tensor) -> Result<Tensor> {
        let rows = grad.dim(1)?;
        let normed = self.normed.narrow(0, 0, rows)?;
        let rstd = self.rstd.narrow(0, 0, rows)?;
        let g = grad.broadcast_mul(weight)?;
        let mean = g.mean_keepdim(D::Minus1)?;
        let mean_x = g.broadcast_mul(&normed)?.mean_keepdim(D::Minus1)?;
        g.broadcast_sub(&mean)?
            .sub(&mean_x.broadcast_mul(&normed)?)?
            .broadcast_mul(&rstd)
    }
}

/// What one block's backward reads.
#[derive(Debug, Clone)]
struct BlockCache {
    norm1: NormCache,
    /// Scaled queries, keys and values, [h, N, hd] each.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Post-softmax attention [h, N, N].
    attention: Tensor,
    norm2: NormCache,
    /// `GELU'(z) = Φ(z) + z·φ(z)` at the MLP's hidden pre-activation, [N, 4D].
    gelu_grad: Tensor,
}

/// The first `rows` rows (axis 1) of `xs`, zero-padded when it has fewer.
fn leading_rows(xs: &Tensor, rows: usize) -> Result<Tensor> {
    let have = xs.dim(1)?;
    if have >= rows {
        xs.narrow(1, 0, rows)
    } else {
        xs.pad_with_zeros(1, 0, rows - have)
    }
}

impl Block {
    /// The block at batch 1, keeping the backward's cache.
    ///
    /// # Shapes
    /// - `xs`: [N, D]; returns [N, D]. Cost as a forward, plus O(N·D) for the GELU
    ///   derivative.
    fn forward_cached(&self, xs: &Tensor) -> Result<(Tensor, BlockCache)> {
        let (n, d) = xs.dims2()?;
        let h = self.attn.num_heads;
        let hd = d / h;
        let norm1 = NormCache::new(xs, self.norm1.eps)?;
        let qkv = self
            .attn
            .qkv
            .forward(&norm1.affine(&self.norm1)?)?
            .reshape((n, 3, h, hd))?
            .permute((1, 2, 0, 3))?;
        let q = (qkv.get(0)? * self.attn.scale)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attention = softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let mixed = attention.matmul(&v)?.transpose(0, 1)?.reshape((n, d))?;
        let xs = (xs + self.attn.proj.forward(&mixed)?)?;
        let norm2 = NormCache::new(&xs, self.norm2.eps)?;
        let z = self.mlp.fc1.forward(&norm2.affine(&self.norm2)?)?;
        let gelu_grad = gelu_erf_grad(&z)?;
        let hidden = gelu_erf(&z)?;
        let xs = (&xs + self.mlp.fc2.forward(&hidden)?)?;
        let cache = BlockCache {
            norm1,
            q,
            k,
            v,
            attention,
            norm2,
            gelu_grad,
        };
        Ok((xs, cache))
    }

    /// Backward of one block for K cotangents of its output, given on the first R rows
    /// (the other rows are zero).
    ///
    /// Returns the first `t` rows of `∂/∂A` ([K, h, t, N]) and, when `need_input`, the
    /// cotangent of the block input on all N rows ([K, N, D]). Without `need_input` only
    /// `t` rows are propagated.
    fn backward(
        &self,
        cache: &BlockCache,
        grad: &Tensor,
        t: usize,
        need_input: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (h, n, hd) = cache.v.dims3()?;
        let kk = grad.dim(0)?;
        let grad = if need_input {
            leading_rows(grad, grad.dim(1)?.max(t))?
        } else {
            leading_rows(grad, t)?
        };
        let r = grad.dim(1)?;

        // MLP: out = mid + fc2(GELU(fc1(LN2(mid)))).
        let hidden = grad.broadcast_matmul(self.mlp.fc2.weight())?; // [K, R, 4D]
        let hidden = hidden.broadcast_mul(&cache.gelu_grad.narrow(0, 0, r)?)?;
        let normed = hidden.broadcast_matmul(self.mlp.fc1.weight())?; // [K, R, D]
        let mid = (&grad + cache.norm2.backward(&normed, &self.norm2.weight)?)?;

        // Attention branch, heads first with the rows before the K cotangents: [h, R, K, ·],
        // so that every product with a cached [h, ·, ·] activation is one GEMM per head.
        let mixed = mid.broadcast_matmul(self.attn.proj.weight())?; // [K, R, D]
        let d_out = mixed
            .reshape((kk, r, h, hd))?
            .permute((2, 1, 0, 3))?
            .contiguous()?; // [h, R, K, hd]
        let d_attn = d_out
            .reshape((h, r * kk, hd))?
            .matmul(&cache.v.t()?)?
            .reshape((h, r, kk, n))?; // [h, R, K, N]
        let rows = d_attn
            .narrow(1, 0, t)?
            .permute((2, 0, 1, 3))?
            .contiguous()?;
        if !need_input {
            return Ok((rows, None));
        }

        // Softmax: dS = A ⊙ (dA − Σ_j dA_j·A_j).
        let attention = cache.attention.narrow(1, 0, r)?; // [h, R, N]
        let a4 = attention.unsqueeze(2)?; // [h, R, 1, N]
        let dot = d_attn.broadcast_mul(&a4)?.sum_keepdim(D::Minus1)?;
        let d_logits = d_attn.broadcast_sub(&dot)?.broadcast_mul(&a4)?; // [h, R, K, N]

        // S = q_s·kᵀ with q_s = scale·q, mixed = A·v.
        let d_q = (d_logits.reshape((h, r * kk, n))?.matmul(&cache.k)? * self.attn.scale)?
            .reshape((h, r, kk, hd))?
            .permute((2, 1, 0, 3))?; // [K, R, h, hd]
        let q_rows = cache.q.narrow(1, 0, r)?; // [h, R, hd]
        let d_k = q_rows
            .t()?
            .matmul(&d_logits.reshape((h, r, kk * n))?)?
            .reshape((h, hd, kk, n))?
            .permute((2, 3, 0, 1))?; // [K, N, h, hd]
        let d_v = attention
            .t()?
            .matmul(&d_out.reshape((h, r, kk * hd))?)?
            .reshape((h, n, kk, hd))?
            .permute((2, 1, 0, 3))?; // [K, N, h, hd]
        let d_q = leading_rows(&d_q, n)?;
        let d_qkv = Tensor::stack(&[d_q, d_k, d_v], 2)?.reshape((kk, n, 3 * h * hd))?;
        let normed = d_qkv.broadcast_matmul(self.attn.qkv.weight())?; // [K, N, D]
        let input =
            (leading_rows(&mid, n)? + cache.norm1.backward(&normed, &self.norm1.weight)?)?;
        Ok((rows, Some(input)))
    }
}

impl Vit {
    /// The class-token rows of `∂(g_k·y)/∂A_l` for K cotangents `g_k` of the logits y and
    /// every block l in `from..L`, from one forward at batch 1 (blocks below `from` on the
    /// fused inference path) and one hand-written backward carrying the K cotangents.
    /// With one-hot cotangents, row k is GETAM's `∂y_{c_k}/∂A_l` (arXiv 2112.02841, Eq. 3).
    ///
    /// Nothing below block `from` is differentiated and no weight gradient is formed.
    /// A finite-difference test and the autograd probes ([`crate::GradientProbes`]) check it.
    ///
    /// # Shapes
    /// - `image`: [1, 3, H, W]; `cotangents`: [K, C], K ≥ 1, same dtype as the model.
    /// - returns [`ClassRowGradients`] with T class-token rows and N = T + gh·gw.
    ///
    /// Cost: one forward, plus O((L − from)·K·(N·D² + N²·D)) time for the backward (about
    /// K forwards of those blocks, less where only class-token rows are needed); memory
    /// O((L − from)·(N·D + h·N²) + K·(h·N² + N·D)).
    pub fn class_row_attention_gradients(
        &self,
        image: &Tensor,
        cotangents: &Tensor,
        from: usize,
    ) -> Result<ClassRowGradients> {
        let cfg = self.config();
        let (b, _, _, _) = image.dims4()?;
        if b != 1 {
            bail!("class_row_attention_gradients takes one image [1, 3, H, W], got batch {b}");
        }
        let depth = cfg.depth;
        if from >= depth {
            bail!("attention gradients from block {from} on a ViT of depth {depth}");
        }
        let c = cfg.num_classes;
        let (kk, cc) = cotangents.dims2()?;
        if c == 0 || cc != c || kk == 0 {
            bail!(
                "cotangents must be [K ≥ 1, C = {c}] on a ViT with classes, got {:?}",
                cotangents.dims()
            );
        }
        let t = cfg.class_tokens;
        let dim = cfg.embed_dim;
        let (xs, grid) = self.embed(image)?;
        let mut xs = self.blocks_until(&xs, from)?.squeeze(0)?;
        let n = xs.dim(0)?;
        let mut caches = Vec::with_capacity(depth - from);
        for block in &self.blocks[from..] {
            let (next, cache) = block.forward_cached(&xs)?;
            caches.push(cache);
            xs = next;
        }
        let final_norm = match &self.norm {
            Some(norm) => {
                let cache = NormCache::new(&xs, norm.eps)?;
                xs = cache.affine(norm)?;
                Some((norm, cache))
            }
            None => None,
        };
        let Some(logits) = self.logits(&xs.unsqueeze(0)?)? else {
            bail!("class_row_attention_gradients needs a ViT with classes");
        };
        let cotangents = cotangents.to_dtype(xs.dtype())?;

        // Cotangent of the final tokens, on their first R rows.
        let mut grad = match (cfg.global_pool, &self.head) {
            (GlobalPool::Token, Some(head)) => cotangents.matmul(head.weight())?.unsqueeze(1)?,
            (GlobalPool::Token, None) => (cotangents.narrow(1, 0, t)?.unsqueeze(2)? / dim as f64)?
                .broadcast_as((kk, t, dim))?
                .contiguous()?,
            (GlobalPool::Avg, Some(head)) => {
                let per_patch = (cotangents.matmul(head.weight())? / (n - t) as f64)?;
                per_patch
                    .unsqueeze(1)?
                    .broadcast_as((kk, n - t, dim))?
                    .pad_with_zeros(1, t, 0)?
            }
            (GlobalPool::Avg, None) => bail!("average pooling needs a head"),
        };
        if let Some((norm, cache)) = &final_norm {
            grad = cache.backward(&grad, &norm.weight)?;
        }

        let mut gradients = Vec::with_capacity(depth - from);
        for (i, block) in self.blocks[from..].iter().enumerate().rev() {
            let (rows, input) = block.backward(&caches[i], &grad, t, i > 0)?;
            gradients.push(rows);
            if let Some(input) = input {
                grad = input;
            }
        }
        gradients.reverse();
        let attention = caches
            .iter()
            .map(|cache| cache.attention.narrow(1, 0, t)?.unsqueeze(0))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClassRowGradients {
            logits,
            grid,
            layers: (from..depth).collect(),
            attention,
            gradients,
        })
    }
}

/// One-hot cotangents [K, C] (row k selects class `classes[k]`) in `dtype`.
///
/// # Shapes
/// - returns [K, C]; errors when a class is ≥ C. O(K·C).
pub fn one_hot(
    classes: &[usize],
    num_classes: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut rows = vec![0f32; classes.len() * num_classes];
    for (k, &c) in classes.iter().enumerate() {
        if c >= num_classes {
            bail!("class {c} is out of range for {num_classes} classes");
        }
        rows[k * num_classes + c] = 1.0;
    }
    Tensor::from_vec(rows, (classes.len(), num_classes), device)?.to_dtype(dtype)
}
