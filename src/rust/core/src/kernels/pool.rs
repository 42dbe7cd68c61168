//! Max pooling over channels-last windows. The forward pass records, for each output, the
//! input position of its maximum (the first one on ties); the backward pass routes each
//! gradient there, which is what the gradient of max is (candle's divides it instead).
use super::conv::ConvGeometry;
use rayon::prelude::*;

/// (batch, h, w, c) -> pooled (batch, out_h, out_w, c) and the argmax index into `x`.
/// Padded positions never win. The reference the index-free kernels are tested against.
#[cfg(test)]
pub fn max_pool_forward(x: &[f32], batch: usize, g: &ConvGeometry) -> (Vec<f32>, Vec<u32>) {
    let ilen = g.image_len();
    let olen = g.out_h * g.out_w * g.c;
    let mut out = vec![f32::NEG_INFINITY; batch * olen];
    let mut arg = vec![0u32; batch * olen];
    out.par_chunks_mut(olen.max(1)).zip(arg.par_chunks_mut(olen.max(1))).enumerate().for_each(|(b, (o, a))| {
        let base = b * ilen;
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let cell = (oy * g.out_w + ox) * g.c;
                let (o, a) = (&mut o[cell..cell + g.c], &mut a[cell..cell + g.c]);
                for i in 0..g.kh {
                    for j in 0..g.kw {
                        let y = (oy * g.stride_h + i).checked_sub(g.pad_top);
                        let xx = (ox * g.stride_w + j).checked_sub(g.pad_left);
                        let (Some(y), Some(xx)) = (y, xx) else { continue };
                        if y >= g.h || xx >= g.w {
                            continue;
                        }
                        let src = base + (y * g.w + xx) * g.c;
                        // Branch-free over the channels (so it vectorizes); a later tap wins
                        // only when strictly greater, which keeps the first maximum.
                        for (k, ((o, a), v)) in o.iter_mut().zip(a.iter_mut()).zip(&x[src..src + g.c]).enumerate() {
                            let better = *v > *o;
                            *o = if better { *v } else { *o };
                            *a = if better { (src + k) as u32 } else { *a };
                        }
                    }
                }
            }
        }
    });
    (out, arg)
}

/// Routes each output gradient to its argmax: (batch * h * w * c) input gradient.
#[cfg(test)]
pub fn max_pool_backward(dy: &[f32], arg: &[u32], input_len: usize) -> Vec<f32> {
    let mut dx = vec![0f32; input_len];
    for (g, &i) in dy.iter().zip(arg) {
        dx[i as usize] += *g;
    }
    dx
}

/// Max pooling without an index array: (batch, h, w, c) -> (batch, out_h, out_w, c). The
/// backward pass finds each window's first maximum again ([`max_pool_backward_from`]);
/// keeping an argmax per output made this pass five times slower (a select per value).
/// Padded positions never win (as TensorFlow pads max pooling with -inf).
pub fn max_pool_values(x: &[f32], batch: usize, g: &ConvGeometry) -> Vec<f32> {
    let ilen = g.image_len();
    let olen = g.out_h * g.out_w * g.c;
    let mut out = vec![f32::NEG_INFINITY; batch * olen];
    out.par_chunks_mut(olen.max(1)).enumerate().for_each(|(b, o)| max_pool_image(&x[b * ilen..(b + 1) * ilen], o, g));
    out
}

/// Channels one vector holds: a window's maxima for them stay in a register while its taps
/// are read.
const POOL_LANES: usize = 16;

