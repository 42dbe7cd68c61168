//! Kernels we own instead of candle's (whose conv backward is slow and whose max-pool
//! gradient is wrong): on contiguous f32 host slices for the CPU (im2col/col2im, pooling,
//! depthwise convolution, matmuls through gemm, row sums, ReLU gradients), and as tensor ops
//! for other devices (`patches`). The `*_on_device` functions pick one by the tensor's device.

/// Defines `fn $name(...)` that runs its body compiled for the widest vector instructions the
/// CPU has (AVX-512F, else AVX2, else the build's baseline), chosen at run time. The crate is
/// built for baseline x86-64 (SSE2), where our elementwise loops ran 1-4 values at a time
/// (the depthwise convolution and batch normalization loops were scalar multiply-adds, 23%
/// and 7% of the block net's predict). The same operations in the same order on every path
/// (Rust does not contract multiply-adds into FMAs), so every path gives the same bits.
macro_rules! widest_vectors {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub mod batch_norm;
mod conv;
mod conv_pool;
pub mod depthwise;
mod direct_conv;
mod matmul;
pub mod patches;
mod pool;
pub mod recurrent;

pub use conv::{col2im, im2col, ConvGeometry};
pub use conv_pool::ConvPool;
pub use direct_conv::{direct_conv_forward, direct_conv_kernel_gradient, DIRECT_MAX_PATCH, DIRECT_PAYS_UP_TO};
pub use matmul::{linear, matmul, matmul_by_transpose};
pub use pool::{avg_pool_backward, avg_pool_forward, max_pool_backward_from, max_pool_values};
#[cfg(test)]
pub use pool::{max_pool_backward, max_pool_forward};

use crate::error::{Error, Result};
use candle_core::{Storage, Tensor};

/// Runs `f` on a contiguous f32 view of a CPU tensor (no copy when already contiguous).
pub fn with_cpu_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = if t.is_contiguous() { t.clone() } else { t.contiguous()? };
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let s = cpu.as_slice::<f32>()?;
            let (a, b) = layout.contiguous_offsets().ok_or_else(|| Error::State("tensor is not contiguous".into()))?;
            Ok(f(&s[a..b]))
        }
        _ => Err(Error::Device("this layer's kernels run on the CPU only in this build".into())),
    }
}

/// [`with_cpu_slice`] for several tensors at once.
pub fn with_cpu_slices<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> Result<R> {
    let owned = ts.iter().map(|t| if t.is_contiguous() { Ok((*t).clone()) } else { t.contiguous() }).collect::<candle_core::Result<Vec<Tensor>>>()?;
    let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(cpu) => {
                let s = cpu.as_slice::<f32>()?;
                let (a, b) = layout.contiguous_offsets().ok_or_else(|| Error::State("tensor is not contiguous".into()))?;
                slices.push(&s[a..b]);
            }
            _ => return Err(Error::Device("this layer's kernels run on the CPU only in this build".into())),
        }
    }
    Ok(f(&slices))
}

/// A vector of `n` values that `fill` writes in full, without zeroing it first (a memset of
/// each large buffer was 9% of a CNN's predict). `fill` must write every element.
pub fn uninit_filled(n: usize, fill: impl FnOnce(&mut [std::mem::MaybeUninit<f32>])) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: `fill` initialized all n elements (its contract); f32 has no invalid values.
    unsafe { v.set_len(n) };
    v
}

/// im2col for a tensor on any device: the host kernel on the CPU, tensor ops elsewhere.
pub fn im2col_on_device(x: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    let batch = x.dim(0)?;
    if x.device().is_cpu() {
        let cols = with_cpu_slice(x, |xs| im2col(xs, batch, g))?;
        return Ok(Tensor::from_vec(cols, (batch * g.out_h * g.out_w, g.patch_len()), x.device())?);
    }
    patches::im2col(x, g)
}

/// col2im for a tensor on any device: (batch, h, w, c).
pub fn col2im_on_device(cols: &Tensor, batch: usize, g: &ConvGeometry) -> Result<Tensor> {
    if cols.device().is_cpu() {
        let dx = with_cpu_slice(cols, |d| col2im(d, batch, g))?;
        return Ok(Tensor::from_vec(dx, (batch, g.h, g.w, g.c), cols.device())?);
    }
    patches::col2im(cols, batch, g)
}

