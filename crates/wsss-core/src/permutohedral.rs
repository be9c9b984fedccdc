//! The permutohedral lattice: fast high-dimensional Gaussian filtering (Adams, Baek & Davis,
//! "Fast High-Dimensional Filtering Using the Permutohedral Lattice", Eurographics 2010), in
//! Krähenbühl's variant used by `densecrf`/`pydensecrf` and by the rloss dense CRF loss.
//!
//! For N points with d-dimensional features f_i (already divided by their sigmas) and
//! values v_i ∈ R^V, [`Permutohedral::filter`] approximates the Gaussian transform
//! `u_i = Σ_j exp(−½‖f_i − f_j‖²) · v_j` (self pair included, no normalisation) by
//! **splatting** every value onto the d+1 vertices of the lattice simplex enclosing its
//! point (barycentric weights), **blurring** the lattice with the separable stencil
//! `[½, 1, ½]` along each of the d+1 lattice directions, and **slicing** back with the same
//! weights, scaled by α = 1/(1 + 2^−d). The algorithm, step by step, is the appendix of the
//! golden doc `loss.dense_crf.md`; this is a faithful port, with a hash table from vertex
//! keys to indices.
//!
//! The approximation is not exact: the lattice output is about 0.5× the exact Gaussian sum
//! on natural images (the ratio varies per point), which is why users normalise it (dense
//! CRF inference) or tuned their loss weights with it (rloss). The filter matrix
//! `W = α·Sᵀ·B_d⋯B_0·S` is symmetric up to the order of the blur steps, which do not
//! commute exactly on a sparse lattice; [`Permutohedral::filter_transposed`] applies the
//! exact transpose `α·Sᵀ·B_0⋯B_d·S`.
//!
//! Vertex keys are packed into one `u64` (coordinate ranges measured first, widened by the
//! blur steps) and hashed in a flat open-addressing table that stores the key in the slot
//! and starts cache-sized; a neighbour's key is one addition to the packed key. Keys too
//! wide for 64 bits fall back to a table of `i32` keys. Vertex numbering is the order of
//! first appearance either way, so both give the same lattice.
//!
//! # Cost
//! Building: O(N·d²) time for the coordinates plus O(N·(d+1)) hash look-ups;
//! M ≤ N·(d+1) lattice vertices (on a 500×375 photo-like image M ≈ 0.29·N for the
//! bilateral kernel, d = 5, σ_xy 83, σ_rgb 5, and 0.13·N for the Gaussian, d = 2, σ 3);
//! memory O(N·(d+1)·d) during the build, O(N·(d+1) + M·(d+1)) after. Filtering V channels:
//! O(N·(d+1)·V + M·(d+1)·V) time and O(M·V) extra memory, never an N×N matrix. Every step
//! of the filter is parallel with rayon (splat as a gather over vertices, so the result does
//! not depend on the thread count).

use candle_core::{bail, Result};
use rayon::prelude::*;

/// Rows per rayon task in the filter loops.
const CHUNK: usize = 512;
/// Largest feature magnitude: lattice coordinates stay far inside `i32`.
const MAX_FEATURE: f32 = 1e6;
/// Marks an empty hash slot.
const EMPTY: u32 = u32::MAX;

/// Open-addressing hash table from integer vertex keys (d coordinates) to dense indices.
struct HashTable {
    d: usize,
    keys: Vec<i32>,
    slots: Vec<u32>,
}

impl HashTable {
    fn with_capacity(d: usize, expected: usize) -> Self {
        let cap = (2 * expected.max(8)).next_power_of_two();
        Self {
            d,
            keys: Vec::with_capacity(expected * d),
            slots: vec![EMPTY; cap],
        }
    }

    fn len(&self) -> usize {
        self.keys.len() / self.d.max(1)
    }

