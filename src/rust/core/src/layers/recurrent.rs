//! What the recurrent layers (SimpleRNN, LSTM, GRU) share: Keras's RNN options, the loop
//! over time with masking, `go_backwards`, dropout masks and stateful state, and
//! backpropagation through time. Each layer supplies its cell: one step forward and back
//! ([`Cell`]), in its own file, and may run a whole sequence in a kernel of its own
//! ([`Cell::sequence`]: LSTM and GRU on the CPU, without masks and recurrent dropout).
//!
//! # Shapes
//! input `(batch, time, features)`; kernel `(features, gates * units)` and recurrent kernel
//! `(units, gates * units)`, gates in Keras's order; output `(batch, units)`, or
//! `(batch, time, units)` with `return_sequences`.
//!
//! The loop runs time-major, so each step's slice is contiguous. The input projections of all
//! steps are one product before the loop; the kernels' gradients are one product each after
//! it (over the stacked steps), not one per step.
use super::{Cache, ForwardContext, LayerGrads, LayerOutput, OutputGrad, WeightSpec};
use crate::activation::Activation;
use crate::constraint::Constraint;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::regularizer::Regularizer;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The config fields every Keras recurrent layer has (`#[serde(flatten)]` into each layer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RnnOptions {
    pub units: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub return_sequences: bool,
    pub return_state: bool,
    pub go_backwards: bool,
    pub stateful: bool,
    /// Accepted as Keras does; the loop is the same either way.
    pub unroll: bool,
    pub time_major: bool,
    pub kernel_initializer: Initializer,
    pub recurrent_initializer: Initializer,
    pub bias_initializer: Initializer,
    pub kernel_regularizer: Option<Regularizer>,
    pub recurrent_regularizer: Option<Regularizer>,
    pub bias_regularizer: Option<Regularizer>,
    pub activity_regularizer: Option<Regularizer>,
    pub kernel_constraint: Option<Constraint>,
    pub recurrent_constraint: Option<Constraint>,
    pub bias_constraint: Option<Constraint>,
    pub dropout: f64,
    pub recurrent_dropout: f64,
    /// A stateful layer's states between batches (not part of the config).
    #[serde(skip)]
    pub kept: KeptStates,
}

impl Default for RnnOptions {
    fn default() -> Self {
        Self {
            units: 0,
            activation: Activation::Tanh,
            use_bias: true,
            return_sequences: false,
            return_state: false,
            go_backwards: false,
            stateful: false,
            unroll: false,
            time_major: false,
            kernel_initializer: Initializer::glorot_uniform(),
            recurrent_initializer: Initializer::of(crate::initializer::Orthogonal::default()),
            bias_initializer: Initializer::zeros(),
            kernel_regularizer: None,
            recurrent_regularizer: None,
            bias_regularizer: None,
            activity_regularizer: None,
            kernel_constraint: None,
            recurrent_constraint: None,
            bias_constraint: None,
            dropout: 0.0,
            recurrent_dropout: 0.0,
            kept: KeptStates::default(),
        }
    }
}

/// The states a stateful layer carries from one batch to the next (shared by the layer's
/// copies, as Keras's state variables are by the layer).
#[derive(Debug, Clone, Default)]
pub struct KeptStates(Arc<Mutex<Option<Vec<Tensor>>>>);

impl KeptStates {
    fn take(&self) -> Option<Vec<Tensor>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn keep(&self, states: Vec<Tensor>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(states);
    }

    pub fn reset(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl RnnOptions {
    /// Keras's constructor checks.
    pub fn check(&self) -> Result<()> {
        if self.units == 0 {
            return Err(Error::Value("`units` must be a positive integer, got 0".into()));
        }
        for (name, rate) in [("dropout", self.dropout), ("recurrent_dropout", self.recurrent_dropout)] {
            if !(0.0..1.0).contains(&rate) {
                return Err(Error::Value(format!("`{}` must be in [0, 1), got {}", name, rate)));
            }
        }
        if self.time_major {
            return Err(Error::Value("`time_major = TRUE` is not supported: give inputs as (batch, time, features)".into()));
        }
        Ok(())
    }

    /// The output shape for the sequence's shape `inputs[0]`, and any initial states after it
    /// (`states` of them, each `(units)`).
    pub fn output_shape(&self, name: &str, class: &str, inputs: &[Vec<usize>], states: usize) -> Result<Vec<usize>> {
        self.check_initial_states(name, class, &inputs[1..], states)?;
        match inputs[0].as_slice() {
            // A time axis of VARIABLE length (its steps come with each batch) is Keras's None.
            [time, _] => Ok(if self.return_sequences { vec![*time, self.units] } else { vec![self.units] }),
            _ => Err(Error::Value(format!(
                "layer \"{}\" ({}) needs inputs of shape (batch, time, features), got (batch, {})",
                name,
                class,
                crate::shape::join_dims(&inputs[0])
            ))),
        }
    }

    /// Initial states given as inputs (shapes without the batch axis): none, or one
    /// `(units)` per state.
    fn check_initial_states(&self, name: &str, class: &str, given: &[Vec<usize>], states: usize) -> Result<()> {
        if given.is_empty() || (given.len() == states && given.iter().all(|s| s.as_slice() == [self.units])) {
            return Ok(());
        }
        let got: Vec<String> = given.iter().map(|s| format!("({})", crate::shape::join_dims(s))).collect();
        Err(Error::Value(format!(
            "layer \"{}\" ({}) takes {} initial state(s) of shape (batch, {}), got {}: {}",
            name,
            class,
            states,
            self.units,
            given.len(),
            got.join(", ")
        )))
    }

    pub fn regularizers(&self) -> Vec<Option<Regularizer>> {
        vec![self.kernel_regularizer, self.recurrent_regularizer, self.bias_regularizer]
    }

    pub fn constraints(&self) -> Vec<Option<Constraint>> {
        vec![self.kernel_constraint.clone(), self.recurrent_constraint.clone(), self.bias_constraint.clone()]
    }

    /// The output mask: the input's, while the time axis is kept.
    pub fn output_mask(&self, mask: Option<&Tensor>) -> Option<Tensor> {
        if self.return_sequences {
            mask.cloned()
        } else {
            None
        }
    }
}

/// What a gradient step of one cell returns to the loop.
pub struct StepGrads {
    /// Gradient of the step's input projection (`x_t · kernel + bias`).
    pub d_xw: Tensor,
    /// Gradients of the previous states through the step's own arithmetic (LSTM's cell
    /// state, GRU's `z * h`), not through the recurrent kernel.
    pub d_prev: Vec<Option<Tensor>>,
    /// Gradient of the previous output as the recurrent kernel saw it.
    pub d_h_in: Tensor,
    /// The recurrent kernel's gradient, one (left, right) pair per column segment: the
    /// segment's columns get the sum over steps of `leftᵀ · right`.
    pub recurrent: Vec<(Tensor, Tensor)>,
}

/// A whole sequence from a cell's own kernel ([`Cell::sequence`]): what the step-by-step
/// loop would have gathered.
pub struct SequenceRun<S> {
    /// The states before each step and after the last (`time + 1` entries).
    pub states: Vec<Vec<Tensor>>,
    /// Every step's output, `(time, batch, units)`.
    pub outputs: Tensor,
    pub steps: Vec<S>,
}

/// One recurrent cell: its gates and one step forward and back.
pub trait Cell: Send + Sync {
    /// What a step keeps for its backward pass.
    type Step: Send + Sync + 'static;
    /// Blocks of `units` columns in the kernels (SimpleRNN 1, GRU 3, LSTM 4).
    const GATES: usize;
    /// States carried between steps; the first is the output (LSTM adds its cell state).
    const STATES: usize;
    /// The cell's name in Keras's weight names ("lstm_cell").
    const CELL_NAME: &'static str;

    fn options(&self) -> &RnnOptions;

    /// The bias weight's shape and initializer.
    fn bias_spec(&self) -> (Vec<usize>, Initializer) {
        let o = self.options();
        (vec![Self::GATES * o.units], o.bias_initializer.clone())
    }

    /// The part of the bias added to every step's input projection (all of it but for GRU
    /// with `reset_after`, whose second row is the recurrent bias).
    fn input_bias(&self, bias: &Tensor) -> Result<Tensor> {
        Ok(bias.clone())
    }

    /// The recurrent kernel as the steps use it (column blocks of GRU without `reset_after`).
    fn recurrent_parts(&self, recurrent: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![recurrent.clone()])
    }

    /// One step: the new states from the step's input projection `xw` (bias included), the
    /// previous states, and `h_in`, the previous output as the recurrent kernel sees it
    /// (after recurrent dropout).
    fn step(&self, xw: &Tensor, prev: &[Tensor], h_in: &Tensor, recurrent: &[Tensor], bias: Option<&Tensor>) -> Result<(Vec<Tensor>, Self::Step)>;

    /// The step's gradients from the gradients of its new states; `recurrent_t` holds the
    /// transposes of [`Self::recurrent_parts`], contiguous (a product by a transposed view
    /// packed the kernel again each step: 224 against 38 us per LSTM step, rnn_profile).
    fn step_backward(&self, step: &Self::Step, prev: &[Tensor], h_in: &Tensor, d_new: &[Tensor], recurrent_t: &[Tensor]) -> Result<StepGrads>;

    /// The whole sequence in one kernel, where the cell has one for these tensors: from the
    /// input projections `(time, batch, gates * units)` (the input bias included), the
    /// initial states, the recurrent parts and the whole bias. The loop asks only without
    /// masks and recurrent dropout; None: it runs the steps one by one.
    fn sequence(&self, _xw: &Tensor, _initial: &[Tensor], _recurrent: &[Tensor], _bias: Option<&Tensor>) -> Result<Option<SequenceRun<Self::Step>>> {
        Ok(None)
    }

    /// The bias gradient from the summed gradient of the input projections and the stacked
    /// right-hand sides of the recurrent segments.
    fn bias_grad(&self, d_input_bias: Tensor, _recurrent_rights: &[Tensor]) -> Result<Tensor> {
        Ok(d_input_bias)
    }
}

/// Keras's weights of a recurrent layer: kernel, recurrent kernel, bias.
pub fn weight_specs<C: Cell>(cell: &C, input: &[usize]) -> Vec<WeightSpec> {
    let o = cell.options();
    let features = input.last().copied().unwrap_or(1);
    let spec = |name: &str, shape: Vec<usize>, initializer: Initializer| WeightSpec {
        name: format!("{}/{}", C::CELL_NAME, name),
        shape,
        initializer,
        trainable: true,
    };
    let mut specs = vec![
        spec("kernel", vec![features, C::GATES * o.units], o.kernel_initializer.clone()),
        spec("recurrent_kernel", vec![o.units, C::GATES * o.units], o.recurrent_initializer.clone()),
    ];
    if o.use_bias {
        let (shape, init) = cell.bias_spec();
        specs.push(spec("bias", shape, init));
    }
    specs
}

/// The forward pass's record for backpropagation through time.
struct RnnCache<S> {
    /// The inputs, time-major `(time * batch, features)`, after input dropout.
    x: Tensor,
    batch: usize,
    time: usize,
    input_keep: Option<Tensor>,
    recurrent_keep: Option<Tensor>,
    /// The states before each step, the recurrent input of each step, the cells' records.
    prev: Vec<Vec<Tensor>>,
    h_in: Vec<Tensor>,
    steps: Vec<S>,
    /// Each step's mask column `(batch, 1)`, in the order the steps ran.
    masks: Option<Vec<Tensor>>,
    /// The states after the last step (outputs with `return_state`).
    final_states: Vec<Tensor>,
    /// Whether the initial states were inputs (`initial_state`), which then get gradients.
    given_initial: bool,
}

/// A scaled keep-mask of `(rows, cols)` in training, fixed over all time steps as Keras's
/// recurrent dropout is.
fn keep_mask(ctx: &mut ForwardContext, rows: usize, cols: usize, rate: f64, device: &Device) -> Result<Option<Tensor>> {
    if !ctx.training || rate == 0.0 {
        return Ok(None);
    }
    Ok(Some(super::dropout::keep_mask(&mut ctx.rng, &[rows, cols], rate, device)?))
}

/// The entries of `axis` in reverse order (time steps, for `go_backwards` and Bidirectional).
pub fn reverse_along(t: &Tensor, axis: usize) -> Result<Tensor> {
    let n = t.dim(axis)?;
    let idx = Tensor::from_vec((0..n as u32).rev().collect::<Vec<u32>>(), n, t.device())?;
    Ok(t.index_select(&idx, axis)?)
}

/// `prev + mask * (new - prev)`: a masked step keeps the previous state.
fn blend(mask: &Tensor, new: &Tensor, prev: &Tensor) -> Result<Tensor> {
    Ok((prev + (new - prev)?.broadcast_mul(mask)?)?)
}

/// The recurrent layer's forward pass (`class` names it in errors): `xs` holds the sequence,
/// then optionally the initial states (Keras's `initial_state`).
pub fn forward<C: Cell>(cell: &C, name: &str, class: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
    let o = cell.options();
    let x = &xs[0];
    let (batch, time, features) = x.dims3().map_err(|_| {
        Error::Value(format!("layer \"{}\" ({}) needs inputs of shape (batch, time, features), got ({})", name, class, crate::shape::join_dims(x.dims())))
    })?;
    let units = o.units;
    let device = x.device().clone();
    let mut xt = x.transpose(0, 1)?.contiguous()?;
    let mut mask = match &ctx.mask {
        Some(m) => Some(m.to_dtype(x.dtype())?.transpose(0, 1)?.contiguous()?),
        None => None,
    };
    if o.go_backwards {
        xt = reverse_along(&xt, 0)?;
        mask = mask.map(|m| reverse_along(&m, 0)).transpose()?;
    }
    let input_keep = keep_mask(ctx, batch, features, o.dropout, &device)?;
    let recurrent_keep = keep_mask(ctx, batch, units, o.recurrent_dropout, &device)?;
    if let Some(k) = &input_keep {
        xt = xt.broadcast_mul(k)?;
    }
    let x2 = xt.reshape((time * batch, features))?;
    let bias = if o.use_bias { weights.get(2) } else { None };
    let input_bias = bias.map(|b| cell.input_bias(b)).transpose()?;
    let xw = crate::kernels::linear(&x2, &weights[0], input_bias.as_ref(), false)?.reshape((time, batch, C::GATES * units))?;
    let recurrent = cell.recurrent_parts(&weights[1])?;

    let given_initial = xs.len() > 1;
    let mut states = if given_initial { given_states::<C>(o, name, class, batch, &xs[1..])? } else { initial_states::<C>(o, name, batch, &device)? };
    let masks: Option<Vec<Tensor>> = mask.map(|m| (0..time).map(|t| Ok(m.narrow(0, t, 1)?.reshape((batch, 1))?)).collect::<Result<_>>()).transpose()?;
    let run = if masks.is_none() && recurrent_keep.is_none() { cell.sequence(&xw, &states, &recurrent, bias)? } else { None };
    let (prev, h_ins, steps, value) = match run {
        Some(SequenceRun { states: mut all, outputs, steps }) => {
            // Copies: the last states are views into the whole sequence's buffers, which the
            // output, returned states and a stateful layer's kept states would hold alive.
            let last = all.pop().ok_or_else(|| Error::State("a recurrent kernel returned no states".into()))?;
            states = last.iter().map(|s| s.copy()).collect::<candle_core::Result<Vec<_>>>()?;
            let h_ins = all.iter().map(|s| s[0].clone()).collect();
            let value = if o.return_sequences { outputs.transpose(0, 1)?.contiguous()? } else { states[0].clone() };
            (all, h_ins, steps, value)
        }
        None => {
            let mut outputs = Vec::with_capacity(if o.return_sequences { time } else { 0 });
            let (mut prev, mut h_ins, mut steps) = (Vec::with_capacity(time), Vec::with_capacity(time), Vec::with_capacity(time));
            for t in 0..time {
                // Long sequences make one layer a long call: Ctrl-C is answered between steps.
                crate::cancel::check()?;
                let xw_t = xw.narrow(0, t, 1)?.squeeze(0)?;
                let h_in = match &recurrent_keep {
                    Some(k) => states[0].mul(k)?,
                    None => states[0].clone(),
                };
                let (mut new, step) = cell.step(&xw_t, &states, &h_in, &recurrent, bias)?;
                if let Some(ms) = &masks {
                    for (n, p) in new.iter_mut().zip(&states) {
                        *n = blend(&ms[t], n, p)?;
                    }
                }
                if o.return_sequences {
                    outputs.push(new[0].clone());
                }
                prev.push(std::mem::replace(&mut states, new));
                h_ins.push(h_in);
                steps.push(step);
            }
            let value = if o.return_sequences { Tensor::stack(&outputs, 1)? } else { states[0].clone() };
            (prev, h_ins, steps, value)
        }
    };
    let final_states = if o.return_state { states.clone() } else { Vec::new() };
    if o.stateful {
        o.kept.keep(states);
    }
    let cache = RnnCache { x: x2, batch, time, input_keep, recurrent_keep, prev, h_in: h_ins, steps, masks, final_states, given_initial };
    Ok((LayerOutput::plain(value), Cache::new(cache)))
}

/// Initial states given as inputs: one `(batch, units)` tensor per state (the shapes were
/// checked when the model was made; the batch is checked here).
fn given_states<C: Cell>(o: &RnnOptions, name: &str, class: &str, batch: usize, given: &[Tensor]) -> Result<Vec<Tensor>> {
    let shapes: Vec<Vec<usize>> = given.iter().map(|s| s.dims().get(1..).unwrap_or(&[]).to_vec()).collect();
    o.check_initial_states(name, class, &shapes, C::STATES)?;
    if let Some(s) = given.iter().find(|s| s.dim(0).ok() != Some(batch)) {
        return Err(Error::Value(format!("layer \"{}\" ({}) got initial states for {} rows and inputs of {}", name, class, s.dim(0)?, batch)));
    }
    Ok(given.iter().map(|s| s.to_dtype(candle_core::DType::F32)).collect::<candle_core::Result<Vec<_>>>()?)
}

/// Zeros, or a stateful layer's states from the batch before.
fn initial_states<C: Cell>(o: &RnnOptions, name: &str, batch: usize, device: &Device) -> Result<Vec<Tensor>> {
    if o.stateful {
        if let Some(kept) = o.kept.take() {
            let rows = kept[0].dim(0)?;
            if rows != batch {
                return Err(Error::Value(format!(
                    "stateful layer \"{}\" holds states for batches of {} rows but got {}: give every batch the same size (`batch_size`, `batch_input_shape`), or call reset_states() first",
                    name, rows, batch
                )));
            }
            return kept.iter().map(|s| Ok(s.to_device(device)?)).collect();
        }
    }
    (0..C::STATES).map(|_| Ok(Tensor::zeros((batch, o.units), candle_core::DType::F32, device)?)).collect()
}

/// Backpropagation through time, from the output's gradient (None when nothing reads the
/// output) and the final states' (`return_state`; None where nothing reads one).
pub fn backward<C: Cell>(
    cell: &C,
    class: &str,
    weights: &[Tensor],
    cache: &Cache,
    grad: Option<OutputGrad>,
    state_grads: Vec<Option<Tensor>>,
    need_input_grad: bool,
) -> Result<LayerGrads> {
    let o = cell.options();
    let c = cache.get::<RnnCache<C::Step>>()?;
    let (batch, time, units) = (c.batch, c.time, o.units);
    let device = c.x.device().clone();
    let dy = match grad {
        Some(g) => g.value(class)?,
        None if o.return_sequences => Tensor::zeros((batch, time, units), candle_core::DType::F32, &device)?,
        None => Tensor::zeros((batch, units), candle_core::DType::F32, &device)?,
    };
    let recurrent_t = cell.recurrent_parts(&weights[1])?.iter().map(|p| Ok(p.t()?.contiguous()?)).collect::<Result<Vec<_>>>()?;
    let dy_steps = if o.return_sequences { Some(dy.transpose(0, 1)?.contiguous()?) } else { None };
    let zeros = Tensor::zeros((batch, units), dy.dtype(), &device)?;
    let mut d_states: Vec<Tensor> = vec![zeros.clone(); C::STATES];
    if dy_steps.is_none() {
        d_states[0] = dy.reshape((batch, units))?;
    }
    for (d, g) in d_states.iter_mut().zip(state_grads) {
        if let Some(g) = g {
            *d = (&*d + g)?;
        }
    }
    let mut d_xws: Vec<Tensor> = Vec::with_capacity(time);
    let mut segments: Vec<(Vec<Tensor>, Vec<Tensor>)> = Vec::new();
    for t in (0..time).rev() {
        crate::cancel::check()?;
        if let Some(d) = &dy_steps {
            d_states[0] = (&d_states[0] + d.narrow(0, t, 1)?.squeeze(0)?)?;
        }
        let (d_new, carried): (Vec<Tensor>, Option<Vec<Tensor>>) = match &c.masks {
            Some(ms) => {
                let d_new = d_states.iter().map(|d| Ok(d.broadcast_mul(&ms[t])?)).collect::<Result<Vec<_>>>()?;
                let carried = d_states.iter().zip(&d_new).map(|(d, n)| Ok((d - n)?)).collect::<Result<Vec<_>>>()?;
                (d_new, Some(carried))
            }
            None => (d_states.clone(), None),
        };
        let g = cell.step_backward(&c.steps[t], &c.prev[t], &c.h_in[t], &d_new, &recurrent_t)?;
        let mut d_prev: Vec<Tensor> = g.d_prev.into_iter().map(|d| d.unwrap_or_else(|| zeros.clone())).collect();
        let d_h = match &c.recurrent_keep {
            Some(k) => g.d_h_in.mul(k)?,
            None => g.d_h_in,
        };
        d_prev[0] = (&d_prev[0] + d_h)?;
        if let Some(carried) = carried {
            for (d, k) in d_prev.iter_mut().zip(carried) {
                *d = (&*d + k)?;
            }
        }
        d_states = d_prev;
        d_xws.push(g.d_xw);
        if segments.is_empty() {
            segments = g.recurrent.iter().map(|_| (Vec::with_capacity(time), Vec::with_capacity(time))).collect();
        }
        for ((lefts, rights), (l, r)) in segments.iter_mut().zip(g.recurrent) {
            lefts.push(l);
            rights.push(r);
        }
    }
    // Gradients were gathered last step first; the products below only need both sides in
    // the same order, but the input gradient needs time order.
    d_xws.reverse();
    let d_xw = Tensor::cat(&d_xws, 0)?;
    let d_kernel = crate::kernels::matmul(&c.x.t()?, &d_xw)?;
    let mut parts = Vec::with_capacity(segments.len());
    let mut rights_stacked = Vec::with_capacity(segments.len());
    for (lefts, rights) in &segments {
        let (l, r) = (Tensor::cat(lefts, 0)?, Tensor::cat(rights, 0)?);
        parts.push(crate::kernels::matmul(&l.t()?, &r)?);
        rights_stacked.push(r);
    }
    let d_recurrent = if parts.len() == 1 { parts.pop().unwrap_or(zeros) } else { Tensor::cat(&parts, 1)? };
    let mut grads = vec![d_kernel, d_recurrent];
    if o.use_bias {
        grads.push(cell.bias_grad(crate::kernels::sum_rows(&d_xw)?, &rights_stacked)?);
    }
    let input = if need_input_grad {
        let features = weights[0].dim(0)?;
        let mut dx = crate::kernels::matmul_by_transpose(&d_xw, &weights[0])?.reshape((time, batch, features))?;
        if let Some(k) = &c.input_keep {
            dx = dx.broadcast_mul(k)?;
        }
        if o.go_backwards {
            dx = reverse_along(&dx, 0)?;
        }
        Some(dx.transpose(0, 1)?.contiguous()?)
    } else {
        None
    };
    // What reached the states before the first step: the initial states' gradients.
    let more_inputs = if c.given_initial { d_states } else { Vec::new() };
    Ok(LayerGrads { input, weights: grads, more_inputs })
}

/// The fused CPU kernels' gate activation, where they apply: f32 on the CPU, tanh output
/// activation, sigmoid or hard sigmoid gates (Keras's defaults, old and new).
pub fn fused_gate(t: &Tensor, activation: Activation, recurrent_activation: Activation) -> Option<crate::kernels::recurrent::Gate> {
    use crate::kernels::recurrent::Gate;
    if !t.device().is_cpu() || t.dtype() != candle_core::DType::F32 || activation != Activation::Tanh {
        return None;
    }
    match recurrent_activation {
        Activation::Sigmoid => Some(Gate::Sigmoid),
        Activation::HardSigmoid => Some(Gate::HardSigmoid),
        _ => None,
    }
}

/// The states after the last step, when the layer returns them (`return_state`).
pub fn final_states<C: Cell>(cache: &Cache) -> Result<Vec<Tensor>> {
    Ok(cache.get::<RnnCache<C::Step>>()?.final_states.clone())
}

/// Per input row, what the loop keeps for backpropagation: every step's input projection,
/// pre-activations and gates (about three gate blocks) and its states and recurrent input.
pub fn working_elements_per_row<C: Cell>(o: &RnnOptions, input: &[usize]) -> Option<u64> {
    let (time, features) = (*input.first()? as u64, *input.last()? as u64);
    let per_step =
        (3 * C::GATES as u64).checked_mul(o.units as u64)?.checked_add((C::STATES as u64 + 2).checked_mul(o.units as u64)?)?.checked_add(features)?;
    time.checked_mul(per_step)
}

/// Columns `[block * units, (block + 1) * units)` of a gate matrix, contiguous.
pub fn gate(t: &Tensor, block: usize, units: usize) -> Result<Tensor> {
    Ok(t.narrow(1, block * units, units)?.contiguous()?)
}

/// The [`super::LayerType`] of a recurrent layer whose struct implements [`Cell`] and has
/// its shared fields in `options`.
macro_rules! recurrent_layer_type {
    ($ty:ty, $class:literal, $prefix:literal, $example:expr) => {
        impl $crate::layers::LayerType for $ty {
            const CLASS_NAME: &'static str = $class;
            const NAME_PREFIX: &'static str = $prefix;
            const INPUTS: $crate::layers::Inputs = $crate::layers::Inputs::OneOrMore;

            fn normalize(&mut self) -> $crate::error::Result<()> {
                self.options.check()?;
                self.check_own()
            }

            fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> $crate::error::Result<Vec<usize>> {
                self.options.output_shape(name, $class, inputs, <$ty as $crate::layers::recurrent::Cell>::STATES)
            }

            fn weight_specs(&self, input: &[usize]) -> Vec<$crate::layers::WeightSpec> {
                $crate::layers::recurrent::weight_specs(self, input)
            }

            fn forward(
                &self,
                name: &str,
                weights: &[candle_core::Tensor],
                xs: &[candle_core::Tensor],
                ctx: &mut $crate::layers::ForwardContext,
            ) -> $crate::error::Result<($crate::layers::LayerOutput, $crate::layers::Cache)> {
                $crate::layers::recurrent::forward(self, name, $class, weights, xs, ctx)
            }

            fn backward(
                &self,
                _name: &str,
                weights: &[candle_core::Tensor],
                _transposed: &[Option<candle_core::Tensor>],
                cache: &$crate::layers::Cache,
                grad: $crate::layers::OutputGrad,
                need_input_grad: bool,
            ) -> $crate::error::Result<$crate::layers::LayerGrads> {
                $crate::layers::recurrent::backward(self, $class, weights, cache, Some(grad), Vec::new(), need_input_grad)
            }

            fn backward_more(
                &self,
                _name: &str,
                weights: &[candle_core::Tensor],
                _transposed: &[Option<candle_core::Tensor>],
                cache: &$crate::layers::Cache,
                grad: Option<$crate::layers::OutputGrad>,
                more: Vec<Option<candle_core::Tensor>>,
                need_input_grad: bool,
            ) -> $crate::error::Result<$crate::layers::LayerGrads> {
                $crate::layers::recurrent::backward(self, $class, weights, cache, grad, more, need_input_grad)
            }

            fn more_output_shapes(&self, _inputs: &[Vec<usize>]) -> Vec<Vec<usize>> {
                if self.options.return_state {
                    vec![vec![self.options.units]; <$ty as $crate::layers::recurrent::Cell>::STATES]
                } else {
                    Vec::new()
                }
            }

            fn more_outputs(&self, cache: &$crate::layers::Cache) -> $crate::error::Result<Vec<candle_core::Tensor>> {
                $crate::layers::recurrent::final_states::<$ty>(cache)
            }

            fn weight_regularizers(&self) -> Vec<Option<$crate::regularizer::Regularizer>> {
                self.options.regularizers()
            }

            fn weight_constraints(&self) -> Vec<Option<$crate::constraint::Constraint>> {
                self.options.constraints()
            }

            fn activity_regularizer(&self) -> Option<$crate::regularizer::Regularizer> {
                self.options.activity_regularizer
            }

            fn compute_mask(&self, _xs: &[candle_core::Tensor], mask: Option<&candle_core::Tensor>) -> $crate::error::Result<Option<candle_core::Tensor>> {
                Ok(self.options.output_mask(mask))
            }

            fn reset_states(&self) {
                self.options.kept.reset();
            }

            fn is_stateful(&self) -> bool {
                self.options.stateful
            }

            fn working_elements_per_row(&self, input: &[usize]) -> Option<u64> {
                $crate::layers::recurrent::working_elements_per_row::<$ty>(&self.options, input)
            }

            fn example() -> $crate::layers::Example {
                $example
            }
        }
    };
}
pub(crate) use recurrent_layer_type;

#[cfg(test)]
mod tests;
