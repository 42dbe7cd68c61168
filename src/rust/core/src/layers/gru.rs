//! GRU (Keras's gate order z, r, h): `z, r = recurrent_activation(...)`,
//! `h_t = z * h_{t-1} + (1 - z) * activation(x_h + r * (h_{t-1} · U_h + b_h))` with
//! `reset_after` (Keras 2's default, cuDNN's form: a second bias row for the recurrent side),
//! or `activation(x_h + (r * h_{t-1}) · U_h)` without. The loop over time is
//! [`super::recurrent`]'s, or on the CPU with `reset_after` one kernel's for the whole
//! sequence (`kernels::recurrent::gru_sequence`).
use super::recurrent::{fused_gate, gate, recurrent_layer_type, Cell, RnnOptions, SequenceRun, StepGrads};
use super::Example;
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GRU {
    #[serde(flatten)]
    pub options: RnnOptions,
    pub recurrent_activation: Activation,
    pub implementation: u8,
    pub reset_after: bool,
}

impl Default for GRU {
    fn default() -> Self {
        Self { options: RnnOptions::default(), recurrent_activation: Activation::Sigmoid, implementation: 2, reset_after: true }
    }
}

/// A step's gates, the candidate's pre-activation and value, and the recurrent products the
/// candidate used (`h · U_h + b_h` with `reset_after`, `r * h` without).
pub struct GruStep {
    z_pre: Tensor,
    z: Tensor,
    r_pre: Tensor,
    r: Tensor,
    a: Tensor,
    n: Tensor,
    recurrent_h: Tensor,
}

impl GRU {
    fn check_own(&self) -> Result<()> {
        if !(1..=2).contains(&self.implementation) {
            return Err(Error::Value(format!("`implementation` must be 1 or 2, got {}", self.implementation)));
        }
        Ok(())
    }
}

impl Cell for GRU {
    type Step = GruStep;
    const GATES: usize = 3;
    const STATES: usize = 1;
    const CELL_NAME: &'static str = "gru_cell";

    fn options(&self) -> &RnnOptions {
        &self.options
    }

    fn bias_spec(&self) -> (Vec<usize>, Initializer) {
        let o = &self.options;
        let shape = if self.reset_after { vec![2, 3 * o.units] } else { vec![3 * o.units] };
        (shape, o.bias_initializer.clone())
    }

    fn input_bias(&self, bias: &Tensor) -> Result<Tensor> {
        Ok(if self.reset_after { bias.get(0)? } else { bias.clone() })
    }

    fn recurrent_parts(&self, recurrent: &Tensor) -> Result<Vec<Tensor>> {
        let u = self.options.units;
        Ok(if self.reset_after { vec![recurrent.clone()] } else { vec![recurrent.narrow(1, 0, 2 * u)?.contiguous()?, gate(recurrent, 2, u)?] })
    }

    fn step(&self, xw: &Tensor, prev: &[Tensor], h_in: &Tensor, recurrent: &[Tensor], bias: Option<&Tensor>) -> Result<(Vec<Tensor>, GruStep)> {
        let u = self.options.units;
        let (ra, act) = (self.recurrent_activation, self.options.activation);
        let hu = crate::kernels::matmul(h_in, &recurrent[0])?;
        let hu = match (self.reset_after, bias) {
            (true, Some(b)) => hu.broadcast_add(&b.get(1)?)?,
            _ => hu,
        };
        if let (true, Some(g)) = (self.reset_after, fused_gate(&hu, act, ra)) {
            let f = crate::kernels::with_cpu_slices(&[xw, &hu, &prev[0]], |s| crate::kernels::recurrent::gru_forward(s[0], s[1], s[2], u, g))?;
            let (dev, rows) = (hu.device(), hu.dim(0)?);
            let tensor = |v: Vec<f32>| Tensor::from_vec(v, (rows, u), dev);
            let step = GruStep {
                z_pre: tensor(f.z_pre)?,
                z: tensor(f.z)?,
                r_pre: tensor(f.r_pre)?,
                r: tensor(f.r)?,
                a: tensor(f.a)?,
                n: tensor(f.n)?,
                recurrent_h: gate(&hu, 2, u)?,
            };
            return Ok((vec![tensor(f.h)?], step));
        }
        let z_pre = (gate(xw, 0, u)? + gate(&hu, 0, u)?)?;
        let r_pre = (gate(xw, 1, u)? + gate(&hu, 1, u)?)?;
        let (z, r) = (ra.apply(&z_pre)?, ra.apply(&r_pre)?);
        let (a, recurrent_h) = if self.reset_after {
            let hh = gate(&hu, 2, u)?;
            ((gate(xw, 2, u)? + (&r * &hh)?)?, hh)
        } else {
            let rh = (&r * h_in)?;
            ((gate(xw, 2, u)? + crate::kernels::matmul(&rh, &recurrent[1])?)?, rh)
        };
        let n = act.apply(&a)?;
        // z * h + (1 - z) * n = n + z * (h - n)
        let h = (&n + (&z * (&prev[0] - &n)?)?)?;
        Ok((vec![h], GruStep { z_pre, z, r_pre, r, a, n, recurrent_h }))
    }