    fn hash(key: &[i32]) -> usize {
        let mut h: u64 = 0;
        for &k in key {
            h = (h.wrapping_add(k as u32 as u64)).wrapping_mul(2_531_011);
        }
        (h ^ (h >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) as usize ^ (h >> 32) as usize
    }

    fn key(&self, index: usize) -> &[i32] {
        &self.keys[index * self.d..(index + 1) * self.d]
    }

    fn find(&self, key: &[i32]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut s = Self::hash(key) & mask;
        loop {
            let e = self.slots[s];
            if e == EMPTY {
                return None;
            }
            if self.key(e as usize) == key {
                return Some(e);
            }
            s = (s + 1) & mask;
        }
    }

    fn find_or_insert(&mut self, key: &[i32]) -> u32 {
        if 2 * (self.len() + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut s = Self::hash(key) & mask;
        loop {
            let e = self.slots[s];
            if e == EMPTY {
                let index = self.len() as u32;
                self.keys.extend_from_slice(key);
                self.slots[s] = index;
                return index;
            }
            if self.key(e as usize) == key {
                return e;
            }
            s = (s + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let cap = self.slots.len() * 2;
        self.slots = vec![EMPTY; cap];
        let mask = cap - 1;
        for index in 0..self.len() {
            let mut s = Self::hash(self.key(index)) & mask;
            while self.slots[s] != EMPTY {
                s = (s + 1) & mask;
            }
            self.slots[s] = index as u32;
        }
    }
}

/// Packing of integer keys into one `u64` (each coordinate offset and bit-shifted), used
/// when every coordinate range, widened by the neighbour steps, fits in 64 bits together.
/// Adding a packed delta to a packed key is then the packed sum, so a neighbour's key is
/// one addition.
struct KeyPacking {
    shift: Vec<u32>,
    offset: Vec<i64>,
}

impl KeyPacking {
    /// The packing of `keys` (flat, d per key), with room for steps of ±`margin`; `None`
    /// when the widened ranges need more than 64 bits.
    fn new(keys: &[i32], d: usize, margin: i64) -> Option<Self> {
        let (lo, hi) = keys
            .par_chunks(CHUNK * d)
            .map(|chunk| {
                let mut lo = vec![i32::MAX; d];
                let mut hi = vec![i32::MIN; d];
                for key in chunk.chunks_exact(d) {
                    for i in 0..d {
                        lo[i] = lo[i].min(key[i]);
                        hi[i] = hi[i].max(key[i]);
                    }
                }
                (lo, hi)
            })
            .reduce(
                || (vec![i32::MAX; d], vec![i32::MIN; d]),
                |(mut lo, mut hi), (l, h)| {
                    for i in 0..d {
                        lo[i] = lo[i].min(l[i]);
                        hi[i] = hi[i].max(h[i]);
                    }
                    (lo, hi)
                },
            );
        let mut shift = Vec::with_capacity(d);
        let mut offset = Vec::with_capacity(d);
        let mut used = 0u32;
        for i in 0..d {
            let range = (hi[i] as i64 - lo[i] as i64 + 2 * margin + 1).max(1) as u64;
            let bits = 64 - (range - 1).leading_zeros().min(63);
            shift.push(used);
            offset.push(margin - lo[i] as i64);
            used += bits.max(1);
            if used > 64 {
                return None;
            }
        }
        Some(Self { shift, offset })
    }

    fn pack(&self, key: &[i32]) -> u64 {
        let mut packed = 0u64;
        for ((&k, &s), &o) in key.iter().zip(&self.shift).zip(&self.offset) {
            packed |= ((k as i64 + o) as u64) << s;
        }
        packed
    }

    /// The packed form of adding `delta` (one value per coordinate) to any key.
    fn delta(&self, delta: &[i64]) -> u64 {
        delta
            .iter()
            .zip(&self.shift)
            .fold(0u64, |acc, (&v, &s)| acc.wrapping_add((v as u64) << s))
    }
}

/// Open-addressing table from packed keys to dense indices (insertion order), with the
/// key stored in the slot so a probe touches one cache line.
struct PackedTable {
    slots: Vec<(u64, u32)>,
    bits: u32,
    len: usize,
}

impl PackedTable {
    fn with_capacity(expected: usize) -> Self {
        let cap = (2 * expected.max(8)).next_power_of_two();
        Self {
            slots: vec![(0, EMPTY); cap],
            bits: cap.trailing_zeros(),
            len: 0,
        }
    }

    #[inline]
    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    fn find_or_insert(&mut self, key: u64) -> u32 {
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut s = self.slot(key);
        loop {
            let (k, e) = self.slots[s];
            if e == EMPTY {
                let index = self.len as u32;
                self.slots[s] = (key, index);
                self.len += 1;
                return index;
            }
            if k == key {
                return e;
            }
            s = (s + 1) & mask;
        }
    }

    #[inline]
    fn find(&self, key: u64) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut s = self.slot(key);
        loop {
            let (k, e) = self.slots[s];
            if e == EMPTY {
                return None;
            }
            if k == key {
                return Some(e);
            }
            s = (s + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        self.slots = vec![(0, EMPTY); old.len() * 2];
        self.bits += 1;
        let mask = self.slots.len() - 1;
        for (k, e) in old.into_iter().filter(|&(_, e)| e != EMPTY) {
            let mut s = self.slot(k);
            while self.slots[s].1 != EMPTY {
                s = (s + 1) & mask;
            }
            self.slots[s] = (k, e);
        }
    }
}

/// Per-point lattice coordinates: the d+1 vertex keys (d coordinates each) and the
/// barycentric weights, written into `keys` (len (d+1)·d) and `weights` (len d+1).
/// Follows densecrf's `Permutohedral::init` in f32, step by step.
fn embed_point(f: &[f32], scale: &[f32], canonical: &[i32], keys: &mut [i32], weights: &mut [f32]) {
    let d = f.len();
    let d1 = d + 1;
    // Small fixed buffers cover the usual d ≤ 15; larger d falls back to the heap.
    let mut stack = [0f32; 3 * 16 + 1];
    let mut heap;
    let buf: &mut [f32] = if 3 * d1 < stack.len() {
        &mut stack[..3 * d1 + 1]
    } else {
        heap = vec![0f32; 3 * d1 + 1];
        &mut heap
    };
    let (elevated, rest) = buf.split_at_mut(d1);
    let (rem0, bary) = rest.split_at_mut(d1);
    let mut rank_stack = [0i32; 16];
    let mut rank_heap;
    let rank: &mut [i32] = if d1 <= rank_stack.len() {
        &mut rank_stack[..d1]
    } else {
        rank_heap = vec![0i32; d1];
        &mut rank_heap
    };

    // Elevate onto the hyperplane Σ e = 0 (p. 5 of Adams et al.).
    let mut sm = 0f32;
    for j in (1..=d).rev() {
        let cf = f[j - 1] * scale[j - 1];
        elevated[j] = sm - j as f32 * cf;
        sm += cf;
    }
    elevated[0] = sm;

    // Nearest remainder-0 lattice point by rounding each coordinate.
    let down_factor = 1.0f32 / d1 as f32;
    let up_factor = d1 as f32;
    let mut sum = 0i32;
    for i in 0..d1 {
        let v = down_factor * elevated[i];
        // floor/ceil through an integer truncation: the same values as `f32::floor`/`ceil`
        // in range, without a libm call per coordinate (no SSE4.1 `roundps` by default).
        let t = v as i32 as f32;
        let floor = if t > v { t - 1.0 } else { t };
        let ceil = if floor < v { floor + 1.0 } else { floor };
        let up = ceil * up_factor;
        let down = floor * up_factor;
        let r = if up - elevated[i] < elevated[i] - down {
            up
        } else {
            down
        };
        rem0[i] = r;
        sum += r as i32 / d1 as i32;
    }

    // Rank of each coordinate's remainder (which simplex we are in).
    rank.fill(0);
    for i in 0..d {
        let di = elevated[i] - rem0[i];
        for j in i + 1..d1 {
            if di < elevated[j] - rem0[j] {
                rank[i] += 1;
            } else {
                rank[j] += 1;
            }
        }
    }
    // Bring the point back onto the plane when the rounded point left it.
    for i in 0..d1 {
        rank[i] += sum;
        if rank[i] < 0 {
            rank[i] += d1 as i32;
            rem0[i] += d1 as f32;
        } else if rank[i] > d as i32 {
            rank[i] -= d1 as i32;
            rem0[i] -= d1 as f32;
        }
    }

    // Barycentric coordinates (p. 10 of Adams et al.).
    bary.fill(0.0);
    for i in 0..d1 {
        let v = (elevated[i] - rem0[i]) * down_factor;
        let r = rank[i] as usize;
        bary[d - r] += v;
        bary[d - r + 1] -= v;
    }
    bary[0] += 1.0 + bary[d1];

    for q in 0..d1 {
        for i in 0..d {
            keys[q * d + i] = rem0[i] as i32 + canonical[q * d1 + rank[i] as usize];
        }
        weights[q] = bary[q];
    }
}

/// A permutohedral lattice built from N points with d-dimensional features.
///
/// ```
/// use wsss_core::permutohedral::Permutohedral;
/// // Four points on a line, one feature each (positions / sigma).
/// let lattice = Permutohedral::new(&[0.0, 0.5, 1.0, 10.0], 1)?;
/// let mut out = vec![0f32; 4];
/// lattice.filter(&[1.0, 1.0, 1.0, 1.0], 1, &mut out)?;
/// // The far point only sees itself; the close ones see each other.
/// assert!(out[1] > out[3]);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Permutohedral {
    n: usize,
    d: usize,
    m: usize,
    /// Vertex index of each (point, simplex corner), N·(d+1).
    offsets: Vec<u32>,
    /// Barycentric weight of each (point, simplex corner), N·(d+1).
    weights: Vec<f32>,
    /// For direction j and vertex i: the two neighbours (index `m` = missing), (d+1)·M.
    neighbours: Vec<[u32; 2]>,
    /// Gather form of the splat: the (point, weight) pairs of vertex v are
    /// `splat_entries[splat_start[v]..splat_start[v + 1]]`, in point order.
    splat_start: Vec<u32>,
    splat_entries: Vec<(u32, f32)>,
}

impl Permutohedral {
    /// Builds the lattice of `features`, point-major: point i has the d features
    /// `features[i*d..(i+1)*d]`, already divided by their standard deviations.
    ///
    /// # Shapes
    /// - `features`: [N, d] f32, finite.
    ///
    /// # Cost
    /// O(N·d²) time plus O(N·(d+1)) hash operations; O(N·(d+1)·d) memory.
    pub fn new(features: &[f32], d: usize) -> Result<Self> {
        if d == 0 {
            bail!("permutohedral lattice: the feature dimension must be at least 1");
        }
        if !features.len().is_multiple_of(d) {
            bail!(
                "permutohedral lattice: {} feature values are not a multiple of d = {d}",
                features.len()
            );
        }
        if features
            .iter()
            .any(|v| !v.is_finite() || v.abs() > MAX_FEATURE)
        {
            bail!(
                "permutohedral lattice: features must be finite and within ±{MAX_FEATURE:e} \
                 (values divided by their sigmas)"
            );
        }
        let n = features.len() / d;
        if n >= u32::MAX as usize / (d + 1) {
            bail!("permutohedral lattice: too many points ({n})");
        }
        let d1 = d + 1;

        let (keys, weights) = Self::embed_all(features, d);
        let (offsets, m, neighbours) = match KeyPacking::new(&keys, d, d as i64) {
            Some(packing) => Self::index_packed(&keys, d, n, &packing),
            None => Self::index_general(&keys, d, n),
        };
        drop(keys);

        // Counting sort of (point, weight) by vertex for the gather splat.
        let mut splat_start = vec![0u32; m + 1];
        for &o in &offsets {
            splat_start[o as usize + 1] += 1;
        }
        for v in 0..m {
            splat_start[v + 1] += splat_start[v];
        }
        let mut fill: Vec<u32> = splat_start[..m].to_vec();
        let mut splat_entries = vec![(0u32, 0f32); offsets.len()];
        for (e, (&o, &w)) in offsets.iter().zip(&weights).enumerate() {
            let slot = &mut fill[o as usize];
            splat_entries[*slot as usize] = ((e / d1) as u32, w);
            *slot += 1;
        }

        Ok(Self {
            n,
            d,
            m,
            offsets,
            weights,
            neighbours,
            splat_start,
            splat_entries,
        })
    }

    /// The d+1 vertex keys (d coordinates each) and barycentric weights of every point.
    fn embed_all(features: &[f32], d: usize) -> (Vec<i32>, Vec<f32>) {
        let n = features.len() / d;
        let d1 = d + 1;
        // Canonical simplex and scale factors, as densecrf computes them.
        let mut canonical = vec![0i32; d1 * d1];
        for i in 0..d1 {
            for j in 0..d1 {
                canonical[i * d1 + j] = if j <= d - i {
                    i as i32
                } else {
                    i as i32 - d1 as i32
                };
            }
        }
        let inv_std_dev = ((2.0f64 / 3.0).sqrt() * d1 as f64) as f32;
        let scale: Vec<f32> = (0..d)
            .map(|i| (1.0 / (((i + 2) * (i + 1)) as f64).sqrt()) as f32 * inv_std_dev)
            .collect();

        // Coordinates of every point in parallel, then sequential hashing.
        let mut keys = vec![0i32; n * d1 * d];
        let mut weights = vec![0f32; n * d1];
        keys.par_chunks_mut(CHUNK * d1 * d)
            .zip(weights.par_chunks_mut(CHUNK * d1))
            .enumerate()
            .for_each(|(c, (keys, weights))| {
                let first = c * CHUNK;
                for (p, (k, w)) in keys
                    .chunks_exact_mut(d1 * d)
                    .zip(weights.chunks_exact_mut(d1))
                    .enumerate()
                {
                    let i = first + p;
                    embed_point(&features[i * d..(i + 1) * d], &scale, &canonical, k, w);
                }
            });
        (keys, weights)
    }

    /// Vertex indices (insertion order) and blur neighbours with packed `u64` keys.
    fn index_packed(
        keys: &[i32],
        d: usize,
        n: usize,
        packing: &KeyPacking,
    ) -> (Vec<u32>, usize, Vec<[u32; 2]>) {
        let d1 = d + 1;
        let mut packed = vec![0u64; keys.len() / d];
        packed
            .par_chunks_mut(CHUNK)
            .zip(keys.par_chunks(CHUNK * d))
            .for_each(|(p, k)| {
                for (p, key) in p.iter_mut().zip(k.chunks_exact(d)) {
                    *p = packing.pack(key);
                }
            });
        // Start small (M is usually well below N) so the table stays in cache; it grows.
        let mut table = PackedTable::with_capacity((n / 8).max(1024));
        let offsets: Vec<u32> = packed.iter().map(|&k| table.find_or_insert(k)).collect();
        let m = table.len;
        let mut vertex_keys = vec![0u64; m];
        for (&o, &k) in offsets.iter().zip(&packed) {
            vertex_keys[o as usize] = k;
        }
        drop(packed);
        // Direction j: n1 = key − 1 everywhere except key_j + d, n2 the opposite.
        let steps: Vec<(u64, u64)> = (0..d1)
            .map(|j| {
                let minus: Vec<i64> = (0..d).map(|k| if k == j { d as i64 } else { -1 }).collect();
                let plus: Vec<i64> = minus.iter().map(|v| -v).collect();
                (packing.delta(&minus), packing.delta(&plus))
            })
            .collect();
        let mut neighbours = vec![[m as u32; 2]; d1 * m];
        neighbours
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (o, slot) in chunk.iter_mut().enumerate() {
                    let flat = c * CHUNK + o;
                    let (j, i) = (flat / m, flat % m);
                    let key = vertex_keys[i];
                    let (a, b) = steps[j];
                    *slot = [
                        table.find(key.wrapping_add(a)).unwrap_or(m as u32),
                        table.find(key.wrapping_add(b)).unwrap_or(m as u32),
                    ];
                }
            });
        (offsets, m, neighbours)
    }

    /// As [`Self::index_packed`] for keys too wide to pack (very large d or coordinates).
    fn index_general(keys: &[i32], d: usize, n: usize) -> (Vec<u32>, usize, Vec<[u32; 2]>) {
        let d1 = d + 1;
        let mut table = HashTable::with_capacity(d, n.max(1));
        let offsets: Vec<u32> = keys
            .chunks_exact(d)
            .map(|key| table.find_or_insert(key))
            .collect();
        let m = table.len();
        let mut neighbours = vec![[m as u32; 2]; d1 * m];
        neighbours
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                let mut n1 = vec![0i32; d];
                let mut n2 = vec![0i32; d];
                for (o, slot) in chunk.iter_mut().enumerate() {
                    let flat = c * CHUNK + o;
                    let (j, i) = (flat / m, flat % m);
                    let key = table.key(i);
                    for k in 0..d {
                        n1[k] = key[k] - 1;
                        n2[k] = key[k] + 1;
                    }
                    if j < d {
                        n1[j] = key[j] + d as i32;
                        n2[j] = key[j] - d as i32;
                    }
                    *slot = [
                        table.find(&n1).unwrap_or(m as u32),
                        table.find(&n2).unwrap_or(m as u32),
                    ];
                }
            });
        (offsets, m, neighbours)
    }

