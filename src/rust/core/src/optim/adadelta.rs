//! Adadelta: `a <- rho * a + (1 - rho) * g^2`,
//! `d <- -sqrt(D + epsilon) * g / sqrt(a + epsilon)`, `D <- rho * D + (1 - rho) * d^2`,
//! `w <- w + lr * d` (tf-keras 2.x's rule; R keras 2.x's default learning rate, 1).
use super::OptimizerType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Adadelta {
    pub rho: f64,
    pub epsilon: f64,
}

impl Default for Adadelta {
    fn default() -> Self {
        Self { rho: 0.95, epsilon: 1e-7 }
    }
}

#[derive(Clone, Copy)]
pub struct Constants {
    lr: f32,
    rho: f32,
    one_minus_rho: f32,
    epsilon: f32,
}

impl OptimizerType for Adadelta {
    const CLASS_NAME: &'static str = "Adadelta";
    const DEFAULT_LEARNING_RATE: f64 = 1.0;
    const SLOTS_BY_WEIGHT: bool = true;
    type Constants = Constants;
    const LEGACY_SLOT_NAMES: &'static [(&'static str, &'static str)] = &[("accumulated_grad", "accum_grad"), ("accumulated_delta_var", "accum_var")];

    fn normalize(&mut self) -> crate::Result<()> {
        super::check_range(self.rho, "rho", 0.0, 1.0, false)?;
        super::check_positive(self.epsilon, "epsilon")
    }

    fn slot_names(&self) -> Vec<&'static str> {
        vec!["accumulated_grad", "accumulated_delta_var"]
    }

    fn constants(&self, _step: u64, lr: f32, _state: &mut Vec<f64>) -> Constants {
        Constants { lr, rho: self.rho as f32, one_minus_rho: (1.0 - self.rho) as f32, epsilon: self.epsilon as f32 }
    }

    #[inline(always)]
    fn update(&self, k: &Constants, var: &mut [f32], g: impl Iterator<Item = f32>, slots: &mut [&mut [f32]]) {
        let Constants { lr, rho, one_minus_rho, epsilon } = *k;
        let [grads, deltas] = slots else { unreachable!("Adadelta keeps two slots") };
        for (((w, g), a), d) in var.iter_mut().zip(g).zip(grads.iter_mut()).zip(deltas.iter_mut()) {
            *a = rho * *a + one_minus_rho * g * g;
            let delta = -(*d + epsilon).sqrt() * g / (*a + epsilon).sqrt();
            *d = rho * *d + one_minus_rho * delta * delta;
            *w += lr * delta;
        }
    }
}
