//! Weight constraints (Keras's MaxNorm, NonNeg, UnitNorm, MinMaxNorm): a projection applied
//! to a weight after each optimizer update, as Keras's optimizers assign
//! `constraint(variable)` after applying the gradients. Norms are over `axis` of the weight's
//! own dimensions (0 is its first: a dense kernel's input axis, so each unit's incoming
//! weights), with Keras's epsilon (1e-7) in the denominators.
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

const EPSILON: f32 = 1e-7;

#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    MaxNorm { max_value: f64, axis: Vec<i64> },
    NonNeg,
    UnitNorm { axis: Vec<i64> },
    MinMaxNorm { min_value: f64, max_value: f64, rate: f64, axis: Vec<i64> },
}

impl Constraint {
    fn check(self) -> Result<Self> {
        let bad = |what: &str, v: f64| Err(Error::Value(format!("constraint `{}` must be a finite number >= 0, got {}", what, v)));
        match &self {
            Constraint::MaxNorm { max_value, .. } if !(max_value.is_finite() && *max_value >= 0.0) => bad("max_value", *max_value),
            Constraint::MinMaxNorm { min_value, max_value, rate, .. } => {
                for (v, what) in [(*min_value, "min_value"), (*max_value, "max_value"), (*rate, "rate")] {
                    if !(v.is_finite() && v >= 0.0) {
                        return bad(what, v);
                    }
                }
                if min_value > max_value {
                    return Err(Error::Value(format!("constraint `min_value` ({}) must not exceed `max_value` ({})", min_value, max_value)));
                }
                Ok(self)
            }
            _ => Ok(self),
        }
    }

    /// Whether the constraint's axes exist on a weight of `rank` dimensions.
    pub fn check_rank(&self, rank: usize) -> Result<()> {
        match self {
            Constraint::MaxNorm { axis, .. } | Constraint::UnitNorm { axis } | Constraint::MinMaxNorm { axis, .. } => normalized_axes(axis, rank).map(|_| ()),
            Constraint::NonNeg => Ok(()),
        }
    }

    /// The constrained values of a weight of `shape` holding `w` (row-major).
    pub fn apply(&self, shape: &[usize], w: &[f32]) -> Result<Vec<f32>> {
        let scale = |axis: &[i64], desired: &dyn Fn(f32) -> f32| -> Result<Vec<f32>> {
            let norms = norms_over(shape, w, axis)?;
            Ok(w.iter().zip(norms).map(|(v, n)| v * (desired(n) / (EPSILON + n))).collect())
        };
        match self {
            Constraint::NonNeg => Ok(w.iter().map(|v| if *v >= 0.0 { *v } else { 0.0 }).collect()),
            Constraint::MaxNorm { max_value, axis } => scale(axis, &|n| n.clamp(0.0, *max_value as f32)),
            Constraint::UnitNorm { axis } => scale(axis, &|_| 1.0),
            Constraint::MinMaxNorm { min_value, max_value, rate, axis } => {
                let (lo, hi, rate) = (*min_value as f32, *max_value as f32, *rate as f32);
                scale(axis, &|n| rate * n.clamp(lo, hi) + (1.0 - rate) * n)
            }
        }
    }
}

/// For each element of `w`, the L2 norm of the values sharing its position on every axis
/// not in `axis` (a reduction with keepdims, broadcast back).
fn norms_over(shape: &[usize], w: &[f32], axis: &[i64]) -> Result<Vec<f32>> {
    let mut reduced = vec![false; shape.len()];
    for k in normalized_axes(axis, shape.len())? {
        reduced[k] = true;
    }
    // Row-major strides; an element's group is its index with the reduced axes zeroed.
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let group = |mut index: usize| -> usize {
        let mut g = 0;
        for (d, s) in strides.iter().enumerate() {
            let coord = index / s;
            index %= s;
            if !reduced[d] {
                g += coord * s;
            }
        }
        g
    };
    let mut sums = vec![0f32; w.len()];
    for (i, v) in w.iter().enumerate() {
        sums[group(i)] += v * v;
    }
    Ok((0..w.len()).map(|i| sums[group(i)].sqrt()).collect())
}

/// `axis` as indices into a weight of `rank` dimensions (negative ones count from the end).
fn normalized_axes(axis: &[i64], rank: usize) -> Result<Vec<usize>> {
    let r = rank as i64;
    axis.iter()
        .map(|&a| {
            let k = if a < 0 { a + r } else { a };
            if (0..r).contains(&k) {
                Ok(k as usize)
            } else {
                Err(Error::Value(format!("constraint `axis` {} is out of range for a weight of rank {}", a, rank)))
            }
        })
        .collect()
}

fn axis_of(v: Option<&Value>) -> std::result::Result<Vec<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(vec![0]),
        Some(Value::Number(n)) => n.as_i64().map(|a| vec![a]).ok_or_else(|| format!("`axis` must be whole numbers, got {}", n)),
        Some(Value::Array(items)) => items.iter().map(|a| a.as_i64().ok_or_else(|| format!("`axis` must be whole numbers, got {}", a))).collect(),
        Some(other) => Err(format!("`axis` must be an integer or a list of integers, got {}", other)),
    }
}

