//! One optimizer step over every trainable weight, cut into chunks that shards (one per
//! replica worker, or the rayon pool) update concurrently; each chunk's update also writes the
//! weight's new values, while they are in cache, into mirrors (the next step's tensors of
//! replicas in host memory) and their transposes.
use super::{Common, Grad, Optimizer, OptimizerConfig, OptimizerType, PreparedUpdate};
use crate::error::{Error, Result};
use crate::model::Weight;
use crate::regularizer::Regularizer;
use std::collections::HashMap;
use std::sync::Arc;

impl Optimizer {
    /// One update of every trainable weight, split into `shards` closures of about equal
    /// work that `run` executes (e.g. one per replica worker, concurrently), each given every
    /// replica's gradients when it runs (`parts[r][w]`: replica `r`'s gradient of weight `w`;
    /// the parts are summed in replica order inside the update loop, in one pass over memory).
    ///
    /// With `mirrors` (one per weight), the new values of each trainable weight are also
    /// written, while they are in cache, into its mirror's spare capacity (and transposed
    /// into `transposed`'s, where asked): the next step's weight tensors, with no copy of
    /// their own. When this returns Ok every trainable weight's mirror holds all its values
    /// (the caller may `set_len` to the weight's length), as long as `run` ran every shard
    /// (`run` must return an error otherwise).
    pub fn apply_sharded<'a>(
        &'a mut self,
        weights: &'a mut [Weight],
        mirrors: Option<&'a mut [Mirror]>,
        shards: usize,
        run: impl FnOnce(Vec<UpdateShard<'a>>) -> Result<()>,
    ) -> Result<()> {
        let weight_lens: Vec<usize> = weights.iter().map(|w| w.value.len()).collect();
        let k = self.config.rule.slot_names().len();
        if self.slots.len() != weights.len() || self.slots.iter().zip(&weight_lens).any(|(s, n)| s.len() != k || s.iter().any(|v| v.len() != *n)) {
            self.slots = self.fresh_slots(&weight_lens)?;
        }
        let Optimizer { config, iterations, slots: all_slots, state, regularizers, loss_gradients } = self;
        let config: &'a OptimizerConfig = config;
        let prepared: Arc<dyn PreparedUpdate + 'a> = Arc::from(config.rule.prepare(*iterations + 1, config.common.learning_rate_at(*iterations), state));
        let clip = Clip::of(&config.common);
        let regularizers: &[Option<Regularizer>] = regularizers;
        let loss_gradients: &'a [Option<Vec<f32>>] = loss_gradients;
        // clipnorm takes the norm of each regularized weight's whole gradient, which includes
        // the penalty's (computed from the values before the update): shards read a copy.
        let before_update: Arc<Vec<Option<Vec<f32>>>> = Arc::new(match clip {
            Clip::Norm(_) => weights.iter().enumerate().map(|(i, w)| regularizers.get(i).copied().flatten().map(|_| w.value.to_vec())).collect(),
            _ => Vec::new(),
        });
        let mut mirrors: Vec<Option<&'a mut Mirror>> = match mirrors {
            Some(m) if m.len() == weights.len() => m.iter_mut().map(Some).collect(),
            Some(_) => return Err(Error::State("one mirror per weight expected".into())),
            None => weights.iter().map(|_| None).collect(),
        };
        // Chunks of every trainable weight, dealt out to the shards in turn.
        let n_shards = shards.max(1);
        let mut assigned: Vec<Vec<Chunk<'a>>> = (0..n_shards).map(|_| Vec::new()).collect();
        let mut next = 0;
        for (wi, ((w, slots), mirror)) in weights.iter_mut().zip(all_slots.iter_mut()).zip(mirrors.iter_mut()).enumerate() {
            if !w.trainable {
                continue;
            }
            // No copy when no replica still holds this step's snapshot.
            let var = Arc::make_mut(&mut w.value);
            let n = var.len();
            let mut slot_chunks: Vec<std::slice::ChunksMut<'_, f32>> = slots.iter_mut().map(|s| s.chunks_mut(CHUNK)).collect();
            let mut transposed_into = None;
            let mut mirror_chunks = mirror.take().map(|m| {
                m.values.clear();
                m.values.reserve(n);
                match m.transpose {
                    Some((rows, cols)) if rows * cols == n => {
                        m.transposed.clear();
                        m.transposed.reserve(n);
                        transposed_into = Some(TransposeTarget { dst: m.transposed.spare_capacity_mut().as_mut_ptr() as *mut f32, rows, cols });
                    }
                    // Not this weight's shape: no transpose (the caller sees `transpose` None).
                    _ => m.transpose = None,
                }
                m.values.spare_capacity_mut()[..n].chunks_mut(CHUNK)
            });
            let regularizer = regularizers.get(wi).copied().flatten();
            let loss_gradient = loss_gradients.get(wi).and_then(|g| g.as_deref()).filter(|g| g.len() == n);
            for (ci, var_chunk) in var.chunks_mut(CHUNK).enumerate() {
                let slots = slot_chunks.iter_mut().map(|c| c.next().unwrap()).collect();
                let mirror = mirror_chunks.as_mut().and_then(|m| m.next());
                let transposed = transposed_into;
                let start = ci * CHUNK;
                let loss_gradient = loss_gradient.map(|g| &g[start..start + var_chunk.len()]);
                assigned[next % n_shards].push(Chunk { weight: wi, regularizer, loss_gradient, start, var: var_chunk, slots, mirror, transposed });
                next += 1;
            }
        }
        let shards: Vec<UpdateShard<'a>> = assigned
            .into_iter()
            .map(|chunks| {
                let weight_lens = weight_lens.clone();
                let prepared = prepared.clone();
                let before_update = before_update.clone();
                Box::new(move |parts: &[Vec<&[f32]>]| {
                    // Every shard checks the same thing before writing anything, so either all
                    // of them update or none does.
                    if parts.is_empty() || parts.iter().any(|p| p.len() != weight_lens.len() || p.iter().zip(&weight_lens).any(|(g, n)| g.len() != *n)) {
                        return Err(Error::State(format!("gradients do not match the {} weights", weight_lens.len())));
                    }
                    let mut sum = Vec::with_capacity(CHUNK);
                    let norms = clip.norms(&chunks, parts, &before_update, loss_gradients);
                    for mut c in chunks {
                        update_chunk(&*prepared, clip, norms.get(&c.weight).copied(), &mut c, parts, &mut sum);
                    }
                    Ok(())
                }) as UpdateShard<'a>
            })
            .collect();
        run(shards)?;
        *iterations += 1;
        Ok(())
    }
}

