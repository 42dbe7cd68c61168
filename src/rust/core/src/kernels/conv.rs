//! im2col / col2im for channels-last (NHWC) 2-d convolutions. A patch row holds the
//! (kh, kw, c) window in that order, matching Keras's kernel layout (kh, kw, in, out)
//! reshaped to (kh*kw*in, out), so a convolution is one matmul.
use rayon::prelude::*;

/// Shapes of one convolution: input (h, w, c), kernel (kh, kw), strides, dilation, padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvGeometry {
    pub fn patch_len(&self) -> usize {
        self.kh * self.kw * self.c
    }

    pub fn image_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Source row and column of kernel tap (i, j) for output pixel (oy, ox), if inside the image.
    #[inline]
    pub(super) fn source(&self, oy: usize, ox: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let y = (oy * self.stride_h + i * self.dilation_h).checked_sub(self.pad_top)?;
        let x = (ox * self.stride_w + j * self.dilation_w).checked_sub(self.pad_left)?;
        (y < self.h && x < self.w).then_some((y, x))
    }
}

/// (batch, h, w, c) -> (batch * out_h * out_w, kh * kw * c); padding reads as zeros.
pub fn im2col(x: &[f32], batch: usize, g: &ConvGeometry) -> Vec<f32> {
    let ilen = g.image_len();
    let per_image = g.out_h * g.out_w * g.patch_len();
    super::uninit_filled(batch * per_image, |out| {
        out.par_chunks_mut(per_image.max(1)).enumerate().for_each(|(b, dst)| im2col_image(&x[b * ilen..(b + 1) * ilen], dst, g));
    })
}

/// One image's patch rows into `dst` (out_h * out_w rows of kh * kw * c), each value written.
pub(super) fn im2col_image(img: &[f32], dst: &mut [std::mem::MaybeUninit<f32>], g: &ConvGeometry) {
    let plen = g.patch_len();
    // Every patch value is written unless a window reaches into the padding (zeros there).
    let inside = g.pad_top == 0
        && g.pad_left == 0
        && (g.out_h - 1) * g.stride_h + (g.kh - 1) * g.dilation_h < g.h
        && (g.out_w - 1) * g.stride_w + (g.kw - 1) * g.dilation_w < g.w;
    if !inside {
        for v in dst.iter_mut() {
            v.write(0.0);
        }
    }
    // With unit dilation along the width, a kernel row's taps are one contiguous run of
    // kw * c values in the image and in the patch: copied at once (by a plain loop, since a
    // memcpy call per value of a one-channel image cost more than the copy).
    let run = g.kw * g.c;
    let contiguous_rows = g.dilation_w == 1;
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let row = &mut dst[(oy * g.out_w + ox) * plen..][..plen];
            let x0 = (ox * g.stride_w).checked_sub(g.pad_left).filter(|x0| x0 + g.kw <= g.w);
            for i in 0..g.kh {
                match x0 {
                    Some(x0) if contiguous_rows => {
                        let Some(y) = (oy * g.stride_h + i * g.dilation_h).checked_sub(g.pad_top).filter(|y| *y < g.h) else { continue };
                        copy_run(&mut row[i * run..(i + 1) * run], &img[(y * g.w + x0) * g.c..][..run]);
                    }
                    _ => {
                        for j in 0..g.kw {
                            if let Some((y, x)) = g.source(oy, ox, i, j) {
                                let src = (y * g.w + x) * g.c;
                                copy_run(&mut row[(i * g.kw + j) * g.c..][..g.c], &img[src..src + g.c]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Copies `src` into `dst` (equal lengths): short runs (a one-channel image's taps) by a
/// plain loop, where a memcpy call per run cost more than the copy; longer ones by memcpy,
/// where the loop (compiled for baseline x86-64) moved one value at a time: 16% of the CNN's
/// predict samples, for conv2's runs of 96 values.
#[inline(always)]
fn copy_run(dst: &mut [std::mem::MaybeUninit<f32>], src: &[f32]) {
    let n = dst.len().min(src.len());
    if n >= 16 {
        // SAFETY: both ranges hold n values and do not overlap (one is the output buffer,
        // the other the input); MaybeUninit<f32> has f32's layout.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<f32>(), n) };
    } else {
        for (d, s) in dst[..n].iter_mut().zip(&src[..n]) {
            d.write(*s);
        }
    }
}

/// The adjoint of `im2col`: sums patch-row gradients back into (batch, h, w, c).
pub fn col2im(cols: &[f32], batch: usize, g: &ConvGeometry) -> Vec<f32> {
    let (plen, ilen) = (g.patch_len(), g.image_len());
    let per_image = g.out_h * g.out_w * plen;
    let mut out = vec![0f32; batch * ilen];
    out.par_chunks_mut(ilen.max(1)).enumerate().for_each(|(b, img)| col2im_image(&cols[b * per_image..(b + 1) * per_image], img, g));
    out
}

widest_vectors! {
/// One image's patch rows `src_rows` summed into `img`.
fn col2im_image(src_rows: &[f32], img: &mut [f32], g: &ConvGeometry) {
    let (plen, c) = (g.patch_len(), g.c);
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let row = &src_rows[(oy * g.out_w + ox) * plen..][..plen];
            for i in 0..g.kh {
                for j in 0..g.kw {
                    if let Some((y, x)) = g.source(oy, ox, i, j) {
                        let dst = &mut img[(y * g.w + x) * c..][..c];
                        let src = &row[(i * g.kw + j) * c..][..c];
                        for ch in 0..c {
                            dst[ch] += src[ch];
                        }
                    }
                }
            }
        }
    }
}
}

/// For tests: the geometry of a square k x k window, stride s, dilation d, "same" or
/// "valid" padding, over an (h, w, c) image.
#[cfg(test)]
pub(super) fn test_geometry(h: usize, w: usize, c: usize, k: usize, s: usize, d: usize, same: bool) -> ConvGeometry {
    let (out_h, pad_top) = super::output_extent(h, k, s, d, same);
    let (out_w, pad_left) = super::output_extent(w, k, s, d, same);
    ConvGeometry { h, w, c, kh: k, kw: k, stride_h: s, stride_w: s, dilation_h: d, dilation_w: d, pad_top, pad_left, out_h, out_w }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::output_extent;

    fn geometry(h: usize, w: usize, c: usize, k: usize, s: usize, d: usize, same: bool) -> ConvGeometry {
        test_geometry(h, w, c, k, s, d, same)
    }

    #[test]
    fn keras_output_sizes() {
        assert_eq!(output_extent(28, 3, 1, 1, false), (26, 0));
        assert_eq!(output_extent(28, 3, 1, 1, true), (28, 1));
        assert_eq!(output_extent(7, 3, 2, 1, true), (4, 1));
        assert_eq!(output_extent(8, 3, 2, 1, true), (4, 0)); // TF pads 1 at the end only
        assert_eq!(output_extent(11, 3, 1, 2, false), (7, 0));
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for any x, c.
        for &(k, s, d, same) in &[(3, 1, 1, false), (3, 2, 1, true), (2, 1, 2, true), (1, 1, 1, false)] {
            let g = geometry(5, 6, 2, k, s, d, same);
            let x: Vec<f32> = (0..2 * g.image_len()).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
            let cols = im2col(&x, 2, &g);
            let c: Vec<f32> = (0..cols.len()).map(|i| ((i * 13 % 7) as f32) - 3.0).collect();
            let lhs: f32 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
            let back = col2im(&c, 2, &g);
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-3, "{} vs {}", lhs, rhs);
        }
    }
}