    /// Number of points N.
    pub fn num_points(&self) -> usize {
        self.n
    }

    /// Feature dimension d.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Number of lattice vertices M (at most N·(d+1)).
    pub fn num_vertices(&self) -> usize {
        self.m
    }

    /// Approximate Gaussian filter: `output_i ≈ Σ_j exp(−½‖f_i − f_j‖²) · input_j` over all
    /// points j (self included), for `channels` value channels, point-major.
    ///
    /// # Shapes
    /// - `input`: [N, V] f32 (point i's V values contiguous).
    /// - `output`: [N, V] f32, overwritten.
    ///
    /// # Cost
    /// O((N + M)·(d+1)·V) time, O(M·V) extra memory.
    pub fn filter(&self, input: &[f32], channels: usize, output: &mut [f32]) -> Result<()> {
        self.compute(input, channels, output, false)
    }

    /// The exact transpose of [`Permutohedral::filter`] (blur directions in reverse order):
    /// `⟨a, filter(b)⟩ = ⟨filter_transposed(a), b⟩`.
    ///
    /// # Shapes
    /// As [`Permutohedral::filter`].
    pub fn filter_transposed(
        &self,
        input: &[f32],
        channels: usize,
        output: &mut [f32],
    ) -> Result<()> {
        self.compute(input, channels, output, true)
    }

