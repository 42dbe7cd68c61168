//! Adagrad: `a <- a + g^2`, `w <- w - lr * g / sqrt(a + epsilon)`, the accumulator starting
//! at `initial_accumulator_value` (tf-keras 2.x's rule; R keras 2.x's default learning rate).
use super::OptimizerType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Adagrad {
    pub initial_accumulator_value: f64,
    pub epsilon: f64,
}

impl Default for Adagrad {
    fn default() -> Self {
        Self { initial_accumulator_value: 0.1, epsilon: 1e-7 }
    }
}

impl OptimizerType for Adagrad {
    const CLASS_NAME: &'static str = "Adagrad";
    const DEFAULT_LEARNING_RATE: f64 = 0.01;
    const SLOTS_BY_WEIGHT: bool = true;
    type Constants = (f32, f32);

    fn normalize(&mut self) -> crate::Result<()> {
        super::check_range(self.initial_accumulator_value, "initial_accumulator_value", 0.0, f64::INFINITY, true)?;
        super::check_positive(self.epsilon, "epsilon")
    }

    fn slot_names(&self) -> Vec<&'static str> {
        vec!["accumulator"]
    }

    fn slot_initial_value(&self) -> f32 {
        self.initial_accumulator_value as f32
    }

    fn constants(&self, _step: u64, lr: f32, _state: &mut Vec<f64>) -> (f32, f32) {
        (lr, self.epsilon as f32)
    }

    #[inline(always)]
    fn update(&self, &(lr, epsilon): &(f32, f32), var: &mut [f32], g: impl Iterator<Item = f32>, slots: &mut [&mut [f32]]) {
        for ((w, g), a) in var.iter_mut().zip(g).zip(slots[0].iter_mut()) {
            *a += g * g;
            *w -= lr * g / (*a + epsilon).sqrt();
        }
    }
}
