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
    let mut window = Vec::with_capacity(g.kh * g.kw);
    let mut cell_values = vec![0f32; c * m];
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            taps(g, oy, ox, &mut window);
            let cell = &mut o[(oy * g.out_w + ox) * c * m..][..c * m];
            if m == 1 {
                // Each tap's pass added to the output pixel in memory, a load and a store
                // per tap and value, after zero-filling the output (the depthwise forward
                // was 15% of the block net's predict).
                let mut from = 0;
                while from + CHANNEL_BLOCK <= c {
                    pixel_block::<CHANNEL_BLOCK>(img, kernel, &window, c, from, cell);
                    from += CHANNEL_BLOCK;
                }
                while from + 16 <= c {
                    pixel_block::<16>(img, kernel, &window, c, from, cell);
                    from += 16;
                }
                while from < c {
                    pixel_block::<1>(img, kernel, &window, c, from, cell);
                    from += 1;
                }
            } else {
                cell_values.fill(0.0);
                for &(t, src) in &window {
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
    let mut dk = vec![0f32; klen];
    for p in &per_image {
        dk.iter_mut().zip(p).for_each(|(a, v)| *a += v);
    }
    (dk, need_input.then_some(dx))
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
    use crate::kernels::output_extent;

    #[test]
    fn forward_matches_the_window_sums_for_every_channel_block() {
        // 83 channels: one 64-channel block, one of 16, three single channels; "same"
        // padding with stride 2 (windows cut by the border), and two multipliers.
        for &(c, m, stride, same) in &[(83, 1, 2, true), (83, 1, 1, false), (5, 2, 1, true)] {
            let (h, w, k) = (7, 6, 3);
            let (out_h, pad_top) = output_extent(h, k, stride, 1, same);
            let (out_w, pad_left) = output_extent(w, k, stride, 1, same);
            let g = ConvGeometry { h, w, c, kh: k, kw: k, stride_h: stride, stride_w: stride, dilation_h: 1, dilation_w: 1, pad_top, pad_left, out_h, out_w };
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