    /// [`Permutohedral::filter`] reusing the lattice buffers of `scratch` between calls
    /// (iterative callers such as mean-field inference avoid re-allocating O(M·V) memory).
    ///
    /// # Shapes
    /// As [`Permutohedral::filter`].
    pub fn filter_with(
        &self,
        input: &[f32],
        channels: usize,
        output: &mut [f32],
        scratch: &mut FilterScratch,
    ) -> Result<()> {
        self.compute_with(input, channels, output, false, scratch)
    }

    /// `output += filter(input)`, reusing `scratch`: lets a caller sum several filters
    /// (mean-field messages) without an intermediate buffer.
    ///
    /// # Shapes
    /// As [`Permutohedral::filter`]; `output` is added to, not overwritten.
    pub fn filter_accumulate_with(
        &self,
        input: &[f32],
        channels: usize,
        output: &mut [f32],
        scratch: &mut FilterScratch,
    ) -> Result<()> {
        self.run(input, channels, output, false, true, scratch)
    }

    /// The lattice of `diag(output_scale) · W · diag(input_scale)`: the splat weights of
    /// point i are multiplied by `input_scale[i]` and its slice weights by
    /// `output_scale[i]`, so a symmetric normalisation `D^−½ W D^−½` (or a Potts weight)
    /// costs nothing per filter call. [`Permutohedral::filter_transposed`] of the result
    /// applies `diag(output_scale) · Wᵀ · diag(input_scale)`.
    ///
    /// # Shapes
    /// - `input_scale`, `output_scale`: [N].
    ///
    /// # Cost
    /// O(N·(d+1)) time, a copy of the lattice in memory.
    pub fn scaled(&self, input_scale: &[f32], output_scale: &[f32]) -> Result<Self> {
        if input_scale.len() != self.n || output_scale.len() != self.n {
            bail!(
                "permutohedral scaling: expected {} scales, got {} and {}",
                self.n,
                input_scale.len(),
                output_scale.len()
            );
        }
        let mut out = self.clone();
        let d1 = self.d + 1;
        out.splat_entries
            .par_iter_mut()
            .for_each(|(p, w)| *w *= input_scale[*p as usize]);
        out.weights
            .par_chunks_mut(d1)
            .zip(output_scale.par_iter())
            .for_each(|(w, &s)| w.iter_mut().for_each(|w| *w *= s));
        Ok(out)
    }

