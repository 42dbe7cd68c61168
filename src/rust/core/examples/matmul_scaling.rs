//! Do two threads running candle matmuls scale on this machine?
//! `RAYON_NUM_THREADS=1 cargo run --release -p rustgpu-core --example matmul_scaling`
use candle_core::{Device, Tensor};
use std::time::Instant;

fn work(n: usize) {
    let a = Tensor::ones((128, 784), candle_core::DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::ones((784, 512), candle_core::DType::F32, &Device::Cpu).unwrap();
    for _ in 0..n {
        let _ = a.matmul(&b).unwrap();
    }
}

fn main() {
    rustgpu_core::device::configure_threads();
    let n = 400;
    let t = Instant::now();
    work(n);
    let one = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let hs: Vec<_> = (0..2).map(|_| std::thread::spawn(move || work(n))).collect();
    for h in hs {
        h.join().unwrap();
    }
    let two = t.elapsed().as_secs_f64();
    println!("one thread {:.3}s; two threads, same work each {:.3}s; scaling {:.2}x", one, two, 2.0 * one / two);
}
