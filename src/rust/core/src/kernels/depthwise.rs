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
    let mut out = vec![0f32; batch * olen];
    out.par_chunks_mut(olen.max(1)).enumerate().for_each(|(b, o)| {
        let img = &x[b * ilen..(b + 1) * ilen];
        forward_image(img, kernel, o, g, m)
    });
    out
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

widest_vectors! {
/// One image's output pixels.
fn forward_image(img: &[f32], kernel: &[f32], o: &mut [f32], g: &ConvGeometry, m: usize) {
    let c = g.c;
    let mut window = Vec::with_capacity(g.kh * g.kw);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            taps(g, oy, ox, &mut window);
            let cell = &mut o[(oy * g.out_w + ox) * c * m..][..c * m];
            for &(t, src) in &window {
                let xs = &img[src..src + c];
                let ks = &kernel[t * c * m..(t + 1) * c * m];
                if m == 1 {
                    multiply_add(cell, xs, ks);
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
