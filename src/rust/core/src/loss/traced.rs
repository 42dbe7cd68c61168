//! A loss written in R (`compile(loss = function(y_true, y_pred) ...)`), run as the trace
//! recorded from it. As Keras 2 does with a loss function, its value is averaged over every
//! axis but the batch's to give each sample's loss (a scalar result is every sample's).
use super::LossFunction;
use crate::error::{Error, Result};
use crate::layers::OutputGrad;
use crate::model::ModelOutput;
use crate::trace::Trace;
use candle_core::Tensor;
use rand::SeedableRng;

#[derive(Debug, Clone, PartialEq)]
pub struct TracedLoss {
    name: String,
    /// Inputs: y_true, y_pred; one output.
    pub trace: Trace,
}

impl TracedLoss {
    pub fn new(name: &str, trace: Trace) -> Result<Self> {
        if trace.input_count() != 2 || trace.weight_count() != 0 || trace.outputs.len() != 1 {
            return Err(Error::Value(format!(
                "the loss function \"{}\" must take (y_true, y_pred) and return one tensor, got a trace of {} input(s) and {} output(s)",
                name,
                trace.input_count(),
                trace.outputs.len()
            )));
        }
        Ok(Self { name: name.to_string(), trace })
    }

    fn run(&self, out: &ModelOutput, y: &Tensor) -> Result<crate::trace::TraceRun> {
        // Random ops in a loss draw the same values each call: a loss is a function of its inputs.
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        self.trace.forward(&[y.clone(), out.value.clone()], &[], false, &mut rng)
    }
}

impl LossFunction for TracedLoss {
    fn name(&self) -> &str {
        &self.name
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let value = self.run(out, y)?.outputs(&self.trace).remove(0);
        let rows = out.value.dim(0)?;
        if value.rank() == 0 {
            return Ok(value.broadcast_as(rows)?.contiguous()?);
        }
        check_rows(&self.name, &value, rows)?;
        super::per_element_mean(&value)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let run = self.run(out, y)?;
        let value = run.outputs(&self.trace).remove(0);
        let rows = out.value.dim(0)?;
        // d(sum of the samples' losses / total_rows) by the function's value.
        let seed = if value.rank() == 0 {
            value.ones_like()?.affine(rows as f64 / total_rows.max(1) as f64, 0.0)?
        } else {
            check_rows(&self.name, &value, rows)?;
            let per_row = value.elem_count() / rows.max(1);
            value.ones_like()?.affine(1.0 / (total_rows.max(1) * per_row.max(1)) as f64, 0.0)?
        };
        let grads = self.trace.backward(&run, &[Some(seed)])?;
        let g = match grads.inputs.into_iter().nth(1).flatten() {
            Some(g) => g,
            None => out.value.zeros_like()?,
        };
        Ok(OutputGrad::Value(g))
    }
}

fn check_rows(name: &str, value: &Tensor, rows: usize) -> Result<()> {
    if value.dim(0)? != rows {
        return Err(Error::Value(format!(
            "the loss function \"{}\" returned {} values along its first axis for a batch of {}: return one loss per sample (or one number)",
            name,
            value.dim(0)?,
            rows
        )));
    }
    Ok(())
}