widest_vectors! {
/// One image's windows' maxima into `o` (filled with -inf).
pub(super) fn max_pool_image(img: &[f32], o: &mut [f32], g: &ConvGeometry) {
    let c = g.c;
    let full = c / POOL_LANES * POOL_LANES;
    let mut taps = Vec::with_capacity(g.kh * g.kw);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            window_taps(g, oy, ox, &mut taps);
            let at = (oy * g.out_w + ox) * c;
            // 16 channels at a time in a fixed-size block, each stored once: a loop over all
            // channels read and stored the output for every tap, and for 32 or 64 channels
            // LLVM ran it 8 at a time (10% of the CNN's predict went to this function, most
            // of it waiting on those stores; perf annotate).
            for ch0 in (0..full).step_by(POOL_LANES) {
                let mut m: [f32; POOL_LANES] = o[at + ch0..][..POOL_LANES].try_into().unwrap();
                for &src in &taps {
                    let v: &[f32; POOL_LANES] = img[src + ch0..][..POOL_LANES].try_into().unwrap();
                    for l in 0..POOL_LANES {
                        // `max`, not `if v > m { v } else { m }`: with AVX-512 the select
                        // became a masked store per vector. NaN never wins either way.
                        m[l] = m[l].max(v[l]);
                    }
                }
                o[at + ch0..][..POOL_LANES].copy_from_slice(&m);
            }
            let cell = &mut o[at + full..at + c];
            for &src in &taps {
                for (m, v) in cell.iter_mut().zip(&img[src + full..src + c]) {
                    *m = m.max(*v);
                }
            }
        }
    }
}
}

/// Routes each output gradient to the first input of its window (in window order) equal to
/// the window's maximum `y`: the same input the forward pass's strict comparison kept.
pub fn max_pool_backward_from(x: &[f32], y: &[f32], dy: &[f32], batch: usize, g: &ConvGeometry) -> Vec<f32> {
    let ilen = g.image_len();
    let olen = g.out_h * g.out_w * g.c;
    let image = |b: usize, d: &mut [std::mem::MaybeUninit<f32>], add: bool| {
        max_pool_backward_image(&x[b * ilen..(b + 1) * ilen], &y[b * olen..(b + 1) * olen], &dy[b * olen..(b + 1) * olen], d, g, add)
    };
    if tiles_exactly(g) {
        // Every input value lies in exactly one window, so each is written once: no
        // zero-filled buffer to add into (its fill and the add's reads were a pass and a half
        // over the CNN's first activations, 11 MB a batch; bench/NOTES.md).
        return super::uninit_filled(batch * ilen, |dx| dx.par_chunks_mut(ilen.max(1)).enumerate().for_each(|(b, d)| image(b, d, false)));
    }
    let mut dx = vec![0f32; batch * ilen];
    dx.par_chunks_mut(ilen.max(1)).enumerate().for_each(|(b, d)| {
        // SAFETY: a view of initialized values as possibly uninitialized ones, through which
        // only initialized values are written (`max_pool_backward_image` writes sums).
        let d = unsafe { &mut *(d as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]) };
        image(b, d, true)
    });
    dx
}

/// Whether the windows cover the input exactly once: stride = window, no padding, no
/// dilation, nothing left over at the right or the bottom.
fn tiles_exactly(g: &ConvGeometry) -> bool {
    g.stride_h == g.kh
        && g.stride_w == g.kw
        && g.dilation_h == 1
        && g.dilation_w == 1
        && g.pad_top == 0
        && g.pad_left == 0
        && g.out_h * g.kh == g.h
        && g.out_w * g.kw == g.w
}

