//! Keras losses, per sample, with tf.keras's numerics: when the model ends in softmax
//! (sigmoid) the crossentropy is computed from the logits; otherwise probabilities are
//! clipped to [1e-7, 1 - 1e-7] as `keras.backend` does.
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::layers::OutputGrad;
use crate::model::ModelOutput;
use crate::tensor::HostTensor;
use candle_core::{Tensor, D};

/// Keras's `backend.epsilon()`.
pub const EPSILON: f64 = 1e-7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    BinaryCrossentropy,
    MeanSquaredError,
    MeanAbsoluteError,
}

pub const LOSS_NAMES: &[&str] =
    &["categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy", "mean_squared_error", "mse", "mean_absolute_error", "mae"];

impl Loss {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "categorical_crossentropy" => Loss::CategoricalCrossentropy,
            "sparse_categorical_crossentropy" => Loss::SparseCategoricalCrossentropy,
            "binary_crossentropy" => Loss::BinaryCrossentropy,
            "mean_squared_error" | "mse" => Loss::MeanSquaredError,
            "mean_absolute_error" | "mae" => Loss::MeanAbsoluteError,
            other => return Err(Error::Value(format!("unknown loss \"{}\": expected one of {}", other, LOSS_NAMES.join(", ")))),
        })
    }

    /// Keras's name for the loss.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
        }
    }

    /// Checks targets against the model's output shape and converts them to what
    /// `per_sample` expects (sparse class ids become one-hot rows). Runs on the host, once per batch.
    pub fn prepare_targets(&self, y: &HostTensor, output_shape: &[usize]) -> Result<HostTensor> {
        let units: usize = output_shape.iter().product();
        match self {
            Loss::SparseCategoricalCrossentropy => {
                if y.row_len() != 1 {
                    return Err(Error::Value(format!(
                        "sparse_categorical_crossentropy needs `y` as one class index per sample (a vector), got {} values per sample",
                        y.row_len()
                    )));
                }
                let mut data = vec![0f32; y.rows() * units];
                for (i, v) in y.data.iter().enumerate() {
                    if *v < 0.0 || v.fract() != 0.0 || *v as usize >= units {
                        return Err(Error::Value(format!(
                            "`y` holds class index {} but the model has {} outputs: class indices must be integers in 0..{}",
                            v,
                            units,
                            units - 1
                        )));
                    }
                    data[i * units + *v as usize] = 1.0;
                }
                let mut shape = vec![y.rows()];
                shape.extend_from_slice(output_shape);
                HostTensor::new(shape, data)
            }
            _ => {
                if y.row_len() != units {
                    return Err(Error::Value(format!(
                        "`y` has {} values per sample but the model outputs {} (shape ({}))",
                        y.row_len(),
                        units,
                        crate::shape::join_dims(output_shape)
                    )));
                }
                let mut shape = vec![y.rows()];
                shape.extend_from_slice(output_shape);
                HostTensor::new(shape, y.data.clone())
            }
        }
    }

    /// Loss of each sample, shape (batch,).
    pub fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let per_element_mean = |t: Tensor| -> Result<Tensor> { Ok(flatten_rows(&t)?.mean(D::Minus1)?) };
        match self {
            Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => {
                let ll = match &out.logits {
                    Some((z, Activation::Softmax)) => candle_nn::ops::log_softmax(z, D::Minus1)?,
                    _ => {
                        let p = out.value.broadcast_div(&out.value.sum_keepdim(D::Minus1)?)?;
                        p.clamp(EPSILON as f32, 1.0 - EPSILON as f32)?.log()?
                    }
                };
                let l = y.mul(&ll)?.sum(D::Minus1)?.neg()?;
                per_element_mean(l.unsqueeze(D::Minus1)?)
            }
            Loss::BinaryCrossentropy => {
                let l = match &out.logits {
                    // sigmoid_cross_entropy_with_logits: max(z, 0) - z*y + log(1 + exp(-|z|))
                    Some((z, Activation::Sigmoid)) => ((z.relu()? - z.mul(y)?)? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?,
                    _ => {
                        let p = out.value.clamp(EPSILON as f32, 1.0 - EPSILON as f32)?;
                        let pos = y.mul(&(p.clone() + EPSILON)?.log()?)?;
                        let neg = y.affine(-1.0, 1.0)?.mul(&(p.affine(-1.0, 1.0)? + EPSILON)?.log()?)?;
                        (pos + neg)?.neg()?
                    }
                };
                per_element_mean(l)
            }
            Loss::MeanSquaredError => per_element_mean(out.value.sub(y)?.sqr()?),
            Loss::MeanAbsoluteError => per_element_mean(out.value.sub(y)?.abs()?),
        }
    }
}

