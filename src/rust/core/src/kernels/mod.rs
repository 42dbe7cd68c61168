//! CPU kernels we own instead of candle's (whose conv backward is slow and whose max-pool
//! gradient is wrong): im2col/col2im for channels-last convolutions and max pooling with
//! argmax routing. They work on contiguous f32 host slices.
mod conv;
mod pool;

pub use conv::{col2im, im2col, ConvGeometry};
pub use pool::{avg_pool_backward, avg_pool_forward, max_pool_backward, max_pool_forward};

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

/// Output size and leading padding of one spatial axis, with Keras's "valid"/"same" rules.
pub fn output_extent(input: usize, kernel: usize, stride: usize, dilation: usize, same: bool) -> (usize, usize) {
    let effective = (kernel - 1) * dilation + 1;
    if same {
        let out = input.div_ceil(stride);
        let pad_total = ((out - 1) * stride + effective).saturating_sub(input);
        (out, pad_total / 2)
    } else if input >= effective {
        ((input - effective) / stride + 1, 0)
    } else {
        (0, 0)
    }
}
