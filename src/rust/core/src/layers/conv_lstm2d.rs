//! ConvLSTM2D (Keras's): an LSTM whose input and recurrent products are 2-d convolutions.
//! Each pixel of the output grid is one row of [`super::recurrent`]'s loop: the input
//! projection is the LSTM's over the input's im2col patches (so the loop's one product before
//! it is the convolution of every frame), and the cell below computes the recurrent product as
//! the im2col of the previous output ("same" padding, stride 1, as Keras's recurrent
//! convolution) times the recurrent kernel, then runs the LSTM's gates unchanged.
//!
//! # Shapes
//! input `(batch, time, h, w, c)`, kernel `(kh, kw, c, 4 * filters)`, recurrent kernel
//! `(kh, kw, filters, 4 * filters)`, bias `(4 * filters)`; output `(batch, out_h, out_w,
//! filters)`, or `(batch, time, out_h, out_w, filters)` with `return_sequences`.
use super::params::check_positive;
use super::recurrent::{Cell, RnnOptions, StepGrads};
use super::{Cache, DataFormat, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad, Padding, Tuple2, WeightSpec, LSTM};
use crate::activation::Activation;
use crate::constraint::Constraint;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::kernels::{col2im_on_device, im2col_on_device, window_geometry, ConvGeometry};
use crate::regularizer::Regularizer;
use crate::shape::join_dims;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConvLSTM2D {
    pub filters: usize,
    pub kernel_size: Tuple2,
    pub strides: Tuple2,
    pub padding: Padding,
    pub data_format: DataFormat,
    pub dilation_rate: Tuple2,
    pub activation: Activation,
    pub recurrent_activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub recurrent_initializer: Initializer,
    pub bias_initializer: Initializer,
    pub unit_forget_bias: bool,
    pub kernel_regularizer: Option<Regularizer>,
    pub recurrent_regularizer: Option<Regularizer>,
    pub bias_regularizer: Option<Regularizer>,
    pub activity_regularizer: Option<Regularizer>,
    pub kernel_constraint: Option<Constraint>,
    pub recurrent_constraint: Option<Constraint>,
    pub bias_constraint: Option<Constraint>,
    pub return_sequences: bool,
    pub return_state: bool,
    pub go_backwards: bool,
    pub stateful: bool,
    pub unroll: bool,
    pub time_major: bool,
    pub dropout: f64,
    pub recurrent_dropout: f64,
}

impl Default for ConvLSTM2D {
    fn default() -> Self {
        let rnn = RnnOptions::default();
        Self {
            filters: 0,
            kernel_size: Tuple2(0, 0),
            strides: Tuple2(1, 1),
            padding: Padding::Valid,
            data_format: DataFormat::ChannelsLast,
            dilation_rate: Tuple2(1, 1),
            activation: Activation::Tanh,
            // Keras's default for this layer (its LSTM moved to sigmoid).
            recurrent_activation: Activation::HardSigmoid,
            use_bias: true,
            kernel_initializer: Initializer::glorot_uniform(),
            recurrent_initializer: rnn.recurrent_initializer,
            bias_initializer: Initializer::zeros(),
            unit_forget_bias: true,
            kernel_regularizer: None,
            recurrent_regularizer: None,
            bias_regularizer: None,
            activity_regularizer: None,
            kernel_constraint: None,
            recurrent_constraint: None,
            bias_constraint: None,
            return_sequences: false,
            return_state: false,
            go_backwards: false,
            stateful: false,
            unroll: false,
            time_major: false,
            dropout: 0.0,
            recurrent_dropout: 0.0,
        }
    }
}

/// The LSTM cell with the recurrent convolution in front of it, for one call's geometry.
struct ConvCell {
    lstm: LSTM,
    /// The recurrent convolution over the output grid: (out_h, out_w, filters), "same".
    recurrent: ConvGeometry,
}

/// A step's LSTM record and the patches of its recurrent input.
struct ConvStep {
    inner: super::lstm::LstmStep,
    cols: Tensor,
}

impl ConvCell {
    fn patches(&self, h_in: &Tensor) -> Result<Tensor> {
        let g = &self.recurrent;
        let batch = h_in.dim(0)? / (g.h * g.w);
        im2col_on_device(&h_in.reshape((batch, g.h, g.w, g.c))?, g)
    }
}

impl Cell for ConvCell {
    type Step = ConvStep;
    const GATES: usize = 4;
    const STATES: usize = 2;
    const CELL_NAME: &'static str = "conv_lstm_cell";

    fn options(&self) -> &RnnOptions {
        self.lstm.options()
    }