    fn compute(&self, input: &[f32], vs: usize, output: &mut [f32], reverse: bool) -> Result<()> {
        self.compute_with(input, vs, output, reverse, &mut FilterScratch::default())
    }

    fn compute_with(
        &self,
        input: &[f32],
        vs: usize,
        output: &mut [f32],
        reverse: bool,
        buffers: &mut FilterScratch,
    ) -> Result<()> {
        self.run(input, vs, output, reverse, false, buffers)
    }

    fn run(
        &self,
        input: &[f32],
        vs: usize,
        output: &mut [f32],
        reverse: bool,
        accumulate: bool,
        buffers: &mut FilterScratch,
    ) -> Result<()> {
        if vs == 0 {
            bail!("permutohedral filter: at least one value channel is needed");
        }
        if input.len() != self.n * vs || output.len() != self.n * vs {
            bail!(
                "permutohedral filter: expected {} x {vs} values in and out, got {} and {}",
                self.n,
                input.len(),
                output.len()
            );
        }
        let (m, d1) = (self.m, self.d + 1);
        // Row m is the zero row standing for missing neighbours; every other row is
        // overwritten by the splat and each blur step.
        let FilterScratch { values, scratch } = buffers;
        for buf in [&mut *values, &mut *scratch] {
            buf.resize((m + 1) * vs, 0.0);
            buf[m * vs..].fill(0.0);
        }

        // Splat (gather over each vertex's points).
        values[..m * vs]
            .par_chunks_mut(CHUNK * vs)
            .enumerate()
            .for_each(|(c, rows)| {
                for (r, row) in rows.chunks_exact_mut(vs).enumerate() {
                    let v = c * CHUNK + r;
                    row.fill(0.0);
                    let (a, b) = (
                        self.splat_start[v] as usize,
                        self.splat_start[v + 1] as usize,
                    );
                    for &(p, w) in &self.splat_entries[a..b] {
                        let src = &input[p as usize * vs..(p as usize + 1) * vs];
                        for (o, &x) in row.iter_mut().zip(src) {
                            *o += w * x;
                        }
                    }
                }
            });

        // Blur along each direction: new = old + ½ (n1 + n2).
        for step in 0..d1 {
            let j = if reverse { d1 - 1 - step } else { step };
            let dir = &self.neighbours[j * m..(j + 1) * m];
            let old = &*values;
            scratch[..m * vs]
                .par_chunks_mut(CHUNK * vs)
                .enumerate()
                .for_each(|(c, rows)| {
                    for (r, row) in rows.chunks_exact_mut(vs).enumerate() {
                        let v = c * CHUNK + r;
                        let [n1, n2] = dir[v];
                        let own = &old[v * vs..(v + 1) * vs];
                        let a = &old[n1 as usize * vs..(n1 as usize + 1) * vs];
                        let b = &old[n2 as usize * vs..(n2 as usize + 1) * vs];
                        for (((o, &x), &y), &z) in row.iter_mut().zip(own).zip(a).zip(b) {
                            *o = x + 0.5 * (y + z);
                        }
                    }
                });
            std::mem::swap(values, scratch);
        }

        // Slice with the magic scale α = 1/(1 + 2^−d).
        let alpha = 1.0f32 / (1.0 + 2f32.powi(-(self.d as i32)));
        output
            .par_chunks_mut(CHUNK * vs)
            .enumerate()
            .for_each(|(c, rows)| {
                for (r, row) in rows.chunks_exact_mut(vs).enumerate() {
                    let p = c * CHUNK + r;
                    if !accumulate {
                        row.fill(0.0);
                    }
                    for q in 0..d1 {
                        let o = self.offsets[p * d1 + q] as usize;
                        let w = self.weights[p * d1 + q] * alpha;
                        let src = &values[o * vs..(o + 1) * vs];
                        for (out, &x) in row.iter_mut().zip(src) {
                            *out += w * x;
                        }
                    }
                }
            });
        Ok(())
    }
}

