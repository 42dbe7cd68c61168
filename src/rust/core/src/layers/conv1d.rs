//! 1-d convolution over sequences `(batch, steps, channels)`, run as a 2-d convolution on a
//! height-1 image (the same im2col kernels).
//!
//! # Shapes
//! kernel `(kernel_size, channels, filters)` (Keras's layout), bias `(filters)`, output
//! `(batch, out_steps, filters)`.
use super::conv2d::{check_window, ConvCache};
use super::params::check_positive;
use super::{Cache, Conv2D, DataFormat, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad, Padding, Tuple1, Tuple2, WeightSpec};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::regularizer::Regularizer;
use crate::shape::sequence_dims;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv1D {
    pub filters: usize,
    pub kernel_size: Tuple1,
    pub strides: Tuple1,
    pub padding: Padding,
    pub data_format: DataFormat,
    pub dilation_rate: Tuple1,
    pub groups: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
    pub kernel_regularizer: Option<Regularizer>,
    pub bias_regularizer: Option<Regularizer>,
    pub activity_regularizer: Option<Regularizer>,
    pub kernel_constraint: Option<crate::constraint::Constraint>,
    pub bias_constraint: Option<crate::constraint::Constraint>,
}

impl Default for Conv1D {
    fn default() -> Self {
        Self {
            filters: 0,
            kernel_size: Tuple1(0),
            strides: Tuple1(1),
            padding: Padding::Valid,
            data_format: DataFormat::ChannelsLast,
            dilation_rate: Tuple1(1),
            groups: 1,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::glorot_uniform(),
            bias_initializer: Initializer::zeros(),
            kernel_regularizer: None,
            bias_regularizer: None,
            activity_regularizer: None,
            kernel_constraint: None,
            bias_constraint: None,
        }
    }
}

/// (steps, channels) as a (1, steps, channels) image, or a clear error for another rank.
pub(super) fn as_image_shape(name: &str, class: &str, input: &[usize]) -> Result<Vec<usize>> {
    let (steps, c) = sequence_dims(name, class, input)?;
    Ok(vec![1, steps, c])
}

pub(super) fn to_image(x: &Tensor) -> Result<Tensor> {
    let (b, steps, c) = x.dims3()?;
    Ok(x.reshape((b, 1, steps, c))?)
}

pub(super) fn from_image(t: Tensor) -> Result<Tensor> {
    let (b, _, steps, c) = t.dims4()?;
    Ok(t.reshape((b, steps, c))?)
}

impl Conv1D {
    /// The same convolution over a (1, steps) window.
    fn on_image(&self) -> Conv2D {
        Conv2D {
            filters: self.filters,
            kernel_size: Tuple2(1, self.kernel_size.0),
            strides: Tuple2(1, self.strides.0),
            padding: self.padding,
            dilation_rate: Tuple2(1, self.dilation_rate.0),
            activation: self.activation,
            use_bias: self.use_bias,
            ..Conv2D::default()
        }
    }
}

impl LayerType for Conv1D {
    const CLASS_NAME: &'static str = "Conv1D";
    const NAME_PREFIX: &'static str = "conv1d";

    fn normalize(&mut self) -> Result<()> {
        check_positive("filters", &[self.filters])?;
        check_window(Tuple2(1, self.kernel_size.0), Tuple2(1, self.strides.0), Tuple2(1, self.dilation_rate.0), self.data_format)?;
        if self.padding == Padding::Causal {
            return Err(Error::Value("`padding = \"causal\"` is not supported yet: use \"valid\" or \"same\"".into()));
        }
        if self.groups != 1 {
            return Err(Error::Value(format!("`groups` other than 1 is not supported yet, got {}", self.groups)));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let g = self.on_image().geometry(name, &as_image_shape(name, Self::CLASS_NAME, &inputs[0])?)?;
        Ok(vec![g.out_w, self.filters])
    }

    fn weight_regularizers(&self) -> Vec<Option<Regularizer>> {
        vec![self.kernel_regularizer, self.bias_regularizer]
    }

    fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>> {
        vec![self.kernel_constraint.clone(), self.bias_constraint.clone()]
    }

    fn activity_regularizer(&self) -> Option<Regularizer> {
        self.activity_regularizer
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        WeightSpec::kernel_and_bias(vec![self.kernel_size.0, c, self.filters], self.filters, &self.kernel_initializer, &self.bias_initializer, self.use_bias)
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        as_image_shape(name, Self::CLASS_NAME, &x.dims()[1..])?;
        let mut w = weights.to_vec();
        w[0] = weights[0].unsqueeze(0)?;
        let (out, cache) = self.on_image().run(name, &w, &to_image(x)?)?;
        let value = from_image(out.value)?;
        let logits = out.logits.map(|(z, a)| Ok::<_, Error>((from_image(z)?, a))).transpose()?;
        Ok((LayerOutput { value, logits }, Cache::new(cache)))
    }

    fn backward(
        &self,
        name: &str,
        weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let cache = cache.get::<ConvCache>()?;
        let image_dims = &cache.input_dims;
        let mut g = self.on_image().run_backward(name, &weights[0].unsqueeze(0)?, cache, grad, need_input_grad)?;
        g.weights[0] = g.weights[0].squeeze(0)?;
        g.input = g.input.map(|t| t.reshape((image_dims[0], image_dims[2], image_dims[3]))).transpose()?;
        Ok(g)
    }

    fn example() -> Example {
        Example {
            config: serde_json::json!({ "filters": 3, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "tanh" }),
            inputs: vec![vec![7, 2]],
            index_bound: None,
        }
    }
}
