//! Conv2DTranspose (channels last): the gradient of a convolution with respect to its input,
//! run forward. Each input pixel's channels, times the kernel, make a patch of the output
//! (a matrix product), and the patches are summed into place (col2im); the output's size is
//! Keras's `deconv_output_length`: `h * s + max(k - s, 0)` with "valid" padding, `h * s` with
//! "same"; with an `output_padding` p (< s), `(h - 1) * s + k + p`, less `2 * (k / 2)` with
//! "same" (the rows no patch reaches hold the bias). The backward pass is the convolution
//! itself (im2col of the output gradient).
use super::conv2d::check_window;
use super::{Cache, DataFormat, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad, Padding, Tuple2, WeightSpec};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::kernels::{col2im_on_device, im2col_on_device, window_geometry, ConvGeometry};
use crate::regularizer::Regularizer;
use crate::shape::image_dims;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv2DTranspose {
    pub filters: usize,
    pub kernel_size: Tuple2,
    pub strides: Tuple2,
    pub padding: Padding,
    pub output_padding: Option<Tuple2>,
    pub data_format: DataFormat,
    pub dilation_rate: Tuple2,
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

impl Default for Conv2DTranspose {
    fn default() -> Self {
        Self {
            filters: 0,
            kernel_size: Tuple2(1, 1),
            strides: Tuple2(1, 1),
            padding: Padding::Valid,
            output_padding: None,
            data_format: DataFormat::ChannelsLast,
            dilation_rate: Tuple2(1, 1),
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

/// The input as rows of channels, and the pre-activation and output as (rows, filters).
struct TransposeCache {
    rows: Tensor,
    z: Tensor,
    y: Tensor,
    input_dims: Vec<usize>,
}

impl Conv2DTranspose {
    /// Output extent along one axis (Keras's deconv_output_length).
    fn extent(&self, input: usize, kernel: usize, stride: usize, output_padding: Option<usize>) -> usize {
        if input == crate::shape::VARIABLE {
            return input;
        }
        match (output_padding, self.padding.is_same()) {
            (None, true) => input * stride,
            (None, false) => input * stride + kernel.saturating_sub(stride),
            (Some(p), same) => (input - 1) * stride + kernel + p - if same { 2 * (kernel / 2) } else { 0 },
        }
    }

    fn output_dims(&self, name: &str, input: &[usize]) -> Result<(usize, usize)> {
        let (h, w, _) = image_dims(name, Self::CLASS_NAME, input)?;
        let (ph, pw) = (self.output_padding.map(|p| p.0), self.output_padding.map(|p| p.1));
        Ok((self.extent(h, self.kernel_size.0, self.strides.0, ph), self.extent(w, self.kernel_size.1, self.strides.1, pw)))
    }

    /// The convolution this layer transposes: over the output image, back to the input's size.
    fn geometry(&self, name: &str, input: &[usize]) -> Result<ConvGeometry> {
        let (oh, ow) = self.output_dims(name, input)?;
        let g = window_geometry(name, Self::CLASS_NAME, &[oh, ow, self.filters], self.kernel_size.pair(), self.strides.pair(), (1, 1), self.padding.is_same())?;
        if (g.out_h, g.out_w) != (input[0], input[1]) {
            return Err(Error::State(format!("layer \"{}\" (Conv2DTranspose): geometry mismatch", name)));
        }
        Ok(g)
    }
}

impl LayerType for Conv2DTranspose {
    const CLASS_NAME: &'static str = "Conv2DTranspose";
    const NAME_PREFIX: &'static str = "conv2d_transpose";

    fn normalize(&mut self) -> Result<()> {
        super::params::check_positive("filters", &[self.filters])?;
        check_window(self.kernel_size, self.strides, self.dilation_rate, self.data_format)?;
        if self.dilation_rate != Tuple2(1, 1) {
            return Err(Error::Value("`dilation_rate` other than 1 is not supported yet".into()));
        }
        if let Some(p) = self.output_padding {
            if p.0 >= self.strides.0 || p.1 >= self.strides.1 {
                return Err(Error::Value(format!(
                    "`output_padding` ({}, {}) must be smaller than `strides` ({}, {}), as in Keras",
                    p.0, p.1, self.strides.0, self.strides.1
                )));
            }
        }
        self.padding.check_not_causal(Self::CLASS_NAME)
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (oh, ow) = self.output_dims(name, &inputs[0])?;
        Ok(vec![oh, ow, self.filters])
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

    /// Keras's kernel layout: (kh, kw, filters, input channels).
    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let kernel = vec![self.kernel_size.0, self.kernel_size.1, self.filters, c];
        WeightSpec::kernel_and_bias(kernel, self.filters, &self.kernel_initializer, &self.bias_initializer, self.use_bias)
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let dims = x.dims().to_vec();
        let (batch, c) = (dims[0], dims[3]);
        let g = self.geometry(name, &dims[1..])?;
        let rows = x.reshape((batch * dims[1] * dims[2], c))?;
        // Each input pixel's patch of the output: (rows, kh * kw * filters).
        let kernel = weights[0].reshape((g.patch_len(), c))?;
        let patches = crate::kernels::matmul_by_transpose(&rows, &kernel)?;
        let image = col2im_on_device(&patches, batch, &g)?;
        let (oh, ow) = (g.h, g.w);
        let flat = image.reshape((batch * oh * ow, self.filters))?;
        let z = if self.use_bias { flat.broadcast_add(&weights[1])? } else { flat };
        let y = self.activation.apply(&z)?;
        let shape = (batch, oh, ow, self.filters);
        let logits = if self.activation.has_logits() { Some((z.reshape(shape)?, self.activation)) } else { None };
        Ok((LayerOutput { value: y.reshape(shape)?, logits }, Cache::new(TransposeCache { rows, z, y, input_dims: dims })))
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
        let TransposeCache { rows, z, y, input_dims } = cache.get::<TransposeCache>()?;
        let g = self.geometry(name, &input_dims[1..])?;
        let dz = grad.through(self.activation, z, y)?;
        let batch = input_dims[0];
        let dz_image = dz.reshape((batch, g.h, g.w, self.filters))?;
        // The convolution of the output gradient: its patches at each input pixel.
        let dpatches = im2col_on_device(&dz_image, &g)?;
        let c = input_dims[3];
        let mut grads = vec![crate::kernels::matmul(&dpatches.t()?, rows)?.reshape(weights[0].dims())?];
        if self.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        let input = if need_input_grad {
            let kernel = weights[0].reshape((g.patch_len(), c))?;
            Some(crate::kernels::matmul(&dpatches, &kernel)?.reshape(input_dims.as_slice())?)
        } else {
            None
        };
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }

    fn example() -> Example {
        Example {
            config: serde_json::json!({ "filters": 3, "kernel_size": [3, 2], "strides": 2, "padding": "valid", "activation": "tanh" }),
            inputs: vec![vec![3, 2, 2]],
            index_bound: None,
        }
    }
}
