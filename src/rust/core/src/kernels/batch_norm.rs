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

/// Per-channel sums over every row of `block_sums(rows of a block, accumulator)`, in f64
/// across blocks.
fn channel_sums(x: &[f32], c: usize, width: usize, block_sums: impl Fn(&[f32], usize, &mut [f32]) + Sync) -> Vec<f64> {
    let partial: Vec<Vec<f32>> = x
        .par_chunks(BLOCK * c.max(1))
        .enumerate()
        .map(|(b, rows)| {
            let mut acc = vec![0f32; width];
            block_sums(rows, b * BLOCK, &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0f64; width];
    for p in &partial {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += *v as f64);
    }
    total
}

widest_vectors! {
/// `acc[j] += (x[r, j] - center[j])^k` over the rows of `x` (k = 1 or 2).
fn add_powers(x: &[f32], center: &[f32], square: bool, acc: &mut [f32]) {
    let c = acc.len().min(center.len());
    if c == 0 {
        return;
    }
    let (acc, center) = (&mut acc[..c], &center[..c]);
    for row in x.chunks_exact(c) {
        for j in 0..c {
            let d = row[j] - center[j];
            acc[j] += if square { d * d } else { d };
        }
    }
}
}

/// Per-channel mean and biased variance of `x` (two passes: the variance from centered
/// values, as TensorFlow computes it, not from the sum of squares).
pub fn moments(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / c.max(1);
    let n = rows.max(1) as f64;
    let zero = vec![0f32; c];
    let sums = channel_sums(x, c, c, |rows, _, acc| add_powers(rows, &zero, false, acc));
    let mean: Vec<f32> = sums.iter().map(|s| (s / n) as f32).collect();
    let squares = channel_sums(x, c, c, |rows, _, acc| add_powers(rows, &mean, true, acc));
    (mean, squares.iter().map(|s| (s / n) as f32).collect())
}

widest_vectors! {
/// `out[r, j] = x[r, j] * a[j] + b[j]` (with `y`: `+ y[r, j] * e[j]` first).
fn multiply_add_rows(out: &mut [std::mem::MaybeUninit<f32>], x: &[f32], a: &[f32], b: &[f32], y: Option<(&[f32], &[f32])>) {
    let c = a.len().min(b.len());
    if c == 0 {
        return;
    }
    let (a, b) = (&a[..c], &b[..c]);
    match y {
        None => {
            for (o, x) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for j in 0..c {
                    o[j].write(x[j] * a[j] + b[j]);
                }
            }
        }
        Some((y, e)) => {
            let e = &e[..c];
            for ((o, x), y) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(y.chunks_exact(c)) {
                for j in 0..c {
                    o[j].write(e[j] * y[j] + a[j] * x[j] + b[j]);
                }
            }
        }
    }
}
}

/// The gradient a ReLU lets through at the normalized value `x * scale + shift`
/// (`multiply_add_rows`'s expression for it), so that a ReLU taken into batch normalization
/// gives the bits of the two passes.
#[inline(always)]
fn let_through(x: f32, scale: f32, shift: f32, dy: f32) -> f32 {
    super::relu_passes(x * scale + shift, dy)
}

widest_vectors! {
/// `out[r, j] = relu(x[r, j] * a[j] + b[j])`, NaN passing as in `relu_values`: the two
/// passes' expressions, so the same bits, in one pass.
fn multiply_add_relu_rows(out: &mut [std::mem::MaybeUninit<f32>], x: &[f32], a: &[f32], b: &[f32]) {
    let c = a.len().min(b.len());
    if c == 0 {
        return;
    }
    let (a, b) = (&a[..c], &b[..c]);
    for (o, x) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        for j in 0..c {
            o[j].write(super::relu_of(x[j] * a[j] + b[j]));
        }
    }
}
}

widest_vectors! {
/// `multiply_add_rows` with `y` = `dy` where `x * scale + shift > 0`, else 0, `relu` being
/// (scale, shift) (the gradient of a ReLU taken in by the forward pass, applied as `dy` is read).
fn multiply_add_let_through_rows(out: &mut [std::mem::MaybeUninit<f32>], x: &[f32], a: &[f32], b: &[f32], dy: &[f32], e: &[f32], relu: (&[f32], &[f32])) {
    let (scale, shift) = relu;
    let c = a.len().min(b.len()).min(e.len()).min(scale.len()).min(shift.len());
    if c == 0 {
        return;
    }
    let (a, b, e, scale, shift) = (&a[..c], &b[..c], &e[..c], &scale[..c], &shift[..c]);
    for ((o, x), dy) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(dy.chunks_exact(c)) {
        for j in 0..c {
            let y = let_through(x[j], scale[j], shift[j], dy[j]);
            o[j].write(e[j] * y + a[j] * x[j] + b[j]);
        }
    }
}
}

/// `x * scale + shift`, channel by channel: normalization with the statistics and the
/// affine map folded into one multiply-add per value.
pub fn scale_shift(x: &[f32], c: usize, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    scale_shift_then(x, c, scale, shift, false)
}

/// [`scale_shift`], with `relu` a ReLU of it in the same pass.
fn scale_shift_then(x: &[f32], c: usize, scale: &[f32], shift: &[f32], relu: bool) -> Vec<f32> {
    uninit_filled(x.len(), |out| {
        out.par_chunks_mut(BLOCK * c).zip(x.par_chunks(BLOCK * c)).for_each(|(o, x)| match relu {
            false => multiply_add_rows(o, x, scale, shift, None),
            true => multiply_add_relu_rows(o, x, scale, shift),
        })
    })
}

