//! Keras activations, forward and backward (the backward passes are our own, checked
//! against finite differences in the tests below).
use crate::error::{Error, Result};
use candle_core::{Tensor, D};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
    Elu,
    Selu,
    Softplus,
    Gelu,
    /// Keras 2's piecewise-linear sigmoid, `clip(0.2 x + 0.5, 0, 1)` (R keras 2.2's
    /// recurrent default).
    HardSigmoid,
    /// `x / (1 + |x|)`.
    Softsign,
    Exponential,
}

pub const ACTIVATION_NAMES: &[&str] =
    &["linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus", "gelu", "hard_sigmoid", "softsign", "exponential"];

// Keras's SELU constants (tf.keras.activations.selu).
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

impl Activation {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "linear" | "" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax,
            "elu" => Activation::Elu,
            "selu" => Activation::Selu,
            "softplus" => Activation::Softplus,
            "gelu" => Activation::Gelu,
            "hard_sigmoid" => Activation::HardSigmoid,
            "softsign" => Activation::Softsign,
            "exponential" => Activation::Exponential,
            other => return Err(Error::Value(format!("unknown activation \"{}\": expected one of {}", other, ACTIVATION_NAMES.join(", ")))),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::Elu => "elu",
            Activation::Selu => "selu",
            Activation::Softplus => "softplus",
            Activation::Gelu => "gelu",
            Activation::HardSigmoid => "hard_sigmoid",
            Activation::Softsign => "softsign",
            Activation::Exponential => "exponential",
        }
    }

    /// Whether a loss may work on this activation's input (the logits) instead of its output,
    /// as tf.keras does when the final op is a Softmax or Sigmoid.
    pub fn has_logits(&self) -> bool {
        matches!(self, Activation::Softmax | Activation::Sigmoid)
    }

    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Linear => x.clone(),
            Activation::Relu => crate::kernels::relu(x)?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
            Activation::Tanh => x.tanh()?,
            Activation::Softmax => candle_nn::ops::softmax(x, D::Minus1)?,
            Activation::Elu => x.elu(1.0)?,
            Activation::Selu => (x.elu(SELU_ALPHA)? * SELU_SCALE)?,
            // Stable softplus: max(x, 0) + log1p(exp(-|x|)).
            Activation::Softplus => (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?,
            // Keras's default gelu is the exact (erf) form.
            Activation::Gelu => x.gelu_erf()?,
            Activation::HardSigmoid => x.affine(0.2, 0.5)?.clamp(0f32, 1f32)?,
            Activation::Softsign => x.div(&(x.abs()? + 1.0)?)?,
            Activation::Exponential => x.exp()?,
        })
    }

    /// Gradient with respect to the input `z`, given the output `y = apply(z)` and the
    /// gradient `dy` with respect to `y`.
    pub fn backward(&self, z: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let mask = |t: Tensor| -> Result<Tensor> { Ok(t.to_dtype(dy.dtype())?) };
        Ok(match self {
            Activation::Linear => dy.clone(),
            // TensorFlow's ReluGrad passes the gradient where the input is > 0.
            Activation::Relu => crate::kernels::relu_backward(z, dy)?,
            Activation::Sigmoid => dy.mul(&y.mul(&y.affine(-1.0, 1.0)?)?)?,
            Activation::Tanh => dy.mul(&y.sqr()?.affine(-1.0, 1.0)?)?,
            Activation::Softmax => {
                let dot = dy.mul(y)?.sum_keepdim(D::Minus1)?;
                y.mul(&dy.broadcast_sub(&dot)?)?
            }
            // elu'(z) = 1 for z > 0, else exp(z) = y + 1.
            Activation::Elu => {
                let positive = mask(z.gt(0f32)?)?;
                let negative_slope = (y + 1.0)?.mul(&positive.affine(-1.0, 1.0)?)?;
                dy.mul(&(positive + negative_slope)?)?
            }
            // selu'(z) = scale for z > 0, else scale * alpha * exp(z) = y + scale * alpha.
            Activation::Selu => {
                let positive = mask(z.gt(0f32)?)?;
                let negative_slope = (y + SELU_SCALE * SELU_ALPHA)?.mul(&positive.affine(-1.0, 1.0)?)?;
                dy.mul(&((positive * SELU_SCALE)? + negative_slope)?)?
            }
            Activation::Softplus => dy.mul(&candle_nn::ops::sigmoid(z)?)?,
            // 0.2 on the linear piece (-2.5, 2.5), 0 where clipped.
            Activation::HardSigmoid => {
                let inside = mask(z.gt(-2.5f32)?)?.mul(&mask(z.lt(2.5f32)?)?)?;
                dy.mul(&(inside * 0.2)?)?
            }
            // softsign'(z) = 1 / (1 + |z|)^2.
            Activation::Softsign => dy.div(&(z.abs()? + 1.0)?.sqr()?)?,
            Activation::Exponential => dy.mul(y)?,
            // d/dz [z * Phi(z)] = Phi(z) + z * phi(z).
            Activation::Gelu => {
                let cdf = ((z / std::f64::consts::SQRT_2)?.erf()? + 1.0)?.affine(0.5, 0.0)?;
                let pdf = (z.sqr()? * -0.5)?.exp()?.affine(1.0 / (2.0 * std::f64::consts::PI).sqrt(), 0.0)?;
                dy.mul(&(cdf + z.mul(&pdf)?)?)?
            }
        })
    }
}