    fn bias_spec(&self) -> (Vec<usize>, Initializer) {
        self.lstm.bias_spec()
    }

    fn recurrent_parts(&self, recurrent: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![recurrent.reshape((self.recurrent.patch_len(), 4 * self.recurrent.c))?])
    }

    fn step(&self, xw: &Tensor, prev: &[Tensor], h_in: &Tensor, recurrent: &[Tensor], bias: Option<&Tensor>) -> Result<(Vec<Tensor>, ConvStep)> {
        let cols = self.patches(h_in)?;
        let (new, inner) = self.lstm.step(xw, prev, &cols, recurrent, bias)?;
        Ok((new, ConvStep { inner, cols }))
    }

    fn step_backward(&self, step: &ConvStep, prev: &[Tensor], h_in: &Tensor, d_new: &[Tensor], recurrent_t: &[Tensor]) -> Result<StepGrads> {
        let mut g = self.lstm.step_backward(&step.inner, prev, &step.cols, d_new, recurrent_t)?;
        let rows = h_in.dim(0)?;
        let grid = &self.recurrent;
        g.d_h_in = col2im_on_device(&g.d_h_in.contiguous()?, rows / (grid.h * grid.w), grid)?.reshape((rows, grid.c))?;
        Ok(g)
    }
}

/// What the backward pass needs besides the loop's record.
struct ConvLstmCache {
    inner: Cache,
    input_dims: Vec<usize>,
}

impl ConvLSTM2D {
    /// `(time, h, w, c)` and the input convolution's geometry.
    fn geometry(&self, name: &str, input: &[usize]) -> Result<(usize, ConvGeometry)> {
        let [time, h, w, c] = *input else {
            return Err(Error::Value(format!(
                "layer \"{}\" (ConvLSTM2D) needs inputs of shape (time, height, width, channels), got ({})",
                name,
                join_dims(input)
            )));
        };
        let g = window_geometry(
            name,
            Self::CLASS_NAME,
            &[h, w, c],
            self.kernel_size.pair(),
            self.strides.pair(),
            self.dilation_rate.pair(),
            self.padding.is_same(),
        )?;
        Ok((time, g))
    }

    /// The LSTM cell over the output grid of `g`.
    fn cell(&self, name: &str, g: &ConvGeometry) -> Result<ConvCell> {
        let options = RnnOptions {
            units: self.filters,
            activation: self.activation,
            use_bias: self.use_bias,
            return_sequences: self.return_sequences,
            go_backwards: self.go_backwards,
            bias_initializer: self.bias_initializer.clone(),
            ..RnnOptions::default()
        };
        let lstm = LSTM { options, recurrent_activation: self.recurrent_activation, unit_forget_bias: self.unit_forget_bias, implementation: 2 };
        let recurrent = window_geometry(name, Self::CLASS_NAME, &[g.out_h, g.out_w, self.filters], self.kernel_size.pair(), (1, 1), (1, 1), true)?;
        Ok(ConvCell { lstm, recurrent })
    }

    /// The loop's weights: the kernels as matrices over patches.
    fn loop_weights(&self, weights: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut w = weights.to_vec();
        let k = &weights[0];
        w[0] = k.reshape((k.elem_count() / (4 * self.filters), 4 * self.filters))?;
        Ok(w)
    }
}

impl LayerType for ConvLSTM2D {
    const CLASS_NAME: &'static str = "ConvLSTM2D";
    const NAME_PREFIX: &'static str = "conv_lstm2d";

