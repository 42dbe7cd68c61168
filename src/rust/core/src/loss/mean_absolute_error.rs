//! `mean_absolute_error` ("mae"); at zero error the gradient is 0, as TensorFlow's sign.
use super::{per_element_mean, values_per_row, LossFunction};
use crate::error::Result;
use crate::layers::OutputGrad;
use crate::model::ModelOutput;
use candle_core::Tensor;

pub struct MeanAbsoluteError;

impl LossFunction for MeanAbsoluteError {
    fn name(&self) -> &str {
        "mean_absolute_error"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        per_element_mean(&out.value.sub(y)?.abs()?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let p = &out.value;
        let n = total_rows as f64 * values_per_row(p)?;
        Ok(OutputGrad::Value(((p - y)?.sign()? / n)?))
    }
}