/// A share of one optimizer step, runnable on any thread, given every replica's gradients.
pub type UpdateShard<'a> = Box<dyn FnOnce(&[Vec<&[f32]>]) -> Result<()> + Send + 'a>;

/// Where an update also writes a weight's new values (see [`Optimizer::apply_sharded`]).
#[derive(Debug, Default)]
pub struct Mirror {
    pub values: Vec<f32>,
    /// `Some((rows, cols))`: the weight, a row-major (rows, cols) matrix, is also wanted
    /// transposed, as a row-major (cols, rows) matrix in `transposed` (reset to None when
    /// rows * cols is not the weight's length).
    pub transpose: Option<(usize, usize)>,
    pub transposed: Vec<f32>,
}

/// A slice of one weight, its optimizer slots, and where its new values are mirrored.
struct Chunk<'a> {
    weight: usize,
    /// The weight's regularizer, whose gradient joins the loss's.
    regularizer: Option<Regularizer>,
    /// This chunk's part of the gradient of the layers' weight losses, likewise.
    loss_gradient: Option<&'a [f32]>,
    start: usize,
    var: &'a mut [f32],
    slots: Vec<&'a mut [f32]>,
    mirror: Option<&'a mut [std::mem::MaybeUninit<f32>]>,
    transposed: Option<TransposeTarget>,
}

/// The (cols, rows) buffer a (rows, cols) weight's chunks write their transposes into.
#[derive(Clone, Copy)]
struct TransposeTarget {
    dst: *mut f32,
    rows: usize,
    cols: usize,
}

// SAFETY: the chunks that share a target write disjoint elements of it (see apply_sharded).
unsafe impl Send for TransposeTarget {}

