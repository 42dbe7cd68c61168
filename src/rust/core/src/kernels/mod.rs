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
    let &[h, w, c] = input else {
        return Err(Error::Value(format!(
            "layer \"{}\" ({}) needs inputs of shape (height, width, channels), got ({})",
            name,
            class,
            crate::model::join_dims(input)
        )));
    };
    let (out_h, pad_top) = output_extent(h, kernel.0, strides.0, dilation.0, same);
    let (out_w, pad_left) = output_extent(w, kernel.1, strides.1, dilation.1, same);
    if out_h == 0 || out_w == 0 {
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
