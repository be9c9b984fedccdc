//! timm's `VisionTransformer` forward with taps.

use candle_core::{bail, Module, Result, Tensor, Var, D};
use candle_nn::VarBuilder;

use crate::layers::{add_to_rows, linear, softmax_last_dim, LayerNorm, Linear, Mlp};
use crate::probes::GradientProbes;
use crate::{pos_embed, Config, GlobalPool, PatchPolicy};

/// Which intermediate results [`Vit::forward_tapped`] returns. Everything is off by
/// default; taps cost memory (attention maps are O(B·h·N²) per layer), not extra compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taps {
    /// Post-softmax attention `A_l`, [B, h, N, N] per layer.
    pub attention: bool,
    /// Pre-softmax logits `S_l = q·kᵀ·hd^−½`, [B, h, N, N] per layer (AReAM supervises them).
    pub pre_softmax: bool,
    /// Attention-branch output (after `proj`, before the residual), [B, N, D] per layer.
    pub branch_outputs: bool,
    /// Tokens after each block, [B, N, D] per layer.
    pub block_tokens: bool,
    /// Add gradient probes after the softmax of layers `from..depth`.
    pub probes_from: Option<usize>,
}

impl Taps {
    /// Only the post-softmax attention.
    pub fn attention() -> Self {
        Self {
            attention: true,
            ..Self::default()
        }
    }

    /// Attention plus gradient probes from layer `from` on (GETAM).
    pub fn attention_with_probes(from: usize) -> Self {
        Self {
            attention: true,
            probes_from: Some(from),
            ..Self::default()
        }
    }
}

/// What one forward pass returns. Tapped lists hold one entry per layer when asked for,
/// and are empty otherwise.
#[derive(Debug, Clone)]
pub struct VitOutput {
    /// All N = T + gh·gw tokens after the final norm (when configured), [B, N, D].
    pub tokens: Tensor,
    /// Classification logits [B, C], when the config has classes.
    pub logits: Option<Tensor>,
    /// The token grid (gh, gw).
    pub grid: (usize, usize),
    /// Post-softmax attention per layer, [B, h, N, N].
    pub attention: Vec<Tensor>,
    /// Pre-softmax attention logits per layer, [B, h, N, N].
    pub pre_softmax: Vec<Tensor>,
    /// Attention-branch outputs per layer, [B, N, D].
    pub branch_outputs: Vec<Tensor>,
    /// Tokens after each block, [B, N, D].
    pub block_tokens: Vec<Tensor>,
    /// Gradient probes (empty unless `Taps::probes_from` was set).
    pub probes: GradientProbes,
}

impl VitOutput {
    /// The T prefix (class) tokens, [B, T, D].
    pub fn class_tokens(&self, t: usize) -> Result<Tensor> {
        self.tokens.narrow(1, 0, t)
    }

    /// The gh·gw patch tokens, [B, gh·gw, D].
    pub fn patch_tokens(&self, t: usize) -> Result<Tensor> {
        let n = self.tokens.dim(1)?;
        self.tokens.narrow(1, t, n - t)
    }
}

/// Per-block taps while the forward runs.
struct BlockTaps {
    pre_softmax: Option<Tensor>,
    attention: Option<Tensor>,
    branch: Tensor,
}

/// Multi-head self-attention with a fused qkv projection (timm's `Attention`).
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub(crate) qkv: Linear,
    pub(crate) proj: Linear,
    pub(crate) num_heads: usize,
    pub(crate) scale: f64,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder<'_>) -> Result<Self> {
        let dim = cfg.embed_dim;
        Ok(Self {
            qkv: linear(dim, 3 * dim, cfg.qkv_bias, vb.pp("qkv"))?,
            proj: linear(dim, dim, true, vb.pp("proj"))?,
            num_heads: cfg.num_heads,
            scale: (cfg.head_dim() as f64).powf(-0.5),
        })
    }

    /// `xs` [B, N, D] → branch output [B, N, D] plus the taps asked for.
    fn forward(&self, xs: &Tensor, keep: (bool, bool), probe: Option<&Var>) -> Result<BlockTaps> {
        let (b, n, d) = xs.dims3()?;
        let (h, hd) = (self.num_heads, d / self.num_heads);
        let qkv = self
            .qkv
            .forward(xs)?
            .reshape((b, n, 3, h, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)? * self.scale)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let logits = q.matmul(&k.t()?)?;
        let mut attention = softmax_last_dim(&logits)?;
        if let Some(probe) = probe {
            attention = (attention + probe.as_tensor())?;
        }
        let mixed = attention.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        let branch = self.proj.forward(&mixed)?;
        let (keep_logits, keep_attention) = keep;
        Ok(BlockTaps {
            pre_softmax: keep_logits.then_some(logits),
            attention: keep_attention.then_some(attention),
            branch,
        })
    }
}

