//! AveragePooling1D and GlobalMaxPooling1D (channels last): the 2-d pooling kernels run on
//! the sequence as a height-1 image `(batch, 1, steps, channels)`.
use super::conv1d::{as_image_shape, from_image, to_image};
use super::params::check_positive;
use super::{Cache, DataFormat, Example, ForwardContext, InputDims, LayerGrads, LayerOutput, LayerType, OutputGrad, Padding, Tuple1};
use crate::error::Result;
use crate::kernels::{avg_pool_backward_on_device, avg_pool_on_device, max_pool_backward_on_device, max_pool_on_device, window_geometry, MaxPoolRouting};
use crate::shape::sequence_dims;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AveragePooling1D {
    pub pool_size: Tuple1,
    pub padding: Padding,
    pub strides: Option<Tuple1>,
    pub data_format: DataFormat,
}

impl Default for AveragePooling1D {
    fn default() -> Self {
        Self { pool_size: Tuple1(2), padding: Padding::Valid, strides: None, data_format: DataFormat::ChannelsLast }
    }
}

impl AveragePooling1D {
    fn geometry(&self, name: &str, input: &[usize]) -> Result<crate::kernels::ConvGeometry> {
        let image = as_image_shape(name, Self::CLASS_NAME, input)?;
        let strides = self.strides.unwrap_or(self.pool_size).0;
        window_geometry(name, Self::CLASS_NAME, &image, (1, self.pool_size.0), (1, strides), (1, 1), self.padding.is_same())
    }
}

/// AveragePooling1D: the mean of each window of steps (padding excluded from the count).
impl LayerType for AveragePooling1D {
    const CLASS_NAME: &'static str = "AveragePooling1D";
    const NAME_PREFIX: &'static str = "average_pooling1d";

    fn normalize(&mut self) -> Result<()> {
        check_positive("pool_size", &[self.pool_size.0])?;
        let strides = *self.strides.get_or_insert(self.pool_size);
        check_positive("strides", &[strides.0])?;
        self.padding.check_not_causal(Self::CLASS_NAME)?;
        self.data_format.check()
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let g = self.geometry(name, &inputs[0])?;
        Ok(vec![g.out_w, g.c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let g = self.geometry(name, &x.dims()[1..])?;
        let image = to_image(x)?;
        Ok((LayerOutput::plain(from_image(avg_pool_on_device(&image, &g)?)?), Cache::new(InputDims(x.dims().to_vec()))))
    }

    fn backward(
        &self,
        name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let InputDims(dims) = cache.get::<InputDims>()?;
        let g = self.geometry(name, &dims[1..])?;
        let dy = to_image(&grad.value(Self::CLASS_NAME)?)?;
        Ok(LayerGrads::input_only(from_image(avg_pool_backward_on_device(&dy, dims[0], &g)?)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "pool_size": 3, "strides": 2, "padding": "same" }), inputs: vec![vec![7, 2]], index_bound: None }
    }
}

/// GlobalMaxPooling1D: `(batch, steps, channels)` to `(batch, channels)`, the largest value of
/// each channel over the steps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GlobalMaxPooling1D {
    pub data_format: DataFormat,
    pub keepdims: bool,
}

struct GlobalMaxCache {
    routing: MaxPoolRouting,
    image_dims: Vec<usize>,
}

impl LayerType for GlobalMaxPooling1D {
    const CLASS_NAME: &'static str = "GlobalMaxPooling1D";
    const NAME_PREFIX: &'static str = "global_max_pooling1d";

    fn normalize(&mut self) -> Result<()> {
        super::pooling::check_global(self.data_format, self.keepdims)
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (_, c) = sequence_dims(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let (steps, c) = sequence_dims(name, Self::CLASS_NAME, &x.dims()[1..])?;
        let image = to_image(x)?;
        let g = window_geometry(name, Self::CLASS_NAME, &image.dims()[1..], (1, steps), (1, 1), (1, 1), false)?;
        let (value, routing) = max_pool_on_device(&image, &g)?;
        let value = value.reshape((x.dim(0)?, c))?;
        Ok((LayerOutput::plain(value), Cache::new(GlobalMaxCache { routing, image_dims: image.dims().to_vec() })))
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
        let GlobalMaxCache { routing, image_dims } = cache.get::<GlobalMaxCache>()?;
        let dy = grad.value(Self::CLASS_NAME)?;
        let dy = dy.reshape((dy.dim(0)?, 1, 1, dy.dim(1)?))?;
        Ok(LayerGrads::input_only(from_image(max_pool_backward_on_device(&dy, routing, image_dims)?)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({}), inputs: vec![vec![5, 3]], index_bound: None }
    }
}
