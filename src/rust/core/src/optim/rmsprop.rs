//! RMSprop: `v <- rho * v + (1 - rho) * g^2`, `w <- w - lr * g / sqrt(v + epsilon)`; with
//! `centered`, the variance `v - a^2` (a, the gradient's moving mean) replaces v; with
//! `momentum`, the increment feeds a momentum slot.
use super::OptimizerType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RmsProp {
    pub rho: f64,
    pub momentum: f64,
    pub epsilon: f64,
    pub centered: bool,
}

impl Default for RmsProp {
    fn default() -> Self {
        Self { rho: 0.9, momentum: 0.0, epsilon: 1e-7, centered: false }
    }
}

#[derive(Clone, Copy)]
pub struct Constants {
    lr: f32,
    rho: f32,
    one_minus_rho: f32,
    epsilon: f32,
    momentum: f32,
}

impl OptimizerType for RmsProp {
    const CLASS_NAME: &'static str = "RMSprop";
    const DEFAULT_LEARNING_RATE: f64 = 0.001;
    const SLOTS_BY_WEIGHT: bool = false;
    type Constants = Constants;
    const LEGACY_SLOT_NAMES: &'static [(&'static str, &'static str)] = &[("velocity", "rms"), ("average_gradient", "mg")];

    fn normalize(&mut self) -> crate::Result<()> {
        super::check_range(self.rho, "rho", 0.0, 1.0, false)?;
        super::check_range(self.momentum, "momentum", 0.0, f64::INFINITY, true)?;
        super::check_positive(self.epsilon, "epsilon")
    }

    fn slot_names(&self) -> Vec<&'static str> {
        let mut v = vec!["velocity"];
        if self.momentum > 0.0 {
            v.push("momentum");
        }
        if self.centered {
            v.push("average_gradient");
        }
        v
    }

    fn constants(&self, _step: u64, lr: f32, _state: &mut Vec<f64>) -> Constants {
        Constants { lr, rho: self.rho as f32, one_minus_rho: (1.0 - self.rho) as f32, epsilon: self.epsilon as f32, momentum: self.momentum as f32 }
    }

    #[inline(always)]
    fn update(&self, k: &Constants, var: &mut [f32], g: impl Iterator<Item = f32>, slots: &mut [&mut [f32]]) {
        let Constants { lr, rho, one_minus_rho, epsilon, momentum } = *k;
        let (velocity, rest) = slots.split_first_mut().expect("RMSprop keeps a velocity slot");
        if rest.is_empty() {
            // The common case, as a zipped loop without branches, so that it vectorizes.
            for ((w, g), v) in var.iter_mut().zip(g).zip(velocity.iter_mut()) {
                *v = rho * *v + one_minus_rho * (g * g);
                *w -= lr * g * (1.0 / (*v + epsilon).sqrt());
            }
            return;
        }
        let (mut momentum_slot, rest) = if momentum > 0.0 {
            let (m, r) = rest.split_first_mut().expect("RMSprop with momentum keeps a momentum slot");
            (Some(m), r)
        } else {
            (None, rest)
        };
        let mut average = rest.first_mut();
        for (i, g) in g.enumerate().take(var.len()) {
            velocity[i] = rho * velocity[i] + one_minus_rho * (g * g);
            let denominator = match average.as_mut() {
                Some(a) => {
                    a[i] = rho * a[i] + one_minus_rho * g;
                    velocity[i] - a[i] * a[i] + epsilon
                }
                None => velocity[i] + epsilon,
            };
            let increment = lr * g * (1.0 / denominator.sqrt());
            match momentum_slot.as_mut() {
                Some(m) => {
                    m[i] = momentum * m[i] + increment;
                    var[i] -= m[i];
                }
                None => var[i] -= increment,
            }
        }
    }
}
