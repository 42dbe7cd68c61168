//! Depthwise convolution on the CPU, straight from the image (no im2col copy): each output
//! pixel's channel `ch` (times `m` multipliers) is the sum over the window's taps of the
//! input's channel `ch` times its own kernel. Written as loops over channels so that they
//! vectorize; the tensor-op version (permuted batched matmuls on im2col patches) stays for
//! other devices.
//!
//! Kernel layout: Keras's (kh, kw, c, m), flattened as `(tap * c + ch) * m + j`.
use super::conv::ConvGeometry;
use rayon::prelude::*;

/// In-bounds taps of output pixel (oy, ox): (tap index, input pixel offset in values).
fn taps(g: &ConvGeometry, oy: usize, ox: usize, out: &mut Vec<(usize, usize)>) {
    out.clear();
    for i in 0..g.kh {
        for j in 0..g.kw {
            let y = (oy * g.stride_h + i * g.dilation_h).checked_sub(g.pad_top);
            let x = (ox * g.stride_w + j * g.dilation_w).checked_sub(g.pad_left);
            if let (Some(y), Some(x)) = (y, x) {
                if y < g.h && x < g.w {
                    out.push((i * g.kw + j, (y * g.w + x) * g.c));
                }
            }
        }
    }
}

/// The output pixels whose window lies wholly inside the image, and their taps as offsets
/// from the window's first input value: for those, the taps need not be worked out pixel by
/// pixel ([`taps`] took about as long as the multiply-adds of a 32-channel image).
struct InsideWindows {
    rows: Vec<bool>,
    cols: Vec<bool>,
    /// (tap index, offset in values), in [`taps`]'s order.
    taps: Vec<(usize, usize)>,
}

impl InsideWindows {
    fn of(g: &ConvGeometry) -> Self {
        let inside = |o: usize, stride: usize, k: usize, dilation: usize, pad: usize, extent: usize| {
            (0..k).all(|i| (o * stride + i * dilation).checked_sub(pad).is_some_and(|v| v < extent))
        };
        Self {
            rows: (0..g.out_h).map(|oy| inside(oy, g.stride_h, g.kh, g.dilation_h, g.pad_top, g.h)).collect(),
            cols: (0..g.out_w).map(|ox| inside(ox, g.stride_w, g.kw, g.dilation_w, g.pad_left, g.w)).collect(),
            taps: (0..g.kh).flat_map(|i| (0..g.kw).map(move |j| (i * g.kw + j, (i * g.dilation_h * g.w + j * g.dilation_w) * g.c))).collect(),
        }
    }

    /// Where output pixel (oy, ox)'s window starts in the image (in values), if it lies inside.
    fn start(&self, g: &ConvGeometry, oy: usize, ox: usize) -> Option<usize> {
        (self.rows[oy] && self.cols[ox]).then(|| ((oy * g.stride_h - g.pad_top) * g.w + ox * g.stride_w - g.pad_left) * g.c)
    }
}

/// (batch, h, w, c) -> (batch, out_h, out_w, c * m).
pub fn forward(x: &[f32], kernel: &[f32], batch: usize, g: &ConvGeometry, m: usize) -> Vec<f32> {
    let ilen = g.image_len();
    let olen = g.out_h * g.out_w * g.c * m;
    super::uninit_filled(batch * olen, |out| {
        out.par_chunks_mut(olen.max(1)).enumerate().for_each(|(b, o)| {
            let img = &x[b * ilen..(b + 1) * ilen];
            forward_image(img, kernel, o, g, m)
        })
    })
}

/// `acc[i] += a[i] * b[i]` over equal lengths, indexed so that it vectorizes.
#[inline(always)]
fn multiply_add(acc: &mut [f32], a: &[f32], b: &[f32]) {
    let n = acc.len().min(a.len()).min(b.len());
    let (acc, a, b) = (&mut acc[..n], &a[..n], &b[..n]);
    for i in 0..n {
        acc[i] += a[i] * b[i];
    }
}

/// Channels summed together in the forward pass (one multiplier): their accumulators, four
/// AVX-512 registers, are independent chains across the window's taps.
const CHANNEL_BLOCK: usize = 64;

