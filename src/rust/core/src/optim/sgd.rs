//! SGD with optional (Nesterov) momentum: `m <- momentum * m - lr * g`, then `w <- w + m`
//! (Nesterov: `w <- w - lr * g + momentum * m`).
use super::OptimizerType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sgd {
    pub momentum: f64,
    pub nesterov: bool,
}

impl OptimizerType for Sgd {
    const CLASS_NAME: &'static str = "SGD";
    const DEFAULT_LEARNING_RATE: f64 = 0.01;
    const SLOTS_BY_WEIGHT: bool = false;
    type Constants = (f32, f32);
    const LEGACY_SLOT_NAMES: &'static [(&'static str, &'static str)] = &[("m", "momentum")];

    fn normalize(&mut self) -> crate::Result<()> {
        super::check_range(self.momentum, "momentum", 0.0, f64::INFINITY, true)
    }

    fn slot_names(&self) -> Vec<&'static str> {
        if self.momentum != 0.0 {
            vec!["m"]
        } else {
            vec![]
        }
    }

    fn constants(&self, _step: u64, learning_rate: f32, _state: &mut Vec<f64>) -> (f32, f32) {
        (learning_rate, self.momentum as f32)
    }

    #[inline(always)]
    fn update(&self, &(lr, mom): &(f32, f32), var: &mut [f32], g: impl Iterator<Item = f32>, slots: &mut [&mut [f32]]) {
        match slots.first_mut() {
            None => var.iter_mut().zip(g).for_each(|(w, g)| *w += -g * lr),
            Some(m) => {
                let nesterov = self.nesterov;
                for ((w, g), m) in var.iter_mut().zip(g).zip(m.iter_mut()) {
                    *m = -g * lr + *m * mom;
                    *w += if nesterov { -g * lr + *m * mom } else { *m };
                }
            }
        }
    }
}
