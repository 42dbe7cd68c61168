//! Matrix products on the CPU straight through gemm: into fresh buffers that are not zeroed
//! first (candle zero-fills every product's output), with any operand strides (transposed
//! views without copies), and with the bias and ReLU of a layer applied in place.
use super::uninit_filled;
use crate::error::Result;
use candle_core::{DType, Storage, Tensor};

/// A 2-d f32 CPU operand: its values from the first element on, and its strides.
struct Operand<'a> {
    values: &'a [f32],
    row_stride: isize,
    col_stride: isize,
}

fn with_operand<R>(t: &Tensor, f: impl FnOnce(Operand<'_>) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return Err(crate::error::Error::Device("not a CPU tensor".into())) };
    let all = cpu.as_slice::<f32>()?;
    let stride = layout.stride();
    Ok(f(Operand { values: &all[layout.start_offset()..], row_stride: stride[0] as isize, col_stride: stride[1] as isize }))
}

fn on_cpu_f32(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && t.rank() == 2)
}

fn parallelism() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// `a · b` into a new row-major (m, n) buffer, or its transpose (n, m) when `transposed`.
fn product(a: &Tensor, b: &Tensor, transposed: bool) -> Result<Vec<f32>> {
    let ((m, k), (k2, n)) = (a.dims2()?, b.dims2()?);
    if k != k2 {
        return Err(crate::error::Error::Value(format!("cannot multiply a ({}, {}) matrix by a ({}, {}) one", m, k, k2, n)));
    }
    if k == 0 {
        return Ok(vec![0f32; m * n]);
    }
    with_operand(a, |a| {
        with_operand(b, |b| {
            uninit_filled(m * n, |out| {
                // Row-major (m, n): next column +1, next row +n; its transpose: the reverse.
                let (dst_cs, dst_rs) = if transposed { (m as isize, 1) } else { (1, n as isize) };
                // SAFETY: the operands hold every element their strides reach (candle layouts),
                // `out` has m * n slots, and gemm writes each once without reading (read_dst false).
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        out.as_mut_ptr() as *mut f32,
                        dst_cs,
                        dst_rs,
                        false,
                        a.values.as_ptr(),
                        a.col_stride,
                        a.row_stride,
                        b.values.as_ptr(),
                        b.col_stride,
                        b.row_stride,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        parallelism(),
                    )
                }
            })
        })
    })?
}

/// `dst = a · b`, or `dst += a · b` when `accumulate`, on the calling thread only; all three
/// row-major and contiguous: `a` (m, k), `b` (k, n), `dst` (m, n). For work already split
/// over the threads by rows (a recurrent layer's batch rows, a convolution's images).
pub(super) fn product_on_this_thread(dst: &mut [f32], a: &[f32], b: &[f32], k: usize, accumulate: bool) {
    if k == 0 {
        // An empty sum: the product is zeros.
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let n = b.len() / k;
    let m = match dst.len().checked_div(n) {
        Some(m) if m > 0 => m,
        _ => return,
    };
    assert!(a.len() >= m * k && b.len() >= k * n && dst.len() >= m * n, "product operands too short");
    // SAFETY: the lengths checked above cover every element the strides reach: dst (m, n),
    // a (m, k), b (k, n), all row-major; gemm reads dst only when accumulating.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `a · b` for 2-d tensors (any strides on the CPU; candle's matmul elsewhere).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !on_cpu_f32(&[a, b]) {
        return Ok(a.matmul(b)?);
    }
    let (m, n) = (a.dim(0)?, b.dim(1)?);
    Ok(Tensor::from_vec(product(a, b, false)?, (m, n), a.device())?)
}

/// `a · bᵀ` for a row-major `b` (a dense layer's input gradient, dz · kernelᵀ). On the CPU
/// computed as `b · aᵀ` written out transposed: gemm packs a transposed right-hand side
/// slowly, and packing a whole 784x512 kernel that way cost about 0.7 ms per call whatever
/// the batch size, a fixed cost each data-parallel replica paid again.
pub fn matmul_by_transpose(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !on_cpu_f32(&[a, b]) {
        return Ok(a.matmul(&b.t()?)?);
    }
    let (m, n) = (a.dim(0)?, b.dim(0)?);
    Ok(Tensor::from_vec(product(b, &a.t()?, true)?, (m, n), a.device())?)
}

