//! Optimizers with tf-keras 2.x's update rules (`tf_keras/src/optimizers/*.py`, the
//! non-legacy classes R keras uses), applied in place to the master weights in f32.
use crate::error::{Error, Result};
use crate::model::Weight;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum OptimizerConfig {
    Sgd { learning_rate: f64, momentum: f64, nesterov: bool },
    RmsProp { learning_rate: f64, rho: f64, momentum: f64, epsilon: f64, centered: bool },
    Adam { learning_rate: f64, beta_1: f64, beta_2: f64, epsilon: f64, amsgrad: bool },
}

impl OptimizerConfig {
    /// Keras's defaults for the optimizers named by string in `compile()`.
    pub fn by_name(name: &str) -> Result<Self> {
        Ok(match name {
            "sgd" => OptimizerConfig::Sgd { learning_rate: 0.01, momentum: 0.0, nesterov: false },
            "rmsprop" => OptimizerConfig::RmsProp { learning_rate: 0.001, rho: 0.9, momentum: 0.0, epsilon: 1e-7, centered: false },
            "adam" => OptimizerConfig::Adam { learning_rate: 0.001, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false },
            other => {
                return Err(Error::Value(format!(
                    "unknown optimizer \"{}\": expected \"sgd\", \"rmsprop\" or \"adam\", or an optimizer object such as optimizer_adam()",
                    other
                )))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd { .. } => "SGD",
            OptimizerConfig::RmsProp { .. } => "RMSprop",
            OptimizerConfig::Adam { .. } => "Adam",
        }
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        match self {
            OptimizerConfig::Sgd { learning_rate, .. } | OptimizerConfig::RmsProp { learning_rate, .. } | OptimizerConfig::Adam { learning_rate, .. } => {
                *learning_rate = lr
            }
        }
    }

    pub fn learning_rate(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd { learning_rate, .. } | OptimizerConfig::RmsProp { learning_rate, .. } | OptimizerConfig::Adam { learning_rate, .. } => {
                *learning_rate
            }
        }
    }

    fn slots_per_weight(&self) -> usize {
        match self {
            OptimizerConfig::Sgd { .. } => 1,
            OptimizerConfig::RmsProp { .. } => 3,
            OptimizerConfig::Adam { .. } => 3,
        }
    }
}

/// An optimizer with its state (iteration count and per-weight slots).
#[derive(Debug, Clone)]
pub struct Optimizer {
    pub config: OptimizerConfig,
    pub iterations: u64,
    slots: Vec<Vec<Vec<f32>>>,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig) -> Self {
        Self { config, iterations: 0, slots: Vec::new() }
    }

    /// Keras's names for the slots this configuration uses, in Keras's order within a
    /// weight (e.g. Adam: "m", "v"), with each one's index in our slot list.
    pub fn slot_names(&self) -> Vec<(&'static str, usize)> {
        match self.config {
            OptimizerConfig::Sgd { momentum, .. } => {
                if momentum != 0.0 {
                    vec![("m", 0)]
                } else {
                    vec![]
                }
            }
            OptimizerConfig::RmsProp { momentum, centered, .. } => {
                let mut v = vec![("velocity", 0)];
                if momentum > 0.0 {
                    v.push(("momentum", 2));
                }
                if centered {
                    v.push(("average_gradient", 1));
                }
                v
            }
            OptimizerConfig::Adam { amsgrad, .. } => {
                let mut v = vec![("m", 0), ("v", 1)];
                if amsgrad {
                    v.push(("vhat", 2));
                }
                v
            }
        }
    }

    /// Slot `slot` of weight `weight` (zeros before the first step).
    pub fn slot(&self, weight: usize, slot: usize, len: usize) -> Vec<f32> {
        self.slots.get(weight).and_then(|s| s.get(slot)).cloned().unwrap_or_else(|| vec![0.0; len])
    }

