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
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (checked just above).
                return unsafe { forward_image_avx512(img, kernel, o, g, m) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above).
                return unsafe { forward_image_avx2(img, kernel, o, g, m) };
            }
        }
        forward_image(img, kernel, o, g, m)
    });
    out
}

// The loops compiled for the widest vector instructions the CPU has: the crate is built for
// baseline x86-64 (SSE2), where the forward pass ran in scalar multiply-adds (23% of the
// block net's predict samples). The same operations in the same order (no fused
// multiply-adds: Rust does not contract), so every path gives the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn forward_image_avx512(img: &[f32], kernel: &[f32], o: &mut [f32], g: &ConvGeometry, m: usize) {
    forward_image(img, kernel, o, g, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_image_avx2(img: &[f32], kernel: &[f32], o: &mut [f32], g: &ConvGeometry, m: usize) {
    forward_image(img, kernel, o, g, m)
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

/// One image's output pixels.
#[inline(always)]
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
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (checked just above).
                unsafe { backward_image_avx512(img, kernel, dzi, &mut dk, dimg, g, m) };
                return dk;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above).
                unsafe { backward_image_avx2(img, kernel, dzi, &mut dk, dimg, g, m) };
                return dk;
            }
        }
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn backward_image_avx512(img: &[f32], kernel: &[f32], dzi: &[f32], dk: &mut [f32], dimg: Option<&mut [f32]>, g: &ConvGeometry, m: usize) {
    backward_image(img, kernel, dzi, dk, dimg, g, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn backward_image_avx2(img: &[f32], kernel: &[f32], dzi: &[f32], dk: &mut [f32], dimg: Option<&mut [f32]>, g: &ConvGeometry, m: usize) {
    backward_image(img, kernel, dzi, dk, dimg, g, m)
}

/// One image's kernel gradient (into `dk`) and input gradient (into `dimg`, if asked).
#[inline(always)]
fn backward_image(img: &[f32], kernel: &[f32], dzi: &[f32], dk: &mut [f32], mut dimg: Option<&mut [f32]>, g: &ConvGeometry, m: usize) {
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
