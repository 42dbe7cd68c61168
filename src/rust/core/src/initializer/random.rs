//! RandomUniform, RandomNormal and TruncatedNormal (Keras's defaults: +-0.05, stddev 0.05).
use super::{standard_normal, truncated_normal, uniform, InitializerType};
use crate::error::{Error, Result};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

fn check_stddev(stddev: f64) -> Result<()> {
    if stddev.is_finite() && stddev >= 0.0 {
        Ok(())
    } else {
        Err(Error::Value(format!("`stddev` must be a number >= 0, got {}", stddev)))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RandomUniform {
    pub minval: f64,
    pub maxval: f64,
    pub seed: Option<u64>,
}

impl Default for RandomUniform {
    fn default() -> Self {
        Self { minval: -0.05, maxval: 0.05, seed: None }
    }
}

impl InitializerType for RandomUniform {
    const CLASS_NAME: &'static str = "RandomUniform";
    const NAME: &'static str = "random_uniform";
    const ALIASES: &'static [&'static str] = &["uniform"];

    fn normalize(&mut self) -> Result<()> {
        if !(self.minval.is_finite() && self.maxval.is_finite() && self.minval < self.maxval) {
            return Err(Error::Value(format!("`minval` ({}) must be below `maxval` ({})", self.minval, self.maxval)));
        }
        Ok(())
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
        Ok(uniform(shape.iter().product(), self.minval, self.maxval, rng))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RandomNormal {
    pub mean: f64,
    pub stddev: f64,
    pub seed: Option<u64>,
}

impl Default for RandomNormal {
    fn default() -> Self {
        Self { mean: 0.0, stddev: 0.05, seed: None }
    }
}

impl InitializerType for RandomNormal {
    const CLASS_NAME: &'static str = "RandomNormal";
    const NAME: &'static str = "random_normal";
    const ALIASES: &'static [&'static str] = &["normal"];

    fn normalize(&mut self) -> Result<()> {
        check_stddev(self.stddev)
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
        Ok((0..shape.iter().product()).map(|_| (self.mean + self.stddev * standard_normal(rng)) as f32).collect())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TruncatedNormal {
    pub mean: f64,
    pub stddev: f64,
    pub seed: Option<u64>,
}

impl Default for TruncatedNormal {
    fn default() -> Self {
        Self { mean: 0.0, stddev: 0.05, seed: None }
    }
}

impl InitializerType for TruncatedNormal {
    const CLASS_NAME: &'static str = "TruncatedNormal";
    const NAME: &'static str = "truncated_normal";

    fn normalize(&mut self) -> Result<()> {
        check_stddev(self.stddev)
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
        Ok(truncated_normal(shape.iter().product(), self.mean, self.stddev, rng))
    }
}