widest_vectors! {
/// One image's input gradient `d` from its pooled maxima `ys` and their gradients `dys`:
/// added to `d`'s values when `add` (windows that overlap or leave inputs out), else
/// written (windows that tile the image, `d` uninitialized), as `0 + gradient` so that a
/// negative zero comes out as the added one does.
fn max_pool_backward_image(img: &[f32], ys: &[f32], dys: &[f32], d: &mut [std::mem::MaybeUninit<f32>], g: &ConvGeometry, add: bool) {
    // Per window, the gradient not yet routed: the first tap equal to the maximum takes it
    // and leaves zero for the rest (branch-free selects, so it vectorizes). Plain loops, not
    // for_each_window's closure: that closure was not inlined, so it ran outside this
    // function's vector instructions (4.7% of the CNN's fit).
    // Channels in blocks of POOL_LANES whose gradient left to route stays in a register (as
    // the forward pass's maxima do), then the rest one by one.
    let n = g.c;
    let full = n / POOL_LANES * POOL_LANES;
    let mut taps = Vec::with_capacity(g.kh * g.kw);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            window_taps(g, oy, ox, &mut taps);
            let cell = (oy * g.out_w + ox) * n;
            for ch0 in (0..full).step_by(POOL_LANES) {
                let ymax: &[f32; POOL_LANES] = ys[cell + ch0..][..POOL_LANES].try_into().unwrap();
                let mut left: [f32; POOL_LANES] = dys[cell + ch0..][..POOL_LANES].try_into().unwrap();
                for &src in &taps {
                    let xs: &[f32; POOL_LANES] = img[src + ch0..][..POOL_LANES].try_into().unwrap();
                    let ds: &mut [std::mem::MaybeUninit<f32>; POOL_LANES] = (&mut d[src + ch0..][..POOL_LANES]).try_into().unwrap();
                    for l in 0..POOL_LANES {
                        let hit = f32::from(u8::from(xs[l] == ymax[l]));
                        let take = hit * left[l];
                        // SAFETY: with `add`, `d` holds initialized values (the caller's contract).
                        let before = if add { unsafe { ds[l].assume_init() } } else { 0.0 };
                        ds[l].write(before + take);
                        left[l] -= take;
                    }
                }
            }
            for ch in full..n {
                let (ymax, mut left) = (ys[cell + ch], dys[cell + ch]);
                for &src in &taps {
                    let hit = f32::from(u8::from(img[src + ch] == ymax));
                    let take = hit * left;
                    // SAFETY: as above.
                    let before = if add { unsafe { d[src + ch].assume_init() } } else { 0.0 };
                    d[src + ch].write(before + take);
                    left -= take;
                }
            }
        }
    }
}
}

/// Average pooling over channels-last windows; padded positions are left out of each
/// window's count (TensorFlow's "same" average pooling).
pub fn avg_pool_forward(x: &[f32], batch: usize, g: &ConvGeometry) -> Vec<f32> {
    let ilen = g.image_len();
    let olen = g.out_h * g.out_w * g.c;
    let mut out = vec![0f32; batch * olen];
    out.par_chunks_mut(olen.max(1)).enumerate().for_each(|(b, o)| {
        for_each_window(g, |cell, taps| {
            let n = taps.len() as f32;
            for &src in taps {
                for ch in 0..g.c {
                    o[cell + ch] += x[b * ilen + src + ch];
                }
            }
            for ch in 0..g.c {
                o[cell + ch] /= n;
            }
        });
    });
    out
}

/// The adjoint of `avg_pool_forward`: each output gradient spread evenly over its window.
pub fn avg_pool_backward(dy: &[f32], batch: usize, g: &ConvGeometry) -> Vec<f32> {
    let ilen = g.image_len();
    let olen = g.out_h * g.out_w * g.c;
    let mut dx = vec![0f32; batch * ilen];
    dx.par_chunks_mut(ilen.max(1)).enumerate().for_each(|(b, d)| {
        for_each_window(g, |cell, taps| {
            let n = taps.len() as f32;
            for &src in taps {
                for ch in 0..g.c {
                    d[src + ch] += dy[b * olen + cell + ch] / n;
                }
            }
        });
    });
    dx
}

/// The in-bounds input pixel offsets of output pixel (oy, ox)'s window, into `taps`.
#[inline(always)]
fn window_taps(g: &ConvGeometry, oy: usize, ox: usize, taps: &mut Vec<usize>) {
    taps.clear();
    for i in 0..g.kh {
        for j in 0..g.kw {
            let y = (oy * g.stride_h + i).checked_sub(g.pad_top);
            let x = (ox * g.stride_w + j).checked_sub(g.pad_left);
            if let (Some(y), Some(x)) = (y, x) {
                if y < g.h && x < g.w {
                    taps.push((y * g.w + x) * g.c);
                }
            }
        }
    }
}

