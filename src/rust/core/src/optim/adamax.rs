//! Adamax: `m <- m + (g - m) * (1 - beta_1)`, `u <- max(beta_2 * u, |g|)`,
//! `w <- w - lr * m / ((1 - beta_1^t) * (u + epsilon))` (tf-keras 2.x's rule; R keras 2.x's
//! default learning rate, 0.002).
use super::OptimizerType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Adamax {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
}

impl Default for Adamax {
    fn default() -> Self {
        Self { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }
    }
}

#[derive(Clone, Copy)]
pub struct Constants {
    lr: f32,
    one_minus_b1: f32,
    beta_2: f32,
    correction: f32,
    epsilon: f32,
}

impl OptimizerType for Adamax {
    const CLASS_NAME: &'static str = "Adamax";
    const DEFAULT_LEARNING_RATE: f64 = 0.002;
    const SLOTS_BY_WEIGHT: bool = true;
    type Constants = Constants;
    const LEGACY_SLOT_NAMES: &'static [(&'static str, &'static str)] = &[("u", "v")];

    fn normalize(&mut self) -> crate::Result<()> {
        super::check_range(self.beta_1, "beta_1", 0.0, 1.0, false)?;
        super::check_range(self.beta_2, "beta_2", 0.0, 1.0, false)?;
        super::check_positive(self.epsilon, "epsilon")
    }

    fn slot_names(&self) -> Vec<&'static str> {
        vec!["m", "u"]
    }

    fn constants(&self, step: u64, lr: f32, _state: &mut Vec<f64>) -> Constants {
        Constants {
            lr,
            one_minus_b1: (1.0 - self.beta_1) as f32,
            beta_2: self.beta_2 as f32,
            correction: 1.0 - (self.beta_1 as f32).powf(step as f32),
            epsilon: self.epsilon as f32,
        }
    }

    #[inline(always)]
    fn update(&self, k: &Constants, var: &mut [f32], g: impl Iterator<Item = f32>, slots: &mut [&mut [f32]]) {
        let Constants { lr, one_minus_b1, beta_2, correction, epsilon } = *k;
        let [m, u] = slots else { unreachable!("Adamax keeps m and u") };
        for (((w, g), m), u) in var.iter_mut().zip(g).zip(m.iter_mut()).zip(u.iter_mut()) {
            *m += (g - *m) * one_minus_b1;
            *u = (beta_2 * *u).max(g.abs());
            *w -= (lr * *m) / (correction * (*u + epsilon));
        }
    }
}