/// What a max pooling's backward pass needs to route gradients: on the CPU its input and
/// output (the first maximum of each window is found again), elsewhere the mask of the
/// winning taps (tensor ops).
#[derive(Debug, Clone)]
pub enum MaxPoolRouting {
    Recompute { input: Tensor, output: Tensor, geometry: ConvGeometry },
    Winners { mask: Tensor, geometry: ConvGeometry },
}

/// Max pooling on any device: (batch, out_h, out_w, c) and the routing for its gradient.
pub fn max_pool_on_device(x: &Tensor, g: &ConvGeometry) -> Result<(Tensor, MaxPoolRouting)> {
    let batch = x.dim(0)?;
    if x.device().is_cpu() {
        let x = if x.is_contiguous() { x.clone() } else { x.contiguous()? };
        let y = with_cpu_slice(&x, |xs| max_pool_values(xs, batch, g))?;
        let y = Tensor::from_vec(y, (batch, g.out_h, g.out_w, g.c), x.device())?;
        return Ok((y.clone(), MaxPoolRouting::Recompute { input: x, output: y, geometry: *g }));
    }
    let (y, mask) = patches::max_pool(x, g)?;
    Ok((y, MaxPoolRouting::Winners { mask, geometry: *g }))
}

/// The input gradient of a max pooling, `input_dims` (batch, h, w, c).
pub fn max_pool_backward_on_device(dy: &Tensor, routing: &MaxPoolRouting, input_dims: &[usize]) -> Result<Tensor> {
    match routing {
        MaxPoolRouting::Recompute { input, output, geometry: g } => {
            let dx = with_cpu_slice(input, |xs| with_cpu_slice(output, |ys| with_cpu_slice(dy, |ds| max_pool_backward_from(xs, ys, ds, input_dims[0], g))))???;
            Ok(Tensor::from_vec(dx, input_dims, dy.device())?)
        }
        MaxPoolRouting::Winners { mask, geometry: g } => {
            // Global max pooling hands back (batch, c): give it its 1x1 window axes.
            let dy = dy.to_device(mask.device())?.reshape((input_dims[0], g.out_h, g.out_w, g.c))?;
            patches::max_pool_backward(&dy, mask, g)
        }
    }
}

/// Average pooling on any device (padding left out of each window's count).
pub fn avg_pool_on_device(x: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    let batch = x.dim(0)?;
    if x.device().is_cpu() {
        let y = with_cpu_slice(x, |xs| avg_pool_forward(xs, batch, g))?;
        return Ok(Tensor::from_vec(y, (batch, g.out_h, g.out_w, g.c), x.device())?);
    }
    patches::avg_pool(x, g)
}

pub fn avg_pool_backward_on_device(dy: &Tensor, batch: usize, g: &ConvGeometry) -> Result<Tensor> {
    if dy.device().is_cpu() {
        let dx = with_cpu_slice(dy, |d| avg_pool_backward(d, batch, g))?;
        return Ok(Tensor::from_vec(dx, (batch, g.h, g.w, g.c), dy.device())?);
    }
    patches::avg_pool_backward(dy, g)
}

/// Column sums of a 2-d tensor, (n, f) -> (f): the bias gradients. On the CPU a pass over
/// the rows (candle's sum over axis 0 walks the matrix column by column, which took 14% of
/// a CNN step); elsewhere candle's reduction.
pub fn sum_rows(t: &Tensor) -> Result<Tensor> {
    let (_, f) = t.dims2()?;
    if !t.device().is_cpu() || t.dtype() != candle_core::DType::F32 {
        return Ok(t.sum(0)?);
    }
    let sums = with_cpu_slice(t, |v| {
        use rayon::prelude::*;
        // Row blocks summed in parallel, then added in block order (deterministic).
        const BLOCK: usize = 256;
        let partial: Vec<Vec<f32>> = v
            .par_chunks(BLOCK * f.max(1))
            .map(|rows| {
                let mut acc = vec![0f32; f];
                for row in rows.chunks_exact(f.max(1)) {
                    acc.iter_mut().zip(row).for_each(|(a, x)| *a += *x);
                }
                acc
            })
            .collect();
        let mut total = vec![0f32; f];
        for p in &partial {
            total.iter_mut().zip(p).for_each(|(a, x)| *a += *x);
        }
        total
    })?;
    Ok(Tensor::from_vec(sums, f, t.device())?)
}

