//! Nadam, tf-keras 2.x's rule: Adam with Nesterov momentum under the momentum schedule
//! `u_t = beta_1 * (1 - 0.5 * 0.96^t)`, whose running product the optimizer carries between
//! steps (remade from the step count after a restore). R keras 2.x's default learning rate,
//! 0.002. Files from Keras 2 (and tf-keras's legacy Nadam) carry a `schedule_decay`: their
//! schedule is `beta_1 * (1 - 0.5 * 0.96^(schedule_decay * t))`, followed when set.
use super::OptimizerType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Nadam {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    /// Keras 2's momentum-schedule decay (None: tf-keras 2.x's schedule, `0.96^t`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_decay: Option<f64>,
}

impl Default for Nadam {
    fn default() -> Self {
        Self { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, schedule_decay: None }
    }
}

#[derive(Clone, Copy)]
pub struct Constants {
    lr: f32,
    one_minus_b1: f32,
    one_minus_b2: f32,
    u_t: f32,
    u_next: f32,
    product: f32,
    product_next: f32,
    b2_power: f32,
    epsilon: f32,
}

impl Nadam {
    /// The momentum schedule at step `t` (f32, as TensorFlow computes it).
    fn schedule(&self, t: u64) -> f32 {
        let exponent = match self.schedule_decay {
            Some(d) => d as f32 * t as f32,
            None => t as f32,
        };
        self.beta_1 as f32 * (1.0 - 0.5 * 0.96f32.powf(exponent))
    }
}

impl OptimizerType for Nadam {
    const CLASS_NAME: &'static str = "Nadam";
    const DEFAULT_LEARNING_RATE: f64 = 0.002;
    const SLOTS_BY_WEIGHT: bool = true;
    type Constants = Constants;

    fn normalize(&mut self) -> crate::Result<()> {
        super::check_range(self.beta_1, "beta_1", 0.0, 1.0, false)?;
        super::check_range(self.beta_2, "beta_2", 0.0, 1.0, false)?;
        super::check_positive(self.epsilon, "epsilon")?;
        self.schedule_decay.map_or(Ok(()), |d| super::check_range(d, "schedule_decay", 0.0, f64::INFINITY, false))
    }

    fn slot_names(&self) -> Vec<&'static str> {
        vec!["m", "v"]
    }

    /// `state`: [the step the product runs to, the product of u_1..u_step].
    fn constants(&self, step: u64, lr: f32, state: &mut Vec<f64>) -> Constants {
        let product = match state.as_slice() {
            [done, p] if *done as u64 + 1 == step => *p as f32 * self.schedule(step),
            _ => (1..=step).fold(1f32, |p, s| p * self.schedule(s)),
        };
        *state = vec![step as f64, product as f64];
        let b1 = self.beta_1 as f32;
        let b2 = self.beta_2 as f32;
        let u_next = self.schedule(step + 1);
        Constants {
            lr,
            one_minus_b1: 1.0 - b1,
            one_minus_b2: 1.0 - b2,
            u_t: self.schedule(step),
            u_next,
            product,
            product_next: product * u_next,
            b2_power: b2.powf(step as f32),
            epsilon: self.epsilon as f32,
        }
    }

    #[inline(always)]
    fn update(&self, k: &Constants, var: &mut [f32], g: impl Iterator<Item = f32>, slots: &mut [&mut [f32]]) {
        let Constants { lr, one_minus_b1, one_minus_b2, u_t, u_next, product, product_next, b2_power, epsilon } = *k;
        let [m, v] = slots else { unreachable!("Nadam keeps m and v") };
        for (((w, g), m), v) in var.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m += (g - *m) * one_minus_b1;
            *v += (g * g - *v) * one_minus_b2;
            let m_hat = u_next * *m / (1.0 - product_next) + (1.0 - u_t) * g / (1.0 - product);
            let v_hat = *v / (1.0 - b2_power);
            *w -= (m_hat * lr) / (v_hat.sqrt() + epsilon);
        }
    }
}
