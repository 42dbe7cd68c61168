//! Max pooling over channels-last windows. The forward pass records, for each output, the
//! input position of its maximum (the first one on ties); the backward pass routes each
//! gradient there, which is what the gradient of max is (candle's divides it instead).
use super::conv::ConvGeometry;
use rayon::prelude::*;

/// (batch, h, w, c) -> pooled (batch, out_h, out_w, c) and the argmax index into `x`.
/// Padded positions never win (as TensorFlow pads max pooling with -inf).
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
pub fn max_pool_backward(dy: &[f32], arg: &[u32], input_len: usize) -> Vec<f32> {
    let mut dx = vec![0f32; input_len];
    for (g, &i) in dy.iter().zip(arg) {
        dx[i as usize] += *g;
    }
    dx
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
        let g = ConvGeometry { h: 4, w: 4, c: 1, kh: 2, kw: 2, stride_h: 2, stride_w: 2, dilation_h: 1, dilation_w: 1, pad_top: 0, pad_left: 0, out_h: oh, out_w: oh };
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
    fn odd_sizes_keep_every_window() {
        // 5 -> 2 with valid padding: the last row/column is dropped, not misaligned.
        let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let (oh, _) = output_extent(5, 2, 2, 1, false);
        let g = ConvGeometry { h: 5, w: 5, c: 1, kh: 2, kw: 2, stride_h: 2, stride_w: 2, dilation_h: 1, dilation_w: 1, pad_top: 0, pad_left: 0, out_h: oh, out_w: oh };
        let (y, _) = max_pool_forward(&x, 1, &g);
        assert_eq!(y, vec![6., 8., 16., 18.]);
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

/// Calls `f(output cell offset, in-bounds input pixel offsets)` for every window.
fn for_each_window(g: &ConvGeometry, mut f: impl FnMut(usize, &[usize])) {
    let mut taps = Vec::with_capacity(g.kh * g.kw);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
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
            f((oy * g.out_w + ox) * g.c, &taps);
        }
    }
}
