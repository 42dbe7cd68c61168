//! LSTM (Keras's gate order i, f, c, o in the kernels' column blocks):
//! `i, f, o = recurrent_activation(...)`, `g = activation(...)`, `c_t = f * c_{t-1} + i * g`,
//! `h_t = o * activation(c_t)`. The loop over time is [`super::recurrent`]'s, or on the CPU
//! one kernel's for the whole sequence (`kernels::recurrent::lstm_sequence`).
use super::recurrent::{fused_gate, gate, recurrent_layer_type, Cell, RnnOptions, SequenceRun, StepGrads};
use super::Example;
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::initializer::{Initializer, InitializerType};
use candle_core::Tensor;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LSTM {
    #[serde(flatten)]
    pub options: RnnOptions,
    pub recurrent_activation: Activation,
    /// Forget-gate biases start at 1 (Jozefowicz et al., as Keras).
    pub unit_forget_bias: bool,
    /// Keras's choice of kernel layout for speed; the values are the same either way.
    pub implementation: u8,
}

impl Default for LSTM {
    fn default() -> Self {
        Self { options: RnnOptions::default(), recurrent_activation: Activation::Sigmoid, unit_forget_bias: true, implementation: 2 }
    }
}

/// The bias initializer with `unit_forget_bias`: the forget block ones, the rest from the
/// layer's bias initializer (as Keras's `bias_initializer` closure in LSTMCell.build).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UnitForgetBias {
    inner: Initializer,
    units: usize,
}

impl Default for UnitForgetBias {
    fn default() -> Self {
        Self { inner: Initializer::zeros(), units: 0 }
    }
}

impl InitializerType for UnitForgetBias {
    const CLASS_NAME: &'static str = "UnitForgetBias";
    const NAME: &'static str = "unit_forget_bias";

    fn sample(&self, _shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
        let u = self.units;
        let mut values = self.inner.sample(&[u], rng)?;
        values.extend(std::iter::repeat_n(1.0, u));
        values.extend(self.inner.sample(&[2 * u], rng)?);
        Ok(values)
    }
}

/// A step's pre-activations, its gates after their activations (packed as `z`: i, f, g, o),
/// and its cell state with its activation.
pub struct LstmStep {
    z: Tensor,
    gates: Tensor,
    c: Tensor,
    c_act: Tensor,
}

impl LSTM {
    fn check_own(&self) -> Result<()> {
        if !(1..=2).contains(&self.implementation) {
            return Err(Error::Value(format!("`implementation` must be 1 or 2, got {}", self.implementation)));
        }
        Ok(())
    }
}

impl Cell for LSTM {
    type Step = LstmStep;
    const GATES: usize = 4;
    const STATES: usize = 2;
    const CELL_NAME: &'static str = "lstm_cell";

    fn options(&self) -> &RnnOptions {
        &self.options
    }

    fn bias_spec(&self) -> (Vec<usize>, Initializer) {
        let o = &self.options;
        let init = if self.unit_forget_bias {
            Initializer::of(UnitForgetBias { inner: o.bias_initializer.clone(), units: o.units })
        } else {
            o.bias_initializer.clone()
        };
        (vec![4 * o.units], init)
    }

    fn step(&self, xw: &Tensor, prev: &[Tensor], h_in: &Tensor, recurrent: &[Tensor], _bias: Option<&Tensor>) -> Result<(Vec<Tensor>, LstmStep)> {
        let u = self.options.units;
        let z = (xw + crate::kernels::matmul(h_in, &recurrent[0])?)?;
        let (ra, act) = (self.recurrent_activation, self.options.activation);
        if let Some(gate) = fused_gate(&z, act, ra) {
            let f = crate::kernels::with_cpu_slices(&[&z, &prev[1]], |s| crate::kernels::recurrent::lstm_forward(s[0], s[1], u, gate))?;
            let (dev, rows) = (z.device(), z.dim(0)?);
            let tensor = |v: Vec<f32>, cols: usize| Tensor::from_vec(v, (rows, cols), dev);
            let (h, c) = (tensor(f.h, u)?, tensor(f.c, u)?);
            let step = LstmStep { gates: tensor(f.gates, 4 * u)?, c: c.clone(), c_act: tensor(f.c_act, u)?, z };
            return Ok((vec![h, c], step));
        }
        let i = ra.apply(&gate(&z, 0, u)?)?;
        let f = ra.apply(&gate(&z, 1, u)?)?;
        let g = act.apply(&gate(&z, 2, u)?)?;
        let o = ra.apply(&gate(&z, 3, u)?)?;
        let c = ((&f * &prev[1])? + (&i * &g)?)?;
        let c_act = act.apply(&c)?;
        let h = (&o * &c_act)?;
        let gates = Tensor::cat(&[&i, &f, &g, &o], 1)?;
        Ok((vec![h, c.clone()], LstmStep { z, gates, c, c_act }))
    }

