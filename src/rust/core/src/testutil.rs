//! Test helpers: finite-difference checks of candle's backward passes.
use crate::error::Result;
use candle_core::{Device, Tensor, Var};

/// Checks d(sum(f(x) * w))/dx from autograd against central differences in f64-ish f32,
/// for a random x of `shape` and a fixed random weighting w.
pub fn check_gradient<F>(shape: &[usize], f: F, tol: f32)
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    let dev = Device::Cpu;
    // Deterministic inputs kept away from 0, where relu-like kinks would break the difference.
    let n: usize = shape.iter().product();
    let xs: Vec<f32> = (0..n)
        .map(|i| {
            let v = 1.3 * (1.7 * i as f32 + 0.3).sin();
            if v.abs() < 0.1 { v + 0.2 } else { v }
        })
        .collect();
    let x0 = Tensor::from_vec(xs, shape, &dev).unwrap();
    let x = Var::from_tensor(&x0).unwrap();
    let y = f(x.as_tensor()).unwrap();
    let m = y.elem_count();
    let ws: Vec<f32> = (0..m).map(|i| (0.9 * i as f32 + 0.5).cos()).collect();
    let w = Tensor::from_vec(ws, y.dims(), &dev).unwrap();
    let objective = |t: &Tensor| -> f32 { f(t).unwrap().mul(&w).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() };
    let grads = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads.get(x.as_tensor()).expect("no gradient").flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let base = x0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let h = 1e-2f32;
    for i in 0..base.len() {
        let mut plus = base.clone();
        plus[i] += h;
        let mut minus = base.clone();
        minus[i] -= h;
        let fp = objective(&Tensor::from_vec(plus, shape, &dev).unwrap());
        let fm = objective(&Tensor::from_vec(minus, shape, &dev).unwrap());
        let numeric = (fp - fm) / (2.0 * h);
        let scale = 1.0f32.max(numeric.abs());
        assert!(
            (numeric - g[i]).abs() / scale < tol,
            "gradient mismatch at {}: autograd {} vs numeric {}",
            i,
            g[i],
            numeric
        );
    }
}
