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
    let (c, ilen) = (g.c, g.image_len());
    let olen = g.out_h * g.out_w * c * m;
    let mut out = vec![0f32; batch * olen];
    out.par_chunks_mut(olen.max(1)).enumerate().for_each(|(b, o)| {
        let img = &x[b * ilen..(b + 1) * ilen];
        let mut window = Vec::with_capacity(g.kh * g.kw);
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                taps(g, oy, ox, &mut window);
                let cell = &mut o[(oy * g.out_w + ox) * c * m..][..c * m];
                for &(t, src) in &window {
                    let xs = &img[src..src + c];
                    let ks = &kernel[t * c * m..(t + 1) * c * m];
                    if m == 1 {
                        for ((o, x), k) in cell.iter_mut().zip(xs).zip(ks) {
                            *o += x * k;
                        }
                    } else {
                        for (ch, x) in xs.iter().enumerate() {
                            for (o, k) in cell[ch * m..(ch + 1) * m].iter_mut().zip(&ks[ch * m..(ch + 1) * m]) {
                                *o += x * k;
                            }
                        }
                    }
                }
            }
        }
    });
    out
}

/// Gradients from `dz` (batch, out_h, out_w, c * m): the kernel's (summed over the batch,
/// in image order) and, if asked, the input's (batch, h, w, c).
pub fn backward(x: &[f32], kernel: &[f32], dz: &[f32], batch: usize, g: &ConvGeometry, m: usize, need_input: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let (c, ilen) = (g.c, g.image_len());
    let olen = g.out_h * g.out_w * c * m;
    let klen = g.kh * g.kw * c * m;
    let mut dx = if need_input { vec![0f32; batch * ilen] } else { Vec::new() };
    // One kernel gradient per image, added in image order afterwards (deterministic).
    let body = |b: usize, mut dimg: Option<&mut [f32]>| -> Vec<f32> {
        let img = &x[b * ilen..(b + 1) * ilen];
        let dzi = &dz[b * olen..(b + 1) * olen];
        let mut dk = vec![0f32; klen];
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
                        for ((dk, x), d) in dks.iter_mut().zip(xs).zip(d) {
                            *dk += x * d;
                        }
                        if let Some(dimg) = dimg.as_deref_mut() {
                            for ((dx, k), d) in dimg[src..src + c].iter_mut().zip(ks).zip(d) {
                                *dx += k * d;
                            }
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