/// Calls `f(output cell offset, in-bounds input pixel offsets)` for every window.
fn for_each_window(g: &ConvGeometry, mut f: impl FnMut(usize, &[usize])) {
    let mut taps = Vec::with_capacity(g.kh * g.kw);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            window_taps(g, oy, ox, &mut taps);
            f((oy * g.out_w + ox) * g.c, &taps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::output_extent;

    #[test]
    fn pools_and_routes_gradients_to_the_maximum() {
        // One 4x4 single-channel image, 2x2 windows, stride 2.
        let x: Vec<f32> = vec![1., 5., 2., 0., 3., 4., 8., 1., 0., 0., 1., 1., 9., 0., 1., 2.];
        let (oh, _) = output_extent(4, 2, 2, 1, false);
        let g = ConvGeometry {
            h: 4,
            w: 4,
            c: 1,
            kh: 2,
            kw: 2,
            stride_h: 2,
            stride_w: 2,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_left: 0,
            out_h: oh,
            out_w: oh,
        };
        let (y, arg) = max_pool_forward(&x, 1, &g);
        assert_eq!(y, vec![5., 8., 9., 2.]);
        let dx = max_pool_backward(&[1., 2., 3., 4.], &arg, 16);
        let mut expected = vec![0f32; 16];
        expected[1] = 1.;
        expected[6] = 2.;
        expected[12] = 3.;
        expected[15] = 4.;
        assert_eq!(dx, expected);
    }

    #[test]
    fn index_free_kernels_match_the_argmax_reference_ties_included() {
        // 37 channels: two 16-channel blocks and a remainder.
        // (6, 8, 37, 2, 2): windows that tile the image, whose gradient is written, not added.
        for (h, w, c, k, st, same) in
            [(6usize, 7usize, 3usize, 2usize, 2usize, false), (5, 5, 2, 3, 2, true), (4, 6, 1, 3, 1, true), (5, 6, 37, 3, 2, true), (6, 8, 37, 2, 2, false)]
        {
            let (out_h, pad_top) = output_extent(h, k, st, 1, same);
            let (out_w, pad_left) = output_extent(w, k, st, 1, same);
            let g = ConvGeometry { h, w, c, kh: k, kw: k, stride_h: st, stride_w: st, dilation_h: 1, dilation_w: 1, pad_top, pad_left, out_h, out_w };
            // Few distinct values, so that windows hold equal maxima.
            let x: Vec<f32> = (0..2 * h * w * c).map(|i| ((i * 7 % 5) as f32) - 2.0).collect();
            let (y_ref, arg) = max_pool_forward(&x, 2, &g);
            let y = max_pool_values(&x, 2, &g);
            assert_eq!(y, y_ref);
            let dy: Vec<f32> = (0..y.len()).map(|i| 0.5 + i as f32).collect();
            assert_eq!(tiles_exactly(&g), (h, w, st) == (6, 8, 2));
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            assert_eq!(bits(max_pool_backward_from(&x, &y, &dy, 2, &g)), bits(max_pool_backward(&dy, &arg, x.len())));
        }
    }

    #[test]
    fn odd_sizes_keep_every_window() {
        // 5 -> 2 with valid padding: the last row/column is dropped, not misaligned.
        let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let (oh, _) = output_extent(5, 2, 2, 1, false);
        let g = ConvGeometry {
            h: 5,
            w: 5,
            c: 1,
            kh: 2,
            kw: 2,
            stride_h: 2,
            stride_w: 2,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_left: 0,
            out_h: oh,
            out_w: oh,
        };
        let (y, _) = max_pool_forward(&x, 1, &g);
        assert_eq!(y, vec![6., 8., 16., 18.]);
    }
}
