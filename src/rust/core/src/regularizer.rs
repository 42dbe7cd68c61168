//! Weight regularizers (Keras's L1, L2, L1L2): `l1 * sum(|w|) + l2 * sum(w^2)` added to the
//! loss, as Keras adds a layer's regularization losses to the total loss it minimizes and
//! reports; their gradient joins the weight's gradient before the optimizer's update.
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Regularizer {
    pub l1: f64,
    pub l2: f64,
}

impl Regularizer {
    fn check(self) -> Result<Self> {
        for (v, what) in [(self.l1, "l1"), (self.l2, "l2")] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Value(format!("regularizer `{}` must be a number >= 0, got {}", what, v)));
            }
        }
        Ok(self)
    }

    /// The penalty for weight values `w`.
    pub fn penalty(&self, w: &[f32]) -> f64 {
        let (mut abs, mut sq) = (0f64, 0f64);
        for v in w {
            abs += v.abs() as f64;
            sq += (*v as f64) * (*v as f64);
        }
        self.l1 * abs + self.l2 * sq
    }

    /// The penalty's gradient at `w`, added to `g` (f32, as the loss's own gradient).
    #[inline]
    pub fn add_gradient(&self, w: &[f32], g: &mut [f32]) {
        let (l1, two_l2) = (self.l1 as f32, (2.0 * self.l2) as f32);
        for (g, w) in g.iter_mut().zip(w) {
            let sign = if *w > 0.0 {
                1.0
            } else if *w < 0.0 {
                -1.0
            } else {
                0.0
            };
            *g += l1 * sign + two_l2 * w;
        }
    }
}

impl Regularizer {
    /// As an activity regularizer on a layer's output `x`: the penalty divided by `rows` (Keras
    /// divides by the batch size) and its gradient with respect to `x`.
    pub fn on_tensor(&self, x: &candle_core::Tensor, rows: f64) -> Result<(f64, candle_core::Tensor)> {
        let x64 = x.to_dtype(candle_core::DType::F64)?;
        let penalty = (self.l1 * x64.abs()?.sum_all()?.to_scalar::<f64>()? + self.l2 * x64.sqr()?.sum_all()?.to_scalar::<f64>()?) / rows;
        // d/dx: l1 * sign(x) + 2 * l2 * x (sign(0) = 0, as tf.sign).
        let sign = (x.gt(0f32)?.to_dtype(x.dtype())? - x.lt(0f32)?.to_dtype(x.dtype())?)?;
        let grad = ((sign * (self.l1 / rows))? + (x * (2.0 * self.l2 / rows))?)?;
        Ok((penalty, grad))
    }
}

/// Keras's serialized forms: `{"class_name": "L1L2" | "L1" | "L2", "config": {...}}` (also
/// Keras 2's lower-case names).
impl<'de> Deserialize<'de> for Regularizer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = Value::deserialize(d)?;
        let class = v.get("class_name").and_then(Value::as_str).ok_or_else(|| D::Error::custom(format!("not a regularizer: {}", v)))?;
        let num = |k: &str| v.get("config").and_then(|c| c.get(k)).and_then(Value::as_f64);
        let r = match class {
            "L1L2" | "l1_l2" => Regularizer { l1: num("l1").unwrap_or(0.0), l2: num("l2").unwrap_or(0.0) },
            "L1" | "l1" => Regularizer { l1: num("l1").or(num("l")).unwrap_or(0.01), l2: 0.0 },
            "L2" | "l2" => Regularizer { l1: 0.0, l2: num("l2").or(num("l")).unwrap_or(0.01) },
            other => return Err(D::Error::custom(format!("unsupported regularizer \"{}\": expected L1, L2 or L1L2", other))),
        };
        r.check().map_err(D::Error::custom)
    }
}

impl Serialize for Regularizer {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let v = match (self.l1 != 0.0, self.l2 != 0.0) {
            (true, false) => json!({ "module": "keras.regularizers", "class_name": "L1", "config": { "l1": self.l1 }, "registered_name": null }),
            (false, true) => json!({ "module": "keras.regularizers", "class_name": "L2", "config": { "l2": self.l2 }, "registered_name": null }),
            _ => json!({ "module": "keras.regularizers", "class_name": "L1L2", "config": { "l1": self.l1, "l2": self.l2 }, "registered_name": null }),
        };
        v.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_gradient_matches_finite_differences_and_configs_round_trip() {
        let r = Regularizer { l1: 0.3, l2: 0.7 };
        let w = [0.5f32, -1.25, 2.0];
        let mut g = [0f32; 3];
        r.add_gradient(&w, &mut g);
        for i in 0..3 {
            let h = 1e-3f32;
            let (mut a, mut b) = (w, w);
            a[i] += h;
            b[i] -= h;
            let num = (r.penalty(&a) - r.penalty(&b)) / (2.0 * h as f64);
            assert!((num - g[i] as f64).abs() < 1e-3, "{}: {} vs {}", i, g[i], num);
        }
        for r in [Regularizer { l1: 0.01, l2: 0.0 }, Regularizer { l1: 0.0, l2: 0.02 }, r] {
            let back: Regularizer = serde_json::from_value(serde_json::to_value(r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
        assert!(serde_json::from_value::<Regularizer>(json!({"class_name": "L2", "config": {"l2": -1}})).is_err());
        assert!(serde_json::from_value::<Regularizer>(json!({"class_name": "OrthogonalRegularizer"})).is_err());
    }
}
