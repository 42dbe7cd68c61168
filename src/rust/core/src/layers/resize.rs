//! Up-sampling (each step or pixel repeated, or for UpSampling2D bilinearly interpolated) and
//! cropping (rows, columns or steps cut from the edges), channels last: UpSampling1D,
//! UpSampling2D, Cropping1D, Cropping2D.
use super::{Cache, Example, ForwardContext, InputDims, LayerGrads, LayerOutput, LayerType, OutputGrad, Tuple2};
use crate::error::{Error, Result};
use crate::shape::{image_dims, map_known, sequence_dims, VARIABLE};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

fn positive(v: usize, what: &str) -> Result<()> {
    if v == 0 {
        return Err(Error::Value(format!("`{}` must be positive", what)));
    }
    Ok(())
}

/// Repeats every entry of axis `axis` `times` times in a row.
fn repeat_axis(x: &Tensor, axis: usize, times: usize) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let x = x.unsqueeze(axis + 1)?;
    let mut wide = x.dims().to_vec();
    wide[axis + 1] = times;
    dims[axis] *= times;
    Ok(x.broadcast_as(wide)?.contiguous()?.reshape(dims)?)
}

/// The gradient of `repeat_axis`: the sum over each group of `times` entries.
fn sum_repeats(dy: &Tensor, axis: usize, times: usize) -> Result<Tensor> {
    let mut dims = dy.dims().to_vec();
    dims[axis] /= times;
    dims.insert(axis + 1, times);
    Ok(dy.reshape(dims)?.sum(axis + 1)?)
}

/// TensorFlow's bilinear resize (`tf.image.resize`, half-pixel centers) of an axis of `n`
/// values to `n * factor`, as the `(n * factor, n)` matrix that applies it: output `o` reads
/// the input at `(o + 0.5) / factor - 0.5`, between its two nearest entries (clamped to the
/// edges), weighted by the distance.
fn bilinear_matrix(n: usize, factor: usize, device: &candle_core::Device) -> Result<Tensor> {
    let out = n * factor;
    let scale = n as f32 / out as f32;
    let mut a = vec![0f32; out * n];
    for o in 0..out {
        let src = (o as f32 + 0.5) * scale - 0.5;
        let floor = src.floor();
        let lerp = src - floor;
        let lower = (floor.max(0.0) as usize).min(n - 1);
        let upper = (src.ceil().max(0.0) as usize).min(n - 1);
        a[o * n + lower] += 1.0 - lerp;
        a[o * n + upper] += lerp;
    }
    Ok(Tensor::from_vec(a, (out, n), device)?)
}

