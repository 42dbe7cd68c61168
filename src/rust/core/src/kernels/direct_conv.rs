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
/// gradient with the ReLU's 1.8-2.4 ms (0.9-1.2 ms since it runs pixel by pixel) against
/// 2.0-2.2 ms; at 71x71x3 (27 values), stride 2,
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
    for (p, patch) in patches.iter_mut().enumerate() {
        if p >= count {
            patch.fill(0.0);
        } else if let Some(base) = window_start(g, oy, ox + p) {
            let src = &img[base..];
            for (v, &o) in patch.iter_mut().zip(offsets) {
                *v = src[o];
            }
        } else {
            gather_patch(img, g, oy, ox + p, &mut patch[..g.patch_len()]);
        }
    }
}

/// Where output pixel (oy, ox)'s window starts in the image, when it lies wholly inside
/// (no tap in the padding); None otherwise.
#[inline(always)]
fn window_start(g: &ConvGeometry, oy: usize, ox: usize) -> Option<usize> {
    let (y0, x0) = (oy * g.stride_h, ox * g.stride_w);
    let inside = y0 >= g.pad_top && y0 - g.pad_top + (g.kh - 1) * g.dilation_h < g.h && x0 >= g.pad_left && x0 - g.pad_left + (g.kw - 1) * g.dilation_w < g.w;
    inside.then(|| ((y0 - g.pad_top) * g.w + x0 - g.pad_left) * g.c)
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

/// One image's output pixels for nine-value windows and 32-filter blocks on AVX-512: the
/// block's kernel (18 vectors) held in registers for the whole image, pixel after pixel
/// (consecutive pixels' sums are independent, so they overlap in the pipeline). Each sum starts from the bias and adds the taps in order, a
/// multiply then an add, as [`forward_image`]'s loop does: the same bits (tested).
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)] // one image's operands and the layer's
unsafe fn forward_image_avx512(windows: &[[f32; 9]], out: &mut [std::mem::MaybeUninit<f32>], kernel: &[f32], bias: Option<&[f32]>, relu: bool, filters: usize) {
    use std::arch::x86_64::*;
    // Every access below ends within these (checked once, so that the loop has no panic
    // branch, which kept the kernel gradient's sums on the stack).
    assert!(filters.is_multiple_of(2 * LANES) && kernel.len() >= 9 * filters && out.len() >= windows.len() * filters, "operands too short");
    assert!(bias.is_none_or(|b| b.len() >= filters), "bias too short");
    let zero = _mm512_setzero_ps();
    let out = out.as_mut_ptr() as *mut f32;
    for from in (0..filters).step_by(2 * LANES) {
        let k = |t: usize, j: usize| _mm512_loadu_ps(kernel.as_ptr().add(t * filters + from + j * LANES));
        let (k0, k1, k2, k3, k4, k5, k6, k7, k8) = (k(0, 0), k(1, 0), k(2, 0), k(3, 0), k(4, 0), k(5, 0), k(6, 0), k(7, 0), k(8, 0));
        let (l0, l1, l2, l3, l4, l5, l6, l7, l8) = (k(0, 1), k(1, 1), k(2, 1), k(3, 1), k(4, 1), k(5, 1), k(6, 1), k(7, 1), k(8, 1));
        let (b0, b1) = match bias {
            Some(b) => (_mm512_loadu_ps(b.as_ptr().add(from)), _mm512_loadu_ps(b.as_ptr().add(from + LANES))),
            None => (zero, zero),
        };
        let finish = |v: __m512| if relu { _mm512_max_ps(zero, v) } else { v };
        // One pixel's two sums: bias, then the nine taps in order.
        let pixel = |w: &[f32; 9]| {
            let (mut a0, mut a1) = (b0, b1);
            macro_rules! taps {
                ($($t:literal => $k:ident, $l:ident);*) => {$(
                    let v = _mm512_set1_ps(w[$t]);
                    a0 = _mm512_add_ps(a0, _mm512_mul_ps(v, $k));
                    a1 = _mm512_add_ps(a1, _mm512_mul_ps(v, $l));
                )*};
            }
            taps!(0 => k0, l0; 1 => k1, l1; 2 => k2, l2; 3 => k3, l3; 4 => k4, l4; 5 => k5, l5; 6 => k6, l6; 7 => k7, l7; 8 => k8, l8);
            (finish(a0), finish(a1))
        };
        for (p, w) in windows.iter().enumerate() {
            let (a0, a1) = pixel(w);
            let at = out.add(p * filters + from);
            _mm512_storeu_ps(at, a0);
            _mm512_storeu_ps(at.add(LANES), a1);
        }
    }
}