    fn sequence(&self, xw: &Tensor, initial: &[Tensor], recurrent: &[Tensor], bias: Option<&Tensor>) -> Result<Option<SequenceRun<GruStep>>> {
        let (ra, act) = (self.recurrent_activation, self.options.activation);
        let Some(g) = fused_gate(xw, act, ra).filter(|_| self.reset_after) else { return Ok(None) };
        let (time, rows, _) = xw.dims3()?;
        let u = self.options.units;
        let recurrent_bias = bias.map(|b| b.get(1)).transpose()?;
        let mut operands = vec![xw, &initial[0], &recurrent[0]];
        operands.extend(recurrent_bias.as_ref());
        let run = crate::kernels::with_cpu_slices(&operands, |s| {
            crate::kernels::recurrent::gru_sequence(s[0], s[1], s[2], s.get(3).copied(), time, u, g, &crate::cancel::requested)
        })?
        .ok_or(Error::Interrupted)?;
        let dev = xw.device();
        let each = |v: Vec<f32>| Tensor::from_vec(v, (time, rows, u), dev);
        let hu = Tensor::from_vec(run.hu, (time, rows, 3 * u), dev)?;
        let v = run.values;
        let (z_pre, z, r_pre, r, a, n) = (each(v.z_pre)?, each(v.z)?, each(v.r_pre)?, each(v.r)?, each(v.a)?, each(v.n)?);
        let h = Tensor::from_vec(v.h, (time + 1, rows, u), dev)?;
        let states = (0..=time).map(|t| Ok(vec![h.get(t)?])).collect::<Result<Vec<_>>>()?;
        let steps = (0..time)
            .map(|t| {
                Ok(GruStep {
                    z_pre: z_pre.get(t)?,
                    z: z.get(t)?,
                    r_pre: r_pre.get(t)?,
                    r: r.get(t)?,
                    a: a.get(t)?,
                    n: n.get(t)?,
                    recurrent_h: gate(&hu.get(t)?, 2, u)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(SequenceRun { states, outputs: h.narrow(0, 1, time)?, steps }))
    }

    fn step_backward(&self, s: &GruStep, prev: &[Tensor], h_in: &Tensor, d_new: &[Tensor], recurrent_t: &[Tensor]) -> Result<StepGrads> {
        let (ra, act) = (self.recurrent_activation, self.options.activation);
        let dh = &d_new[0];
        if let (true, Some(g)) = (self.reset_after, fused_gate(dh, act, ra)) {
            let u = self.options.units;
            let (d_xw, d_hu, d_prev) = crate::kernels::with_cpu_slices(&[&s.z_pre, &s.z, &s.r_pre, &s.r, &s.n, &s.recurrent_h, &prev[0], dh], |v| {
                let f = crate::kernels::recurrent::GruValues { z_pre: v[0], z: v[1], r_pre: v[2], r: v[3], n: v[4], hu_h: v[5] };
                crate::kernels::recurrent::gru_backward(&f, v[6], v[7], u, g)
            })?;
            let (dev, rows) = (dh.device(), dh.dim(0)?);
            let d_hu = Tensor::from_vec(d_hu, (rows, 3 * u), dev)?;
            let d_h_in = crate::kernels::matmul(&d_hu, &recurrent_t[0])?;
            return Ok(StepGrads {
                d_xw: Tensor::from_vec(d_xw, (rows, 3 * u), dev)?,
                d_prev: vec![Some(Tensor::from_vec(d_prev, (rows, u), dev)?)],
                d_h_in,
                recurrent: vec![(h_in.clone(), d_hu)],
            });
        }
        let dz = (dh * (&prev[0] - &s.n)?)?;
        let dn = (dh - (dh * &s.z)?)?;
        let d_prev = (dh * &s.z)?;
        let da = act.backward(&s.a, &s.n, &dn)?;
        let daz = ra.backward(&s.z_pre, &s.z, &dz)?;
        if self.reset_after {
            let dr = (&da * &s.recurrent_h)?;
            let dar = ra.backward(&s.r_pre, &s.r, &dr)?;
            let d_hu = Tensor::cat(&[&daz, &dar, &(&da * &s.r)?], 1)?;
            let d_h_in = crate::kernels::matmul(&d_hu, &recurrent_t[0])?;
            let d_xw = Tensor::cat(&[&daz, &dar, &da], 1)?;
            Ok(StepGrads { d_xw, d_prev: vec![Some(d_prev)], d_h_in, recurrent: vec![(h_in.clone(), d_hu)] })
        } else {
            let d_rh = crate::kernels::matmul(&da, &recurrent_t[1])?;
            let dar = ra.backward(&s.r_pre, &s.r, &(&d_rh * h_in)?)?;
            let d_zr = Tensor::cat(&[&daz, &dar], 1)?;
            let d_h_in = (crate::kernels::matmul(&d_zr, &recurrent_t[0])? + (&d_rh * &s.r)?)?;
            let d_xw = Tensor::cat(&[&daz, &dar, &da], 1)?;
            Ok(StepGrads { d_xw, d_prev: vec![Some(d_prev)], d_h_in, recurrent: vec![(h_in.clone(), d_zr), (s.recurrent_h.clone(), da)] })
        }
    }

    /// With `reset_after`, the second row is the recurrent bias: it gets the column sums of
    /// the recurrent side's gradients.
    fn bias_grad(&self, d_input_bias: Tensor, recurrent_rights: &[Tensor]) -> Result<Tensor> {
        if !self.reset_after {
            return Ok(d_input_bias);
        }
        let d_recurrent_bias = crate::kernels::sum_rows(&recurrent_rights[0])?;
        Ok(Tensor::stack(&[d_input_bias, d_recurrent_bias], 0)?)
    }
}

recurrent_layer_type!(GRU, "GRU", "gru", Example { config: serde_json::json!({ "units": 3 }), inputs: vec![vec![4, 2]], index_bound: None });