/// What a training forward pass keeps for the backward pass (besides its input).
pub struct Statistics {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
    /// With a ReLU taken in: the pass's per-channel scale and shift, from which the backward
    /// pass tells where the ReLU let values through (no mask or output kept).
    pub relu_affine: Option<(Vec<f32>, Vec<f32>)>,
}

/// The training forward pass: the batch's statistics and `gamma * (x - mean) * inv_std +
/// beta`, with `relu`: a ReLU of that, in the same pass (a ReLU layer that follows the
/// normalization taken in: one pass over the activations and one array fewer).
pub fn forward_training(x: &[f32], c: usize, gamma: Option<&[f32]>, beta: Option<&[f32]>, epsilon: f64, relu: bool) -> (Vec<f32>, Statistics) {
    let (mean, var) = moments(x, c);
    let inv_std: Vec<f32> = var.iter().map(|v| (1.0 / (*v as f64 + epsilon).sqrt()) as f32).collect();
    let (scale, shift) = affine(&mean, &inv_std, gamma, beta);
    let y = scale_shift_then(x, c, &scale, &shift, relu);
    (y, Statistics { mean, var, inv_std, relu_affine: relu.then_some((scale, shift)) })
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
/// Where the forward pass took a ReLU in, `dy` (the ReLU's output gradient) is first masked
/// where the ReLU let nothing through, as each pass reads it.
pub fn backward_training(x: &[f32], dy: &[f32], c: usize, stats: &Statistics, gamma: Option<&[f32]>) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows = x.len() / c.max(1);
    let n = rows.max(1) as f64;
    let Statistics { mean, inv_std, relu_affine, .. } = stats;
    let relu = relu_affine.as_ref().map(|(scale, shift)| (scale.as_slice(), shift.as_slice()));
    // One pass: sum(dy) and sum(dy * (x - mean)) per channel.
    let both = channel_sums(x, c, 2 * c, |rows, first, acc| add_gradient_sums(rows, &dy[first * c..first * c + rows.len()], mean, relu, acc));
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
        out.par_chunks_mut(BLOCK * c).zip(x.par_chunks(BLOCK * c)).zip(dy.par_chunks(BLOCK * c)).for_each(|((o, x), dy)| match relu {
            None => multiply_add_rows(o, x, &b, &d, Some((dy, &a))),
            Some(relu) => multiply_add_let_through_rows(o, x, &b, &d, dy, &a, relu),
        })
    });
    (dx, dgamma.iter().map(|v| *v as f32).collect(), dbeta.iter().map(|v| *v as f32).collect())
}

widest_vectors! {
/// `acc[j] += dy[r, j]` and `acc[c + j] += dy[r, j] * (x[r, j] - mean[j])` over the rows;
/// with `relu` (scale, shift), `dy` where `x * scale + shift > 0`, else 0.
fn add_gradient_sums(x: &[f32], dy: &[f32], mean: &[f32], relu: Option<(&[f32], &[f32])>, acc: &mut [f32]) {
    let c = mean.len();
    if c == 0 || acc.len() < 2 * c {
        return;
    }
    let (sum_dy, sum_dyx) = acc.split_at_mut(c);
    match relu {
        None => {
            for (x, dy) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
                for j in 0..c {
                    sum_dy[j] += dy[j];
                    sum_dyx[j] += dy[j] * (x[j] - mean[j]);
                }
            }
        }
        Some((scale, shift)) => {
            let (scale, shift) = (&scale[..c], &shift[..c]);
            for (x, dy) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
                for j in 0..c {
                    let d = let_through(x[j], scale[j], shift[j], dy[j]);
                    sum_dy[j] += d;
                    sum_dyx[j] += d * (x[j] - mean[j]);
                }
            }
        }
    }
}
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
        let (y, stats) = forward_training(&x, c, Some(&gamma), Some(&beta), 1e-3, false);
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

    #[test]
    fn a_relu_taken_in_gives_the_bits_of_the_two_passes() {
        // The ReLU's own passes (kernels::relu and relu_backward) after and before the
        // normalization's, against the normalization with the ReLU taken in. Values around
        // the mean so that about half of them are cut; one channel all cut (beta far below).
        let (rows, c) = (700, 19);
        let x = data(rows, c, 3);
        let gamma: Vec<f32> = (0..c).map(|j| 0.25 + j as f32 * 0.1).collect();
        let mut beta: Vec<f32> = (0..c).map(|j| j as f32 * 0.05 - 0.4).collect();
        beta[5] = -100.0;
        let dy = data(rows, c, 11);
        let (z, plain) = forward_training(&x, c, Some(&gamma), Some(&beta), 1e-3, false);
        let (y, fused) = forward_training(&x, c, Some(&gamma), Some(&beta), 1e-3, true);
        let relu = uninit_filled(z.len(), |out| super::super::relu_values(out, &z));
        assert_eq!(y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), relu.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert!(y.iter().filter(|v| **v == 0.0).count() > rows * c / 4, "the test should cut many values");
        let masked = uninit_filled(z.len(), |out| super::super::relu_gradient(out, &z, &dy));
        let two_passes = backward_training(&x, &masked, c, &plain, Some(&gamma));
        let one_pass = backward_training(&x, &dy, c, &fused, Some(&gamma));
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one_pass.0), bits(&two_passes.0), "dx");
        assert_eq!(bits(&one_pass.1), bits(&two_passes.1), "dgamma");
        assert_eq!(bits(&one_pass.2), bits(&two_passes.2), "dbeta");
        assert_eq!(one_pass.2[5], 0.0, "a channel the ReLU cut everywhere gets no gradient");
    }
}
