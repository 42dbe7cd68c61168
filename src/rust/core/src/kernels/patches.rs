//! The window kernels written with tensor ops only, so that they run on any device (CUDA
//! included) without kernels of our own. The CPU keeps the host kernels in `conv` and `pool`
//! (faster there); these give the same numbers, which the tests below check on the CPU.
//!
//! Patches are `(batch, out_h, out_w, kh * kw, c)`: tap (i, j) at index `i * kw + j`, so a
//! reshape to `(batch * out_h * out_w, kh * kw * c)` is exactly `im2col`'s patch matrix.
use super::conv::ConvGeometry;
use crate::error::Result;
use candle_core::{DType, Tensor};

/// Padded extent of one axis: room for every tap's strided run of `out * stride` positions
/// (the extra zeros past TensorFlow's padding are only read at positions a stride skips).
fn padded(size: usize, pad_before: usize, taps: usize, dilation: usize, out: usize, stride: usize) -> (usize, usize) {
    let total = ((taps - 1) * dilation + out * stride).max(size + pad_before);
    (total, total - size - pad_before)
}

fn padded_hw(g: &ConvGeometry) -> ((usize, usize), (usize, usize)) {
    (padded(g.h, g.pad_top, g.kh, g.dilation_h, g.out_h, g.stride_h), padded(g.w, g.pad_left, g.kw, g.dilation_w, g.out_w, g.stride_w))
}

/// Every window of `x` (batch, h, w, c): (batch, out_h, out_w, kh * kw, c); padding reads as zeros.
pub fn extract(x: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    let b = x.dim(0)?;
    let ((_, pad_bottom), (_, pad_right)) = padded_hw(g);
    let xp = x.pad_with_zeros(1, g.pad_top, pad_bottom)?.pad_with_zeros(2, g.pad_left, pad_right)?;
    let mut taps = Vec::with_capacity(g.kh * g.kw);
    for i in 0..g.kh {
        for j in 0..g.kw {
            let mut t = xp.narrow(1, i * g.dilation_h, g.out_h * g.stride_h)?.narrow(2, j * g.dilation_w, g.out_w * g.stride_w)?;
            if g.stride_h > 1 || g.stride_w > 1 {
                // Every stride-th row and column: split each axis into (out, stride), keep 0.
                t = t
                    .contiguous()?
                    .reshape((b, g.out_h, g.stride_h, g.out_w, g.stride_w, g.c))?
                    .narrow(2, 0, 1)?
                    .narrow(4, 0, 1)?
                    .reshape((b, g.out_h, g.out_w, g.c))?;
            }
            taps.push(t);
        }
    }
    Ok(Tensor::stack(&taps, 3)?)
}

/// The adjoint of [`extract`] (col2im): adds each tap's values back where they were read,
/// giving (batch, h, w, c).
pub fn fold(p: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    let b = p.dim(0)?;
    let ((full_h, _), (full_w, _)) = padded_hw(g);
    let mut acc: Option<Tensor> = None;
    for i in 0..g.kh {
        for j in 0..g.kw {
            let mut t = p.narrow(3, i * g.kw + j, 1)?.squeeze(3)?; // (b, out_h, out_w, c)
            if g.stride_h > 1 || g.stride_w > 1 {
                t = t.reshape((b, g.out_h, 1, g.out_w, 1, g.c))?.pad_with_zeros(2, 0, g.stride_h - 1)?.pad_with_zeros(4, 0, g.stride_w - 1)?.reshape((
                    b,
                    g.out_h * g.stride_h,
                    g.out_w * g.stride_w,
                    g.c,
                ))?;
            }
            let (top, left) = (i * g.dilation_h, j * g.dilation_w);
            let t = t.pad_with_zeros(1, top, full_h - top - g.out_h * g.stride_h)?.pad_with_zeros(2, left, full_w - left - g.out_w * g.stride_w)?;
            acc = Some(match acc {
                Some(a) => (a + t)?,
                None => t,
            });
        }
    }
    let acc = acc.expect("a window has at least one tap");
    Ok(acc.narrow(1, g.pad_top, g.h)?.narrow(2, g.pad_left, g.w)?.contiguous()?)
}

/// Which window positions are inside the image: (1, out_h, out_w, kh * kw, 1) of 0/1, or
/// None when no window reaches into the padding.
fn inside(g: &ConvGeometry, x: &Tensor) -> Result<Option<Tensor>> {
    let reaches_out = g.pad_top > 0
        || g.pad_left > 0
        || (g.out_h - 1) * g.stride_h + (g.kh - 1) * g.dilation_h + 1 > g.h + g.pad_top
        || (g.out_w - 1) * g.stride_w + (g.kw - 1) * g.dilation_w + 1 > g.w + g.pad_left;
    if !reaches_out {
        return Ok(None);
    }
    let ones = Tensor::ones((1, g.h, g.w, 1), DType::F32, x.device())?;
    let one_channel = ConvGeometry { c: 1, ..*g };
    Ok(Some(extract(&ones, &one_channel)?))
}

/// im2col: (batch * out_h * out_w, kh * kw * c).
pub fn im2col(x: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    let b = x.dim(0)?;
    Ok(extract(x, g)?.reshape((b * g.out_h * g.out_w, g.patch_len()))?)
}

/// col2im: patch-matrix gradients back to (batch, h, w, c).
pub fn col2im(cols: &Tensor, batch: usize, g: &ConvGeometry) -> Result<Tensor> {
    fold(&cols.reshape((batch, g.out_h, g.out_w, g.kh * g.kw, g.c))?, g)
}

