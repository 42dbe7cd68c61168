//! Orthogonal (a random orthogonal matrix, as Keras: the Q of a normal matrix's QR
//! decomposition, signs fixed so that R's diagonal is positive) and Identity.
use super::{standard_normal, InitializerType};
use crate::error::{Error, Result};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Orthogonal {
    pub gain: f64,
    pub seed: Option<u64>,
}

impl Default for Orthogonal {
    fn default() -> Self {
        Self { gain: 1.0, seed: None }
    }
}

/// The orthonormal columns of a (rows, cols) matrix (rows >= cols), row-major, by modified
/// Gram-Schmidt run twice (the second pass restores orthogonality lost to rounding). The
/// result is the Q of the QR decomposition whose R has a positive diagonal.
fn orthonormal_columns(mut a: Vec<f64>, rows: usize, cols: usize) -> Vec<f64> {
    for j in 0..cols {
        for _ in 0..2 {
            for k in 0..j {
                let dot: f64 = (0..rows).map(|i| a[i * cols + j] * a[i * cols + k]).sum();
                for i in 0..rows {
                    a[i * cols + j] -= dot * a[i * cols + k];
                }
            }
        }
        let norm = (0..rows).map(|i| a[i * cols + j].powi(2)).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        for i in 0..rows {
            a[i * cols + j] /= norm;
        }
    }
    a
}

impl InitializerType for Orthogonal {
    const CLASS_NAME: &'static str = "Orthogonal";
    const NAME: &'static str = "orthogonal";

    fn normalize(&mut self) -> Result<()> {
        if !self.gain.is_finite() {
            return Err(Error::Value(format!("`gain` must be a finite number, got {}", self.gain)));
        }
        Ok(())
    }

    fn seed(&self) -> Option<u64> {
        self.seed
    }

    fn sample(&self, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
        if shape.len() < 2 {
            return Err(Error::Value("the orthogonal initializer needs a weight of 2 or more dimensions".into()));
        }
        let cols = shape[shape.len() - 1];
        let rows: usize = shape[..shape.len() - 1].iter().product();
        // Orthonormal columns of the taller orientation; transposed back for a wide matrix.
        let (r, c) = if rows < cols { (cols, rows) } else { (rows, cols) };
        let q = orthonormal_columns((0..r * c).map(|_| standard_normal(rng)).collect(), r, c);
        let mut out = vec![0f32; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                let v = if rows < cols { q[j * c + i] } else { q[i * c + j] };
                out[i * cols + j] = (self.gain * v) as f32;
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    pub gain: f64,
}

impl Default for Identity {
    fn default() -> Self {
        Self { gain: 1.0 }
    }
}

impl InitializerType for Identity {
    const CLASS_NAME: &'static str = "Identity";
    const NAME: &'static str = "identity";

    fn normalize(&mut self) -> Result<()> {
        if !self.gain.is_finite() {
            return Err(Error::Value(format!("`gain` must be a finite number, got {}", self.gain)));
        }
        Ok(())
    }

    fn sample(&self, shape: &[usize], _rng: &mut StdRng) -> Result<Vec<f32>> {
        let [rows, cols] = shape else {
            return Err(Error::Value(format!("the identity initializer needs a 2-D weight, got shape ({})", crate::shape::join_dims(shape))));
        };
        let mut out = vec![0f32; rows * cols];
        for i in 0..(*rows).min(*cols) {
            out[i * cols + i] = self.gain as f32;
        }
        Ok(out)
    }
}