/// A pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub(crate) norm1: LayerNorm,
    pub(crate) attn: Attention,
    pub(crate) norm2: LayerNorm,
    pub(crate) mlp: Mlp,
}

impl Block {
    fn new(cfg: &Config, vb: VarBuilder<'_>) -> Result<Self> {
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            norm1: LayerNorm::new(cfg.embed_dim, eps, vb.pp("norm1"))?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            norm2: LayerNorm::new(cfg.embed_dim, eps, vb.pp("norm2"))?,
            mlp: Mlp::new(cfg.embed_dim, cfg.mlp_hidden(), vb.pp("mlp"))?,
        })
    }
}

/// timm's VisionTransformer / DeiT (and MCTformer/WeakTr's multi-class-token variant).
///
/// Built from a [`VarBuilder`] with timm's key names, so timm checkpoints load as they are.
/// See the crate docs for an example.
#[derive(Debug, Clone)]
pub struct Vit {
    cfg: Config,
    patch_weight: Tensor,
    patch_bias: Tensor,
    cls_token: Tensor,
    pos_embed: Tensor,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: Option<LayerNorm>,
    pub(crate) head: Option<Linear>,
}

impl Vit {
    /// Builds the model from `vb` (timm key names). The config is validated first.
    pub fn new(cfg: &Config, vb: VarBuilder<'_>) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let (d, p, t) = (cfg.embed_dim, cfg.patch_size, cfg.class_tokens);
        let (gh0, gw0) = cfg.stored_grid();
        let blocks = (0..cfg.depth)
            .map(|l| Block::new(cfg, vb.pp(format!("blocks.{l}"))))
            .collect::<Result<Vec<_>>>()?;
        let norm = if cfg.final_norm {
            Some(LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("norm"))?)
        } else {
            None
        };
        let head = if cfg.has_head() {
            Some(linear(d, cfg.num_classes, true, vb.pp("head"))?)
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            patch_weight: vb.get((d, 3, p, p), "patch_embed.proj.weight")?,
            patch_bias: vb.get(d, "patch_embed.proj.bias")?,
            cls_token: vb.get((1, t, d), "cls_token")?,
            pos_embed: vb.get((1, t + gh0 * gw0, d), "pos_embed")?,
            blocks,
            norm,
            head,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Patch embedding: [B, 3, H, W] → [B, gh·gw, D] (a stride-p convolution written as
    /// one matrix product over flattened patches).
    fn embed_patches(&self, images: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (b, c, h, w) = images.dims4()?;
        let p = self.cfg.patch_size;
        if c != 3 {
            bail!(
                "expected images with 3 channels [B, 3, H, W], got shape {:?}",
                images.dims()
            );
        }
        let (gh, gw) = self.cfg.token_grid(h, w);
        if gh == 0 || gw == 0 {
            bail!("image {h}x{w} is smaller than one {p}x{p} patch");
        }
        let images = match self.cfg.patch_policy {
            PatchPolicy::Floor => images.narrow(2, 0, gh * p)?.narrow(3, 0, gw * p)?,
            PatchPolicy::Pad => {
                images
                    .pad_with_zeros(2, 0, gh * p - h)?
                    .pad_with_zeros(3, 0, gw * p - w)?
            }
        };
        let patches = images
            .reshape((b, c, gh, p, gw, p))?
            .permute(vec![0, 2, 4, 1, 3, 5])?
            .contiguous()?
            .reshape((b * gh * gw, c * p * p))?;
        let d = self.cfg.embed_dim;
        let weight = self.patch_weight.reshape((d, c * p * p))?;
        // One 2-D product over all patches and a row-wise bias (their gradients are GEMMs;
        // see `layers`).
        let tokens = add_to_rows(&patches.matmul(&weight.t()?)?, &self.patch_bias)?;
        Ok((tokens.reshape((b, gh * gw, d))?, (gh, gw)))
    }

    /// Logits from the final tokens, per `global_pool` and the class-token count.
    pub(crate) fn logits(&self, tokens: &Tensor) -> Result<Option<Tensor>> {
        if self.cfg.num_classes == 0 {
            return Ok(None);
        }
        let t = self.cfg.class_tokens;
        let n = tokens.dim(1)?;
        let logits = match (self.cfg.global_pool, &self.head) {
            (GlobalPool::Token, None) => tokens.narrow(1, 0, t)?.mean(D::Minus1)?,
            (GlobalPool::Token, Some(head)) => {
                head.forward(&tokens.narrow(1, 0, 1)?.squeeze(1)?)?
            }
            (GlobalPool::Avg, Some(head)) => head.forward(&tokens.narrow(1, t, n - t)?.mean(1)?)?,
            (GlobalPool::Avg, None) => bail!("avg pooling needs a head"),
        };
        Ok(Some(logits))
    }

    /// Logits only ([B, C]); errors when the config has no classes.
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        match self.forward_tapped(images, Taps::default())?.logits {
            Some(logits) => Ok(logits),
            None => bail!("this ViT has num_classes = 0: use forward_tapped for its tokens"),
        }
    }

    /// The full forward with the intermediate results selected by `taps`.
    ///
    /// # Shapes
    /// - `images`: [B, 3, H, W] f32, normalised as the weights expect (the model does no
    ///   normalisation); sides below one patch are an error.
    /// - see [`VitOutput`] for the outputs; N = T + gh·gw with (gh, gw) from
    ///   [`Config::token_grid`].
    ///
    /// Cost: O(L·B·(N·D² + N²·D)) time; O(B·N·D) memory plus O(B·h·N²) per tapped layer.
    pub fn forward_tapped(&self, images: &Tensor, taps: Taps) -> Result<VitOutput> {
        self.forward_inner(images, taps, None)
    }

    /// [`Vit::forward_tapped`] reusing given probes instead of fresh zero ones (their
    /// layers replace `taps.probes_from`). Setting a probe to a non-zero value perturbs
    /// the attention it is added to, which is how the finite-difference tests check
    /// the probe gradients.
    pub fn forward_with_probes(
        &self,
        images: &Tensor,
        taps: Taps,
        probes: &GradientProbes,
    ) -> Result<VitOutput> {
        self.forward_inner(images, taps, Some(probes))
    }

    /// Token embedding: patches, prefix tokens and the (resampled) position embedding.
    ///
    /// # Shapes
    /// - `images`: [B, 3, H, W]; returns the tokens [B, N, D] and the grid (gh, gw).
    ///
    /// Cost: O(B·N·D·3p²) time, O(B·N·D) memory.
    pub fn embed(&self, images: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (b, _, h, w) = images.dims4()?;
        let (patches, grid) = self.embed_patches(images)?;
        let d = self.cfg.embed_dim;
        let t = self.cfg.class_tokens;
        let pos = pos_embed::resample(&self.cfg, &self.pos_embed, grid, (h, w))?;
        let cls = self.cls_token.broadcast_as((b, t, d))?;
        let xs = Tensor::cat(&[&cls, &patches], 1)?;
        let n = xs.dim(1)?;
        // The position embedding added to each image as one row of N·D (see `layers`).
        let xs = add_to_rows(&xs.reshape((b, n * d))?, &pos.reshape(n * d)?)?;
        Ok((xs.reshape((b, n, d))?, grid))
    }

    /// Runs blocks `0..until` on embedded tokens, with no taps (the shared trunk of a
    /// forward that continues with [`Vit::forward_from`]).
    ///
    /// # Shapes
    /// - `xs`: [B, N, D] from [`Vit::embed`]; returns [B, N, D].
    pub fn blocks_until(&self, xs: &Tensor, until: usize) -> Result<Tensor> {
        if until > self.blocks.len() {
            bail!(
                "blocks_until({until}) on a ViT of depth {}",
                self.blocks.len()
            );
        }
        let mut out = Self::empty_output(xs, (0, 0));
        self.run_blocks(xs.clone(), 0..until, Taps::default(), None, &mut out)
    }

    /// Continues a forward from the tokens entering block `first`: blocks `first..depth`,
    /// the final norm and the logits. Tapped lists hold entries for layers `first..depth`
    /// only; probes keep their absolute layer index (`taps.probes_from` below `first`
    /// probes from `first`).
    ///
    /// # Shapes
    /// - `xs`: [B, N, D], the tokens after block `first − 1` (or [`Vit::embed`]'s output
    ///   when `first` is 0); `grid` is (gh, gw) with N = T + gh·gw.
    ///
    /// Cost: O((L − first)·B·(N·D² + N²·D)).
    pub fn forward_from(
        &self,
        xs: &Tensor,
        grid: (usize, usize),
        first: usize,
        taps: Taps,
    ) -> Result<VitOutput> {
        if first > self.blocks.len() {
            bail!(
                "forward_from({first}) on a ViT of depth {}",
                self.blocks.len()
            );
        }
        let mut out = Self::empty_output(xs, grid);
        let xs = self.run_blocks(xs.clone(), first..self.blocks.len(), taps, None, &mut out)?;
        self.finish(xs, out)
    }

    fn empty_output(xs: &Tensor, grid: (usize, usize)) -> VitOutput {
        VitOutput {
            tokens: xs.clone(),
            logits: None,
            grid,
            attention: Vec::new(),
            pre_softmax: Vec::new(),
            branch_outputs: Vec::new(),
            block_tokens: Vec::new(),
            probes: GradientProbes::default(),
        }
    }

    fn finish(&self, mut xs: Tensor, mut out: VitOutput) -> Result<VitOutput> {
        if let Some(norm) = &self.norm {
            xs = norm.forward(&xs)?;
        }
        out.logits = self.logits(&xs)?;
        out.tokens = xs;
        Ok(out)
    }

    fn forward_inner(
        &self,
        images: &Tensor,
        taps: Taps,
        given: Option<&GradientProbes>,
    ) -> Result<VitOutput> {
        let (xs, grid) = self.embed(images)?;
        let mut out = Self::empty_output(&xs, grid);
        let xs = self.run_blocks(xs, 0..self.blocks.len(), taps, given, &mut out)?;
        self.finish(xs, out)
    }

    fn run_blocks(
        &self,
        mut xs: Tensor,
        layers: std::ops::Range<usize>,
        taps: Taps,
        given: Option<&GradientProbes>,
        out: &mut VitOutput,
    ) -> Result<Tensor> {
        let (b, n, _) = xs.dims3()?;
        for layer in layers {
            let block = &self.blocks[layer];
            let probe = match (given, taps.probes_from) {
                (Some(given), _) => {
                    let probe = given.probe(layer).cloned();
                    if let Some(var) = &probe {
                        if var.dims() != [b, self.cfg.num_heads, n, n] {
                            bail!(
                                "probe of layer {layer} has shape {:?}, attention is {:?}",
                                var.dims(),
                                (b, self.cfg.num_heads, n, n)
                            );
                        }
                        out.probes.push(layer, var.clone());
                    }
                    probe
                }
                (None, Some(from)) if layer >= from => {
                    let h = self.cfg.num_heads;
                    let var = Var::zeros((b, h, n, n), xs.dtype(), xs.device())?;
                    out.probes.push(layer, var);
                    out.probes.probe(layer).cloned()
                }
                _ => None,
            };
            let normed = block.norm1.forward(&xs)?;
            let tapped =
                block
                    .attn
                    .forward(&normed, (taps.pre_softmax, taps.attention), probe.as_ref())?;
            xs = (xs + &tapped.branch)?;
            xs = (&xs + block.mlp.forward(&block.norm2.forward(&xs)?)?)?;
            out.pre_softmax.extend(tapped.pre_softmax);
            out.attention.extend(tapped.attention);
            if taps.branch_outputs {
                out.branch_outputs.push(tapped.branch);
            }
            if taps.block_tokens {
                out.block_tokens.push(xs.clone());
            }
        }
        Ok(xs)
    }
}