/// One output pixel's channels `from..from + N` (one multiplier): the window's taps summed
/// in registers, in tap order (the order the per-tap passes used, so the same bits), then
/// written once.
#[inline(always)]
fn pixel_block<const N: usize>(img: &[f32], kernel: &[f32], window: &[(usize, usize)], c: usize, from: usize, cell: &mut [std::mem::MaybeUninit<f32>]) {
    let mut acc = [0f32; N];
    for &(t, src) in window {
        let xs: &[f32; N] = img[src + from..][..N].try_into().unwrap();
        let ks: &[f32; N] = kernel[t * c + from..][..N].try_into().unwrap();
        for l in 0..N {
            acc[l] += xs[l] * ks[l];
        }
    }
    for (o, a) in cell[from..from + N].iter_mut().zip(acc) {
        o.write(a);
    }
}

widest_vectors! {
/// One image's output pixels, each written once.
fn forward_image(img: &[f32], kernel: &[f32], o: &mut [std::mem::MaybeUninit<f32>], g: &ConvGeometry, m: usize) {
    let c = g.c;
    let inside = InsideWindows::of(g);
    let mut border = Vec::with_capacity(g.kh * g.kw);
    let mut cell_values = vec![0f32; c * m];
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            // The image from the window's start and the taps' offsets from there.
            let (img, window) = match inside.start(g, oy, ox) {
                Some(start) => (&img[start..], inside.taps.as_slice()),
                None => {
                    taps(g, oy, ox, &mut border);
                    (img, border.as_slice())
                }
            };
            let cell = &mut o[(oy * g.out_w + ox) * c * m..][..c * m];
            if m == 1 {
                // Each tap's pass added to the output pixel in memory, a load and a store
                // per tap and value, after zero-filling the output (the depthwise forward
                // was 15% of the block net's predict).
                let mut from = 0;
                while from + CHANNEL_BLOCK <= c {
                    pixel_block::<CHANNEL_BLOCK>(img, kernel, window, c, from, cell);
                    from += CHANNEL_BLOCK;
                }
                if from + 32 <= c {
                    pixel_block::<32>(img, kernel, window, c, from, cell);
                    from += 32;
                }
                while from + 16 <= c {
                    pixel_block::<16>(img, kernel, window, c, from, cell);
                    from += 16;
                }
                while from < c {
                    pixel_block::<1>(img, kernel, window, c, from, cell);
                    from += 1;
                }
            } else {
                cell_values.fill(0.0);
                for &(t, src) in window {
                    let xs = &img[src..src + c];
                    let ks = &kernel[t * c * m..(t + 1) * c * m];
                    for (ch, x) in xs.iter().enumerate() {
                        for (o, k) in cell_values[ch * m..(ch + 1) * m].iter_mut().zip(&ks[ch * m..(ch + 1) * m]) {
                            *o += x * k;
                        }
                    }
                }
                for (o, v) in cell.iter_mut().zip(&cell_values) {
                    o.write(*v);
                }
            }
        }
    }
}
}

/// Gradients from `dz` (batch, out_h, out_w, c * m): the kernel's (summed over the batch,
/// in image order) and, if asked, the input's (batch, h, w, c).
pub fn backward(x: &[f32], kernel: &[f32], dz: &[f32], batch: usize, g: &ConvGeometry, m: usize, need_input: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let unit_strides = g.stride_h == 1 && g.stride_w == 1;
    if m == 1 && (unit_strides || !need_input) {
        return backward_one_multiplier(x, kernel, dz, batch, g, need_input);
    }
    backward_per_pixel(x, kernel, dz, batch, g, m, need_input)
}

/// [`backward`] pixel by pixel, each tap's products added into memory.
fn backward_per_pixel(x: &[f32], kernel: &[f32], dz: &[f32], batch: usize, g: &ConvGeometry, m: usize, need_input: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let ilen = g.image_len();
    let olen = g.out_h * g.out_w * g.c * m;
    let klen = g.kh * g.kw * g.c * m;
    let mut dx = if need_input { vec![0f32; batch * ilen] } else { Vec::new() };
    // One kernel gradient per image, added in image order afterwards (deterministic).
    let body = |b: usize, dimg: Option<&mut [f32]>| -> Vec<f32> {
        let img = &x[b * ilen..(b + 1) * ilen];
        let dzi = &dz[b * olen..(b + 1) * olen];
        let mut dk = vec![0f32; klen];
        backward_image(img, kernel, dzi, &mut dk, dimg, g, m);
        dk
    };
    let per_image: Vec<Vec<f32>> = if need_input {
        dx.par_chunks_mut(ilen.max(1)).enumerate().map(|(b, d)| body(b, Some(d))).collect()
    } else {
        (0..batch).into_par_iter().map(|b| body(b, None)).collect()
    };
    sum_in_order(per_image, klen, need_input.then_some(dx))
}

