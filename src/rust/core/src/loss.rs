//! Keras losses, per sample, with tf.keras's numerics: when the model ends in softmax
//! (sigmoid) the crossentropy is computed from the logits; otherwise probabilities are
//! clipped to [1e-7, 1 - 1e-7] as `keras.backend` does.
use crate::activation::Activation;
use crate::error::{Error, Result};
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

pub const LOSS_NAMES: &[&str] = &[
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "binary_crossentropy",
    "mean_squared_error",
    "mse",
    "mean_absolute_error",
    "mae",
];

impl Loss {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "categorical_crossentropy" => Loss::CategoricalCrossentropy,
            "sparse_categorical_crossentropy" => Loss::SparseCategoricalCrossentropy,
            "binary_crossentropy" => Loss::BinaryCrossentropy,
            "mean_squared_error" | "mse" => Loss::MeanSquaredError,
            "mean_absolute_error" | "mae" => Loss::MeanAbsoluteError,
            other => {
                return Err(Error::Value(format!(
                    "unknown loss \"{}\": expected one of {}",
                    other,
                    LOSS_NAMES.join(", ")
                )))
            }
        })
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
                        crate::model::join_dims(output_shape)
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
                    Some((z, Activation::Sigmoid)) => {
                        ((z.relu()? - z.mul(y)?)? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?
                    }
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

/// (batch, ...) -> (batch, rest) so that means run over every non-batch element.
fn flatten_rows(t: &Tensor) -> Result<Tensor> {
    let b = t.dim(0)?;
    Ok(t.reshape((b, t.elem_count() / b.max(1)))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_gradient;
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

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let y = Tensor::new(&[[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0]], &dev).unwrap();
        let yb = Tensor::new(&[[0.0f32, 1.0, 1.0], [1.0, 0.0, 0.0]], &dev).unwrap();
        check_gradient(&[2, 3], |z| Loss::CategoricalCrossentropy.per_sample(&softmax_output(z), &y), 1e-2);
        check_gradient(
            &[2, 3],
            |z| {
                let out = ModelOutput { value: Activation::Sigmoid.apply(z)?, logits: Some((z.clone(), Activation::Sigmoid)) };
                Loss::BinaryCrossentropy.per_sample(&out, &yb)
            },
            1e-2,
        );
        check_gradient(
            &[2, 3],
            |z| {
                let out = ModelOutput { value: Activation::Sigmoid.apply(z)?, logits: None };
                Loss::BinaryCrossentropy.per_sample(&out, &yb)
            },
            1e-2,
        );
        check_gradient(&[2, 3], |z| Loss::MeanSquaredError.per_sample(&ModelOutput::plain(z.clone()), &y), 1e-2);
        check_gradient(&[2, 3], |z| Loss::MeanAbsoluteError.per_sample(&ModelOutput::plain(z.clone()), &y), 1e-2);
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
