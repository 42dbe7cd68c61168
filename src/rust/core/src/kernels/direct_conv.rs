//! Direct 2-d convolution (channels last) for windows of few values, such as a one-channel
//! image's 3x3 taps: no patch matrix, each output pixel's filters summed over its taps.
//!
//! With 9 values per window the im2col route wrote a patch matrix as large as the image
//! times 9 in runs of 3 values, and its matmuls had an inner dimension of 9, where gemm's
//! packing costs more than the products: the benchmarks' CNN's first convolution took
//! 1.4 ms forward and 2.0 ms backward a batch (128 images, 2 threads), of which 0.9 ms was
//! the ReLU gradient as a separate pass. Here the forward pass is one write of the output,
//! and the kernel gradient is one read of the output gradient and the output, with the ReLU
//! gradient applied on the way (see `bench/NOTES.md` for the measured effect).
use super::conv::ConvGeometry;
use rayon::prelude::*;

/// The most values per window (kh * kw * c) these kernels take: an RGB 3x3 window.
pub const DIRECT_MAX_PATCH: usize = 27;

/// Windows of at most this many values are worth the direct route: a one-channel 3x3 window
/// (the first convolution of most MNIST-style models). Best of 40, 2 threads
/// (`DIRECT=1 cargo run --release -p rustgpu-core --example layer_profile`): at 28x28x1, 32
/// filters, batch 128, forward 0.93-1.23 ms against 1.21-1.80 ms for im2col + matmul, kernel
/// gradient with the ReLU's 1.8-2.4 ms against 2.0-2.2 ms; at 71x71x3 (27 values), stride 2,
/// batch 32, the forward pass gains 0.1-0.3 ms but the kernel gradient loses 0.6-0.8 ms to
/// gemm, whose register blocking reuses each value more.
pub const DIRECT_PAYS_UP_TO: usize = 9;

/// Images per partial sum of the kernel gradient. Fixed, not derived from the thread
/// count, so the partial sums and their order (hence the bits) do not depend on it.
const IMAGES_PER_PARTIAL: usize = 4;

/// (batch, h, w, c) convolved with `kernel` (patch rows (kh, kw, c) by `filters`, Keras's
/// layout flattened), plus `bias`, then ReLU if asked: (batch * out_h * out_w, filters).
pub fn direct_conv_forward(x: &[f32], batch: usize, g: &ConvGeometry, kernel: &[f32], bias: Option<&[f32]>, relu: bool, filters: usize) -> Vec<f32> {
    let per_image = g.out_h * g.out_w * filters;
    let ilen = g.image_len();
    super::uninit_filled(batch * per_image, |out| {
        out.par_chunks_mut(per_image.max(1)).enumerate().for_each(|(b, o)| forward_image(&x[b * ilen..(b + 1) * ilen], o, g, kernel, bias, relu, filters))
    })
}

/// Filters per block: one 16-value block's accumulators stay in a vector register (a block
/// of runtime length kept them in memory, and each tap's multiply-add waited on the previous
/// one's store: 4.3 ms for the CNN's first convolution).
const LANES: usize = 16;

/// Output pixels done together in the forward pass: their accumulators are independent
/// chains of multiply-adds sharing each kernel load (one pixel at a time waited on the
/// add's latency at every tap: 2.4 ms for the CNN's first convolution; with 8 the compiler
/// no longer kept the accumulators in registers: 12 ms).
const PIXELS: usize = 4;

/// Output pixels done together in the kernel gradient: each kernel-row block is loaded and
/// stored once per group (best of 40 for the block net's first convolution: 2.3 ms with 4,
/// 1.6 ms with 8).
const GRADIENT_PIXELS: usize = 8;

