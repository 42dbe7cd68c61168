//! Batch normalization over the last axis of a row-major (rows, c) matrix, on host slices:
//! each pass reads the activations once and writes at most one new array. The chain of
//! candle ops it replaces made five full-size temporaries per forward pass and six per
//! backward pass (`binary_map_vec_par` ~9% of the block net's fit samples, plus the kernel
//! clearing the pages of those fresh buffers).
use super::uninit_filled;
use rayon::prelude::*;

/// Rows per unit of parallel work: partial sums per block, added in block order, so results
/// do not depend on the thread count.
const BLOCK: usize = 256;

/// Per-channel sums of `term(row, channel)` over every row, in f64 across blocks.
fn channel_sums(rows: usize, c: usize, term: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f64> {
    let blocks = rows.div_ceil(BLOCK);
    let partial: Vec<Vec<f32>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let mut acc = vec![0f32; c];
            for r in b * BLOCK..((b + 1) * BLOCK).min(rows) {
                term(r, &mut acc);
            }
            acc
        })
        .collect();
    let mut total = vec![0f64; c];
    for p in &partial {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += *v as f64);
    }
    total
}

/// Per-channel mean and biased variance of `x` (two passes: the variance from centered
/// values, as TensorFlow computes it, not from the sum of squares).
pub fn moments(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / c.max(1);
    let n = rows.max(1) as f64;
    let sums = channel_sums(rows, c, |r, acc| acc.iter_mut().zip(&x[r * c..(r + 1) * c]).for_each(|(a, v)| *a += *v));
    let mean: Vec<f32> = sums.iter().map(|s| (s / n) as f32).collect();
    let squares = channel_sums(rows, c, |r, acc| {
        acc.iter_mut().zip(&x[r * c..(r + 1) * c]).zip(&mean).for_each(|((a, v), m)| {
            let d = *v - *m;
            *a += d * d;
        })
    });
    (mean, squares.iter().map(|s| (s / n) as f32).collect())
}

/// `x * scale + shift`, channel by channel: normalization with the statistics and the
/// affine map folded into one multiply-add per value.
pub fn scale_shift(x: &[f32], c: usize, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    uninit_filled(x.len(), |out| {
        out.par_chunks_mut(BLOCK * c).zip(x.par_chunks(BLOCK * c)).for_each(|(o, x)| {
            for (o, x) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for (((o, x), s), t) in o.iter_mut().zip(x).zip(scale).zip(shift) {
                    o.write(*x * *s + *t);
                }
            }
        })
    })
}