    /// Restores state saved from `slot`: `values[w][s]` for each weight and slot index.
    pub fn restore(&mut self, iterations: u64, weight_lens: &[usize], values: Vec<Vec<(usize, Vec<f32>)>>) -> Result<()> {
        let k = self.config.slots_per_weight();
        let mut slots: Vec<Vec<Vec<f32>>> = weight_lens.iter().map(|n| vec![vec![0f32; *n]; k]).collect();
        for (w, per_weight) in values.into_iter().enumerate() {
            for (slot, v) in per_weight {
                if w >= slots.len() || v.len() != weight_lens[w] {
                    return Err(Error::Value(format!("optimizer state does not match weight {}", w)));
                }
                slots[w][slot] = v;
            }
        }
        self.slots = slots;
        self.iterations = iterations;
        Ok(())
    }

    /// One update of every trainable weight, on the calling thread. `parts[r][w]` is
    /// replica `r`'s gradient of weight `w`.
    pub fn apply(&mut self, weights: &mut [Weight], parts: &[Vec<&[f32]>]) -> Result<()> {
        self.apply_sharded(weights, None, 1, |shards| shards.into_iter().try_for_each(|shard| shard(parts)))
    }

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
        if self.slots.len() != weights.len() || self.slots.iter().zip(weights.iter()).any(|(s, w)| s[0].len() != w.value.len()) {
            let k = self.config.slots_per_weight();
            self.slots = weights.iter().map(|w| vec![vec![0f32; w.value.len()]; k]).collect();
        }
        let step = (self.iterations + 1) as f32;
        let config = &self.config;
        let weight_lens: Vec<usize> = weights.iter().map(|w| w.value.len()).collect();
        let mut mirrors: Vec<Option<&'a mut Mirror>> = match mirrors {
            Some(m) if m.len() == weights.len() => m.iter_mut().map(Some).collect(),
            Some(_) => return Err(Error::State("one mirror per weight expected".into())),
            None => weights.iter().map(|_| None).collect(),
        };
        // Chunks of every trainable weight, dealt out to the shards in turn.
        let n_shards = shards.max(1);
        let mut assigned: Vec<Vec<Chunk<'a>>> = (0..n_shards).map(|_| Vec::new()).collect();
        let mut next = 0;
        for (wi, ((w, slots), mirror)) in weights.iter_mut().zip(self.slots.iter_mut()).zip(mirrors.iter_mut()).enumerate() {
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
            for (ci, var_chunk) in var.chunks_mut(CHUNK).enumerate() {
                let slots = slot_chunks.iter_mut().map(|c| c.next().unwrap()).collect();
                let mirror = mirror_chunks.as_mut().and_then(|m| m.next());
                let transposed = transposed_into;
                assigned[next % n_shards].push(Chunk { weight: wi, start: ci * CHUNK, var: var_chunk, slots, mirror, transposed });
                next += 1;
            }
        }
        let shards: Vec<UpdateShard<'a>> = assigned
            .into_iter()
            .map(|chunks| {
                let weight_lens = weight_lens.clone();
                Box::new(move |parts: &[Vec<&[f32]>]| {
                    // Every shard checks the same thing before writing anything, so either all
                    // of them update or none does.
                    if parts.is_empty() || parts.iter().any(|p| p.len() != weight_lens.len() || p.iter().zip(&weight_lens).any(|(g, n)| g.len() != *n)) {
                        return Err(Error::State(format!("gradients do not match the {} weights", weight_lens.len())));
                    }
                    let mut sum = Vec::with_capacity(CHUNK);
                    for mut c in chunks {
                        update_chunk(config, step, &mut c, parts, &mut sum);
                    }
                    Ok(())
                }) as UpdateShard<'a>
            })
            .collect();
        run(shards)?;
        self.iterations += 1;
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
/// places in its transpose: whole rows in 16x16 tiles (reads and writes each within 16 cache
/// lines), the partial rows at either end one by one.
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
    const TILE: usize = 16;
    for r0 in (first_full..last_full).step_by(TILE) {
        let r1 = (r0 + TILE).min(last_full);
        for c0 in (0..cols).step_by(TILE) {
            for c in c0..(c0 + TILE).min(cols) {
                for r in r0..r1 {
                    t.dst.add(c * rows + r).write(var[r * cols + c - start]);
                }
            }
        }
    }
}

/// Elements per unit of parallel optimizer work.
const CHUNK: usize = 1 << 14;

