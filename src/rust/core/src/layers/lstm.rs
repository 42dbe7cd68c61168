//! LSTM (Keras's gate order i, f, c, o in the kernels' column blocks):
//! `i, f, o = recurrent_activation(...)`, `g = activation(...)`, `c_t = f * c_{t-1} + i * g`,
//! `h_t = o * activation(c_t)`. The loop over time is [`super::recurrent`]'s.
use super::recurrent::{gate, recurrent_layer_type, Cell, RnnOptions, StepGrads};
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
        values.extend(std::iter::repeat(1.0).take(u));
        values.extend(self.inner.sample(&[2 * u], rng)?);
        Ok(values)
    }
}

/// A step's gates (after their activations), pre-activations and cell state.
pub struct LstmStep {
    z: Tensor,
    i: Tensor,
    f: Tensor,
    g: Tensor,
    o: Tensor,
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
        let init = if self.unit_forget_bias { Initializer::of(UnitForgetBias { inner: o.bias_initializer.clone(), units: o.units }) } else { o.bias_initializer.clone() };
        (vec![4 * o.units], init)
    }

    fn step(&self, xw: &Tensor, prev: &[Tensor], h_in: &Tensor, recurrent: &[Tensor], _bias: Option<&Tensor>) -> Result<(Vec<Tensor>, LstmStep)> {
        let u = self.options.units;
        let z = (xw + crate::kernels::matmul(h_in, &recurrent[0])?)?;
        let (ra, act) = (self.recurrent_activation, self.options.activation);
        let i = ra.apply(&gate(&z, 0, u)?)?;
        let f = ra.apply(&gate(&z, 1, u)?)?;
        let g = act.apply(&gate(&z, 2, u)?)?;
        let o = ra.apply(&gate(&z, 3, u)?)?;
        let c = ((&f * &prev[1])? + (&i * &g)?)?;
        let c_act = act.apply(&c)?;
        let h = (&o * &c_act)?;
        Ok((vec![h, c.clone()], LstmStep { z, i, f, g, o, c, c_act }))
    }

    fn step_backward(&self, s: &LstmStep, prev: &[Tensor], h_in: &Tensor, d_new: &[Tensor], recurrent: &[Tensor]) -> Result<StepGrads> {
        let u = self.options.units;
        let (ra, act) = (self.recurrent_activation, self.options.activation);
        let (dh, dc_in) = (&d_new[0], &d_new[1]);
        let d_o = (dh * &s.c_act)?;
        let dc = (dc_in + act.backward(&s.c, &s.c_act, &(dh * &s.o)?)?)?;
        let d_i = (&dc * &s.g)?;
        let d_g = (&dc * &s.i)?;
        let d_f = (&dc * &prev[1])?;
        let dc_prev = (&dc * &s.f)?;
        let dz = Tensor::cat(
            &[
                ra.backward(&gate(&s.z, 0, u)?, &s.i, &d_i)?,
                ra.backward(&gate(&s.z, 1, u)?, &s.f, &d_f)?,
                act.backward(&gate(&s.z, 2, u)?, &s.g, &d_g)?,
                ra.backward(&gate(&s.z, 3, u)?, &s.o, &d_o)?,
            ],
            1,
        )?;
        let d_h_in = crate::kernels::matmul_by_transpose(&dz, &recurrent[0])?;
        Ok(StepGrads { d_xw: dz.clone(), d_prev: vec![None, Some(dc_prev)], d_h_in, recurrent: vec![(h_in.clone(), dz)] })
    }
}

recurrent_layer_type!(
    LSTM,
    "LSTM",
    "lstm",
    Example { config: serde_json::json!({ "units": 3, "return_sequences": true }), inputs: vec![vec![4, 2]], index_bound: None }
);
