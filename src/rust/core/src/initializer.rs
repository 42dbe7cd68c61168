//! Keras weight initializers (same distributions and limits as tf.keras; the random
//! stream is our own seeded generator, so values differ from TensorFlow's draws).
use crate::error::{Error, Result};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr_lite::standard_normal;

#[derive(Debug, Clone, PartialEq)]
pub enum Initializer {
    Zeros,
    Ones,
    Constant(f64),
    GlorotUniform,
    GlorotNormal,
    HeUniform,
    HeNormal,
    LecunUniform,
    LecunNormal,
    RandomUniform { min: f64, max: f64 },
    RandomNormal { mean: f64, stddev: f64 },
}

pub const INITIALIZER_NAMES: &[&str] =
    &["zeros", "ones", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal", "random_uniform", "random_normal"];

impl Initializer {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "zeros" => Initializer::Zeros,
            "ones" => Initializer::Ones,
            "glorot_uniform" => Initializer::GlorotUniform,
            "glorot_normal" => Initializer::GlorotNormal,
            "he_uniform" => Initializer::HeUniform,
            "he_normal" => Initializer::HeNormal,
            "lecun_uniform" => Initializer::LecunUniform,
            "lecun_normal" => Initializer::LecunNormal,
            // Keras defaults: RandomUniform(-0.05, 0.05), RandomNormal(0, 0.05).
            // ("uniform" and "normal" are Keras 2's names for them, e.g. Embedding's default.)
            "random_uniform" | "uniform" => Initializer::RandomUniform { min: -0.05, max: 0.05 },
            "random_normal" | "normal" => Initializer::RandomNormal { mean: 0.0, stddev: 0.05 },
            other => return Err(Error::Value(format!("unknown initializer \"{}\": expected one of {}", other, INITIALIZER_NAMES.join(", ")))),
        })
    }

    pub fn name(&self) -> String {
        match self {
            Initializer::Zeros => "zeros".into(),
            Initializer::Ones => "ones".into(),
            Initializer::Constant(v) => format!("constant({})", v),
            Initializer::GlorotUniform => "glorot_uniform".into(),
            Initializer::GlorotNormal => "glorot_normal".into(),
            Initializer::HeUniform => "he_uniform".into(),
            Initializer::HeNormal => "he_normal".into(),
            Initializer::LecunUniform => "lecun_uniform".into(),
            Initializer::LecunNormal => "lecun_normal".into(),
            Initializer::RandomUniform { .. } => "random_uniform".into(),
            Initializer::RandomNormal { .. } => "random_normal".into(),
        }
    }

    /// Values for a weight of `shape`, with Keras's fan rules (`compute_fans`).
    pub fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let (fan_in, fan_out) = compute_fans(shape);
        let uniform = |rng: &mut StdRng, limit: f64| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-limit..limit) as f32).collect() };
        // Keras's *_normal variance-scaling initializers draw from a normal truncated at
        // two standard deviations, with the stddev corrected by 0.879... for the truncation.
        let truncated = |rng: &mut StdRng, scale: f64| -> Vec<f32> {
            let stddev = scale.sqrt() / 0.879_625_661_034_239_8;
            (0..n)
                .map(|_| loop {
                    let z = standard_normal(rng);
                    if z.abs() <= 2.0 {
                        break (z * stddev) as f32;
                    }
                })
                .collect()
        };
        match self {
            Initializer::Zeros => vec![0.0; n],
            Initializer::Ones => vec![1.0; n],
            Initializer::Constant(v) => vec![*v as f32; n],
            Initializer::GlorotUniform => uniform(rng, (6.0 / (fan_in + fan_out)).sqrt()),
            Initializer::GlorotNormal => truncated(rng, 2.0 / (fan_in + fan_out)),
            Initializer::HeUniform => uniform(rng, (6.0 / fan_in).sqrt()),
            Initializer::HeNormal => truncated(rng, 2.0 / fan_in),
            Initializer::LecunUniform => uniform(rng, (3.0 / fan_in).sqrt()),
            Initializer::LecunNormal => truncated(rng, 1.0 / fan_in),
            Initializer::RandomUniform { min, max } => (0..n).map(|_| rng.gen_range(*min..*max) as f32).collect(),
            Initializer::RandomNormal { mean, stddev } => (0..n).map(|_| (mean + stddev * standard_normal(rng)) as f32).collect(),
        }
    }
}

/// Keras's `compute_fans`: dense kernels (in, out); conv kernels (..spatial, in, out).
pub fn compute_fans(shape: &[usize]) -> (f64, f64) {
    match shape.len() {
        0 => (1.0, 1.0),
        1 => (shape[0] as f64, shape[0] as f64),
        2 => (shape[0] as f64, shape[1] as f64),
        k => {
            let receptive: usize = shape[..k - 2].iter().product();
            ((shape[k - 2] * receptive) as f64, (shape[k - 1] * receptive) as f64)
        }
    }
}

