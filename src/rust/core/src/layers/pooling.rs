//! Pooling (channels last): max and average pooling over 2-d windows, max pooling over 1-d
//! windows (a height-1 image), and global pooling over all pixels, with our own kernels.
use super::conv1d::{as_image_shape, from_image, to_image};
use super::params::check_positive;
use super::{Cache, DataFormat, Example, ForwardContext, InputDims, LayerGrads, LayerOutput, LayerType, OutputGrad, Padding, Tuple1, Tuple2};
use crate::error::{Error, Result};
use crate::kernels::{
    avg_pool_backward_on_device, avg_pool_on_device, max_pool_backward_on_device, max_pool_on_device, window_geometry, ConvGeometry, MaxPoolRouting,
};
use crate::shape::image_dims;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// A pooling window sliding over `(h, w, c)` inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolWindow {
    pub pool_size: (usize, usize),
    pub strides: (usize, usize),
    pub same: bool,
}

impl PoolWindow {
    pub fn geometry(&self, name: &str, class: &str, input: &[usize]) -> Result<ConvGeometry> {
        window_geometry(name, class, input, self.pool_size, self.strides, (1, 1), self.same)
    }

    fn output_shape(&self, name: &str, class: &str, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(name, class, input)?;
        Ok(vec![g.out_h, g.out_w, g.c])
    }

    fn max_forward(&self, name: &str, class: &str, x: &Tensor) -> Result<(Tensor, MaxPoolRouting)> {
        let g = self.geometry(name, class, &x.dims()[1..])?;
        max_pool_on_device(x, &g)
    }
}

/// Where each window's maximum came from, and the input's dims.
struct MaxPoolCache {
    routing: MaxPoolRouting,
    input_dims: Vec<usize>,
}

fn max_pool_backward(cache: &Cache, grad: OutputGrad, class: &str) -> Result<LayerGrads> {
    let MaxPoolCache { routing, input_dims } = cache.get::<MaxPoolCache>()?;
    let dy = grad.value(class)?;
    Ok(LayerGrads::input_only(max_pool_backward_on_device(&dy, routing, input_dims)?))
}