/// Reusable buffers of [`Permutohedral::filter_with`] (two lattice value arrays).
#[derive(Debug, Clone, Default)]
pub struct FilterScratch {
    values: Vec<f32>,
    scratch: Vec<f32>,
}

/// Which implementation computes the Gaussian filter `u_i = Σ_j exp(−½‖f_i − f_j‖²) v_j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FilterKind {
    /// Krähenbühl's permutohedral lattice ([`Permutohedral`]): O(N·d·V), approximate
    /// (about 0.5× the exact sum), what pydensecrf and rloss compute.
    #[default]
    Permutohedral,
    /// Brute force over all pairs: O(N²·(d+V)) time, O(N·V) memory, exact (accumulated in
    /// f64). For small inputs and references only.
    Exact,
}

impl std::str::FromStr for FilterKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "permutohedral" => Ok(FilterKind::Permutohedral),
            "exact" => Ok(FilterKind::Exact),
            other => Err(format!(
                "unknown filter `{other}`: expected `permutohedral` or `exact`"
            )),
        }
    }
}

/// A Gaussian filter over fixed point features, lattice or exact.
#[derive(Debug, Clone)]
pub enum GaussianFilter {
    /// The permutohedral approximation.
    Permutohedral(Permutohedral),
    /// Brute force over the stored point-major features of dimension `d`.
    Exact {
        /// [N, d] features.
        features: Vec<f32>,
        /// Feature dimension.
        d: usize,
    },
}

impl GaussianFilter {
    /// Prepares the filter of `features` ([N, d], point-major, divided by their sigmas).
    ///
    /// # Shapes
    /// - `features`: [N, d] f32.
    ///
    /// # Cost
    /// Lattice: see [`Permutohedral::new`]; exact: O(N·d) (a copy).
    pub fn new(features: &[f32], d: usize, kind: FilterKind) -> Result<Self> {
        match kind {
            FilterKind::Permutohedral => Ok(Self::Permutohedral(Permutohedral::new(features, d)?)),
            FilterKind::Exact => {
                if d == 0 || !features.len().is_multiple_of(d) {
                    bail!(
                        "exact Gaussian filter: {} feature values do not form points of d = {d}",
                        features.len()
                    );
                }
                Ok(Self::Exact {
                    features: features.to_vec(),
                    d,
                })
            }
        }
    }

    /// Number of points N.
    pub fn num_points(&self) -> usize {
        match self {
            Self::Permutohedral(l) => l.num_points(),
            Self::Exact { features, d } => features.len() / d,
        }
    }

    /// `output_i = Σ_j k(f_i, f_j) · input_j` (self pair included).
    ///
    /// # Shapes
    /// - `input`, `output`: [N, V] f32, point-major.
    ///
    /// # Cost
    /// Lattice O((N + M)·(d+1)·V); exact O(N²·(d+V)) time, O(V) extra memory per thread.
    pub fn filter(&self, input: &[f32], channels: usize, output: &mut [f32]) -> Result<()> {
        self.filter_with(input, channels, output, &mut FilterScratch::default())
    }

    /// [`GaussianFilter::filter`] reusing `scratch` (lattice only).
    ///
    /// # Shapes
    /// As [`GaussianFilter::filter`].
    pub fn filter_with(
        &self,
        input: &[f32],
        channels: usize,
        output: &mut [f32],
        scratch: &mut FilterScratch,
    ) -> Result<()> {
        match self {
            Self::Permutohedral(l) => l.filter_with(input, channels, output, scratch),
            Self::Exact { features, d } => {
                exact_gaussian_filter(features, *d, input, channels, output)
            }
        }
    }
}