/// max(x, 0) in one pass over the rayon threads on the CPU (candle's CPU relu ran on one
/// thread: `Map1::map` 2.2% of the block net's predict samples); candle's elsewhere.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return Ok(x.relu()?);
    }
    let out = with_cpu_slice(x, |xs| {
        use rayon::prelude::*;
        uninit_filled(xs.len(), |out| out.par_chunks_mut(1 << 15).zip(xs.par_chunks(1 << 15)).for_each(|(o, x)| relu_values(o, x)))
    })?;
    Ok(Tensor::from_vec(out, x.dims(), x.device())?)
}

/// ReLU of one value: NaN stays NaN as in candle's relu and tf.nn.relu (`f32::max` would give
/// 0 for it). Every kernel that applies a ReLU uses this, so that a ReLU taken into another
/// pass gives the bits of the ReLU's own pass.
#[inline(always)]
fn relu_of(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// The ReLU's gradient at one value: `d` where the ReLU's input `z > 0`, else 0 (TensorFlow's
/// ReluGrad), as a bit mask rather than a select, so that loops over it vectorize.
#[inline(always)]
fn relu_passes(z: f32, d: f32) -> f32 {
    f32::from_bits(d.to_bits() & 0u32.wrapping_sub(u32::from(z > 0.0)))
}

widest_vectors! {
/// `o = max(x, 0)` ([`relu_of`]), equal lengths.
fn relu_values(o: &mut [std::mem::MaybeUninit<f32>], x: &[f32]) {
    let n = o.len().min(x.len());
    for (o, &v) in o[..n].iter_mut().zip(&x[..n]) {
        o.write(relu_of(v));
    }
}
}

/// `dy` where `z > 0`, else 0 (TensorFlow's ReluGrad), in one pass on the CPU; candle's
/// comparison against a broadcast zero then a multiply took three strided passes.
pub fn relu_backward(z: &Tensor, dy: &Tensor) -> Result<Tensor> {
    if !z.device().is_cpu() || z.dtype() != candle_core::DType::F32 || dy.dtype() != candle_core::DType::F32 {
        return Ok(dy.mul(&z.gt(0f32)?.to_dtype(dy.dtype())?)?);
    }
    let dy = dy.reshape(z.dims())?;
    let out = with_cpu_slice(z, |zs| {
        with_cpu_slice(&dy, |ds| {
            use rayon::prelude::*;
            uninit_filled(zs.len(), |out| {
                out.par_chunks_mut(1 << 15).zip(zs.par_chunks(1 << 15)).zip(ds.par_chunks(1 << 15)).for_each(|((o, z), d)| relu_gradient(o, z, d))
            })
        })
    })??;
    Ok(Tensor::from_vec(out, z.dims(), z.device())?)
}

widest_vectors! {
/// `o = d` where `z > 0`, else 0. Equal lengths, indexed, and a bit mask instead of a
/// select: this loop vectorizes (zipped iterators with `if` compiled to a scalar loop with a
/// branch per value: 16% of the block net's fit samples).
fn relu_gradient(o: &mut [std::mem::MaybeUninit<f32>], z: &[f32], d: &[f32]) {
    let n = o.len().min(z.len()).min(d.len());
    let (o, z, d) = (&mut o[..n], &z[..n], &d[..n]);
    for i in 0..n {
        o[i].write(relu_passes(z[i], d[i]));
    }
}
}

/// Output size and leading padding of one spatial axis, with Keras's "valid"/"same" rules.
pub fn output_extent(input: usize, kernel: usize, stride: usize, dilation: usize, same: bool) -> (usize, usize) {
    let effective = (kernel - 1) * dilation + 1;
    if input == crate::shape::VARIABLE {
        (crate::shape::VARIABLE, 0)
    } else if same {
        let out = input.div_ceil(stride);
        let pad_total = ((out - 1) * stride + effective).saturating_sub(input);
        (out, pad_total / 2)
    } else if input >= effective {
        ((input - effective) / stride + 1, 0)
    } else {
        (0, 0)
    }
}

/// The geometry of a window sliding over a `(h, w, c)` input (a convolution's or a
/// pooling's), with a clear error when the input has another rank or is smaller than the window.
#[allow(clippy::too_many_arguments)]
pub fn window_geometry(
    name: &str,
    class: &str,
    input: &[usize],
    kernel: (usize, usize),
    strides: (usize, usize),
    dilation: (usize, usize),
    same: bool,
) -> Result<ConvGeometry> {
    let (h, w, c) = crate::shape::image_dims(name, class, input)?;
    let (out_h, pad_top) = output_extent(h, kernel.0, strides.0, dilation.0, same);
    let (out_w, pad_left) = output_extent(w, kernel.1, strides.1, dilation.1, same);
    if (out_h == 0 && h != crate::shape::VARIABLE) || (out_w == 0 && w != crate::shape::VARIABLE) {
        let what = if dilation == (1, 1) { String::new() } else { format!(" with dilation ({}, {})", dilation.0, dilation.1) };
        return Err(Error::Value(format!(
            "layer \"{}\" ({}): window ({}, {}){} is larger than its ({}, {}) input; use a smaller window or padding = \"same\"",
            name, class, kernel.0, kernel.1, what, h, w
        )));
    }
    Ok(ConvGeometry {
        h,
        w,
        c,
        kh: kernel.0,
        kw: kernel.1,
        stride_h: strides.0,
        stride_w: strides.1,
        dilation_h: dilation.0,
        dilation_w: dilation.1,
        pad_top,
        pad_left,
        out_h,
        out_w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn row_sums_and_relu_gradients_match_candle() {
        let dev = Device::Cpu;
        // 700 rows: more than one parallel block, and a partial last block.
        let t = Tensor::randn(0f32, 1.0, (700, 5), &dev).unwrap();
        let ours = sum_rows(&t).unwrap().to_vec1::<f32>().unwrap();
        let candle = t.sum(0).unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(&candle) {
            assert!((a - b).abs() < 1e-4, "{} vs {}", a, b);
        }
        let z = Tensor::new(&[[-1f32, 0.0, 2.0], [3.0, -0.5, 0.25]], &dev).unwrap();
        let dy = Tensor::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &dev).unwrap();
        assert_eq!(relu_backward(&z, &dy).unwrap().to_vec2::<f32>().unwrap(), vec![vec![0.0, 0.0, 3.0], vec![4.0, 0.0, 6.0]]);
        // The ReLU: candle's values on 70,000 values (several parallel blocks), and NaN kept
        // as TensorFlow keeps it (candle's gives 0).
        let x = Tensor::randn(0f32, 1.0, (700, 100), &dev).unwrap();
        assert_eq!(relu(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), x.relu().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let odd = relu(&Tensor::new(&[f32::NAN, -2.0, 3.0], &dev).unwrap()).unwrap().to_vec1::<f32>().unwrap();
        assert!(odd[0].is_nan() && odd[1] == 0.0 && odd[2] == 3.0, "{:?}", odd);
    }

    #[test]
    fn tensor_routing_takes_global_pooling_gradients_of_shape_batch_by_channels() {
        // GlobalMaxPooling2D is a max pooling over the whole (3, 4) image; its gradient
        // arrives as (batch, c). The tensor-op routing must match the host argmax routing.
        let dev = Device::Cpu;
        let g = window_geometry("g", "GlobalMaxPooling2D", &[3, 4, 2], (3, 4), (3, 4), (1, 1), false).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 2), &dev).unwrap();
        let dy = Tensor::randn(0f32, 1.0, (2, 2), &dev).unwrap();
        let (_, host) = max_pool_on_device(&x, &g).unwrap();
        assert!(matches!(host, MaxPoolRouting::Recompute { .. }));
        let (_, mask) = patches::max_pool(&x, &g).unwrap();
        let tensor = MaxPoolRouting::Winners { mask, geometry: g };
        let a = max_pool_backward_on_device(&dy, &host, x.dims()).unwrap();
        let b = max_pool_backward_on_device(&dy, &tensor, x.dims()).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
    }
}