/// Writes elements `start..start + var.len()` of a row-major (rows, cols) matrix to their
/// places in its transpose: whole rows in 8x8 tiles (each read and written as eight 32-byte
/// runs, transposed in AVX registers where the CPU has them), the partial rows at either end
/// and the last columns one by one. One value at a time, the whole-row part took 0.19 ms
/// per replica and step of the two-GPU MLP (half of its 512x512 kernel's transpose; perf).
///
/// # Safety
/// `t.dst` must have room for `rows * cols` values, and `start + var.len() <= rows * cols`.
#[inline(always)]
unsafe fn write_transposed(var: &[f32], start: usize, t: &TransposeTarget) {
    let (rows, cols) = (t.rows, t.cols);
    let end = start + var.len();
    let put = |e: usize| t.dst.add((e % cols) * rows + e / cols).write(var[e - start]);
    let first_full = start.div_ceil(cols);
    let last_full = end / cols;
    if first_full >= last_full {
        (start..end).for_each(put);
        return;
    }
    (start..first_full * cols).for_each(put);
    (last_full * cols..end).for_each(put);
    #[cfg(target_arch = "x86_64")]
    let wide = std::arch::is_x86_feature_detected!("avx");
    const TILE: usize = 8;
    for r0 in (first_full..last_full).step_by(TILE) {
        let r1 = (r0 + TILE).min(last_full);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            #[cfg(target_arch = "x86_64")]
            if wide && r1 - r0 == TILE && c1 - c0 == TILE {
                // SAFETY: AVX is there (checked above); the tile's 8 rows of 8 values lie in
                // `var` (whole rows r0..r0 + 8 of this chunk) and its 8 columns in `dst`.
                transpose_8x8_avx(var.as_ptr().add(r0 * cols + c0 - start), cols, t.dst.add(c0 * rows + r0), rows);
                continue;
            }
            for c in c0..c1 {
                for r in r0..r1 {
                    t.dst.add(c * rows + r).write(var[r * cols + c - start]);
                }
            }
        }
    }
}

/// Transposes the 8x8 block at `src` (rows `src_stride` apart) into `dst` (rows
/// `dst_stride` apart): interleave pairs of rows, then pairs of pairs, then swap 128-bit
/// halves.
///
/// # Safety
/// The CPU must have AVX; both blocks must be in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8_avx(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * src_stride)));
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let out = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (i, v) in out.into_iter().enumerate() {
        _mm256_storeu_ps(dst.add(i * dst_stride), v);
    }
}

/// Elements per unit of parallel optimizer work.
pub(super) const CHUNK: usize = 1 << 14;

/// Gradient clipping as tf-keras does it: each weight's gradient rescaled to `clipnorm` at
/// most (`g * clipnorm / max(norm, clipnorm)`), else each value clipped to `clipvalue`.
#[derive(Clone, Copy)]
enum Clip {
    None,
    Norm(f32),
    Value(f32),
}

impl Clip {
    fn of(c: &Common) -> Self {
        match (c.clipnorm, c.clipvalue) {
            (Some(n), _) => Clip::Norm(n as f32),
            (None, Some(v)) => Clip::Value(v as f32),
            (None, None) => Clip::None,
        }
    }