/// One chunk's update (its gradient parts summed, the update, the mirrors written), with
/// the widest vector instructions the CPU has: the crate is built for baseline x86-64
/// (SSE2), where RMSprop's and Adam's square roots and divisions took most of an MLP step's
/// optimizer time. The same operations in the same order (no fused multiply-adds: Rust does
/// not contract), so every build gives the same bits.
fn update_chunk(config: &OptimizerConfig, step: f32, c: &mut Chunk<'_>, parts: &[Vec<&[f32]>], sum: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { update_chunk_avx512(config, step, c, parts, sum) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { update_chunk_avx2(config, step, c, parts, sum) };
        }
    }
    update_chunk_portable(config, step, c, parts, sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn update_chunk_avx512(config: &OptimizerConfig, step: f32, c: &mut Chunk<'_>, parts: &[Vec<&[f32]>], sum: &mut Vec<f32>) {
    update_chunk_portable(config, step, c, parts, sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_chunk_avx2(config: &OptimizerConfig, step: f32, c: &mut Chunk<'_>, parts: &[Vec<&[f32]>], sum: &mut Vec<f32>) {
    update_chunk_portable(config, step, c, parts, sum)
}

#[inline(always)]
fn update_chunk_portable(config: &OptimizerConfig, step: f32, c: &mut Chunk<'_>, parts: &[Vec<&[f32]>], sum: &mut Vec<f32>) {
    let range = c.start..c.start + c.var.len();
    // Two replicas' parts (two virtual GPUs) are added as the update reads them.
    let two = (parts.len() == 2).then(|| (&parts[0][c.weight][range.clone()], &parts[1][c.weight][range.clone()]));
    if let Some((a, b)) = two {
        if update_common(config, step, c.var, a.iter().zip(b).map(|(x, y)| x + y), &mut c.slots) {
            write_mirrors(c);
            return;
        }
    }
    // One part (one device) is read in place; several are summed, in replica order, into a
    // buffer reused across the shard's chunks.
    let g: &[f32] = if parts.len() == 1 {
        &parts[0][c.weight][range]
    } else {
        sum.clear();
        sum.extend_from_slice(&parts[0][c.weight][range.clone()]);
        for p in &parts[1..] {
            sum.iter_mut().zip(&p[c.weight][range.clone()]).for_each(|(a, b)| *a += *b);
        }
        sum
    };
    update_portable(config, step, c.var, g, &mut c.slots);
    write_mirrors(c);
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

/// The common cases (SGD, RMSprop without momentum or centering, Adam without AMSGrad) as
/// zipped loops without branches, so that they vectorize, over any source of gradient values
/// (a slice, or two replicas' parts added as they are read); false for the other variants.
#[inline(always)]
fn update_common(config: &OptimizerConfig, step: f32, var: &mut [f32], g: impl Iterator<Item = f32>, slots: &mut [&mut [f32]]) -> bool {
    match *config {
        OptimizerConfig::Sgd { learning_rate, momentum, nesterov } => {
            let (lr, mom) = (learning_rate as f32, momentum as f32);
            let m = &mut *slots[0];
            for ((w, g), m) in var.iter_mut().zip(g).zip(m.iter_mut()) {
                *m = -g * lr + *m * mom;
                *w += if nesterov { -g * lr + *m * mom } else { *m };
            }
            true
        }
        OptimizerConfig::RmsProp { learning_rate, rho, momentum, epsilon, centered } if !centered && momentum == 0.0 => {
            let (lr, r, one_minus_r, eps) = (learning_rate as f32, rho as f32, (1.0 - rho) as f32, epsilon as f32);
            for ((w, g), v) in var.iter_mut().zip(g).zip(slots[0].iter_mut()) {
                *v = r * *v + one_minus_r * (g * g);
                *w -= lr * g * (1.0 / (*v + eps).sqrt());
            }
            true
        }
        OptimizerConfig::Adam { learning_rate, beta_1, beta_2, epsilon, amsgrad } if !amsgrad => {
            let (one_minus_b1, one_minus_b2, eps) = ((1.0 - beta_1) as f32, (1.0 - beta_2) as f32, epsilon as f32);
            let alpha = adam_alpha(learning_rate, beta_1, beta_2, step);
            let (m, rest) = slots.split_first_mut().unwrap();
            let v = &mut *rest[0];
            for (((w, g), m), v) in var.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m += (g - *m) * one_minus_b1;
                *v += (g * g - *v) * one_minus_b2;
                *w -= (*m * alpha) / (v.sqrt() + eps);
            }
            true
        }
        _ => false,
    }
}

/// Adam's step size with Keras's bias corrections (float32 powers of the step).
fn adam_alpha(learning_rate: f64, beta_1: f64, beta_2: f64, step: f32) -> f32 {
    let (b1, b2) = (beta_1 as f32, beta_2 as f32);
    learning_rate as f32 * (1.0 - b2.powf(step)).sqrt() / (1.0 - b1.powf(step))
}

/// Any configuration; the variants outside [`update_common`] take general indexed loops.
#[inline(always)]
fn update_portable(config: &OptimizerConfig, step: f32, var: &mut [f32], g: &[f32], slots: &mut [&mut [f32]]) {
    if update_common(config, step, var, g.iter().copied(), slots) {
        return;
    }
    match *config {
        OptimizerConfig::RmsProp { learning_rate, rho, momentum, epsilon, centered } => {
            let (lr, r, one_minus_r, eps, mom) = (learning_rate as f32, rho as f32, (1.0 - rho) as f32, epsilon as f32, momentum as f32);
            let (velocity, rest) = slots.split_first_mut().unwrap();
            let (average, rest) = rest.split_first_mut().unwrap();
            let momentum_slot = &mut rest[0];
            for i in 0..var.len() {
                velocity[i] = r * velocity[i] + one_minus_r * (g[i] * g[i]);
                let denominator = if centered {
                    average[i] = r * average[i] + one_minus_r * g[i];
                    velocity[i] - average[i] * average[i] + eps
                } else {
                    velocity[i] + eps
                };
                let increment = lr * g[i] * (1.0 / denominator.sqrt());
                if momentum > 0.0 {
                    momentum_slot[i] = mom * momentum_slot[i] + increment;
                    var[i] -= momentum_slot[i];
                } else {
                    var[i] -= increment;
                }
            }
        }
        OptimizerConfig::Adam { learning_rate, beta_1, beta_2, epsilon, .. } => {
            let alpha = adam_alpha(learning_rate, beta_1, beta_2, step);
            let (one_minus_b1, one_minus_b2, eps) = ((1.0 - beta_1) as f32, (1.0 - beta_2) as f32, epsilon as f32);
            let (m, rest) = slots.split_first_mut().unwrap();
            let (v, rest) = rest.split_first_mut().unwrap();
            let v_hat = &mut rest[0];
            for i in 0..var.len() {
                m[i] += (g[i] - m[i]) * one_minus_b1;
                v[i] += (g[i] * g[i] - v[i]) * one_minus_b2;
                v_hat[i] = v_hat[i].max(v[i]);
                var[i] -= (m[i] * alpha) / (v_hat[i].sqrt() + eps);
            }
        }
        OptimizerConfig::Sgd { .. } => unreachable!("SGD is a common case"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(v: Vec<f32>) -> Weight {
        Weight { name: "w".into(), shape: vec![v.len()], value: Arc::new(v), trainable: true, layer_state: false }
    }

    #[test]
    fn sgd_momentum_follows_keras_rule() {
        let mut w = vec![weight(vec![1.0])];
        let mut opt = Optimizer::new(OptimizerConfig::Sgd { learning_rate: 0.1, momentum: 0.9, nesterov: false });
        opt.apply(&mut w, &[vec![&[1.0][..]]]).unwrap(); // m = -0.1, w = 0.9
        opt.apply(&mut w, &[vec![&[1.0][..]]]).unwrap(); // m = -0.1 - 0.09 = -0.19, w = 0.71
        assert!((w[0].value[0] - 0.71).abs() < 1e-6);
    }

    #[test]
    fn adam_first_step_moves_by_learning_rate() {
        // With bias correction, Adam's first step is lr * g / (|g| + eps*sqrt(1-b2)) ~ lr * sign(g).
        let mut w = vec![weight(vec![0.5, -0.5])];
        let mut opt = Optimizer::new(OptimizerConfig::by_name("adam").unwrap());
        opt.apply(&mut w, &[vec![&[2.0, -0.01][..]]]).unwrap();
        assert!((w[0].value[0] - 0.499).abs() < 1e-6);
        assert!((w[0].value[1] - -0.499).abs() < 1e-5);
    }

    #[test]
    fn rmsprop_puts_epsilon_inside_the_root() {
        let mut w = vec![weight(vec![0.0])];
        let mut opt = Optimizer::new(OptimizerConfig::by_name("rmsprop").unwrap());
        opt.apply(&mut w, &[vec![&[1e-4][..]]]).unwrap();
        let v = 0.1f64 * 1e-8;
        let expected = -0.001 * 1e-4 / (v + 1e-7).sqrt();
        assert!((w[0].value[0] as f64 - expected).abs() < 1e-8);
    }

    #[test]
    fn frozen_weights_do_not_move() {
        let mut w = vec![weight(vec![1.0])];
        w[0].trainable = false;
        let mut opt = Optimizer::new(OptimizerConfig::by_name("sgd").unwrap());
        opt.apply(&mut w, &[vec![&[1.0][..]]]).unwrap();
        assert_eq!(w[0].value[0], 1.0);
    }
}

#[cfg(test)]
mod sum_tests {
    use super::*;

    #[test]
    fn replica_parts_are_summed_before_the_update() {
        let w = |v: Vec<f32>| Weight { name: "w".into(), shape: vec![v.len()], value: Arc::new(v), trainable: true, layer_state: false };
        let n = 3 * CHUNK + 5; // several chunks, one partial
        let g1: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.01).collect();
        let g2: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * -0.02).collect();
        let total: Vec<f32> = g1.iter().zip(&g2).map(|(a, b)| a + b).collect();
        let mut split = vec![w(vec![0.5; n])];
        let mut whole = vec![w(vec![0.5; n])];
        let mut o1 = Optimizer::new(OptimizerConfig::by_name("adam").unwrap());
        let mut o2 = o1.clone();
        for _ in 0..3 {
            o1.apply(&mut split, &[vec![&g1[..]], vec![&g2[..]]]).unwrap();
            o2.apply(&mut whole, &[vec![&total[..]]]).unwrap();
        }
        assert_eq!(split[0].value, whole[0].value);
    }
}

#[cfg(test)]
mod mirror_tests {
    use super::*;

    #[test]
    fn mirrors_hold_the_new_values_and_their_transpose() {
        // A (rows, cols) weight whose chunks end mid-row, updated by three shards.
        let (rows, cols) = (37, 1000);
        let n = rows * cols;
        assert!(n % CHUNK != 0 && !CHUNK.is_multiple_of(cols));
        let w = |v: Vec<f32>, shape: Vec<usize>| Weight { name: "w".into(), shape, value: Arc::new(v), trainable: true, layer_state: false };
        let mut weights = vec![w((0..n).map(|i| i as f32 * 1e-3).collect(), vec![rows, cols]), w(vec![0.5; 7], vec![7])];
        let g0: Vec<f32> = (0..n).map(|i| (i % 11) as f32 * 0.1).collect();
        let g1 = [0.3f32; 7];
        let mut opt = Optimizer::new(OptimizerConfig::by_name("rmsprop").unwrap());
        let mut mirrors = vec![Mirror { transpose: Some((rows, cols)), ..Default::default() }, Mirror::default()];
        let parts = vec![vec![&g0[..], &g1[..]]];
        opt.apply_sharded(&mut weights, Some(&mut mirrors), 3, |shards| shards.into_iter().try_for_each(|s| s(&parts))).unwrap();
        for (m, w) in mirrors.iter_mut().zip(&weights) {
            // SAFETY: the update returned Ok (apply_sharded's contract).
            unsafe { m.values.set_len(w.value.len()) };
            assert_eq!(&m.values, &*w.value);
        }
        unsafe { mirrors[0].transposed.set_len(n) };
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(mirrors[0].transposed[c * rows + r], weights[0].value[r * cols + c], "({}, {})", r, c);
            }
        }
        assert!(mirrors[1].transposed.is_empty());
    }
}