/// `x` of shape `(batch, h, w, c)` with `ah` (`(h2, h)`) applied along its rows and `aw`
/// (`(w2, w)`) along its columns: `(batch, h2, w2, c)`.
fn resize_axes(x: &Tensor, ah: &Tensor, aw: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (h2, w2) = (ah.dim(0)?, aw.dim(0)?);
    let rows = ah.broadcast_matmul(&x.reshape((n, h, w * c))?)?; // (n, h2, w * c)
    let cols = aw.broadcast_matmul(&rows.reshape((n * h2, w, c))?)?; // (n * h2, w2, c)
    Ok(cols.reshape((n, h2, w2, c))?)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UpSampling1D {
    pub size: usize,
}

impl Default for UpSampling1D {
    fn default() -> Self {
        Self { size: 2 }
    }
}

impl LayerType for UpSampling1D {
    const CLASS_NAME: &'static str = "UpSampling1D";
    const NAME_PREFIX: &'static str = "up_sampling1d";

    fn normalize(&mut self) -> Result<()> {
        positive(self.size, "size")
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (steps, c) = sequence_dims(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![map_known(steps, |s| s * self.size), c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        sequence_dims(name, Self::CLASS_NAME, &xs[0].dims()[1..])?;
        Ok((LayerOutput::plain(repeat_axis(&xs[0], 1, self.size)?), Cache::new(())))
    }

    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        _cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        Ok(LayerGrads::input_only(sum_repeats(&grad.value(Self::CLASS_NAME)?, 1, self.size)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "size": 3 }), inputs: vec![vec![4, 2]], index_bound: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UpSampling2D {
    pub size: Tuple2,
    pub data_format: super::DataFormat,
    pub interpolation: String,
}

impl Default for UpSampling2D {
    fn default() -> Self {
        Self { size: Tuple2(2, 2), data_format: super::DataFormat::ChannelsLast, interpolation: "nearest".into() }
    }
}

impl LayerType for UpSampling2D {
    const CLASS_NAME: &'static str = "UpSampling2D";
    const NAME_PREFIX: &'static str = "up_sampling2d";

    fn normalize(&mut self) -> Result<()> {
        positive(self.size.0, "size")?;
        positive(self.size.1, "size")?;
        if self.interpolation != "nearest" && self.interpolation != "bilinear" {
            return Err(Error::Value(format!("`interpolation` must be \"nearest\" or \"bilinear\", got \"{}\"", self.interpolation)));
        }
        self.data_format.check()
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (h, w, c) = image_dims(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![map_known(h, |h| h * self.size.0), map_known(w, |w| w * self.size.1), c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let (h, w, _) = image_dims(name, Self::CLASS_NAME, &xs[0].dims()[1..])?;
        if self.interpolation == "bilinear" {
            let (ah, aw) = (bilinear_matrix(h, self.size.0, xs[0].device())?, bilinear_matrix(w, self.size.1, xs[0].device())?);
            return Ok((LayerOutput::plain(resize_axes(&xs[0], &ah, &aw)?), Cache::new((ah, aw))));
        }
        let rows = repeat_axis(&xs[0], 1, self.size.0)?;
        Ok((LayerOutput::plain(repeat_axis(&rows, 2, self.size.1)?), Cache::new(())))
    }

    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let dy = grad.value(Self::CLASS_NAME)?;
        if self.interpolation == "bilinear" {
            // The resize is linear, y = Ah x Aw': its gradient applies the transposes.
            let (ah, aw) = cache.get::<(Tensor, Tensor)>()?;
            return Ok(LayerGrads::input_only(resize_axes(&dy, &ah.t()?.contiguous()?, &aw.t()?.contiguous()?)?));
        }
        let dy = sum_repeats(&dy, 2, self.size.1)?;
        Ok(LayerGrads::input_only(sum_repeats(&dy, 1, self.size.0)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "size": [2, 3] }), inputs: vec![vec![2, 3, 2]], index_bound: None }
    }
}

/// Cuts `(start, end)` entries off axis `axis` (counted with the batch) and its gradient:
/// zeros put back where the cut entries were.
fn crop(x: &Tensor, axis: usize, (start, end): (usize, usize)) -> Result<Tensor> {
    let n = x.dim(axis)?;
    Ok(x.narrow(axis, start, n - start - end)?)
}

fn uncrop(dy: &Tensor, axis: usize, (start, end): (usize, usize)) -> Result<Tensor> {
    Ok(dy.pad_with_zeros(axis, start, end)?)
}

fn check_crop(name: &str, class: &str, extent: usize, (start, end): (usize, usize)) -> Result<usize> {
    if extent == VARIABLE {
        return Ok(VARIABLE);
    }
    match extent.checked_sub(start + end) {
        Some(left) if left > 0 => Ok(left),
        _ => Err(Error::Value(format!("layer \"{}\" ({}) crops {} + {} from an axis of {}: nothing would be left", name, class, start, end, extent))),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Cropping1D {
    pub cropping: (usize, usize),
}

impl Default for Cropping1D {
    fn default() -> Self {
        Self { cropping: (1, 1) }
    }
}

impl LayerType for Cropping1D {
    const CLASS_NAME: &'static str = "Cropping1D";
    const NAME_PREFIX: &'static str = "cropping1d";

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (steps, c) = sequence_dims(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![check_crop(name, Self::CLASS_NAME, steps, self.cropping)?, c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        self.output_shape(name, &[xs[0].dims()[1..].to_vec()])?;
        Ok((LayerOutput::plain(crop(&xs[0], 1, self.cropping)?), Cache::new(())))
    }

    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        _cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        Ok(LayerGrads::input_only(uncrop(&grad.value(Self::CLASS_NAME)?, 1, self.cropping)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "cropping": [1, 2] }), inputs: vec![vec![6, 2]], index_bound: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Cropping2D {
    /// ((top, bottom), (left, right)).
    pub cropping: ((usize, usize), (usize, usize)),
    pub data_format: super::DataFormat,
}

impl Default for Cropping2D {
    fn default() -> Self {
        Self { cropping: ((0, 0), (0, 0)), data_format: super::DataFormat::ChannelsLast }
    }
}

impl LayerType for Cropping2D {
    const CLASS_NAME: &'static str = "Cropping2D";
    const NAME_PREFIX: &'static str = "cropping2d";

    fn normalize(&mut self) -> Result<()> {
        self.data_format.check()
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (h, w, c) = image_dims(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![check_crop(name, Self::CLASS_NAME, h, self.cropping.0)?, check_crop(name, Self::CLASS_NAME, w, self.cropping.1)?, c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        self.output_shape(name, &[xs[0].dims()[1..].to_vec()])?;
        let rows = crop(&xs[0], 1, self.cropping.0)?;
        Ok((LayerOutput::plain(crop(&rows, 2, self.cropping.1)?.contiguous()?), Cache::new(InputDims(xs[0].dims().to_vec()))))
    }

    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        _cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let dy = uncrop(&grad.value(Self::CLASS_NAME)?, 2, self.cropping.1)?;
        Ok(LayerGrads::input_only(uncrop(&dy, 1, self.cropping.0)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "cropping": [[1, 0], [0, 2]] }), inputs: vec![vec![4, 5, 2]], index_bound: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn bilinear_weights_follow_tensorflows_half_pixel_centers() {
        // 3 -> 6: outputs read the input at -0.25, 0.25, 0.75, 1.25, 1.75, 2.25 (clamped).
        let a = bilinear_matrix(3, 2, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let want = [[1.0, 0.0, 0.0], [0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.0, 0.75, 0.25], [0.0, 0.25, 0.75], [0.0, 0.0, 1.0]];
        for (row, w) in a.iter().zip(want) {
            for (v, e) in row.iter().zip(w) {
                assert!((v - e).abs() < 1e-6, "{:?}", a);
            }
        }
    }

    #[test]
    fn bilinear_up_sampling_matches_finite_differences() {
        let layer: UpSampling2D = serde_json::from_value(serde_json::json!({ "size": [2, 3], "interpolation": "bilinear" })).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 2, 2), &Device::Cpu).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (2, 6, 6, 2), &Device::Cpu).unwrap();
        let mut ctx = ForwardContext { training: true, rng: rand::SeedableRng::seed_from_u64(1), mask: None, collective: None };
        let (out, cache) = layer.forward("up", &[], std::slice::from_ref(&x), &mut ctx).unwrap();
        assert_eq!(out.value.dims(), &[2, 6, 6, 2]);
        let dx = layer.backward("up", &[], &[], &cache, OutputGrad::Value(probe.clone()), true).unwrap().input.unwrap();
        // The loss sum(out * probe) is linear in x: its finite difference is exact up to rounding.
        let loss = |x: &Tensor| -> f32 {
            let (o, _) = layer
                .forward(
                    "up",
                    &[],
                    std::slice::from_ref(x),
                    &mut ForwardContext { training: true, rng: rand::SeedableRng::seed_from_u64(1), mask: None, collective: None },
                )
                .unwrap();
            (o.value * &probe).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
        };
        let flat = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let grads = dx.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for i in [0, 5, 11, 17, 23] {
            let mut up = flat.clone();
            up[i] += 0.01;
            let mut down = flat.clone();
            down[i] -= 0.01;
            let t = |v: Vec<f32>| Tensor::from_vec(v, (2, 3, 2, 2), &Device::Cpu).unwrap();
            let fd = (loss(&t(up)) - loss(&t(down))) / 0.02;
            assert!((fd - grads[i]).abs() < 1e-2, "value {}: {} vs {}", i, fd, grads[i]);
        }
    }
}