/// Keras's serialized form: `{"module", "class_name", "config", "registered_name"}` (tf-keras
/// 2.x); read from that, from Keras 2's `{"class_name", "config"}`, or from a name.
impl serde::Serialize for Initializer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde_json::json;
        let (class, config) = match self {
            Initializer::Zeros => ("Zeros", json!({})),
            Initializer::Ones => ("Ones", json!({})),
            Initializer::Constant(v) => ("Constant", json!({ "value": v })),
            Initializer::GlorotUniform => ("GlorotUniform", json!({ "seed": null })),
            Initializer::GlorotNormal => ("GlorotNormal", json!({ "seed": null })),
            Initializer::HeUniform => ("HeUniform", json!({ "seed": null })),
            Initializer::HeNormal => ("HeNormal", json!({ "seed": null })),
            Initializer::LecunUniform => ("LecunUniform", json!({ "seed": null })),
            Initializer::LecunNormal => ("LecunNormal", json!({ "seed": null })),
            Initializer::RandomUniform { min, max } => ("RandomUniform", json!({ "minval": min, "maxval": max, "seed": null })),
            Initializer::RandomNormal { mean, stddev } => ("RandomNormal", json!({ "mean": mean, "stddev": stddev, "seed": null })),
        };
        json!({ "module": "keras.initializers", "class_name": class, "config": config, "registered_name": null }).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Initializer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        use serde_json::Value;
        let v = Value::deserialize(d)?;
        if let Some(name) = v.as_str() {
            return Initializer::parse(name).map_err(D::Error::custom);
        }
        let class = v.get("class_name").and_then(Value::as_str).ok_or_else(|| D::Error::custom(format!("not an initializer: {}", v)))?;
        let num = |k: &str, default: f64| v.get("config").and_then(|c| c.get(k)).and_then(Value::as_f64).unwrap_or(default);
        Ok(match class {
            "Zeros" => Initializer::Zeros,
            "Ones" => Initializer::Ones,
            "Constant" => Initializer::Constant(num("value", 0.0)),
            "GlorotUniform" => Initializer::GlorotUniform,
            "GlorotNormal" => Initializer::GlorotNormal,
            "HeUniform" => Initializer::HeUniform,
            "HeNormal" => Initializer::HeNormal,
            "LecunUniform" => Initializer::LecunUniform,
            "LecunNormal" => Initializer::LecunNormal,
            "RandomUniform" => Initializer::RandomUniform { min: num("minval", -0.05), max: num("maxval", 0.05) },
            "RandomNormal" => Initializer::RandomNormal { mean: num("mean", 0.0), stddev: num("stddev", 0.05) },
            // A loaded model's weights come from its file: an initializer we do not have only
            // matters if the layer is rebuilt, so it reads as Keras's default.
            _ => Initializer::GlorotUniform,
        })
    }
}

/// A standard normal draw (Box-Muller); avoids pulling in rand_distr for one function.
mod rand_distr_lite {
    use rand::Rng;
    pub fn standard_normal<R: Rng>(rng: &mut R) -> f64 {
        let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.gen::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn glorot_uniform_respects_keras_limit_and_fills_it() {
        let mut rng = StdRng::seed_from_u64(1);
        let w = Initializer::GlorotUniform.sample(&[784, 512], &mut rng);
        let limit = (6.0f64 / (784.0 + 512.0)).sqrt() as f32;
        assert!(w.iter().all(|v| v.abs() <= limit));
        let max = w.iter().cloned().fold(0.0f32, |a, b| a.max(b.abs()));
        assert!(max > 0.99 * limit);
        let mean: f32 = w.iter().sum::<f32>() / w.len() as f32;
        assert!(mean.abs() < 1e-3);
    }

    #[test]
    fn truncated_normal_has_keras_variance() {
        let mut rng = StdRng::seed_from_u64(2);
        let w = Initializer::HeNormal.sample(&[400, 300], &mut rng);
        let var: f64 = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        // Keras's correction makes the truncated variance equal scale / fan_in.
        assert!((var - 2.0 / 400.0).abs() / (2.0 / 400.0) < 0.03, "var {}", var);
        let sd = (2.0f64 / 400.0).sqrt() / 0.879_625_661_034_239_8;
        assert!(w.iter().all(|v| (*v as f64).abs() <= 2.0 * sd + 1e-6));
    }

    #[test]
    fn fans_follow_keras() {
        assert_eq!(compute_fans(&[3, 3, 16, 32]), (144.0, 288.0));
        assert_eq!(compute_fans(&[10, 4]), (10.0, 4.0));
    }
}
