//! Up-sampling (each step or pixel repeated) and cropping (rows, columns or steps cut from
//! the edges), channels last: UpSampling1D, UpSampling2D (nearest), Cropping1D, Cropping2D.
use super::{Cache, Example, ForwardContext, InputDims, LayerGrads, LayerOutput, LayerType, OutputGrad, Tuple2};
use crate::error::{Error, Result};
use crate::shape::{image_dims, sequence_dims};
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
        Ok(vec![steps * self.size, c])
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
        if self.interpolation != "nearest" {
            return Err(Error::Value(format!("`interpolation = \"{}\"` is not supported yet: only \"nearest\"", self.interpolation)));
        }
        self.data_format.check()
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (h, w, c) = image_dims(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![h * self.size.0, w * self.size.1, c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        image_dims(name, Self::CLASS_NAME, &xs[0].dims()[1..])?;
        let rows = repeat_axis(&xs[0], 1, self.size.0)?;
        Ok((LayerOutput::plain(repeat_axis(&rows, 2, self.size.1)?), Cache::new(())))
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
        let dy = sum_repeats(&grad.value(Self::CLASS_NAME)?, 2, self.size.1)?;
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
