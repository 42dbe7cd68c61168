//! Adam with Keras's bias corrections folded into the step size
//! (`alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`); AMSGrad keeps the largest v seen.
use super::OptimizerType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Adam {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub amsgrad: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Self { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, amsgrad: false }
    }
}

/// Adam's step size with Keras's bias corrections (float32 powers of the step).
pub(super) fn adam_alpha(lr: f32, beta_1: f64, beta_2: f64, step: u64) -> f32 {
    let (b1, b2, t) = (beta_1 as f32, beta_2 as f32, step as f32);
    lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t))
}

#[derive(Clone, Copy)]
pub struct Constants {
    alpha: f32,
    one_minus_b1: f32,
    one_minus_b2: f32,
    epsilon: f32,
}

impl OptimizerType for Adam {
    const CLASS_NAME: &'static str = "Adam";
    const DEFAULT_LEARNING_RATE: f64 = 0.001;
    const SLOTS_BY_WEIGHT: bool = true;
    type Constants = Constants;

    fn normalize(&mut self) -> crate::Result<()> {
        super::check_range(self.beta_1, "beta_1", 0.0, 1.0, false)?;
        super::check_range(self.beta_2, "beta_2", 0.0, 1.0, false)?;
        super::check_positive(self.epsilon, "epsilon")
    }

    fn slot_names(&self) -> Vec<&'static str> {
        if self.amsgrad {
            vec!["m", "v", "vhat"]
        } else {
            vec!["m", "v"]
        }
    }

    fn constants(&self, step: u64, lr: f32, _state: &mut Vec<f64>) -> Constants {
        Constants {
            alpha: adam_alpha(lr, self.beta_1, self.beta_2, step),
            one_minus_b1: (1.0 - self.beta_1) as f32,
            one_minus_b2: (1.0 - self.beta_2) as f32,
            epsilon: self.epsilon as f32,
        }
    }

    #[inline(always)]
    fn update(&self, k: &Constants, var: &mut [f32], g: impl Iterator<Item = f32>, slots: &mut [&mut [f32]]) {
        let Constants { alpha, one_minus_b1, one_minus_b2, epsilon } = *k;
        let [m, v, rest @ ..] = slots else { unreachable!("Adam keeps m and v") };
        match rest.first_mut() {
            None => {
                for (((w, g), m), v) in var.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m += (g - *m) * one_minus_b1;
                    *v += (g * g - *v) * one_minus_b2;
                    *w -= (*m * alpha) / (v.sqrt() + epsilon);
                }
            }
            Some(v_hat) => {
                for (i, g) in g.enumerate().take(var.len()) {
                    m[i] += (g - m[i]) * one_minus_b1;
                    v[i] += (g * g - v[i]) * one_minus_b2;
                    v_hat[i] = v_hat[i].max(v[i]);
                    var[i] -= (m[i] * alpha) / (v_hat[i].sqrt() + epsilon);
                }
            }
        }
    }
}
