//! Zeros, Ones and Constant.
use super::InitializerType;
use crate::error::Result;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Zeros {}

impl InitializerType for Zeros {
    const CLASS_NAME: &'static str = "Zeros";
    const NAME: &'static str = "zeros";
    const ALIASES: &'static [&'static str] = &["zero"];

    fn sample(&self, shape: &[usize], _rng: &mut StdRng) -> Result<Vec<f32>> {
        Ok(vec![0.0; shape.iter().product()])
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ones {}

impl InitializerType for Ones {
    const CLASS_NAME: &'static str = "Ones";
    const NAME: &'static str = "ones";
    const ALIASES: &'static [&'static str] = &["one"];

    fn sample(&self, shape: &[usize], _rng: &mut StdRng) -> Result<Vec<f32>> {
        Ok(vec![1.0; shape.iter().product()])
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Constant {
    pub value: f64,
}

impl InitializerType for Constant {
    const CLASS_NAME: &'static str = "Constant";
    const NAME: &'static str = "constant";

    fn normalize(&mut self) -> Result<()> {
        if !self.value.is_finite() {
            return Err(crate::Error::Value(format!("`value` must be a finite number, got {}", self.value)));
        }
        Ok(())
    }

    fn sample(&self, shape: &[usize], _rng: &mut StdRng) -> Result<Vec<f32>> {
        Ok(vec![self.value as f32; shape.iter().product()])
    }
}