/// The strides Keras uses when none are given: the pool size.
fn resolve_strides<T: Copy>(strides: &mut Option<T>, pool_size: T) -> T {
    *strides.get_or_insert(pool_size)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MaxPooling2D {
    pub pool_size: Tuple2,
    pub padding: Padding,
    pub strides: Option<Tuple2>,
    pub data_format: DataFormat,
}

impl Default for MaxPooling2D {
    fn default() -> Self {
        Self { pool_size: Tuple2(2, 2), padding: Padding::Valid, strides: None, data_format: DataFormat::ChannelsLast }
    }
}

fn check_pool2d(class: &str, pool_size: Tuple2, strides: &mut Option<Tuple2>, padding: Padding, data_format: DataFormat) -> Result<()> {
    check_positive("pool_size", &[pool_size.0, pool_size.1])?;
    let s = resolve_strides(strides, pool_size);
    check_positive("strides", &[s.0, s.1])?;
    padding.check_not_causal(class)?;
    data_format.check()
}

impl MaxPooling2D {
    fn window(&self) -> PoolWindow {
        PoolWindow { pool_size: self.pool_size.pair(), strides: self.strides.unwrap_or(self.pool_size).pair(), same: self.padding.is_same() }
    }
}

impl LayerType for MaxPooling2D {
    const CLASS_NAME: &'static str = "MaxPooling2D";
    const NAME_PREFIX: &'static str = "max_pooling2d";

    fn normalize(&mut self) -> Result<()> {
        check_pool2d(Self::CLASS_NAME, self.pool_size, &mut self.strides, self.padding, self.data_format)
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        self.window().output_shape(name, Self::CLASS_NAME, &inputs[0])
    }

    fn inference_map(&self, _weights: &[Tensor]) -> Result<Option<super::InferenceMap>> {
        Ok(Some(super::InferenceMap::MaxPool(self.window())))
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let (value, routing) = self.window().max_forward(name, Self::CLASS_NAME, &xs[0])?;
        Ok((LayerOutput::plain(value), Cache::new(MaxPoolCache { routing, input_dims: xs[0].dims().to_vec() })))
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
        max_pool_backward(cache, grad, Self::CLASS_NAME)
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "pool_size": 2, "padding": "same" }), inputs: vec![vec![5, 5, 2]], index_bound: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AveragePooling2D {
    pub pool_size: Tuple2,
    pub padding: Padding,
    pub strides: Option<Tuple2>,
    pub data_format: DataFormat,
}

impl Default for AveragePooling2D {
    fn default() -> Self {
        Self { pool_size: Tuple2(2, 2), padding: Padding::Valid, strides: None, data_format: DataFormat::ChannelsLast }
    }
}

impl AveragePooling2D {
    fn window(&self) -> PoolWindow {
        PoolWindow { pool_size: self.pool_size.pair(), strides: self.strides.unwrap_or(self.pool_size).pair(), same: self.padding.is_same() }
    }
}

/// AveragePooling2D: the mean of each window (padding excluded from the count).
impl LayerType for AveragePooling2D {
    const CLASS_NAME: &'static str = "AveragePooling2D";
    const NAME_PREFIX: &'static str = "average_pooling2d";

    fn normalize(&mut self) -> Result<()> {
        check_pool2d(Self::CLASS_NAME, self.pool_size, &mut self.strides, self.padding, self.data_format)
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        self.window().output_shape(name, Self::CLASS_NAME, &inputs[0])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let g = self.window().geometry(name, Self::CLASS_NAME, &x.dims()[1..])?;
        Ok((LayerOutput::plain(avg_pool_on_device(x, &g)?), Cache::new(InputDims(x.dims().to_vec()))))
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
        let InputDims(input_dims) = cache.get::<InputDims>()?;
        let dy = grad.value(Self::CLASS_NAME)?;
        let g = self.window().geometry(name, Self::CLASS_NAME, &input_dims[1..])?;
        Ok(LayerGrads::input_only(avg_pool_backward_on_device(&dy, input_dims[0], &g)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "pool_size": [2, 3], "strides": 2, "padding": "same" }), inputs: vec![vec![5, 5, 2]], index_bound: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MaxPooling1D {
    pub pool_size: Tuple1,
    pub padding: Padding,
    pub strides: Option<Tuple1>,
    pub data_format: DataFormat,
}

impl Default for MaxPooling1D {
    fn default() -> Self {
        Self { pool_size: Tuple1(2), padding: Padding::Valid, strides: None, data_format: DataFormat::ChannelsLast }
    }
}

impl MaxPooling1D {
    /// The same pooling over (1, pool_size) windows of a height-1 image.
    fn window(&self) -> PoolWindow {
        PoolWindow { pool_size: (1, self.pool_size.0), strides: (1, self.strides.unwrap_or(self.pool_size).0), same: self.padding.is_same() }
    }
}

impl LayerType for MaxPooling1D {
    const CLASS_NAME: &'static str = "MaxPooling1D";
    const NAME_PREFIX: &'static str = "max_pooling1d";

    fn normalize(&mut self) -> Result<()> {
        check_positive("pool_size", &[self.pool_size.0])?;
        let s = resolve_strides(&mut self.strides, self.pool_size);
        check_positive("strides", &[s.0])?;
        self.padding.check_not_causal(Self::CLASS_NAME)?;
        self.data_format.check()
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let out = self.window().output_shape(name, Self::CLASS_NAME, &as_image_shape(name, Self::CLASS_NAME, &inputs[0])?)?;
        Ok(out[1..].to_vec())
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        as_image_shape(name, Self::CLASS_NAME, &x.dims()[1..])?;
        let image = to_image(x)?;
        let (value, routing) = self.window().max_forward(name, Self::CLASS_NAME, &image)?;
        Ok((LayerOutput::plain(from_image(value)?), Cache::new(MaxPoolCache { routing, input_dims: image.dims().to_vec() })))
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
        let grad = match grad {
            OutputGrad::Value(dy) => OutputGrad::Value(to_image(&dy)?),
            other => other,
        };
        let mut g = max_pool_backward(cache, grad, Self::CLASS_NAME)?;
        g.input = g.input.map(from_image).transpose()?;
        Ok(g)
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "pool_size": 3, "strides": 2 }), inputs: vec![vec![7, 2]], index_bound: None }
    }
}

pub(super) fn check_global(data_format: DataFormat, keepdims: bool) -> Result<()> {
    if keepdims {
        return Err(Error::Value("`keepdims = TRUE` is not supported yet".into()));
    }
    data_format.check()
}

/// GlobalAveragePooling2D: (batch, h, w, c) -> (batch, c), the mean over all pixels.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GlobalAveragePooling2D {
    pub data_format: DataFormat,
    pub keepdims: bool,
}

impl LayerType for GlobalAveragePooling2D {
    const CLASS_NAME: &'static str = "GlobalAveragePooling2D";
    const NAME_PREFIX: &'static str = "global_average_pooling2d";

