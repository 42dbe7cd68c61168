//! Learning-rate schedules (tf-keras's `keras.optimizers.schedules`): the learning rate as a
//! function of the optimizer's step (its iterations before the update), computed in f32 as
//! TensorFlow does. An optimizer's `learning_rate` is a number or one of these, written in a
//! saved config as Keras writes it.
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    ExponentialDecay { initial_learning_rate: f64, decay_steps: f64, decay_rate: f64, staircase: bool },
    InverseTimeDecay { initial_learning_rate: f64, decay_steps: f64, decay_rate: f64, staircase: bool },
    PiecewiseConstantDecay { boundaries: Vec<f64>, values: Vec<f64> },
    PolynomialDecay { initial_learning_rate: f64, decay_steps: f64, end_learning_rate: f64, power: f64, cycle: bool },
    CosineDecay { initial_learning_rate: f64, decay_steps: f64, alpha: f64 },
}

impl Schedule {
    /// The learning rate at `step`.
    pub fn at(&self, step: u64) -> f32 {
        let step = step as f32;
        match *self {
            Schedule::ExponentialDecay { initial_learning_rate, decay_steps, decay_rate, staircase } => {
                let mut p = step / decay_steps as f32;
                if staircase {
                    p = p.floor();
                }
                initial_learning_rate as f32 * (decay_rate as f32).powf(p)
            }
            Schedule::InverseTimeDecay { initial_learning_rate, decay_steps, decay_rate, staircase } => {
                let mut p = step / decay_steps as f32;
                if staircase {
                    p = p.floor();
                }
                initial_learning_rate as f32 / (1.0 + decay_rate as f32 * p)
            }
            Schedule::PiecewiseConstantDecay { ref boundaries, ref values } => {
                let i = boundaries.iter().position(|b| step <= *b as f32).unwrap_or(boundaries.len());
                values[i] as f32
            }
            Schedule::PolynomialDecay { initial_learning_rate, decay_steps, end_learning_rate, power, cycle } => {
                let (mut steps, mut s) = (decay_steps as f32, step);
                if cycle {
                    let multiplier = if s == 0.0 { 1.0 } else { (s / steps).ceil() };
                    steps *= multiplier;
                } else {
                    s = s.min(steps);
                }
                let (init, end) = (initial_learning_rate as f32, end_learning_rate as f32);
                (init - end) * (1.0 - s / steps).powf(power as f32) + end
            }
            Schedule::CosineDecay { initial_learning_rate, decay_steps, alpha } => {
                let s = step.min(decay_steps as f32);
                let cosine = 0.5 * (1.0 + (std::f32::consts::PI * s / decay_steps as f32).cos());
                initial_learning_rate as f32 * ((1.0 - alpha as f32) * cosine + alpha as f32)
            }
        }
    }

    /// The rate at the first step.
    pub fn initial(&self) -> f64 {
        self.at(0) as f64
    }

    fn check(self) -> Result<Self> {
        let positive =
            |v: f64, what: &str| if v.is_finite() && v > 0.0 { Ok(()) } else { Err(Error::Value(format!("`{}` must be a positive number, got {}", what, v))) };
        match &self {
            Schedule::ExponentialDecay { initial_learning_rate, decay_steps, decay_rate, .. }
            | Schedule::InverseTimeDecay { initial_learning_rate, decay_steps, decay_rate, .. } => {
                positive(*initial_learning_rate, "initial_learning_rate")?;
                positive(*decay_steps, "decay_steps")?;
                positive(*decay_rate, "decay_rate")?;
            }
            Schedule::PiecewiseConstantDecay { boundaries, values } => {
                if values.len() != boundaries.len() + 1 || boundaries.windows(2).any(|w| w[0] > w[1]) {
                    return Err(Error::Value("`values` must have one entry more than `boundaries`, which must be increasing".into()));
                }
                values.iter().try_for_each(|v| positive(*v, "values"))?;
            }
            Schedule::PolynomialDecay { initial_learning_rate, decay_steps, .. } | Schedule::CosineDecay { initial_learning_rate, decay_steps, .. } => {
                positive(*initial_learning_rate, "initial_learning_rate")?;
                positive(*decay_steps, "decay_steps")?;
            }
        }
        Ok(self)
    }