/// Gathers output pixel (oy, ox)'s window from `img` into `patch` (the patch row that
/// im2col would write), zeros where it reaches into the padding.
#[inline(always)]
fn gather_patch(img: &[f32], g: &ConvGeometry, oy: usize, ox: usize, patch: &mut [f32]) {
    let c = g.c;
    for i in 0..g.kh {
        for j in 0..g.kw {
            let dst = &mut patch[(i * g.kw + j) * c..][..c];
            match g.source(oy, ox, i, j) {
                Some((y, x)) => {
                    // A loop, not copy_from_slice: a memcpy call per one-channel value.
                    let src = &img[(y * g.w + x) * c..][..c];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = *s;
                    }
                }
                None => dst.fill(0.0),
            }
        }
    }
}

/// The windows of up to N output pixels of row `oy` from column `ox` into
/// `patches`, filled in place (returned by value, the array was copied by memcpy calls:
/// 8% of the step); the rest are zeroed. `offsets`: each patch value's offset in the image
/// from its window's first value, for windows inside the image.
#[inline(always)]
fn gather_patches<const N: usize>(
    img: &[f32],
    g: &ConvGeometry,
    offsets: &[usize],
    oy: usize,
    ox: usize,
    count: usize,
    patches: &mut [[f32; DIRECT_MAX_PATCH]; N],
) {
    let inside_rows = oy * g.stride_h >= g.pad_top && oy * g.stride_h - g.pad_top + (g.kh - 1) * g.dilation_h < g.h;
    for (p, patch) in patches.iter_mut().enumerate() {
        let x0 = (ox + p) * g.stride_w;
        if p >= count {
            patch.fill(0.0);
        } else if inside_rows && x0 >= g.pad_left && x0 - g.pad_left + (g.kw - 1) * g.dilation_w < g.w {
            let base = ((oy * g.stride_h - g.pad_top) * g.w + x0 - g.pad_left) * g.c;
            let src = &img[base..];
            for (v, &o) in patch.iter_mut().zip(offsets) {
                *v = src[o];
            }
        } else {
            gather_patch(img, g, oy, ox + p, &mut patch[..g.patch_len()]);
        }
    }
}

/// [`gather_patches`]' offsets of a window's values from its first value.
fn window_offsets(g: &ConvGeometry) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(g.patch_len());
    for i in 0..g.kh {
        for j in 0..g.kw {
            for ch in 0..g.c {
                offsets.push((i * g.dilation_h * g.w + j * g.dilation_w) * g.c + ch);
            }
        }
    }
    offsets
}

widest_vectors! {
/// One image's output pixels, each written once.
pub(super) fn forward_image(img: &[f32], out: &mut [std::mem::MaybeUninit<f32>], g: &ConvGeometry, kernel: &[f32], bias: Option<&[f32]>, relu: bool, filters: usize) {
    let plen = g.patch_len();
    let full = filters / LANES * LANES;
    let offsets = window_offsets(g);
    let mut patches = [[0f32; DIRECT_MAX_PATCH]; PIXELS];
    for oy in 0..g.out_h {
        for ox in (0..g.out_w).step_by(PIXELS) {
            let count = PIXELS.min(g.out_w - ox);
            gather_patches(img, g, &offsets, oy, ox, count, &mut patches);
            let first = (oy * g.out_w + ox) * filters;
            for f0 in (0..full).step_by(LANES) {
                let start: [f32; LANES] = match bias {
                    Some(b) => b[f0..f0 + LANES].try_into().unwrap(),
                    None => [0.0; LANES],
                };
                let mut acc = [start; PIXELS];
                for t in 0..plen {
                    let k: &[f32; LANES] = kernel[t * filters + f0..][..LANES].try_into().unwrap();
                    for p in 0..PIXELS {
                        let v = patches[p][t];
                        for l in 0..LANES {
                            acc[p][l] += v * k[l];
                        }
                    }
                }
                for (p, a) in acc.iter().enumerate().take(count) {
                    let dst = &mut out[first + p * filters + f0..][..LANES];
                    let a = if relu { a.map(super::relu_of) } else { *a };
                    for l in 0..LANES {
                        dst[l].write(a[l]);
                    }
                }
            }
            for (p, patch) in patches.iter().enumerate().take(count) {
                for f in full..filters {
                    let mut acc = bias.map_or(0.0, |b| b[f]);
                    for t in 0..plen {
                        acc += patch[t] * kernel[t * filters + f];
                    }
                    out[first + p * filters + f].write(if relu && acc < 0.0 { 0.0 } else { acc });
                }
            }
        }
    }
}
}