/// The kernel gradients of the images added up in image order (deterministic), and `dx`.
fn sum_in_order(per_image: Vec<Vec<f32>>, klen: usize, dx: Option<Vec<f32>>) -> (Vec<f32>, Option<Vec<f32>>) {
    let mut dk = vec![0f32; klen];
    for p in &per_image {
        dk.iter_mut().zip(p).for_each(|(a, v)| *a += v);
    }
    (dk, dx)
}

/// [`backward`] for one multiplier (and stride 1 where the input gradient is asked for), by
/// passes that keep their sums in registers: the kernel gradient tap by tap over the output
/// pixels that tap reaches, the input gradient input pixel by input pixel over the taps
/// that reach it. The per-pixel passes
/// of `backward_image` added each tap's products into memory, a load and a store per tap
/// and value (10.8% of the block net's fit). The same sums in the same order as there, so
/// the same bits.
fn backward_one_multiplier(x: &[f32], kernel: &[f32], dz: &[f32], batch: usize, g: &ConvGeometry, need_input: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let ilen = g.image_len();
    let olen = g.out_h * g.out_w * g.c;
    let klen = g.kh * g.kw * g.c;
    let per_image: Vec<Vec<f32>> = (0..batch)
        .into_par_iter()
        .map(|b| {
            let mut dk = vec![0f32; klen];
            kernel_gradient_taps(&x[b * ilen..(b + 1) * ilen], &dz[b * olen..(b + 1) * olen], &mut dk, g);
            dk
        })
        .collect();
    debug_assert!(!need_input || (g.stride_h == 1 && g.stride_w == 1));
    let dx = need_input.then(|| {
        super::uninit_filled(batch * ilen, |dx| {
            dx.par_chunks_mut(ilen.max(1)).enumerate().for_each(|(b, d)| input_gradient_gather(&dz[b * olen..(b + 1) * olen], kernel, d, g))
        })
    });
    sum_in_order(per_image, klen, dx)
}

/// The output pixels `lo..hi` along one axis whose tap `k` (of `kernel` taps, dilation
/// `dilation`) lands inside the input of extent `input` (padding `pad`, stride `stride`).
fn reached_range(out: usize, input: usize, k: usize, stride: usize, dilation: usize, pad: usize) -> (usize, usize) {
    let offset = k * dilation; // input index = o * stride + offset - pad
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    let hi = if input + pad > offset { ((input + pad - offset - 1) / stride + 1).min(out) } else { 0 };
    (lo, hi.max(lo))
}

/// `acc[l] += a[l] * b[l]` for N values (a register's worth or four).
#[inline(always)]
fn block_multiply_add<const N: usize>(acc: &mut [f32; N], a: &[f32], b: &[f32]) {
    let a: &[f32; N] = a[..N].try_into().unwrap();
    let b: &[f32; N] = b[..N].try_into().unwrap();
    for l in 0..N {
        acc[l] += a[l] * b[l];
    }
}

/// Channel blocks of an image with `c` channels: (first channel, width) with widths 64,
/// then 32, then 16, then 1. Each block's sums are register chains, one per 16 channels: a
/// 32-channel block keeps two chains going where two 16-channel blocks ran one each after
/// the other (the 32-channel separable convolution's backward pass 3.6-5.2 -> 2.8-3.5 ms a
/// batch on one thread, interleaved: `DEPTHWISE=1 cargo run --release -p rustgpu-core
/// --example layer_profile`).
fn channel_blocks(c: usize) -> impl Iterator<Item = (usize, usize)> {
    let wide = c / CHANNEL_BLOCK * CHANNEL_BLOCK;
    let half = wide + (c - wide) / 32 * 32;
    let narrow = half + (c - half) / 16 * 16;
    (0..wide)
        .step_by(CHANNEL_BLOCK)
        .map(|f| (f, CHANNEL_BLOCK))
        .chain((wide..half).step_by(32).map(|f| (f, 32)))
        .chain((half..narrow).step_by(16).map(|f| (f, 16)))
        .chain((narrow..c).map(|f| (f, 1)))
}