/// A layer's `activation(x · w + bias)`: the pre-activation and the output. ReLU is applied
/// in the product's buffer; the pre-activation returned is then the output itself (ReLU's
/// gradient only asks whether it is > 0, the same for both).
pub fn linear_then(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, activation: Activation) -> Result<(Tensor, Tensor)> {
    if activation == Activation::Relu {
        let y = crate::kernels::linear(x, w, bias, true)?;
        return Ok((y.clone(), y));
    }
    let z = crate::kernels::linear(x, w, bias, false)?;
    let y = activation.apply(&z)?;
    Ok((z, y))
}

/// Keras writes an activation as its name; `null` reads as linear.
impl serde::Serialize for Activation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Activation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name: Option<String> = serde::Deserialize::deserialize(d)?;
        Activation::parse(name.as_deref().unwrap_or("linear")).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;

    #[test]
    fn forward_values_match_closed_forms() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::new(&[-2.0f32, -0.5, 0.0, 0.7, 3.0], &dev).unwrap();
        let xs: Vec<f64> = vec![-2.0, -0.5, 0.0, 0.7, 3.0];
        type ClosedForm = Box<dyn Fn(f64) -> f64>;
        let cases: Vec<(Activation, ClosedForm)> = vec![
            (Activation::Relu, Box::new(|v: f64| v.max(0.0))),
            (Activation::Sigmoid, Box::new(|v: f64| 1.0 / (1.0 + (-v).exp()))),
            (Activation::HardSigmoid, Box::new(|v: f64| (0.2 * v + 0.5).clamp(0.0, 1.0))),
            (Activation::Tanh, Box::new(|v: f64| v.tanh())),
            (Activation::Elu, Box::new(|v: f64| if v > 0.0 { v } else { v.exp() - 1.0 })),
            (Activation::Selu, Box::new(|v: f64| SELU_SCALE * if v > 0.0 { v } else { SELU_ALPHA * (v.exp() - 1.0) })),
            (Activation::Softplus, Box::new(|v: f64| (1.0 + v.exp()).ln())),
            (Activation::Gelu, Box::new(|v: f64| 0.5 * v * (1.0 + erf(v / 2f64.sqrt())))),
            (Activation::Softsign, Box::new(|v: f64| v / (1.0 + v.abs()))),
            (Activation::Exponential, Box::new(|v: f64| v.exp())),
        ];
        for (act, f) in cases {
            let y = act.apply(&x).unwrap().to_vec1::<f32>().unwrap();
            for (yi, xi) in y.iter().zip(&xs) {
                assert!((*yi as f64 - f(*xi)).abs() < 1e-5, "{:?} at {}: {} vs {}", act, xi, yi, f(*xi));
            }
        }
        let sm = Activation::Softmax.apply(&x).unwrap().to_vec1::<f32>().unwrap();
        let z: f64 = xs.iter().map(|v| v.exp()).sum();
        for (s, xi) in sm.iter().zip(&xs) {
            assert!((*s as f64 - xi.exp() / z).abs() < 1e-6);
        }
    }

    // Abramowitz-Stegun 7.1.26 is too coarse for 1e-5; use a series/continued form instead.
    fn erf(x: f64) -> f64 {
        // Taylor series, converges fast for |x| < 3.
        let mut sum = x;
        let mut term = x;
        for n in 1..60 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    #[test]
    fn gradients_match_finite_differences() {
        for name in ACTIVATION_NAMES {
            let act = Activation::parse(name).unwrap();
            check_backward(&[2, 5], |x| act.apply(x), |x, dy| act.backward(x, &act.apply(x)?, dy), 1e-2);
        }
    }
}
