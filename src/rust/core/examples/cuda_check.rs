//! GPU check, run on a machine with a CUDA GPU (build with `--features cuda`; see
//! tools/gpu_check.sh): layers' forward/backward on CUDA against the CPU, data-parallel
//! predict and training with 2 replicas on one GPU against one device, and the training
//! step time of the MLP 784-512-512-10 at batch 256.
use rustgpu_core::activation::Activation;
use rustgpu_core::device::{cpu_device, cuda_device_count, DeviceInfo, DeviceKind};
use rustgpu_core::layers::{BatchNormalization, Dense, Layer, LayerKind};
use rustgpu_core::loss::Loss;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::{Compiled, Executor, HostTensor, Model};
use std::time::Instant;

fn cuda(id: usize, name: &str) -> DeviceInfo {
    DeviceInfo { id, kind: DeviceKind::Cuda, name: name.into(), memory: None, threads: 1 }
}

fn mlp(widths: &[usize], input: usize, bn: bool) -> Model {
    let mut m = Model::new("mlp".into());
    for (i, w) in widths.iter().enumerate() {
        let last = i + 1 == widths.len();
        let act = if last { Activation::Softmax } else { Activation::Relu };
        let dense = Layer { name: format!("d{}", i), kind: LayerKind::Dense(Dense::new(*w, act, true).unwrap()), seed: i as u64 + 1 };
        m.add(dense, if i == 0 { Some(vec![input]) } else { None }).unwrap();
        if bn && !last {
            let norm = BatchNormalization { momentum: 0.99, epsilon: 1e-3, center: true, scale: true };
            m.add(Layer { name: format!("bn{}", i), kind: LayerKind::BatchNormalization(norm), seed: 0 }, None).unwrap();
        }
    }
    m
}

fn data(rows: usize, input: usize, classes: usize) -> (HostTensor, HostTensor) {
    let x: Vec<f32> = (0..rows * input).map(|i| ((i * 7919 % 997) as f32 / 498.0) - 1.0).collect();
    let mut y = vec![0f32; rows * classes];
    for r in 0..rows {
        y[r * classes + r % classes] = 1.0;
    }
    (HostTensor::new(vec![rows, input], x).unwrap(), HostTensor::new(vec![rows, classes], y).unwrap())
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
    num / den
}

fn compiled(opt: &str) -> Compiled {
    Compiled::single(Loss::CategoricalCrossentropy, vec![], Optimizer::new(OptimizerConfig::by_name(opt).unwrap()))
}

fn main() {
    rustgpu_core::device::configure_threads();
    let n = cuda_device_count();
    println!("cuda_device_count: {}", n);
    if n == 0 {
        println!("FAIL no CUDA device");
        std::process::exit(1);
    }
    let mut failures = 0;
    let mut check = |label: &str, err: f64, tol: f64| {
        let ok = err <= tol;
        failures += usize::from(!ok);
        println!("{} {:<60} rel. error {:.2e} (tol {:.0e})", if ok { "ok  " } else { "FAIL" }, label, err, tol);
    };
    let cpu = Executor::Local(cpu_device());
    let gpu = Executor::Local(cuda(0, "cuda0"));
    let rows: Vec<usize> = (0..64).collect();
    for (label, bn) in [("dense+relu+softmax", false), ("dense+batchnorm", true)] {
        let (x, y) = data(64, 32, 5);
        let m = mlp(&[48, 24, 5], 32, bn);
        let p_cpu = cpu.predict_on_batch(&m, &[&x], &rows).unwrap().remove(0);
        let p_gpu = gpu.predict_on_batch(&m, &[&x], &rows).unwrap().remove(0);
        check(&format!("forward {} CUDA vs CPU", label), rel(&p_gpu.data, &p_cpu.data), 1e-4);
        let (mut a, mut b) = (m.clone(), m.clone());
        let (mut ca, mut cb) = (compiled("sgd"), compiled("sgd"));
        cpu.train_on_batch(&mut a, &mut ca, &[&x], &[&y], None, &rows, 0).unwrap();
        gpu.train_on_batch(&mut b, &mut cb, &[&x], &[&y], None, &rows, 0).unwrap();
        let (wa, wb): (Vec<f32>, Vec<f32>) = (a.weights.iter().flat_map(|w| w.value.iter().copied()).collect(), b.weights.iter().flat_map(|w| w.value.iter().copied()).collect());
        check(&format!("one SGD step (backward) {} CUDA vs CPU", label), rel(&wb, &wa), 1e-4);
    }
    // Two replicas on one GPU (two workers) against one device.
    for merge in [MergeDevice::Cpu, MergeDevice::FirstReplica] {
        let set = ReplicaSet::new(vec![cuda(0, "cuda0 replica a"), cuda(0, "cuda0 replica b")], merge).unwrap();
        let par = Executor::Replicated(set);
        let (x, y) = data(100, 32, 5);
        let rows: Vec<usize> = (0..100).collect();
        let m = mlp(&[48, 24, 5], 32, false);
        let p1 = gpu.predict_on_batch(&m, &[&x], &rows).unwrap().remove(0);
        let p2 = par.predict_on_batch(&m, &[&x], &rows).unwrap().remove(0);
        check(&format!("predict 2 replicas vs 1 device (merge {:?})", merge), rel(&p2.data, &p1.data), 1e-6);
        let (mut a, mut b) = (m.clone(), m.clone());
        let (mut ca, mut cb) = (compiled("sgd"), compiled("sgd"));
        for epoch in 0..2 {
            for chunk in rows.chunks(25) {
                gpu.train_on_batch(&mut a, &mut ca, &[&x], &[&y], None, chunk, epoch).unwrap();
                par.train_on_batch(&mut b, &mut cb, &[&x], &[&y], None, chunk, epoch).unwrap();
            }
        }
        let (wa, wb): (Vec<f32>, Vec<f32>) = (a.weights.iter().flat_map(|w| w.value.iter().copied()).collect(), b.weights.iter().flat_map(|w| w.value.iter().copied()).collect());
        check(&format!("2 epochs, 2 replicas vs 1 device (merge {:?})", merge), rel(&wb, &wa), 1e-5);
    }
    // Step time of the MLP 784-512-512-10, batch 256, RMSprop.
    let (x, y) = data(256, 784, 10);
    let rows: Vec<usize> = (0..256).collect();
    for (label, exec) in [("CUDA, 1 device", &gpu)] {
        let mut m = mlp(&[512, 512, 10], 784, false);
        let mut c = compiled("rmsprop");
        for _ in 0..10 {
            exec.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &rows, 0).unwrap();
        }
        let mut times: Vec<f64> = (0..60)
            .map(|_| {
                let t = Instant::now();
                exec.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &rows, 0).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("step_ms {} mlp {:.3}", label, times[30]);
    }
    // Conv layers use CPU kernels (im2col, pooling) so far: report what happens on CUDA.
    println!("failures: {}", failures);
    std::process::exit(if failures == 0 { 0 } else { 1 });
}