/// One image's kernel gradient for channels `from..from + N` of a 3x3 kernel, output pixel
/// by output pixel with the nine taps' sums in registers (N = 16 or 32: 9 or 18 vector
/// registers): the image and the output gradient are read once, where the tap-by-tap passes
/// read them once per tap. Each tap's sum runs over the output pixels in the same order
/// (rows, then columns), so the same bits.
#[inline(always)]
fn kernel_gradient_pixels<const N: usize>(img: &[f32], dzi: &[f32], dk: &mut [f32], g: &ConvGeometry, inside: &InsideWindows, from: usize) {
    let c = g.c;
    let mut acc = [[0f32; N]; 9];
    let offsets: [usize; 9] = std::array::from_fn(|t| inside.taps[t].1);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let d: &[f32; N] = dzi[(oy * g.out_w + ox) * c + from..][..N].try_into().unwrap();
            match inside.start(g, oy, ox) {
                Some(start) => {
                    for (a, offset) in acc.iter_mut().zip(offsets) {
                        block_multiply_add::<N>(a, &img[start + offset + from..], d);
                    }
                }
                None => {
                    for (t, a) in acc.iter_mut().enumerate() {
                        let y = (oy * g.stride_h + (t / 3) * g.dilation_h).checked_sub(g.pad_top).filter(|y| *y < g.h);
                        let x = (ox * g.stride_w + (t % 3) * g.dilation_w).checked_sub(g.pad_left).filter(|x| *x < g.w);
                        if let (Some(y), Some(x)) = (y, x) {
                            block_multiply_add::<N>(a, &img[(y * g.w + x) * c + from..], d);
                        }
                    }
                }
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        for (d, v) in dk[t * c + from..][..N].iter_mut().zip(a) {
            *d += v;
        }
    }
}

widest_vectors! {
/// One image's kernel gradient (one multiplier): a 3x3 kernel's blocks of 16 channels or
/// more pixel by pixel ([`kernel_gradient_pixels`]; the whole backward pass at batch 32 on
/// one thread, three alternations: 35x35x32 2.4-3.2 -> 2.2 ms, 18x18x128 3.0-3.5 -> 2.0-3.4
/// ms), the rest tap by tap over the output pixels each tap reaches.
fn kernel_gradient_taps(img: &[f32], dzi: &[f32], dk: &mut [f32], g: &ConvGeometry) {
    let c = g.c;
    let inside = (g.kh == 3 && g.kw == 3).then(|| InsideWindows::of(g));
    for (from, width) in channel_blocks(c) {
        if let Some(inside) = &inside {
            match width {
                CHANNEL_BLOCK => {
                    kernel_gradient_pixels::<32>(img, dzi, dk, g, inside, from);
                    kernel_gradient_pixels::<32>(img, dzi, dk, g, inside, from + 32);
                    continue;
                }
                32 => {
                    kernel_gradient_pixels::<32>(img, dzi, dk, g, inside, from);
                    continue;
                }
                16 => {
                    kernel_gradient_pixels::<16>(img, dzi, dk, g, inside, from);
                    continue;
                }
                _ => {}
            }
        }
        for i in 0..g.kh {
            let (oy0, oy1) = reached_range(g.out_h, g.h, i, g.stride_h, g.dilation_h, g.pad_top);
            for j in 0..g.kw {
                let (ox0, ox1) = reached_range(g.out_w, g.w, j, g.stride_w, g.dilation_w, g.pad_left);
                let t = i * g.kw + j;
                macro_rules! sum_block {
                    ($n:expr) => {{
                        let mut acc = [0f32; $n];
                        for oy in oy0..oy1 {
                            let y = oy * g.stride_h + i * g.dilation_h - g.pad_top;
                            for ox in ox0..ox1 {
                                let x = ox * g.stride_w + j * g.dilation_w - g.pad_left;
                                block_multiply_add::<$n>(&mut acc, &img[(y * g.w + x) * c + from..], &dzi[(oy * g.out_w + ox) * c + from..]);
                            }
                        }
                        for (d, a) in dk[t * c + from..][..$n].iter_mut().zip(acc) {
                            *d += a;
                        }
                    }};
                }
                match width {
                    CHANNEL_BLOCK => sum_block!(CHANNEL_BLOCK),
                    32 => sum_block!(32),
                    16 => sum_block!(16),
                    _ => sum_block!(1),
                }
            }
        }
    }
}
}