widest_vectors! {
/// One image's output pixels, each written once.
pub(super) fn forward_image(img: &[f32], out: &mut [std::mem::MaybeUninit<f32>], g: &ConvGeometry, kernel: &[f32], bias: Option<&[f32]>, relu: bool, filters: usize) {
    let plen = g.patch_len();
    #[cfg(target_arch = "x86_64")]
    if plen == 9 && filters.is_multiple_of(2 * LANES) && std::arch::is_x86_feature_detected!("avx512f") {
        let offsets: [usize; 9] = window_offsets(g).try_into().unwrap();
        let windows = image_windows(img, g, &offsets);
        // SAFETY: the CPU has AVX-512F (checked just above).
        unsafe { forward_image_avx512(&windows, out, kernel, bias, relu, filters) };
        return;
    }
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

/// Every output pixel's nine-value window of one image (a one-channel 3x3 kernel), zeros
/// where it reaches into the padding: gathered once per image for every filter block.
fn image_windows(img: &[f32], g: &ConvGeometry, offsets: &[usize; 9]) -> Vec<[f32; 9]> {
    let mut windows = vec![[0f32; 9]; g.out_h * g.out_w];
    for (oy, row) in windows.chunks_mut(g.out_w.max(1)).enumerate() {
        for (ox, window) in row.iter_mut().enumerate() {
            match window_start(g, oy, ox) {
                Some(base) => *window = std::array::from_fn(|t| img[base + offsets[t]]),
                None => gather_patch(img, g, oy, ox, window),
            }
        }
    }
    windows
}

/// One image's kernel and bias gradients for V blocks of 16 filters (from filter `from`) of
/// nine-value windows, output pixel by output pixel with all the sums kept (9 x V vectors
/// for the kernel, V for the bias): the output gradient is read once, and each pixel's nine
/// values and its filters' gradient take 9 x V multiply-adds that do not wait on each other.
/// Groups of 8 pixels before loaded and stored every kernel row block per group, each sum a
/// chain of 8 dependent multiply-adds (bench/NOTES.md).
#[inline(always)]
fn kernel_gradient_pixels<const V: usize>(windows: &[[f32; 9]], dy: &[f32], relu_output: Option<&[f32]>, acc: &mut [f32], filters: usize, from: usize) {
    let mut kernel = [[[0f32; LANES]; V]; 9];
    let mut bias = [[0f32; LANES]; V];
    for (pixel, window) in windows.iter().enumerate() {
        let at = pixel * filters + from;
        let mut d = [[0f32; LANES]; V];
        for (j, dj) in d.iter_mut().enumerate() {
            let src: &[f32; LANES] = dy[at + j * LANES..][..LANES].try_into().unwrap();
            match relu_output {
                Some(y) => {
                    let y: &[f32; LANES] = y[at + j * LANES..][..LANES].try_into().unwrap();
                    for l in 0..LANES {
                        dj[l] = super::relu_passes(y[l], src[l]);
                    }
                }
                None => *dj = *src,
            }
        }
        for (k, v) in kernel.iter_mut().zip(window) {
            for (kj, dj) in k.iter_mut().zip(&d) {
                for l in 0..LANES {
                    kj[l] += v * dj[l];
                }
            }
        }
        for (bj, dj) in bias.iter_mut().zip(&d) {
            for l in 0..LANES {
                bj[l] += dj[l];
            }
        }
    }
    let (kernel_rows, bias_row) = acc.split_at_mut(9 * filters);
    for (t, k) in kernel.iter().enumerate() {
        for (j, kj) in k.iter().enumerate() {
            for (a, v) in kernel_rows[t * filters + from + j * LANES..][..LANES].iter_mut().zip(kj) {
                *a += v;
            }
        }
    }
    for (j, bj) in bias.iter().enumerate() {
        for (a, v) in bias_row[from + j * LANES..][..LANES].iter_mut().zip(bj) {
            *a += v;
        }
    }
}

/// [`kernel_gradient_pixels`] for a block of 32 filters with its 20 sums in AVX-512
/// registers, named one by one: compiled from the portable loop, the sums were kept on the
/// stack, a load and a store around every multiply-add (also with constant indices, and
/// whenever the loop held a branch that could panic). The CNN's first convolution's kernel
/// gradient at batch 128 (2 threads, best of 40, `DIRECT=1 layer_profile`): 1.8-2.4 ms in
/// groups of 8 pixels, 1.0-1.35 ms with the portable loop, 0.9-1.2 ms here. The same
/// operations in the same order (a multiply, then an add; the ReLU's gradient as a mask of
/// `y > 0`), so the same bits as the portable loop (tested).
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_gradient_pixels_avx512(windows: &[[f32; 9]], dy: &[f32], relu_output: Option<&[f32]>, acc: &mut [f32], filters: usize, from: usize) {
    use std::arch::x86_64::*;
    let pixels = windows.len();
    if pixels == 0 {
        return;
    }
    // Every load below ends within these (checked once, so the loop has no panic branch:
    // with one, the sums were kept on the stack again).
    assert!(from + 2 * LANES <= filters && dy.len() >= pixels * filters, "output gradient too short");
    assert!(relu_output.is_none_or(|y| y.len() >= pixels * filters), "ReLU output too short");
    assert!(acc.len() >= 10 * filters, "gradient sums too short");
    let zero = _mm512_setzero_ps();
    let [mut k0, mut k1, mut k2, mut k3, mut k4, mut k5, mut k6, mut k7, mut k8, mut k9, mut k10, mut k11, mut k12, mut k13, mut k14, mut k15, mut k16, mut k17] =
        [zero; 18];
    let (mut b0, mut b1) = (zero, zero);
    let dy = dy.as_ptr().add(from);
    let relu = relu_output.map(|y| y.as_ptr().add(from));
    for (pixel, window) in windows.iter().enumerate() {
        let at = pixel * filters;
        let mut d0 = _mm512_loadu_ps(dy.add(at));
        let mut d1 = _mm512_loadu_ps(dy.add(at + LANES));
        if let Some(y) = relu {
            d0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_loadu_ps(y.add(at)), zero), d0);
            d1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_loadu_ps(y.add(at + LANES)), zero), d1);
        }
        macro_rules! taps {
            ($($t:literal => $a:ident, $b:ident);*) => {$(
                let v = _mm512_set1_ps(window[$t]);
                $a = _mm512_add_ps($a, _mm512_mul_ps(v, d0));
                $b = _mm512_add_ps($b, _mm512_mul_ps(v, d1));
            )*};
        }
        taps!(0 => k0, k1; 1 => k2, k3; 2 => k4, k5; 3 => k6, k7; 4 => k8, k9; 5 => k10, k11; 6 => k12, k13; 7 => k14, k15; 8 => k16, k17);
        b0 = _mm512_add_ps(b0, d0);
        b1 = _mm512_add_ps(b1, d1);
    }
    let sums = [k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, k16, k17, b0, b1];
    // Row t of the kernel gradient (the bias's is row 9), filters from..from + 32.
    for (i, s) in sums.iter().enumerate() {
        let dst = &mut acc[(i / 2) * filters + from + (i % 2) * LANES..][..LANES];
        _mm512_storeu_ps(dst.as_mut_ptr(), _mm512_add_ps(_mm512_loadu_ps(dst.as_ptr()), *s));
    }
}