/// Keras's serialized forms: `{"class_name": "MaxNorm" | "NonNeg" | "UnitNorm" | "MinMaxNorm",
/// "config": {...}}` (also Keras 2's snake-case aliases).
impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = Value::deserialize(d)?;
        let class = v.get("class_name").and_then(Value::as_str).ok_or_else(|| D::Error::custom(format!("not a constraint: {}", v)))?;
        let config = v.get("config");
        let num = |k: &str, default: f64| config.and_then(|c| c.get(k)).and_then(Value::as_f64).unwrap_or(default);
        let axis = || axis_of(config.and_then(|c| c.get("axis"))).map_err(D::Error::custom);
        let c = match class {
            "MaxNorm" | "max_norm" | "maxnorm" => Constraint::MaxNorm { max_value: num("max_value", 2.0), axis: axis()? },
            "NonNeg" | "non_neg" | "nonneg" => Constraint::NonNeg,
            "UnitNorm" | "unit_norm" | "unitnorm" => Constraint::UnitNorm { axis: axis()? },
            "MinMaxNorm" | "min_max_norm" | "minmaxnorm" => {
                Constraint::MinMaxNorm { min_value: num("min_value", 0.0), max_value: num("max_value", 1.0), rate: num("rate", 1.0), axis: axis()? }
            }
            other => return Err(D::Error::custom(format!("unsupported constraint \"{}\": expected MaxNorm, NonNeg, UnitNorm or MinMaxNorm", other))),
        };
        c.check().map_err(D::Error::custom)
    }
}

impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let axis = |a: &Vec<i64>| if a.len() == 1 { json!(a[0]) } else { json!(a) };
        let (class, config) = match self {
            Constraint::MaxNorm { max_value, axis: a } => ("MaxNorm", json!({ "max_value": max_value, "axis": axis(a) })),
            Constraint::NonNeg => ("NonNeg", json!({})),
            Constraint::UnitNorm { axis: a } => ("UnitNorm", json!({ "axis": axis(a) })),
            Constraint::MinMaxNorm { min_value, max_value, rate, axis: a } => {
                ("MinMaxNorm", json!({ "min_value": min_value, "max_value": max_value, "rate": rate, "axis": axis(a) }))
            }
        };
        json!({ "module": "keras.constraints", "class_name": class, "config": config, "registered_name": null }).serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> std::result::Result<Constraint, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn max_norm_scales_each_unit_down_to_the_limit_and_leaves_smaller_ones() {
        // A (2, 2) kernel: column 0 has norm 5, column 1 norm 1.
        let c = parse(json!({ "class_name": "MaxNorm", "config": { "max_value": 2.0, "axis": 0 } })).unwrap();
        let out = c.apply(&[2, 2], &[3.0, 0.6, 4.0, 0.8]).unwrap();
        let expect = [3.0 * 2.0 / (5.0 + EPSILON), 0.6 / (1.0 + EPSILON), 4.0 * 2.0 / (5.0 + EPSILON), 0.8 / (1.0 + EPSILON)];
        for (o, e) in out.iter().zip(expect) {
            assert!((o - e).abs() < 1e-6, "{:?}", out);
        }
    }

    #[test]
    fn unit_norm_over_several_axes_and_non_neg() {
        let c = parse(json!({ "class_name": "UnitNorm", "config": { "axis": [0, 1] } })).unwrap();
        let w: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        let out = c.apply(&[2, 2, 2], &w).unwrap();
        // Groups are the last axis: (1,3,5,7) and (2,4,6,8).
        let n0 = (1f32 + 9.0 + 25.0 + 49.0).sqrt();
        assert!((out[0] - 1.0 / (n0 + EPSILON)).abs() < 1e-7);
        assert!((out.iter().step_by(2).map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(Constraint::NonNeg.apply(&[3], &[-1.0, 0.0, 2.0]).unwrap(), vec![0.0, 0.0, 2.0]);
    }

    #[test]
    fn min_max_norm_blends_by_rate_and_configs_round_trip() {
        let c = parse(json!({ "class_name": "MinMaxNorm", "config": { "min_value": 2.0, "max_value": 3.0, "rate": 0.5, "axis": -1 } })).unwrap();
        let out = c.apply(&[1, 2], &[0.6, 0.8]).unwrap();
        // norm 1 -> desired 0.5 * 2 + 0.5 * 1 = 1.5
        assert!((out[0] - 0.6 * 1.5 / (1.0 + EPSILON)).abs() < 1e-6);
        let back: Constraint = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(parse(json!({ "class_name": "MaxNorm", "config": { "max_value": -1 } })).unwrap_err().contains("max_value"));
        assert!(parse(json!({ "class_name": "Ortho" })).unwrap_err().contains("unsupported constraint"));
        assert!(Constraint::UnitNorm { axis: vec![3] }.apply(&[2, 2], &[1.0; 4]).unwrap_err().to_string().contains("out of range"));
    }
}