widest_vectors! {
/// One image's input gradient (one multiplier, stride 1), each input pixel summed over the
/// taps that reach it and written once. Taps in the order of their output pixels (the last
/// kernel row and column first), as the scatter pass added them.
fn input_gradient_gather(dzi: &[f32], kernel: &[f32], d: &mut [std::mem::MaybeUninit<f32>], g: &ConvGeometry) {
    let c = g.c;
    // Input pixels every tap reaches (all their output pixels inside the output): the taps'
    // output pixels as offsets from the first one's, worked out once.
    let reached = |v: usize, pad: usize, k: usize, dilation: usize, out: usize| (0..k).all(|i| (v + pad).checked_sub(i * dilation).is_some_and(|o| o < out));
    let rows: Vec<bool> = (0..g.h).map(|y| reached(y, g.pad_top, g.kh, g.dilation_h, g.out_h)).collect();
    let cols: Vec<bool> = (0..g.w).map(|x| reached(x, g.pad_left, g.kw, g.dilation_w, g.out_w)).collect();
    let inside: Vec<(usize, usize)> =
        (0..g.kh).rev().flat_map(|i| (0..g.kw).rev().map(move |j| (i * g.kw + j, ((g.kh - 1 - i) * g.dilation_h * g.out_w + (g.kw - 1 - j) * g.dilation_w) * c))).collect();
    let mut border: Vec<(usize, usize)> = Vec::with_capacity(g.kh * g.kw);
    for y in 0..g.h {
        for x in 0..g.w {
            // (tap, output pixel offset) of every tap whose output pixel reads (y, x), from
            // the `dzi` it returns.
            let (dzi, reach) = if rows[y] && cols[x] {
                let first = ((y + g.pad_top - (g.kh - 1) * g.dilation_h) * g.out_w + x + g.pad_left - (g.kw - 1) * g.dilation_w) * c;
                (&dzi[first..], inside.as_slice())
            } else {
                border.clear();
                for i in (0..g.kh).rev() {
                    let Some(oy) = (y + g.pad_top).checked_sub(i * g.dilation_h).filter(|oy| *oy < g.out_h) else { continue };
                    for j in (0..g.kw).rev() {
                        let Some(ox) = (x + g.pad_left).checked_sub(j * g.dilation_w).filter(|ox| *ox < g.out_w) else { continue };
                        border.push((i * g.kw + j, (oy * g.out_w + ox) * c));
                    }
                }
                (dzi, border.as_slice())
            };
            let cell = &mut d[(y * g.w + x) * c..][..c];
            for (from, width) in channel_blocks(c) {
                macro_rules! sum_block {
                    ($n:expr) => {{
                        let mut acc = [0f32; $n];
                        for &(t, o) in reach {
                            block_multiply_add::<$n>(&mut acc, &kernel[t * c + from..], &dzi[o + from..]);
                        }
                        for (v, a) in cell[from..from + $n].iter_mut().zip(acc) {
                            v.write(a);
                        }
                    }};
                }
                match width {
                    CHANNEL_BLOCK => sum_block!(CHANNEL_BLOCK),
                    32 => sum_block!(32),
                    16 => sum_block!(16),
                    _ => sum_block!(1),
                }
            }
        }
    }
}
}