/// What a training forward pass keeps for the backward pass (besides its input).
pub struct Statistics {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// The training forward pass: the batch's statistics and `gamma * (x - mean) * inv_std + beta`.
pub fn forward_training(x: &[f32], c: usize, gamma: Option<&[f32]>, beta: Option<&[f32]>, epsilon: f64) -> (Vec<f32>, Statistics) {
    let (mean, var) = moments(x, c);
    let inv_std: Vec<f32> = var.iter().map(|v| (1.0 / (*v as f64 + epsilon).sqrt()) as f32).collect();
    let (scale, shift) = affine(&mean, &inv_std, gamma, beta);
    (scale_shift(x, c, &scale, &shift), Statistics { mean, var, inv_std })
}

/// Per channel, `scale = gamma * inv_std` and `shift = beta - mean * scale`.
pub fn affine(mean: &[f32], inv_std: &[f32], gamma: Option<&[f32]>, beta: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = (0..mean.len()).map(|j| gamma.map_or(1.0, |g| g[j]) * inv_std[j]).collect();
    let shift: Vec<f32> = (0..mean.len()).map(|j| beta.map_or(0.0, |b| b[j]) - mean[j] * scale[j]).collect();
    (scale, shift)
}

/// The training backward pass from the forward pass's input and statistics: `(dx, dgamma,
/// dbeta)`, with `dx = gamma * inv_std / n * (n dy - sum(dy) - xhat * sum(dy xhat))` written
/// as one multiply-add per value (`xhat` recomputed from `x`, not kept from the forward pass).
pub fn backward_training(x: &[f32], dy: &[f32], c: usize, stats: &Statistics, gamma: Option<&[f32]>) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows = x.len() / c.max(1);
    let n = rows.max(1) as f64;
    let Statistics { mean, inv_std, .. } = stats;
    // One pass: sum(dy) and sum(dy * (x - mean)) per channel.
    let both = channel_sums(rows, 2 * c, |r, acc| {
        let (sum_dy, sum_dyx) = acc.split_at_mut(c);
        let (x, dy) = (&x[r * c..(r + 1) * c], &dy[r * c..(r + 1) * c]);
        for j in 0..c {
            sum_dy[j] += dy[j];
            sum_dyx[j] += dy[j] * (x[j] - mean[j]);
        }
    });
    let (dbeta, dyx) = both.split_at(c);
    let dgamma: Vec<f64> = dyx.iter().zip(inv_std).map(|(s, i)| s * *i as f64).collect();
    // dx = a dy + b x + d per channel.
    let (mut a, mut b, mut d) = (vec![0f32; c], vec![0f32; c], vec![0f32; c]);
    for j in 0..c {
        let g = gamma.map_or(1.0, |g| g[j] as f64);
        let is = inv_std[j] as f64;
        let aj = g * is;
        let bj = -aj * is * dgamma[j] / n;
        a[j] = aj as f32;
        b[j] = bj as f32;
        d[j] = (-aj * dbeta[j] / n - bj * mean[j] as f64) as f32;
    }
    let dx = uninit_filled(x.len(), |out| {
        out.par_chunks_mut(BLOCK * c).zip(x.par_chunks(BLOCK * c)).zip(dy.par_chunks(BLOCK * c)).for_each(|((o, x), dy)| {
            for ((o, x), dy) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(dy.chunks_exact(c)) {
                for j in 0..c {
                    o[j].write(a[j] * dy[j] + b[j] * x[j] + d[j]);
                }
            }
        })
    });
    (dx, dgamma.iter().map(|v| *v as f32).collect(), dbeta.iter().map(|v| *v as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: usize, c: usize, seed: u32) -> Vec<f32> {
        (0..rows * c).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32) * 4.0 - 1.5).collect()
    }

    #[test]
    fn forward_normalizes_and_backward_matches_the_formula() {
        // 600 rows: more than two blocks, the last one partial.
        let (rows, c) = (600, 3);
        let x = data(rows, c, 1);
        let (gamma, beta) = (vec![0.5f32, 2.0, -1.0], vec![0.1f32, 0.0, 3.0]);
        let (y, stats) = forward_training(&x, c, Some(&gamma), Some(&beta), 1e-3);
        for j in 0..c {
            let col: Vec<f64> = (0..rows).map(|r| ((y[r * c + j] - beta[j]) / gamma[j]) as f64).collect();
            let mean = col.iter().sum::<f64>() / rows as f64;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / rows as f64;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-2, "channel {}: mean {} var {}", j, mean, var);
        }
        // The backward pass against the textbook formula in f64 (finite differences of an
        // f32 forward pass are too coarse here: dx sums to zero over each channel, so its
        // values are small against the loss).
        let w = data(rows, c, 7);
        let (dx, dgamma, dbeta) = backward_training(&x, &w, c, &stats, Some(&gamma));
        for j in 0..c {
            let col = |v: &[f32]| -> Vec<f64> { (0..rows).map(|r| v[r * c + j] as f64).collect() };
            let (xs, dy) = (col(&x), col(&w));
            let n = rows as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let var = xs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let inv_std = 1.0 / (var + 1e-3).sqrt();
            let xhat: Vec<f64> = xs.iter().map(|v| (v - mean) * inv_std).collect();
            let sum_dy: f64 = dy.iter().sum();
            let sum_dy_xhat: f64 = dy.iter().zip(&xhat).map(|(d, h)| d * h).sum();
            assert!((dbeta[j] as f64 - sum_dy).abs() < 1e-3, "dbeta[{}]", j);
            assert!((dgamma[j] as f64 - sum_dy_xhat).abs() < 1e-3, "dgamma[{}]: {} vs {}", j, dgamma[j], sum_dy_xhat);
            for r in 0..rows {
                let want = gamma[j] as f64 * inv_std / n * (n * dy[r] - sum_dy - xhat[r] * sum_dy_xhat);
                let got = dx[r * c + j] as f64;
                assert!((got - want).abs() < 1e-5, "dx[{}, {}]: {} vs {}", r, j, got, want);
            }
        }
    }
}