    /// With `clipnorm`, the norm of the (summed) gradient of each weight `chunks` touch:
    /// every shard works it out for its own weights (clipping is rare; the update itself
    /// stays one pass).
    fn norms(
        &self,
        chunks: &[Chunk<'_>],
        parts: &[Vec<&[f32]>],
        before_update: &[Option<Vec<f32>>],
        loss_gradients: &[Option<Vec<f32>>],
    ) -> HashMap<usize, f32> {
        let mut norms = HashMap::new();
        if let Clip::Norm(_) = self {
            for c in chunks {
                norms.entry(c.weight).or_insert_with(|| {
                    let n = parts[0][c.weight].len();
                    let mut g: Vec<f32> = (0..n).map(|i| parts.iter().map(|p| p[c.weight][i]).sum::<f32>()).collect();
                    if let (Some(r), Some(Some(w))) = (c.regularizer, before_update.get(c.weight)) {
                        r.add_gradient(w, &mut g);
                    }
                    if let Some(extra) = loss_gradients.get(c.weight).and_then(|e| e.as_deref()).filter(|e| e.len() == n) {
                        g.iter_mut().zip(extra).for_each(|(a, b)| *a += *b);
                    }
                    g.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt() as f32
                });
            }
        }
        norms
    }
}

/// One chunk's update (its gradient parts summed, clipped where asked, the update, the
/// mirrors written).
fn update_chunk(prepared: &dyn PreparedUpdate, clip: Clip, norm: Option<f32>, c: &mut Chunk<'_>, parts: &[Vec<&[f32]>], sum: &mut Vec<f32>) {
    let range = c.start..c.start + c.var.len();
    let grad = match (clip, parts.len()) {
        _ if c.regularizer.is_some() || c.loss_gradient.is_some() => sum_and_clip(clip, norm, c, parts, sum),
        (Clip::None, 1) => Grad::One(&parts[0][c.weight][range]),
        // Two replicas' parts (two virtual GPUs) are added as the update reads them.
        (Clip::None, 2) => Grad::Two(&parts[0][c.weight][range.clone()], &parts[1][c.weight][range]),
        _ => sum_and_clip(clip, norm, c, parts, sum),
    };
    prepared.update(c.var, grad, &mut c.slots);
    write_mirrors(c);
}

/// The chunk's gradient summed over the parts (in replica order) into `sum`, plus its
/// regularizer's gradient (at the values before this update) and its weight losses',
/// clipped where asked.
fn sum_and_clip<'s>(clip: Clip, norm: Option<f32>, c: &Chunk<'_>, parts: &[Vec<&[f32]>], sum: &'s mut Vec<f32>) -> Grad<'s> {
    let range = c.start..c.start + c.var.len();
    sum.clear();
    sum.extend_from_slice(&parts[0][c.weight][range.clone()]);
    for p in &parts[1..] {
        sum.iter_mut().zip(&p[c.weight][range.clone()]).for_each(|(a, b)| *a += *b);
    }
    if let Some(r) = c.regularizer {
        r.add_gradient(c.var, sum);
    }
    if let Some(extra) = c.loss_gradient {
        sum.iter_mut().zip(extra).for_each(|(a, b)| *a += *b);
    }
    match clip {
        Clip::Norm(limit) => {
            let denominator = norm.unwrap_or(0.0).max(limit);
            sum.iter_mut().for_each(|g| *g = *g * limit / denominator);
        }
        Clip::Value(limit) => sum.iter_mut().for_each(|g| *g = g.clamp(-limit, limit)),
        Clip::None => {}
    }
    Grad::One(sum)
}

#[inline(always)]
fn write_mirrors(c: &mut Chunk<'_>) {
    if let Some(m) = c.mirror.as_mut() {
        for (dst, v) in m.iter_mut().zip(c.var.iter()) {
            dst.write(*v);
        }
    }
    if let Some(t) = c.transposed {
        // SAFETY: `dst` has room for rows * cols values (reserved in apply_sharded) and
        // outlives the shards; each chunk writes only the transposed positions of its own
        // elements, so no two chunks write one place.
        unsafe { write_transposed(c.var, c.start, &t) };
    }
}

/// An optimizer type's update with this step's constants.
pub(super) struct Prepared<'a, T: OptimizerType> {
    pub(super) rule: &'a T,
    pub(super) k: T::Constants,
}

/// The update runs with the widest vector instructions the CPU has: the crate is built for
/// baseline x86-64 (SSE2), where RMSprop's and Adam's square roots and divisions took most of
/// an MLP step's optimizer time. The same operations in the same order (no fused
/// multiply-adds: Rust does not contract), so every build gives the same bits.
impl<T: OptimizerType> PreparedUpdate for Prepared<'_, T> {
    fn update(&self, var: &mut [f32], g: Grad<'_>, slots: &mut [&mut [f32]]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (checked just above).
                return unsafe { update_avx512(self, var, g, slots) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above).
                return unsafe { update_avx2(self, var, g, slots) };
            }
        }
        update_inline(self, var, g, slots)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn update_avx512<T: OptimizerType>(p: &Prepared<'_, T>, var: &mut [f32], g: Grad<'_>, slots: &mut [&mut [f32]]) {
    update_inline(p, var, g, slots)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_avx2<T: OptimizerType>(p: &Prepared<'_, T>, var: &mut [f32], g: Grad<'_>, slots: &mut [&mut [f32]]) {
    update_inline(p, var, g, slots)
}

#[inline(always)]
fn update_inline<T: OptimizerType>(p: &Prepared<'_, T>, var: &mut [f32], g: Grad<'_>, slots: &mut [&mut [f32]]) {
    match g {
        Grad::One(g) => p.rule.update(&p.k, var, g.iter().copied(), slots),
        Grad::Two(a, b) => p.rule.update(&p.k, var, a.iter().zip(b).map(|(x, y)| x + y), slots),
    }
}
