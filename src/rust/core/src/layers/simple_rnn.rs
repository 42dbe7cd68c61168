//! SimpleRNN: `h_t = activation(x_t · kernel + h_{t-1} · recurrent_kernel + bias)`.
//! The loop over time, masking and the rest are [`super::recurrent`]'s.
use super::recurrent::{recurrent_layer_type, Cell, RnnOptions, StepGrads};
use super::Example;
use crate::error::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SimpleRNN {
    #[serde(flatten)]
    pub options: RnnOptions,
}

/// Pre-activation and output of a step.
pub struct SimpleStep {
    z: Tensor,
    h: Tensor,
}

impl SimpleRNN {
    fn check_own(&self) -> Result<()> {
        Ok(())
    }
}

impl Cell for SimpleRNN {
    type Step = SimpleStep;
    const GATES: usize = 1;
    const STATES: usize = 1;
    const CELL_NAME: &'static str = "simple_rnn_cell";

    fn options(&self) -> &RnnOptions {
        &self.options
    }

    fn step(&self, xw: &Tensor, _prev: &[Tensor], h_in: &Tensor, recurrent: &[Tensor], _bias: Option<&Tensor>) -> Result<(Vec<Tensor>, SimpleStep)> {
        let z = (xw + crate::kernels::matmul(h_in, &recurrent[0])?)?;
        let h = self.options.activation.apply(&z)?;
        Ok((vec![h.clone()], SimpleStep { z, h }))
    }

    fn step_backward(&self, s: &SimpleStep, _prev: &[Tensor], h_in: &Tensor, d_new: &[Tensor], recurrent_t: &[Tensor]) -> Result<StepGrads> {
        let dz = self.options.activation.backward(&s.z, &s.h, &d_new[0])?;
        let d_h_in = crate::kernels::matmul(&dz, &recurrent_t[0])?;
        Ok(StepGrads { d_xw: dz.clone(), d_prev: vec![None], d_h_in, recurrent: vec![(h_in.clone(), dz)] })
    }
}

recurrent_layer_type!(
    SimpleRNN,
    "SimpleRNN",
    "simple_rnn",
    Example { config: serde_json::json!({ "units": 3, "go_backwards": true, "return_sequences": true }), inputs: vec![vec![4, 2]], index_bound: None }
);