impl Loss {
    /// Gradient of `sum(per_sample) / total_rows` (the batch mean, when this is one
    /// replica's part of a batch of `total_rows`). With a softmax (sigmoid) output and a
    /// crossentropy loss the gradient is taken at the logits, as tf.keras differentiates it.
    pub fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let p = &out.value;
        let b = p.dim(0)?;
        let per_row = (p.elem_count() / b.max(1)) as f64;
        let n = total_rows as f64;
        let in_clip_range = |t: &Tensor| -> Result<Tensor> {
            let lo = t.ge(EPSILON as f32)?.to_dtype(t.dtype())?;
            let hi = t.le((1.0 - EPSILON) as f32)?.to_dtype(t.dtype())?;
            Ok(lo.mul(&hi)?)
        };
        Ok(match self {
            Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => match &out.logits {
                // d/dz of -sum(y * log_softmax(z)) = softmax(z) * sum(y) - y
                Some((_, Activation::Softmax)) => {
                    let total = y.sum_keepdim(D::Minus1)?;
                    OutputGrad::Logits(((p.broadcast_mul(&total)? - y)? / n)?)
                }
                _ => {
                    // Through q = p / sum(p) and the clip: dL/dq = -y / q inside the clip range.
                    let s = p.sum_keepdim(D::Minus1)?;
                    let q = p.broadcast_div(&s)?;
                    let qc = q.clamp(EPSILON as f32, (1.0 - EPSILON) as f32)?;
                    let dq = y.div(&qc)?.neg()?.mul(&in_clip_range(&q)?)?;
                    let dot = dq.mul(&q)?.sum_keepdim(D::Minus1)?;
                    OutputGrad::Value((dq.broadcast_sub(&dot)?.broadcast_div(&s)? / n)?)
                }
            },
            Loss::BinaryCrossentropy => match &out.logits {
                Some((_, Activation::Sigmoid)) => OutputGrad::Logits(((p - y)? / (n * per_row))?),
                _ => {
                    let pc = p.clamp(EPSILON as f32, (1.0 - EPSILON) as f32)?;
                    let pos = y.div(&(pc.clone() + EPSILON)?)?;
                    let neg = y.affine(-1.0, 1.0)?.div(&(pc.affine(-1.0, 1.0)? + EPSILON)?)?;
                    let d = (neg - pos)?.mul(&in_clip_range(p)?)?;
                    OutputGrad::Value((d / (n * per_row))?)
                }
            },
            Loss::MeanSquaredError => OutputGrad::Value(((p - y)? * (2.0 / (n * per_row)))?),
            Loss::MeanAbsoluteError => OutputGrad::Value(((p - y)?.sign()? / (n * per_row))?),
        })
    }
}

