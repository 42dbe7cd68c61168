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
    /// Inputs: y_true, y_pred, then the outputs of `extra_nodes`; one output.
    pub trace: Trace,
    /// Model nodes (functional graph indices) whose outputs the function also reads: tensors
    /// of the model it closes over, as R keras's variational autoencoder's loss does.
    pub extra_nodes: Vec<usize>,
}

impl TracedLoss {
    pub fn new(name: &str, trace: Trace, extra_nodes: Vec<usize>) -> Result<Self> {
        if trace.input_count() != 2 + extra_nodes.len() || trace.weight_count() != 0 || trace.outputs.len() != 1 {
            return Err(Error::Value(format!(
                "the loss function \"{}\" must take (y_true, y_pred) and return one tensor, got a trace of {} input(s) and {} output(s)",
                name,
                trace.input_count(),
                trace.outputs.len()
            )));
        }
        Ok(Self { name: name.to_string(), trace, extra_nodes })
    }

    fn run(&self, out: &ModelOutput, y: &Tensor, extras: &[Tensor]) -> Result<crate::trace::TraceRun> {
        if extras.len() != self.extra_nodes.len() {
            return Err(Error::Value(format!("the loss function \"{}\" reads model tensors, which only a training step gives it", self.name)));
        }
        // Random ops in a loss draw the same values each call: a loss is a function of its inputs.
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let inputs: Vec<Tensor> = [y.clone(), out.value.clone()].into_iter().chain(extras.iter().cloned()).collect();
        self.trace.forward(&inputs, &[], false, &mut rng)
    }

    /// Each sample's loss, with the model tensors the function reads.
    pub fn per_sample_with(&self, out: &ModelOutput, y: &Tensor, extras: &[Tensor]) -> Result<Tensor> {
        let value = self.run(out, y, extras)?.outputs(&self.trace).remove(0);
        let rows = out.value.dim(0)?;
        if value.rank() == 0 {
            return Ok(value.broadcast_as(rows)?.contiguous()?);
        }
        check_rows(&self.name, &value, rows)?;
        super::per_element_mean(&value)
    }

    /// The gradient of the mean loss (see [`LossFunction::gradient`]) with respect to the
    /// output and to each model tensor the function reads.
    pub fn gradient_with(&self, out: &ModelOutput, y: &Tensor, total_rows: usize, extras: &[Tensor]) -> Result<(OutputGrad, Vec<Tensor>)> {
        let run = self.run(out, y, extras)?;
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
        let mut grads = self.trace.backward(&run, &[Some(seed)])?.inputs.into_iter();
        let or_zero = |g: Option<Tensor>, like: &Tensor| g.map_or_else(|| like.zeros_like(), Ok);
        let _y_true = grads.next();
        let g_out = or_zero(grads.next().flatten(), &out.value)?;
        let g_extras = grads.zip(extras).map(|(g, x)| or_zero(g, x)).collect::<candle_core::Result<Vec<_>>>()?;
        Ok((OutputGrad::Value(g_out), g_extras))
    }
}

impl LossFunction for TracedLoss {
    fn name(&self) -> &str {
        &self.name
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        self.per_sample_with(out, y, &[])
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        Ok(self.gradient_with(out, y, total_rows, &[])?.0)
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