/// `x · w + bias`, with ReLU applied too when `relu`: on the CPU the bias and ReLU are
/// applied in place on the product's buffer. NaN passes ReLU, as tf.nn.relu lets it, so a
/// diverging model still shows a NaN loss.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, relu: bool) -> Result<Tensor> {
    if !on_cpu_f32(&[x, w]) {
        let z = x.matmul(w)?;
        let z = match bias {
            Some(b) => z.broadcast_add(b)?,
            None => z,
        };
        return Ok(if relu { z.relu()? } else { z });
    }
    let (m, n) = (x.dim(0)?, w.dim(1)?);
    let mut z = product(x, w, false)?;
    let b: Option<Vec<f32>> = bias.map(|b| b.flatten_all().and_then(|b| b.to_vec1::<f32>())).transpose()?;
    if b.is_some() || relu {
        use rayon::prelude::*;
        let rows_per_chunk = (1 << 15) / n.max(1) + 1;
        z.par_chunks_mut(rows_per_chunk * n.max(1)).for_each(|rows| bias_relu_rows(rows, n.max(1), b.as_deref(), relu));
    }
    Ok(Tensor::from_vec(z, (m, n), x.device())?)
}

widest_vectors! {
/// Adds `bias` to each row of `rows` (rows of `n` values) and applies ReLU in place (NaN
/// passes, as tf.nn.relu lets it). The sum and the ReLU are one expression: a ReLU of the
/// stored value alone (`if v < 0 { 0 } else { v }` written back) became a masked store per
/// vector with AVX2 and AVX-512 (microcoded on this AMD CPU), slower than the SSE2 loop.
pub(super) fn bias_relu_rows(rows: &mut [f32], n: usize, bias: Option<&[f32]>, relu: bool) {
    let zeros = vec![0f32; if bias.is_none() { n } else { 0 }];
    let b = &bias.unwrap_or(&zeros)[..n];
    for row in rows.chunks_exact_mut(n) {
        if relu {
            for k in 0..n {
                row[k] = super::relu_of(row[k] + b[k]);
            }
        } else {
            for k in 0..n {
                row[k] += b[k];
            }
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn close(a: &Tensor, b: &Tensor) {
        let (a, b) = (a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{} vs {}", x, y);
        }
    }

    #[test]
    fn products_match_candle_for_plain_and_transposed_operands() {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (37, 20), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, (20, 11), &dev).unwrap();
        close(&matmul(&a, &b).unwrap(), &a.matmul(&b).unwrap());
        // A transposed view as the left operand (a layer's xᵀ · dz).
        let at = Tensor::randn(0f32, 1.0, (20, 37), &dev).unwrap();
        close(&matmul(&at.t().unwrap(), &b).unwrap(), &at.t().unwrap().matmul(&b).unwrap());
        // dz · wᵀ.
        let w = Tensor::randn(0f32, 1.0, (11, 20), &dev).unwrap();
        close(&matmul_by_transpose(&a, &w).unwrap(), &a.matmul(&w.t().unwrap()).unwrap());
        // A narrowed (offset) operand.
        let wide = Tensor::randn(0f32, 1.0, (37, 30), &dev).unwrap().narrow(1, 5, 20).unwrap();
        close(&matmul(&wide, &b).unwrap(), &wide.matmul(&b).unwrap());
    }

    #[test]
    fn linear_adds_the_bias_and_applies_relu_like_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (9, 5), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 4, &dev).unwrap();
        let z_ref = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        close(&linear(&x, &w, Some(&b), false).unwrap(), &z_ref);
        close(&linear(&x, &w, Some(&b), true).unwrap(), &z_ref.relu().unwrap());
        let nan = Tensor::new(&[[f32::NAN, 1.0]], &dev).unwrap();
        let y = linear(&nan, &Tensor::new(&[[1f32], [1.0]], &dev).unwrap(), None, true).unwrap();
        assert!(y.to_vec2::<f32>().unwrap()[0][0].is_nan());
    }
}