widest_vectors! {
/// One image's kernel gradient (into `dk`) and input gradient (into `dimg`, if asked).
fn backward_image(img: &[f32], kernel: &[f32], dzi: &[f32], dk: &mut [f32], dimg: Option<&mut [f32]>, g: &ConvGeometry, m: usize) {
    let mut dimg = dimg;
    let c = g.c;
    let mut window = Vec::with_capacity(g.kh * g.kw);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            taps(g, oy, ox, &mut window);
            let d = &dzi[(oy * g.out_w + ox) * c * m..][..c * m];
            for &(t, src) in &window {
                let xs = &img[src..src + c];
                let dks = &mut dk[t * c * m..(t + 1) * c * m];
                let ks = &kernel[t * c * m..(t + 1) * c * m];
                if m == 1 {
                    multiply_add(dks, xs, d);
                    if let Some(dimg) = dimg.as_deref_mut() {
                        multiply_add(&mut dimg[src..src + c], ks, d);
                    }
                } else {
                    for ch in 0..c {
                        let (dch, kch) = (&d[ch * m..(ch + 1) * m], &ks[ch * m..(ch + 1) * m]);
                        for (dk, dv) in dks[ch * m..(ch + 1) * m].iter_mut().zip(dch) {
                            *dk += xs[ch] * dv;
                        }
                        if let Some(dimg) = dimg.as_deref_mut() {
                            dimg[src + ch] += kch.iter().zip(dch).map(|(k, dv)| k * dv).sum::<f32>();
                        }
                    }
                }
            }
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::test_geometry;

    #[test]
    fn one_multiplier_backward_gives_the_per_pixel_passes_bits() {
        // Every channel block; stride 1 and 2 (the kernel gradient only), "same" and
        // "valid", dilation 2.
        for &(c, stride, dilation, same) in &[(115, 1, 1, true), (115, 2, 1, true), (20, 1, 2, true), (33, 1, 1, false), (3, 2, 2, false)] {
            let k = 3;
            let g = test_geometry(9, 8, c, k, stride, dilation, same);
            let (out_h, out_w) = (g.out_h, g.out_w);
            let batch = 3;
            let x: Vec<f32> = (0..batch * g.image_len()).map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0).collect();
            let kernel: Vec<f32> = (0..k * k * c).map(|i| ((i * 104_729 % 1000) as f32) / 500.0 - 1.0).collect();
            let dz: Vec<f32> = (0..batch * out_h * out_w * c).map(|i| ((i * 31 % 97) as f32) / 50.0 - 1.0).collect();
            for need_input in [true, false] {
                if need_input && stride != 1 {
                    continue; // backward() takes the per-pixel passes there
                }
                let (dk, dx) = backward_one_multiplier(&x, &kernel, &dz, batch, &g, need_input);
                let (want_dk, want_dx) = backward_per_pixel(&x, &kernel, &dz, batch, &g, 1, need_input);
                assert_eq!(dk, want_dk, "kernel gradient, {} channels, stride {}", c, stride);
                assert_eq!(dx, want_dx, "input gradient, {} channels, stride {}", c, stride);
            }
        }
    }

    #[test]
    fn forward_matches_the_window_sums_for_every_channel_block() {
        // 115 channels: one block of 64, one of 32, one of 16, three single channels; "same"
        // padding with stride 2 (windows cut by the border), and two multipliers.
        for &(c, m, stride, same) in &[(115, 1, 2, true), (115, 1, 1, false), (5, 2, 1, true)] {
            let (h, w, k) = (7, 6, 3);
            let g = test_geometry(h, w, c, k, stride, 1, same);
            let (out_h, out_w, pad_top, pad_left) = (g.out_h, g.out_w, g.pad_top, g.pad_left);
            let batch = 2;
            let x: Vec<f32> = (0..batch * g.image_len()).map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0).collect();
            let kernel: Vec<f32> = (0..k * k * c * m).map(|i| ((i * 104_729 % 1000) as f32) / 500.0 - 1.0).collect();
            let out = forward(&x, &kernel, batch, &g, m);
            assert_eq!(out.len(), batch * out_h * out_w * c * m);
            for b in 0..batch {
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        for ch in 0..c {
                            for j in 0..m {
                                let mut want = 0f64;
                                for i in 0..k {
                                    for jj in 0..k {
                                        let (Some(y), Some(xx)) = ((oy * stride + i).checked_sub(pad_top), (ox * stride + jj).checked_sub(pad_left)) else {
                                            continue;
                                        };
                                        if y < h && xx < w {
                                            want += f64::from(x[((b * h + y) * w + xx) * c + ch]) * f64::from(kernel[((i * k + jj) * c + ch) * m + j]);
                                        }
                                    }
                                }
                                let got = out[(((b * out_h + oy) * out_w + ox) * c + ch) * m + j];
                                assert!((f64::from(got) - want).abs() < 1e-4, "channel {}: {} vs {}", ch, got, want);
                            }
                        }
                    }
                }
            }
        }
    }
}