    fn sequence(&self, xw: &Tensor, initial: &[Tensor], recurrent: &[Tensor], _bias: Option<&Tensor>) -> Result<Option<SequenceRun<LstmStep>>> {
        let Some(gate) = fused_gate(xw, self.options.activation, self.recurrent_activation) else { return Ok(None) };
        let (time, rows, _) = xw.dims3()?;
        let u = self.options.units;
        let run = crate::kernels::with_cpu_slices(&[xw, &initial[0], &initial[1], &recurrent[0]], |s| {
            crate::kernels::recurrent::lstm_sequence(s[0], s[1], s[2], s[3], time, u, gate, &crate::cancel::requested)
        })?
        .ok_or(Error::Interrupted)?;
        let dev = xw.device();
        let (z, gates) = (Tensor::from_vec(run.z, (time, rows, 4 * u), dev)?, Tensor::from_vec(run.gates, (time, rows, 4 * u), dev)?);
        let (h, c) = (Tensor::from_vec(run.h, (time + 1, rows, u), dev)?, Tensor::from_vec(run.c, (time + 1, rows, u), dev)?);
        let c_act = Tensor::from_vec(run.c_act, (time, rows, u), dev)?;
        let states = (0..=time).map(|t| Ok(vec![h.get(t)?, c.get(t)?])).collect::<Result<Vec<_>>>()?;
        let steps =
            (0..time).map(|t| Ok(LstmStep { z: z.get(t)?, gates: gates.get(t)?, c: c.get(t + 1)?, c_act: c_act.get(t)? })).collect::<Result<Vec<_>>>()?;
        Ok(Some(SequenceRun { states, outputs: h.narrow(0, 1, time)?, steps }))
    }

    fn step_backward(&self, s: &LstmStep, prev: &[Tensor], h_in: &Tensor, d_new: &[Tensor], recurrent_t: &[Tensor]) -> Result<StepGrads> {
        let u = self.options.units;
        let (ra, act) = (self.recurrent_activation, self.options.activation);
        let (dh, dc_in) = (&d_new[0], &d_new[1]);
        let (dz, dc_prev) = if let Some(gate) = fused_gate(&s.z, act, ra) {
            let (dz, dc_prev) = crate::kernels::with_cpu_slices(&[&s.z, &s.gates, &prev[1], &s.c_act, dh, dc_in], |v| {
                crate::kernels::recurrent::lstm_backward(v[0], v[1], v[2], v[3], v[4], v[5], u, gate)
            })?;
            let rows = s.z.dim(0)?;
            (Tensor::from_vec(dz, (rows, 4 * u), s.z.device())?, Tensor::from_vec(dc_prev, (rows, u), s.z.device())?)
        } else {
            let (i, f, g, o) = (gate(&s.gates, 0, u)?, gate(&s.gates, 1, u)?, gate(&s.gates, 2, u)?, gate(&s.gates, 3, u)?);
            let d_o = (dh * &s.c_act)?;
            let dc = (dc_in + act.backward(&s.c, &s.c_act, &(dh * &o)?)?)?;
            let dz = Tensor::cat(
                &[
                    ra.backward(&gate(&s.z, 0, u)?, &i, &(&dc * &g)?)?,
                    ra.backward(&gate(&s.z, 1, u)?, &f, &(&dc * &prev[1])?)?,
                    act.backward(&gate(&s.z, 2, u)?, &g, &(&dc * &i)?)?,
                    ra.backward(&gate(&s.z, 3, u)?, &o, &d_o)?,
                ],
                1,
            )?;
            (dz, (&dc * &f)?)
        };
        let d_h_in = crate::kernels::matmul(&dz, &recurrent_t[0])?;
        Ok(StepGrads { d_xw: dz.clone(), d_prev: vec![None, Some(dc_prev)], d_h_in, recurrent: vec![(h_in.clone(), dz)] })
    }
}

recurrent_layer_type!(
    LSTM,
    "LSTM",
    "lstm",
    Example { config: serde_json::json!({ "units": 3, "return_sequences": true }), inputs: vec![vec![4, 2]], index_bound: None }
);