/// The kernel's and the bias's gradients from the images `x` and the gradient `dy` of
/// [`direct_conv_forward`]'s output: `(patch_len * filters, filters)` values. With
/// `relu_output` (the forward output of a ReLU convolution), `dy` is the gradient of that
/// output and is zeroed where the output is not positive (TensorFlow's ReluGrad) on the way;
/// without, `dy` is already the pre-activation's gradient.
pub fn direct_conv_kernel_gradient(x: &[f32], dy: &[f32], relu_output: Option<&[f32]>, batch: usize, g: &ConvGeometry, filters: usize) -> (Vec<f32>, Vec<f32>) {
    let plen = g.patch_len();
    let per_image = g.out_h * g.out_w * filters;
    let ilen = g.image_len();
    let groups = batch.div_ceil(IMAGES_PER_PARTIAL);
    let partials: Vec<Vec<f32>> = (0..groups)
        .into_par_iter()
        .map(|p| {
            let mut acc = vec![0f32; (plen + 1) * filters];
            for b in p * IMAGES_PER_PARTIAL..((p + 1) * IMAGES_PER_PARTIAL).min(batch) {
                let o = b * per_image..(b + 1) * per_image;
                kernel_gradient_image(&x[b * ilen..(b + 1) * ilen], &dy[o.clone()], relu_output.map(|y| &y[o]), &mut acc, g, filters);
            }
            acc
        })
        .collect();
    let mut total = vec![0f32; (plen + 1) * filters];
    for part in &partials {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    let bias = total.split_off(plen * filters);
    (total, bias)
}

widest_vectors! {
/// One image's contribution: `acc` holds the kernel gradient's patch_len rows of `filters`
/// values, then the bias gradient's row.
fn kernel_gradient_image(img: &[f32], dy: &[f32], relu_output: Option<&[f32]>, acc: &mut [f32], g: &ConvGeometry, filters: usize) {
    let plen = g.patch_len();
    let full = filters / LANES * LANES;
    let offsets = window_offsets(g);
    let mut patches = [[0f32; DIRECT_MAX_PATCH]; GRADIENT_PIXELS];
    // The pre-activation's gradient of up to GRADIENT_PIXELS output pixels, one row each (rows past
    // `count`, at the end of an output row, are 0 and add nothing), and the bias gradient's
    // sums per row, folded at the end. Zipped slices over these whole buffers (256 values
    // for 32 filters): over 16-value chunks the compiler emitted gathers, and indexed loops
    // left their last 64 values to a scalar loop (7 ms, then 2 ms, instead of ~1 ms).
    let n = GRADIENT_PIXELS * filters;
    let mut dz = vec![0f32; n];
    let mut bias_rows = vec![0f32; n];
    let (kernel_rows, bias_row) = acc.split_at_mut(plen * filters);
    for oy in 0..g.out_h {
        for ox in (0..g.out_w).step_by(GRADIENT_PIXELS) {
            let count = GRADIENT_PIXELS.min(g.out_w - ox);
            gather_patches(img, g, &offsets, oy, ox, count, &mut patches);
            let first = (oy * g.out_w + ox) * filters;
            let m = count * filters;
            let d = &dy[first..first + m];
            match relu_output {
                Some(y) => {
                    for ((o, &d), &y) in dz[..m].iter_mut().zip(d).zip(&y[first..first + m]) {
                        *o = super::relu_passes(y, d);
                    }
                }
                None => dz[..m].copy_from_slice(d),
            }
            if m < n {
                dz[m..].fill(0.0);
            }
            for (b, &d) in bias_rows.iter_mut().zip(&dz) {
                *b += d;
            }
            // Each 16-value block of a kernel row is loaded once, takes the GRADIENT_PIXELS products,
            // and is stored once.
            for t in 0..plen {
                let k = &mut kernel_rows[t * filters..][..filters];
                for f0 in (0..full).step_by(LANES) {
                    let mut a: [f32; LANES] = k[f0..f0 + LANES].try_into().unwrap();
                    for p in 0..GRADIENT_PIXELS {
                        let v = patches[p][t];
                        let row: &[f32; LANES] = dz[p * filters + f0..][..LANES].try_into().unwrap();
                        for l in 0..LANES {
                            a[l] += v * row[l];
                        }
                    }
                    k[f0..f0 + LANES].copy_from_slice(&a);
                }
                for f in full..filters {
                    for p in 0..count {
                        k[f] += patches[p][t] * dz[p * filters + f];
                    }
                }
            }
        }
    }
    for row in bias_rows.chunks_exact(filters) {
        for f in 0..filters {
            bias_row[f] += row[f];
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::test_geometry as geometry;
    use crate::kernels::im2col;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32) / 500.0 - 1.0).collect()
    }

    /// im2col's patch matrix times the kernel, in f64: the reference both kernels must meet.
    fn reference(x: &[f32], batch: usize, g: &ConvGeometry, kernel: &[f32], filters: usize) -> Vec<f64> {
        let cols = im2col(x, batch, g);
        let plen = g.patch_len();
        let rows = cols.len() / plen;
        let mut out = vec![0f64; rows * filters];
        for r in 0..rows {
            for t in 0..plen {
                for f in 0..filters {
                    out[r * filters + f] += f64::from(cols[r * plen + t]) * f64::from(kernel[t * filters + f]);
                }
            }
        }
        out
    }

    #[test]
    fn forward_and_kernel_gradient_match_the_patch_matrix_route() {
        // Valid, same with strides, dilation, filters beyond one block, one and three channels.
        for &(c, k, s, d, same, filters) in &[(1, 3, 1, 1, false, 32), (3, 3, 2, 1, true, 70), (1, 2, 1, 2, true, 5), (2, 3, 2, 1, false, 3)] {
            let g = geometry(7, 6, c, k, s, d, same);
            let batch = 6;
            let x = values(batch * g.image_len(), 1);
            let kernel = values(g.patch_len() * filters, 2);
            let bias = values(filters, 3);
            let z = reference(&x, batch, &g, &kernel, filters);
            let plain = direct_conv_forward(&x, batch, &g, &kernel, Some(&bias), false, filters);
            let relu = direct_conv_forward(&x, batch, &g, &kernel, Some(&bias), true, filters);
            for (i, z) in z.iter().enumerate() {
                let z = z + f64::from(bias[i % filters]);
                assert!((f64::from(plain[i]) - z).abs() < 1e-4, "{} vs {}", plain[i], z);
                assert!((f64::from(relu[i]) - z.max(0.0)).abs() < 1e-4);
            }
            // Kernel gradient: cols^T dz, the bias gradient: dz's column sums; with the
            // ReLU output given, dz is dy where that output is positive.
            let dy = values(plain.len(), 4);
            let cols = im2col(&x, batch, &g);
            let plen = g.patch_len();
            for masked in [false, true] {
                let dz: Vec<f32> = dy.iter().zip(&relu).map(|(d, y)| if masked && *y <= 0.0 { 0.0 } else { *d }).collect();
                let (dk, db) = direct_conv_kernel_gradient(&x, &dy, masked.then_some(&relu[..]), batch, &g, filters);
                for t in 0..plen {
                    for f in 0..filters {
                        let want: f64 = (0..dz.len() / filters).map(|r| f64::from(cols[r * plen + t]) * f64::from(dz[r * filters + f])).sum();
                        assert!((f64::from(dk[t * filters + f]) - want).abs() < 1e-3, "{} vs {}", dk[t * filters + f], want);
                    }
                }
                for f in 0..filters {
                    let want: f64 = (0..dz.len() / filters).map(|r| f64::from(dz[r * filters + f])).sum();
                    assert!((f64::from(db[f]) - want).abs() < 1e-3);
                }
            }
        }
    }
}