widest_vectors! {
/// One image's contribution: `acc` holds the kernel gradient's patch_len rows of `filters`
/// values, then the bias gradient's row. Nine-value windows with whole blocks of 16 filters
/// go pixel by pixel ([`kernel_gradient_pixels`]); the rest in groups of output pixels.
fn kernel_gradient_image(img: &[f32], dy: &[f32], relu_output: Option<&[f32]>, acc: &mut [f32], g: &ConvGeometry, filters: usize) {
    let plen = g.patch_len();
    if plen == 9 && filters.is_multiple_of(LANES) {
        let offsets: [usize; 9] = window_offsets(g).try_into().unwrap();
        let windows = image_windows(img, g, &offsets);
        let mut from = 0;
        while from < filters {
            if filters - from >= 2 * LANES {
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    unsafe { kernel_gradient_pixels_avx512(&windows, dy, relu_output, acc, filters, from) };
                    from += 2 * LANES;
                    continue;
                }
                kernel_gradient_pixels::<2>(&windows, dy, relu_output, acc, filters, from);
                from += 2 * LANES;
            } else {
                kernel_gradient_pixels::<1>(&windows, dy, relu_output, acc, filters, from);
                from += LANES;
            }
        }
        return;
    }
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_kernel_gradient_has_the_portable_loops_bits() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            // Nothing to compare on this CPU: the portable loop is what runs here.
            return;
        }
        let g = geometry(9, 8, 1, 3, 1, 1, true);
        let filters = 64;
        let x = values(g.image_len(), 5);
        let offsets: [usize; 9] = window_offsets(&g).try_into().unwrap();
        let windows = image_windows(&x, &g, &offsets);
        let dy = values(windows.len() * filters, 6);
        let y = values(windows.len() * filters, 7);
        for relu in [None, Some(&y[..])] {
            for from in [0, 32] {
                let start = values(10 * filters, 8);
                let (mut portable, mut wide) = (start.clone(), start);
                kernel_gradient_pixels::<2>(&windows, &dy, relu, &mut portable, filters, from);
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { kernel_gradient_pixels_avx512(&windows, &dy, relu, &mut wide, filters, from) };
                assert_eq!(portable.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), wide.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn the_forward_pass_sums_bias_then_taps_in_order_bit_for_bit() {
        // Nine-value windows and 32-filter blocks (on AVX-512 the register kernel): each
        // output is bias + tap 0 + ... + tap 8, multiplied then added, in f32.
        for (s, same, relu) in [(1, true, true), (2, false, false), (1, false, true)] {
            let g = geometry(9, 10, 1, 3, s, 1, same);
            let (batch, filters) = (3, 64);
            let x = values(batch * g.image_len(), 9);
            let kernel = values(9 * filters, 10);
            let bias = values(filters, 11);
            let got = direct_conv_forward(&x, batch, &g, &kernel, Some(&bias), relu, filters);
            let cols = im2col(&x, batch, &g);
            for (i, v) in got.iter().enumerate() {
                let (r, f) = (i / filters, i % filters);
                let mut want = bias[f];
                for t in 0..9 {
                    want += cols[r * 9 + t] * kernel[t * filters + f];
                }
                let want = if relu { super::super::relu_of(want) } else { want };
                assert_eq!(v.to_bits(), want.to_bits(), "output {} of stride {}", i, s);
            }
        }
    }

    #[test]
    fn forward_and_kernel_gradient_match_the_patch_matrix_route() {
        // Valid, same with strides, dilation, filters beyond one block, one and three channels.
        // One-channel 3x3 windows with whole 16-filter blocks take the pixel-by-pixel kernel
        // gradient (32 + 16 filters: both of its block widths; padding, strides, dilation).
        for &(c, k, s, d, same, filters) in
            &[(1, 3, 1, 1, false, 32), (1, 3, 1, 1, true, 48), (1, 3, 2, 2, true, 16), (3, 3, 2, 1, true, 70), (1, 2, 1, 2, true, 5), (2, 3, 2, 1, false, 3)]
        {
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