/// Max pooling: the pooled values and, per window, a 0/1 mask of the tap that won (the first
/// maximum in window order, as TensorFlow routes the gradient; padding never wins).
pub fn max_pool(x: &Tensor, g: &ConvGeometry) -> Result<(Tensor, Tensor)> {
    let mut p = extract(x, g)?;
    if let Some(inside) = inside(g, x)? {
        // Padded taps get -1e30 added (and real ones 0.0, which leaves them exact).
        p = p.broadcast_add(&((inside - 1.0)? * 1e30)?)?;
    }
    let y = p.max_keepdim(3)?;
    let ties = p.broadcast_eq(&y)?.to_dtype(DType::F32)?;
    // Keep the first of equal maxima: give tap t the priority taps - t where it is a maximum
    // (0 elsewhere) and keep the highest priority. Small integers in f32: exact everywhere.
    let taps = g.kh * g.kw;
    let rank = Tensor::arange(0u32, taps as u32, x.device())?.to_dtype(DType::F32)?.affine(-1.0, taps as f64)?.reshape((1, 1, 1, taps, 1))?;
    let priority = ties.broadcast_mul(&rank)?;
    let first = priority.broadcast_eq(&priority.max_keepdim(3)?)?.to_dtype(DType::F32)?;
    Ok((y.squeeze(3)?, first))
}

/// Routes each pooled gradient (batch, out_h, out_w, c) to the tap that won.
pub fn max_pool_backward(dy: &Tensor, first: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    fold(&first.broadcast_mul(&dy.unsqueeze(3)?)?, g)
}

/// How many taps of each window are inside the image: (1, out_h, out_w, 1), or None if all.
fn counts(g: &ConvGeometry, x: &Tensor) -> Result<Option<Tensor>> {
    Ok(match inside(g, x)? {
        Some(m) => Some(m.sum(3)?),
        None => None,
    })
}

/// Average pooling; padding is left out of each window's count (as in Keras).
pub fn avg_pool(x: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    let sum = extract(x, g)?.sum(3)?;
    Ok(match counts(g, x)? {
        Some(n) => sum.broadcast_div(&n)?,
        None => (sum / (g.kh * g.kw) as f64)?,
    })
}

pub fn avg_pool_backward(dy: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    let share = match counts(g, dy)? {
        Some(n) => dy.broadcast_div(&n)?,
        None => (dy / (g.kh * g.kw) as f64)?,
    };
    let taps = g.kh * g.kw;
    let (b, oh, ow, c) = share.dims4()?;
    fold(&share.unsqueeze(3)?.broadcast_as((b, oh, ow, taps, c))?.contiguous()?, g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{self, window_geometry};
    use candle_core::Device;

    fn geometries() -> Vec<ConvGeometry> {
        let mut out = Vec::new();
        for (input, kernel, strides, dilation, same) in [
            ([5usize, 6, 2], (2usize, 3usize), (1usize, 1usize), (1usize, 1usize), false),
            ([5, 6, 2], (3, 3), (2, 2), (1, 1), true),
            ([7, 5, 3], (3, 2), (1, 1), (2, 1), true),
            ([6, 6, 1], (2, 2), (2, 2), (1, 1), false),
            ([5, 5, 2], (3, 3), (2, 1), (1, 1), true),
        ] {
            out.push(window_geometry("t", "Test", &input, kernel, strides, dilation, same).unwrap());
        }
        out
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{} vs {}", x, y);
        }
    }

    #[test]
    fn im2col_and_col2im_match_the_host_kernels() {
        let dev = Device::Cpu;
        for g in geometries() {
            let x = Tensor::randn(0f32, 1.0, (2, g.h, g.w, g.c), &dev).unwrap();
            let host = kernels::im2col(&values(&x), 2, &g);
            close(&values(&im2col(&x, &g).unwrap()), &host);
            let d = Tensor::randn(0f32, 1.0, (2 * g.out_h * g.out_w, g.patch_len()), &dev).unwrap();
            close(&values(&col2im(&d, 2, &g).unwrap()), &kernels::col2im(&values(&d), 2, &g));
        }
    }

    #[test]
    fn pooling_matches_the_host_kernels_ties_included() {
        let dev = Device::Cpu;
        for g in geometries().into_iter().filter(|g| g.dilation_h == 1 && g.dilation_w == 1) {
            // Rounded values, so that windows hold equal maxima.
            let x = (Tensor::randn(0f32, 2.0, (2, g.h, g.w, g.c), &dev).unwrap().round().unwrap() * 0.5).unwrap();
            let (y, first) = max_pool(&x, &g).unwrap();
            let (host_y, arg) = kernels::max_pool_forward(&values(&x), 2, &g);
            close(&values(&y), &host_y);
            let dy = Tensor::randn(0f32, 1.0, y.dims(), &dev).unwrap();
            let host_dx = kernels::max_pool_backward(&values(&dy), &arg, x.elem_count());
            close(&values(&max_pool_backward(&dy, &first, &g).unwrap()), &host_dx);
            close(&values(&avg_pool(&x, &g).unwrap()), &kernels::avg_pool_forward(&values(&x), 2, &g));
            close(&values(&avg_pool_backward(&dy, &g).unwrap()), &kernels::avg_pool_backward(&values(&dy), 2, &g));
        }
    }
}