/// (batch, ...) -> (batch, rest) so that means run over every non-batch element.
fn flatten_rows(t: &Tensor) -> Result<Tensor> {
    let b = t.dim(0)?;
    Ok(t.reshape((b, t.elem_count() / b.max(1)))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;

    fn softmax_output(z: &Tensor) -> ModelOutput {
        ModelOutput { value: Activation::Softmax.apply(z).unwrap(), logits: Some((z.clone(), Activation::Softmax)) }
    }

    #[test]
    fn crossentropy_from_logits_equals_from_probabilities() {
        let dev = Device::Cpu;
        let z = Tensor::new(&[[1.0f32, 2.0, 0.5], [0.1, -1.0, 2.0]], &dev).unwrap();
        let y = Tensor::new(&[[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0]], &dev).unwrap();
        let from_logits = Loss::CategoricalCrossentropy.per_sample(&softmax_output(&z), &y).unwrap();
        let probs = ModelOutput { value: Activation::Softmax.apply(&z).unwrap(), logits: None };
        let from_probs = Loss::CategoricalCrossentropy.per_sample(&probs, &y).unwrap();
        let a = from_logits.to_vec1::<f32>().unwrap();
        let b = from_probs.to_vec1::<f32>().unwrap();
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-5);
        }
        let expected0 = -((2.0f64).exp() / (1f64.exp() + 2f64.exp() + 0.5f64.exp())).ln();
        assert!((a[0] as f64 - expected0).abs() < 1e-5);
    }

    /// Checks `gradient` against finite differences of the mean loss, with respect to the
    /// logits (fused cases) or to the output values.
    fn check_loss(loss: Loss, y: &Tensor, output: impl Fn(&Tensor) -> ModelOutput) {
        let rows = y.dim(0).unwrap();
        check_backward(
            y.dims(),
            |z| Ok((loss.per_sample(&output(z), y)?.sum_all()? / rows as f64)?.reshape(1)?),
            |z, w| {
                let scale = w.flatten_all()?.to_vec1::<f32>()?[0] as f64;
                let g = match loss.gradient(&output(z), y, rows)? {
                    OutputGrad::Logits(g) | OutputGrad::Value(g) => g,
                };
                Ok((g * scale)?)
            },
            1e-2,
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let y = Tensor::new(&[[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0]], &dev).unwrap();
        let yb = Tensor::new(&[[0.0f32, 1.0, 1.0], [1.0, 0.0, 0.0]], &dev).unwrap();
        let sigmoid_out = |z: &Tensor| ModelOutput { value: Activation::Sigmoid.apply(z).unwrap(), logits: Some((z.clone(), Activation::Sigmoid)) };
        // Probabilities (not logits) in (0, 1) for the unfused paths.
        let probs = |z: &Tensor| ModelOutput::plain(Activation::Sigmoid.apply(z).unwrap());
        let plain = |z: &Tensor| ModelOutput::plain(z.clone());
        check_loss(Loss::CategoricalCrossentropy, &y, softmax_output);
        check_loss(Loss::BinaryCrossentropy, &yb, sigmoid_out);
        check_loss(Loss::MeanSquaredError, &y, plain);
        check_loss(Loss::MeanAbsoluteError, &y, plain);
        // Unfused: the gradient is with respect to the probabilities, so vary those directly.
        let p0 = probs(&Tensor::new(&[[0.3f32, -1.0, 0.8], [1.2, 0.1, -0.4]], &dev).unwrap()).value;
        for loss in [Loss::CategoricalCrossentropy, Loss::BinaryCrossentropy] {
            let target = if loss == Loss::BinaryCrossentropy { &yb } else { &y };
            let f = |p: &Tensor| -> f32 {
                (loss.per_sample(&ModelOutput::plain(p.clone()), target).unwrap().sum_all().unwrap() / 2.0).unwrap().to_scalar::<f32>().unwrap()
            };
            let OutputGrad::Value(g) = loss.gradient(&ModelOutput::plain(p0.clone()), target, 2).unwrap() else { panic!() };
            let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let base = p0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for i in 0..base.len() {
                let h = 1e-3;
                let mut a = base.clone();
                a[i] += h;
                let mut b = base.clone();
                b[i] -= h;
                let num = (f(&Tensor::from_vec(a, (2, 3), &dev).unwrap()) - f(&Tensor::from_vec(b, (2, 3), &dev).unwrap())) / (2.0 * h);
                assert!((num - g[i]).abs() < 2e-2 * num.abs().max(1.0), "{:?} at {}: {} vs {}", loss, i, g[i], num);
            }
        }
    }

    #[test]
    fn sparse_targets_become_one_hot_and_bad_ids_are_rejected() {
        let y = HostTensor::new(vec![3, 1], vec![2.0, 0.0, 1.0]).unwrap();
        let t = Loss::SparseCategoricalCrossentropy.prepare_targets(&y, &[3]).unwrap();
        assert_eq!(t.data, vec![0., 0., 1., 1., 0., 0., 0., 1., 0.]);
        let bad = HostTensor::new(vec![1, 1], vec![3.0]).unwrap();
        assert!(Loss::SparseCategoricalCrossentropy.prepare_targets(&bad, &[3]).is_err());
    }
}
