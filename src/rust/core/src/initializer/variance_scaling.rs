//! VarianceScaling and its presets (Glorot, He, LeCun; uniform and normal): the variance
//! `scale / fan` (fan_in, fan_out or their mean, from Keras's `compute_fans`), drawn from a
//! uniform, a normal, or a normal truncated at two standard deviations whose stddev is
//! corrected by 0.8796... for the truncation.
use super::{compute_fans, standard_normal, truncated_normal, uniform, InitializerType};
use crate::error::{Error, Result};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// Stddev of a standard normal truncated to [-2, 2].
const TRUNCATION_STDDEV: f64 = 0.879_625_661_034_239_8;

fn truncated(n: usize, variance: f64, rng: &mut StdRng) -> Vec<f32> {
    truncated_normal(n, 0.0, variance.sqrt() / TRUNCATION_STDDEV, rng)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VarianceScaling {
    pub scale: f64,
    pub mode: String,
    pub distribution: String,
    pub seed: Option<u64>,
}

impl Default for VarianceScaling {
    fn default() -> Self {
        Self { scale: 1.0, mode: "fan_in".into(), distribution: "truncated_normal".into(), seed: None }
    }
}

impl InitializerType for VarianceScaling {
    const CLASS_NAME: &'static str = "VarianceScaling";
    const NAME: &'static str = "variance_scaling";

    fn normalize(&mut self) -> Result<()> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(Error::Value(format!("`scale` must be a positive number, got {}", self.scale)));
        }
        if !["fan_in", "fan_out", "fan_avg"].contains(&self.mode.as_str()) {
            return Err(Error::Value(format!("`mode` must be \"fan_in\", \"fan_out\" or \"fan_avg\", got \"{}\"", self.mode)));
        }
        // Keras 2's "normal" is the truncated normal.
        if self.distribution == "normal" {
            self.distribution = "truncated_normal".into();
        }
        if !["truncated_normal", "untruncated_normal", "uniform"].contains(&self.distribution.as_str()) {
            return Err(Error::Value(format!(
                "`distribution` must be \"truncated_normal\", \"untruncated_normal\" or \"uniform\", got \"{}\"",
                self.distribution
            )));
        }
        Ok(())
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
        let n = shape.iter().product();
        let (fan_in, fan_out) = compute_fans(shape);
        let fan = match self.mode.as_str() {
            "fan_out" => fan_out,
            "fan_avg" => (fan_in + fan_out) / 2.0,
            _ => fan_in,
        };
        let variance = self.scale / fan.max(1.0);
        Ok(match self.distribution.as_str() {
            "uniform" => {
                let limit = (3.0 * variance).sqrt();
                uniform(n, -limit, limit, rng)
            }
            "untruncated_normal" => (0..n).map(|_| (variance.sqrt() * standard_normal(rng)) as f32).collect(),
            _ => truncated(n, variance, rng),
        })
    }
}

/// A preset: its Keras names and the variance (from the fans) and distribution it draws.
macro_rules! preset {
    ($name:ident, $class:literal, $string:literal, |$fi:ident, $fo:ident| $variance:expr, $uniform:literal) => {
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            pub seed: Option<u64>,
        }

        impl InitializerType for $name {
            const CLASS_NAME: &'static str = $class;
            const NAME: &'static str = $string;

            fn seed(&self) -> Option<u64> {
                self.seed
            }

            fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
                let n = shape.iter().product();
                let ($fi, $fo) = compute_fans(shape);
                let _ = $fo;
                let variance: f64 = $variance;
                Ok(if $uniform {
                    // limit = sqrt(3 * variance), written as Keras's docs give each limit.
                    let limit = (3.0 * variance).sqrt();
                    uniform(n, -limit, limit, rng)
                } else {
                    truncated(n, variance, rng)
                })
            }
        }
    };
}

preset!(GlorotUniform, "GlorotUniform", "glorot_uniform", |fan_in, fan_out| 2.0 / (fan_in + fan_out), true);
preset!(GlorotNormal, "GlorotNormal", "glorot_normal", |fan_in, fan_out| 2.0 / (fan_in + fan_out), false);
preset!(HeUniform, "HeUniform", "he_uniform", |fan_in, fan_out| 2.0 / fan_in, true);
preset!(HeNormal, "HeNormal", "he_normal", |fan_in, fan_out| 2.0 / fan_in, false);
preset!(LecunUniform, "LecunUniform", "lecun_uniform", |fan_in, fan_out| 1.0 / fan_in, true);
preset!(LecunNormal, "LecunNormal", "lecun_normal", |fan_in, fan_out| 1.0 / fan_in, false);