/// Brute-force Gaussian filter `output_i = Σ_j exp(−½‖f_i − f_j‖²) · input_j`, accumulated
/// in f64, rows in parallel.
///
/// # Shapes
/// - `features`: [N, d]; `input`, `output`: [N, V], point-major f32.
///
/// # Cost
/// O(N²·(d+V)) time, O(V) extra memory per thread.
pub fn exact_gaussian_filter(
    features: &[f32],
    d: usize,
    input: &[f32],
    channels: usize,
    output: &mut [f32],
) -> Result<()> {
    let vs = channels;
    if d == 0 || !features.len().is_multiple_of(d) {
        bail!("exact Gaussian filter: bad feature layout (d = {d})");
    }
    let n = features.len() / d;
    if vs == 0 || input.len() != n * vs || output.len() != n * vs {
        bail!(
            "exact Gaussian filter: expected {n} x {vs} values in and out, got {} and {}",
            input.len(),
            output.len()
        );
    }
    output.par_chunks_mut(vs).enumerate().for_each_init(
        || vec![0f64; vs],
        |acc, (i, row)| {
            acc.fill(0.0);
            let fi = &features[i * d..(i + 1) * d];
            for j in 0..n {
                let fj = &features[j * d..(j + 1) * d];
                let dist: f64 = fi
                    .iter()
                    .zip(fj)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum();
                let k = (-0.5 * dist).exp();
                for (a, &x) in acc.iter_mut().zip(&input[j * vs..(j + 1) * vs]) {
                    *a += k * x as f64;
                }
            }
            for (o, a) in row.iter_mut().zip(acc.iter()) {
                *o = *a as f32;
            }
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Tiny deterministic generator for test inputs.
    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*seed >> 40) as f32) / (1u64 << 24) as f32
    }

    /// Features of an h×w image: (x/sxy, y/sxy, c/srgb) with a smooth two-region colour.
    fn image_features(h: usize, w: usize, sxy: f32, srgb: f32) -> Vec<f32> {
        let mut f = Vec::with_capacity(h * w * 5);
        for y in 0..h {
            for x in 0..w {
                let r = if x + y < (h + w) / 2 { 40.0 } else { 200.0 };
                let g = 100.0 + 3.0 * x as f32;
                let b = 50.0 + 2.0 * y as f32;
                f.extend_from_slice(&[
                    x as f32 / sxy,
                    y as f32 / sxy,
                    r / srgb,
                    g / srgb,
                    b / srgb,
                ]);
            }
        }
        f
    }

    fn brute_force(features: &[f32], d: usize, input: &[f32], vs: usize) -> Vec<f32> {
        let mut out = vec![0f32; input.len()];
        exact_gaussian_filter(features, d, input, vs, &mut out).unwrap();
        out
    }

    #[test]
    fn exact_filter_matches_a_hand_computed_case() {
        // Two 1-d points at distance 1: k = exp(-1/2).
        let mut out = vec![0f32; 2];
        exact_gaussian_filter(&[0.0, 1.0], 1, &[1.0, 2.0], 1, &mut out).unwrap();
        let k = (-0.5f32).exp();
        assert!((out[0] - (1.0 + 2.0 * k)).abs() < 1e-6);
        assert!((out[1] - (k + 2.0)).abs() < 1e-6);
        assert!(exact_gaussian_filter(&[0.0, 1.0], 1, &[1.0], 1, &mut out).is_err());
        let g = GaussianFilter::new(&[0.0, 1.0], 1, FilterKind::Exact).unwrap();
        assert_eq!(g.num_points(), 2);
        assert_eq!("exact".parse::<FilterKind>().unwrap(), FilterKind::Exact);
        assert!("gauss".parse::<FilterKind>().is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Permutohedral::new(&[0.0; 5], 0).is_err());
        assert!(Permutohedral::new(&[0.0; 5], 2).is_err());
        assert!(Permutohedral::new(&[0.0, f32::NAN], 2).is_err());
        let lattice = Permutohedral::new(&[0.0; 6], 2).unwrap();
        let mut out = vec![0f32; 3];
        assert!(lattice.filter(&[1.0; 4], 1, &mut out).is_err());
        assert!(lattice.filter(&[1.0; 3], 0, &mut out).is_err());
    }

    #[test]
    fn single_point_is_identity_up_to_alpha_and_blur() {
        // One point: splat to d+1 vertices, blur (no neighbours), slice back. The result is
        // alpha * Σ b_q² (each vertex only sees itself), strictly between 0 and 1.
        let lattice = Permutohedral::new(&[0.3, -1.2], 2).unwrap();
        let mut out = vec![0f32; 1];
        lattice.filter(&[1.0], 1, &mut out).unwrap();
        assert!(out[0] > 0.0 && out[0] <= 1.0, "{}", out[0]);
        assert_eq!(lattice.num_vertices(), 3);
    }

    #[test]
    fn approximates_the_dense_gaussian() {
        let (h, w) = (12, 14);
        let f = image_features(h, w, 4.0, 30.0);
        let n = h * w;
        let mut seed = 7;
        let vs = 3;
        let input: Vec<f32> = (0..n * vs).map(|_| lcg(&mut seed)).collect();
        let lattice = Permutohedral::new(&f, 5).unwrap();
        let mut got = vec![0f32; n * vs];
        lattice.filter(&input, vs, &mut got).unwrap();
        let want = brute_force(&f, 5, &input, vs);
        // Krähenbühl's lattice returns about half the exact sum; after normalising both by
        // the filtered ones (as dense CRF inference does) they agree closely.
        let ones = vec![1f32; n];
        let mut norm_got = vec![0f32; n];
        lattice.filter(&ones, 1, &mut norm_got).unwrap();
        let norm_want = brute_force(&f, 5, &ones, 1);
        let ratio: f32 = got.iter().sum::<f32>() / want.iter().sum::<f32>();
        assert!((0.3..0.9).contains(&ratio), "global ratio {ratio}");
        let mut worst = 0f32;
        let mut mean = 0f32;
        for i in 0..n {
            for v in 0..vs {
                let a = got[i * vs + v] / norm_got[i];
                let b = want[i * vs + v] / norm_want[i];
                worst = worst.max((a - b).abs());
                mean += (a - b).abs();
            }
        }
        mean /= (n * vs) as f32;
        // The inputs are uniform in [0, 1): a blind average would be off by ~0.25.
        assert!(mean < 0.03, "mean normalised error {mean}");
        assert!(worst < 0.15, "worst normalised error {worst}");
        // Pearson correlation of the unnormalised outputs.
        let corr = {
            let (ma, mb) = (
                got.iter().sum::<f32>() / got.len() as f32,
                want.iter().sum::<f32>() / want.len() as f32,
            );
            let (mut sab, mut saa, mut sbb) = (0f32, 0f32, 0f32);
            for (a, b) in got.iter().zip(&want) {
                sab += (a - ma) * (b - mb);
                saa += (a - ma).powi(2);
                sbb += (b - mb).powi(2);
            }
            sab / (saa * sbb).sqrt()
        };
        assert!(corr > 0.95, "correlation {corr}");
    }

    #[test]
    fn transposed_filter_is_the_adjoint() {
        let f = image_features(9, 11, 2.0, 20.0);
        let n = 99;
        let lattice = Permutohedral::new(&f, 5).unwrap();
        let mut seed = 3;
        let a: Vec<f32> = (0..n * 2).map(|_| lcg(&mut seed) - 0.5).collect();
        let b: Vec<f32> = (0..n * 2).map(|_| lcg(&mut seed) - 0.5).collect();
        let mut wb = vec![0f32; n * 2];
        let mut wta = vec![0f32; n * 2];
        lattice.filter(&b, 2, &mut wb).unwrap();
        lattice.filter_transposed(&a, 2, &mut wta).unwrap();
        let lhs: f64 = a.iter().zip(&wb).map(|(x, y)| (*x * *y) as f64).sum();
        let rhs: f64 = wta.iter().zip(&b).map(|(x, y)| (*x * *y) as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn filter_is_nearly_symmetric_on_images() {
        // W = α Sᵀ B_d⋯B_0 S is symmetric up to the blur order, which matters only where
        // the lattice is sparse; on image features the asymmetry is small.
        let f = image_features(16, 20, 3.0, 15.0);
        let n = 320;
        let lattice = Permutohedral::new(&f, 5).unwrap();
        let mut seed = 5;
        for _ in 0..4 {
            let a: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let (mut wa, mut wb) = (vec![0f32; n], vec![0f32; n]);
            lattice.filter(&a, 1, &mut wa).unwrap();
            lattice.filter(&b, 1, &mut wb).unwrap();
            let lhs: f32 = a.iter().zip(&wb).map(|(x, y)| x * y).sum();
            let rhs: f32 = wa.iter().zip(&b).map(|(x, y)| x * y).sum();
            // Measured: about 1.2 % here.
            assert!((lhs - rhs).abs() <= 0.03 * lhs.abs(), "{lhs} vs {rhs}");
        }
    }

    #[test]
    fn packed_and_general_indexing_agree() {
        for (d, features) in [
            (5, image_features(9, 11, 3.0, 0.2)),
            (2, image_features(9, 11, 0.7, 1.0)[..9 * 11 * 2].to_vec()),
            (3, {
                let mut seed = 5u64;
                (0..40 * 3).map(|_| 4.0 * lcg(&mut seed)).collect()
            }),
        ] {
            let n = features.len() / d;
            let (keys, _) = Permutohedral::embed_all(&features, d);
            let packing = KeyPacking::new(&keys, d, d as i64).unwrap();
            let packed = Permutohedral::index_packed(&keys, d, n, &packing);
            let general = Permutohedral::index_general(&keys, d, n);
            assert_eq!(packed, general, "d = {d}");
            assert!(packed.2.iter().flatten().any(|&v| (v as usize) < packed.1));
        }
        // Coordinates too wide for 64 bits fall back to the general table.
        let wide = [0i32, 0, 0, 0, 1 << 30, -(1 << 30), 5, 5];
        assert!(KeyPacking::new(&wide, 4, 4).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// A constant input stays constant after normalisation by the filtered ones.
        #[test]
        fn constant_input_stays_constant(
            d in 1usize..7,
            n in 1usize..60,
            c in -5.0f32..5.0,
            seed in any::<u64>(),
        ) {
            let mut s = seed;
            let f: Vec<f32> = (0..n * d).map(|_| 4.0 * lcg(&mut s)).collect();
            let lattice = Permutohedral::new(&f, d).unwrap();
            let mut norm = vec![0f32; n];
            lattice.filter(&vec![1.0; n], 1, &mut norm).unwrap();
            let mut out = vec![0f32; n];
            lattice.filter(&vec![c; n], 1, &mut out).unwrap();
            for i in 0..n {
                prop_assert!(norm[i] > 0.0);
                prop_assert!((out[i] / norm[i] - c).abs() <= 1e-4 * (1.0 + c.abs()));
            }
        }

        /// `filter_transposed` is the exact adjoint of `filter` for any points and values,
        /// and the filter of non-negative values is non-negative and finite.
        #[test]
        fn transpose_is_adjoint_for_random_points(
            d in 1usize..6,
            n in 2usize..50,
            seed in any::<u64>(),
        ) {
            let mut s = seed;
            let f: Vec<f32> = (0..n * d).map(|_| 3.0 * lcg(&mut s)).collect();
            let a: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let b: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let lattice = Permutohedral::new(&f, d).unwrap();
            let (mut wta, mut wb) = (vec![0f32; n], vec![0f32; n]);
            lattice.filter_transposed(&a, 1, &mut wta).unwrap();
            lattice.filter(&b, 1, &mut wb).unwrap();
            let lhs: f32 = a.iter().zip(&wb).map(|(x, y)| x * y).sum();
            let rhs: f32 = wta.iter().zip(&b).map(|(x, y)| x * y).sum();
            prop_assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(rhs.abs()) + 1e-6,
                "{} vs {}", lhs, rhs);
            prop_assert!(wb.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
    }
}