    fn normalize(&mut self) -> Result<()> {
        check_positive("filters", &[self.filters])?;
        super::conv2d::check_window(self.kernel_size, self.strides, self.dilation_rate, self.data_format)?;
        self.padding.check_not_causal(Self::CLASS_NAME)?;
        let unsupported = [
            (self.return_state, "`return_state`"),
            (self.stateful, "`stateful`"),
            (self.time_major, "`time_major`"),
            (self.dropout != 0.0 || self.recurrent_dropout != 0.0, "`dropout` and `recurrent_dropout`"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
            return Err(Error::Value(format!("{} of ConvLSTM2D is not supported yet", what)));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (time, g) = self.geometry(name, &inputs[0])?;
        Ok(if self.return_sequences { vec![time, g.out_h, g.out_w, self.filters] } else { vec![g.out_h, g.out_w, self.filters] })
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let (kh, kw) = self.kernel_size.pair();
        let f = self.filters;
        let cell_bias = LSTM {
            options: RnnOptions { units: f, bias_initializer: self.bias_initializer.clone(), ..RnnOptions::default() },
            unit_forget_bias: self.unit_forget_bias,
            ..LSTM::default()
        };
        let spec = |name: &str, shape: Vec<usize>, initializer: Initializer| WeightSpec { name: name.into(), shape, initializer, trainable: true };
        let mut specs = vec![
            spec("kernel", vec![kh, kw, c, 4 * f], self.kernel_initializer.clone()),
            spec("recurrent_kernel", vec![kh, kw, f, 4 * f], self.recurrent_initializer.clone()),
        ];
        if self.use_bias {
            let (shape, init) = cell_bias.bias_spec();
            specs.push(spec("bias", shape, init));
        }
        specs
    }

    fn weight_regularizers(&self) -> Vec<Option<Regularizer>> {
        vec![self.kernel_regularizer, self.recurrent_regularizer, self.bias_regularizer]
    }

    fn weight_constraints(&self) -> Vec<Option<Constraint>> {
        vec![self.kernel_constraint.clone(), self.recurrent_constraint.clone(), self.bias_constraint.clone()]
    }

    fn activity_regularizer(&self) -> Option<Regularizer> {
        self.activity_regularizer
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let dims = x.dims().to_vec();
        let (time, g) = self.geometry(name, dims.get(1..).unwrap_or(&[]))?;
        let b = dims[0];
        let cell = self.cell(name, &g)?;
        // Every frame's patches, then one row per output pixel: (b * out_h * out_w, time, patch).
        let cols = im2col_on_device(&x.reshape((b * time, g.h, g.w, g.c))?, &g)?;
        let pixels = g.out_h * g.out_w;
        let seq = cols.reshape((b, time, pixels, g.patch_len()))?.transpose(1, 2)?.contiguous()?.reshape((b * pixels, time, g.patch_len()))?;
        // Keras's masks are per sample, not per pixel: none reaches the loop.
        let mask = ctx.mask.take();
        let run = super::recurrent::forward(&cell, name, Self::CLASS_NAME, &self.loop_weights(weights)?, &[seq], ctx);
        ctx.mask = mask;
        let (out, inner) = run?;
        let value = if self.return_sequences {
            out.value.reshape((b, g.out_h, g.out_w, time, self.filters))?.permute((0, 3, 1, 2, 4))?.contiguous()?
        } else {
            out.value.reshape((b, g.out_h, g.out_w, self.filters))?
        };
        Ok((LayerOutput::plain(value), Cache::new(ConvLstmCache { inner, input_dims: dims })))
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
        let c = cache.get::<ConvLstmCache>()?;
        let (time, g) = self.geometry(name, &c.input_dims[1..])?;
        let b = c.input_dims[0];
        let cell = self.cell(name, &g)?;
        let pixels = g.out_h * g.out_w;
        let dy = grad.value(Self::CLASS_NAME)?;
        let dy = if self.return_sequences {
            dy.permute((0, 2, 3, 1, 4))?.contiguous()?.reshape((b * pixels, time, self.filters))?
        } else {
            dy.reshape((b * pixels, self.filters))?
        };
        let mut grads = super::recurrent::backward(
            &cell,
            Self::CLASS_NAME,
            &self.loop_weights(weights)?,
            &c.inner,
            Some(OutputGrad::Value(dy)),
            Vec::new(),
            need_input_grad,
        )?;
        for (grad, w) in grads.weights.iter_mut().zip(weights) {
            *grad = grad.reshape(w.dims())?;
        }
        if let Some(dseq) = grads.input.take() {
            let dcols = dseq.reshape((b, pixels, time, g.patch_len()))?.transpose(1, 2)?.contiguous()?.reshape((b * time * pixels, g.patch_len()))?;
            grads.input = Some(col2im_on_device(&dcols, b * time, &g)?.reshape(c.input_dims.as_slice())?);
        }
        Ok(grads)
    }

    fn working_elements_per_row(&self, input: &[usize]) -> Option<u64> {
        let [time, h, w, c] = *input else { return Some(0) };
        let (kh, kw) = self.kernel_size.pair();
        let f = self.filters as u64;
        // Per pixel and step: input patches, gates (three blocks of 4f), states, recurrent patches.
        let per = ((kh * kw * c) as u64).checked_add(12 * f)?.checked_add(4 * f)?.checked_add((kh * kw) as u64 * f)?;
        (time as u64).checked_mul(h as u64)?.checked_mul(w as u64)?.checked_mul(per)
    }

    fn example() -> Example {
        Example {
            config: serde_json::json!({ "filters": 2, "kernel_size": [2, 3], "padding": "same", "return_sequences": true }),
            inputs: vec![vec![3, 4, 3, 2]],
            index_bound: None,
        }
    }
}