    fn normalize(&mut self) -> Result<()> {
        check_global(self.data_format, self.keepdims)
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (_, _, c) = image_dims(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let (h, w, c) = image_dims(name, Self::CLASS_NAME, &x.dims()[1..])?;
        let value = x.reshape((x.dim(0)?, h * w, c))?.mean(1)?;
        Ok((LayerOutput::plain(value), Cache::new(InputDims(x.dims().to_vec()))))
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
        let InputDims(input_dims) = cache.get::<InputDims>()?;
        let dy = grad.value(Self::CLASS_NAME)?;
        let (b, pixels, c) = (input_dims[0], input_dims[1] * input_dims[2], input_dims[3]);
        let dx = (dy.unsqueeze(1)?.broadcast_as((b, pixels, c))? / pixels as f64)?.reshape(input_dims.as_slice())?;
        Ok(LayerGrads::input_only(dx))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({}), inputs: vec![vec![3, 4, 2]], index_bound: None }
    }
}

/// GlobalMaxPooling2D: (batch, h, w, c) -> (batch, c), a max pooling whose window is the image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GlobalMaxPooling2D {
    pub data_format: DataFormat,
    pub keepdims: bool,
}

impl LayerType for GlobalMaxPooling2D {
    const CLASS_NAME: &'static str = "GlobalMaxPooling2D";
    const NAME_PREFIX: &'static str = "global_max_pooling2d";

    fn normalize(&mut self) -> Result<()> {
        check_global(self.data_format, self.keepdims)
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (_, _, c) = image_dims(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let (h, w, c) = image_dims(name, Self::CLASS_NAME, &x.dims()[1..])?;
        let window = PoolWindow { pool_size: (h, w), strides: (1, 1), same: false };
        let (value, routing) = window.max_forward(name, Self::CLASS_NAME, x)?;
        let value = value.reshape((x.dim(0)?, c))?;
        Ok((LayerOutput::plain(value), Cache::new(MaxPoolCache { routing, input_dims: x.dims().to_vec() })))
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
        let grad = match grad {
            OutputGrad::Value(dy) => OutputGrad::Value(dy.reshape((dy.dim(0)?, 1, 1, dy.dim(1)?))?),
            other => other,
        };
        max_pool_backward(cache, grad, Self::CLASS_NAME)
    }

    fn example() -> Example {
        Example { config: serde_json::json!({}), inputs: vec![vec![3, 4, 2]], index_bound: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;
    use rand::SeedableRng;

    fn ctx() -> ForwardContext {
        ForwardContext { training: false, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None }
    }

    #[test]
    fn max_pool_gradient_matches_finite_differences_away_from_ties() {
        // Max is not differentiable at ties: add well-separated constants (a permutation of
        // multiples of 3) so that no window's maximum changes under the probe's small steps.
        let shape = [2usize, 5, 5, 3];
        let n: usize = shape.iter().product();
        let offsets: Vec<f32> = (0..n).map(|i| ((i * 7919) % n) as f32 * 3.0).collect();
        let offsets = Tensor::from_vec(offsets, &shape[..], &Device::Cpu).unwrap();
        for (same, strides) in [(false, 2), (true, 2), (false, 1)] {
            let pool: MaxPooling2D =
                crate::layers::parse_config(&serde_json::json!({ "pool_size": 2, "strides": strides, "padding": if same { "same" } else { "valid" } }))
                    .unwrap();
            check_backward(
                &shape,
                |x| Ok(pool.forward("p", &[], &[(x + &offsets)?], &mut ctx())?.0.value),
                |x, dy| {
                    let (_, cache) = pool.forward("p", &[], &[(x + &offsets)?], &mut ctx())?;
                    Ok(pool.backward("p", &[], &[], &cache, OutputGrad::Value(dy.clone()), true)?.input.unwrap())
                },
                1e-2,
            );
        }
    }

    #[test]
    fn same_average_pooling_excludes_padding() {
        // 3x3 image of ones, 2x2 windows, stride 2, same: every output is exactly 1.
        let x = Tensor::ones((1, 3, 3, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let pool: AveragePooling2D = crate::layers::parse_config(&serde_json::json!({ "padding": "same" })).unwrap();
        let y = pool.forward("a", &[], &[x], &mut ctx()).unwrap().0.value.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, vec![1.0; 4]);
    }

    #[test]
    fn strides_default_to_the_pool_size_and_are_written_out() {
        let pool: MaxPooling2D = crate::layers::parse_config(&serde_json::json!({ "pool_size": [3, 2], "strides": null })).unwrap();
        assert_eq!(serde_json::to_value(&pool).unwrap()["strides"], serde_json::json!([3, 2]));
        let e = crate::layers::parse_config::<MaxPooling2D>(&serde_json::json!({ "pool_size": 0 })).unwrap_err().to_string();
        assert!(e.contains("`pool_size` must be positive"), "{}", e);
        let e = crate::layers::parse_config::<MaxPooling1D>(&serde_json::json!({ "strides": 0 })).unwrap_err().to_string();
        assert!(e.contains("`strides` must be positive"), "{}", e);
    }
}