    fn class_name(&self) -> &'static str {
        match self {
            Schedule::ExponentialDecay { .. } => "ExponentialDecay",
            Schedule::InverseTimeDecay { .. } => "InverseTimeDecay",
            Schedule::PiecewiseConstantDecay { .. } => "PiecewiseConstantDecay",
            Schedule::PolynomialDecay { .. } => "PolynomialDecay",
            Schedule::CosineDecay { .. } => "CosineDecay",
        }
    }

    fn config(&self) -> Value {
        match self {
            Schedule::ExponentialDecay { initial_learning_rate, decay_steps, decay_rate, staircase }
            | Schedule::InverseTimeDecay { initial_learning_rate, decay_steps, decay_rate, staircase } => {
                json!({ "initial_learning_rate": initial_learning_rate, "decay_steps": decay_steps, "decay_rate": decay_rate, "staircase": staircase, "name": null })
            }
            Schedule::PiecewiseConstantDecay { boundaries, values } => json!({ "boundaries": boundaries, "values": values, "name": null }),
            Schedule::PolynomialDecay { initial_learning_rate, decay_steps, end_learning_rate, power, cycle } => json!({
                "initial_learning_rate": initial_learning_rate, "decay_steps": decay_steps, "end_learning_rate": end_learning_rate,
                "power": power, "cycle": cycle, "name": null
            }),
            Schedule::CosineDecay { initial_learning_rate, decay_steps, alpha } => {
                json!({ "initial_learning_rate": initial_learning_rate, "decay_steps": decay_steps, "alpha": alpha, "name": null, "warmup_target": null, "warmup_steps": 0 })
            }
        }
    }

    /// From Keras's `{"class_name", "config"}`.
    pub fn from_config(v: &Value) -> Result<Self> {
        let class = v.get("class_name").and_then(Value::as_str).ok_or_else(|| Error::Value(format!("not a learning-rate schedule: {}", v)))?;
        let c = v.get("config").cloned().unwrap_or(json!({}));
        let num = |k: &str, default: Option<f64>| -> Result<f64> {
            c.get(k).and_then(Value::as_f64).or(default).ok_or_else(|| Error::Value(format!("{} needs `{}`", class, k)))
        };
        let flag = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
        let list = |k: &str| -> Result<Vec<f64>> {
            c.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .ok_or_else(|| Error::Value(format!("{} needs `{}`", class, k)))
        };
        let s = match class {
            "ExponentialDecay" => Schedule::ExponentialDecay {
                initial_learning_rate: num("initial_learning_rate", None)?,
                decay_steps: num("decay_steps", None)?,
                decay_rate: num("decay_rate", None)?,
                staircase: flag("staircase"),
            },
            "InverseTimeDecay" => Schedule::InverseTimeDecay {
                initial_learning_rate: num("initial_learning_rate", None)?,
                decay_steps: num("decay_steps", None)?,
                decay_rate: num("decay_rate", None)?,
                staircase: flag("staircase"),
            },
            "PiecewiseConstantDecay" => Schedule::PiecewiseConstantDecay { boundaries: list("boundaries")?, values: list("values")? },
            "PolynomialDecay" => Schedule::PolynomialDecay {
                initial_learning_rate: num("initial_learning_rate", None)?,
                decay_steps: num("decay_steps", None)?,
                end_learning_rate: num("end_learning_rate", Some(1e-4))?,
                power: num("power", Some(1.0))?,
                cycle: flag("cycle"),
            },
            "CosineDecay" => Schedule::CosineDecay {
                initial_learning_rate: num("initial_learning_rate", None)?,
                decay_steps: num("decay_steps", None)?,
                alpha: num("alpha", Some(0.0))?,
            },
            other => return Err(Error::Value(format!("unsupported learning-rate schedule \"{}\"", other))),
        };
        s.check()
    }
}

/// An optimizer's learning rate: a number or a schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum LearningRate {
    Constant(f64),
    Schedule(Schedule),
}

impl LearningRate {
    pub fn at(&self, step: u64) -> f32 {
        match self {
            LearningRate::Constant(v) => *v as f32,
            LearningRate::Schedule(s) => s.at(step),
        }
    }
}

impl Serialize for LearningRate {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            LearningRate::Constant(v) => v.serialize(s),
            LearningRate::Schedule(sch) => {
                json!({ "module": "keras.optimizers.schedules", "class_name": sch.class_name(), "config": sch.config(), "registered_name": null }).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for LearningRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = Value::deserialize(d)?;
        match &v {
            Value::Number(n) => Ok(LearningRate::Constant(n.as_f64().unwrap_or(f64::NAN))),
            Value::Object(_) => Schedule::from_config(&v).map(LearningRate::Schedule).map_err(D::Error::custom),
            other => Err(D::Error::custom(format!("a learning rate is a number or a schedule, not {}", other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_tf_keras_formulas_and_round_trip() {
        let e = Schedule::ExponentialDecay { initial_learning_rate: 0.1, decay_steps: 10.0, decay_rate: 0.5, staircase: false };
        assert!((e.at(10) - 0.05).abs() < 1e-7 && (e.at(5) - 0.1 * 0.5f32.sqrt()).abs() < 1e-7);
        let s = Schedule::ExponentialDecay { initial_learning_rate: 0.1, decay_steps: 10.0, decay_rate: 0.5, staircase: true };
        assert_eq!(s.at(9), 0.1);
        let p = Schedule::PiecewiseConstantDecay { boundaries: vec![2.0, 5.0], values: vec![1.0, 0.5, 0.1] };
        assert_eq!((p.at(2), p.at(3), p.at(6)), (1.0, 0.5, 0.1));
        let c = Schedule::CosineDecay { initial_learning_rate: 1.0, decay_steps: 4.0, alpha: 0.0 };
        assert!((c.at(2) - 0.5).abs() < 1e-6 && c.at(10).abs() < 1e-6);
        let poly = Schedule::PolynomialDecay { initial_learning_rate: 1.0, decay_steps: 4.0, end_learning_rate: 0.0, power: 1.0, cycle: false };
        assert!((poly.at(1) - 0.75).abs() < 1e-6);
        for sch in [e, p, c, poly] {
            let lr = LearningRate::Schedule(sch);
            let back: LearningRate = serde_json::from_value(serde_json::to_value(&lr).unwrap()).unwrap();
            assert_eq!(back, lr);
        }
        assert!(Schedule::from_config(
            &json!({"class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 0, "decay_rate": 0.5}})
        )
        .is_err());
    }
}
