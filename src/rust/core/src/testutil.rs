//! Test helpers: finite-difference checks of our backward passes.
use crate::error::Result;
use candle_core::{Device, Tensor};

/// Checks `backward(x, w)`, the claimed gradient of `sum(forward(x) * w)` with respect to
/// `x`, against central differences, at a fixed x (kept away from 0, where relu-like kinks
/// would break the difference) and a fixed weighting w.
pub fn check_backward<F, B>(shape: &[usize], forward: F, backward: B, tol: f32)
where
    F: Fn(&Tensor) -> Result<Tensor>,
    B: Fn(&Tensor, &Tensor) -> Result<Tensor>,
{
    let dev = Device::Cpu;
    let n: usize = shape.iter().product();
    let xs: Vec<f32> = (0..n)
        .map(|i| {
            let v = 1.3 * (1.7 * i as f32 + 0.3).sin();
            if v.abs() < 0.1 {
                v + 0.2
            } else {
                v
            }
        })
        .collect();
    let x0 = Tensor::from_vec(xs.clone(), shape, &dev).unwrap();
    let y = forward(&x0).unwrap();
    let m = y.elem_count();
    let ws: Vec<f32> = (0..m).map(|i| (0.9 * i as f32 + 0.5).cos()).collect();
    let w = Tensor::from_vec(ws, y.dims(), &dev).unwrap();
    let objective = |t: &Tensor| -> f32 { forward(t).unwrap().mul(&w).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() };
    let g = backward(&x0, &w).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(g.len(), n, "gradient has the wrong size");
    let h = 1e-2f32;
    for i in 0..n {
        let mut plus = xs.clone();
        plus[i] += h;
        let mut minus = xs.clone();
        minus[i] -= h;
        let fp = objective(&Tensor::from_vec(plus, shape, &dev).unwrap());
        let fm = objective(&Tensor::from_vec(minus, shape, &dev).unwrap());
        let numeric = (fp - fm) / (2.0 * h);
        let scale = 1.0f32.max(numeric.abs());
        assert!((numeric - g[i]).abs() / scale < tol, "gradient mismatch at {}: backward {} vs numeric {}", i, g[i], numeric);
    }
}
