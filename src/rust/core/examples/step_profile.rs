//! Times the pieces of a data-parallel training step (MLP 784-512-512-10, batch 256):
//! `RAYON_NUM_THREADS=1 cargo run --release -p rustgpu-core --example step_profile`
use rustgpu_core::activation::Activation;
use rustgpu_core::device::{cpu_device, DeviceInfo, DeviceKind};
use rustgpu_core::layers::{Dense, Layer, LayerKind};
use rustgpu_core::loss::Loss;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::{Compiled, Executor, HostTensor, Model};
use std::time::Instant;


fn main() {
    rustgpu_core::device::configure_threads();
    let mut m = Model::new("mlp".into());
    for (i, (units, act)) in [(512, Activation::Relu), (512, Activation::Relu), (10, Activation::Softmax)].into_iter().enumerate() {
        let layer = Layer { name: format!("d{}", i), kind: LayerKind::Dense(Dense::new(units, act, true).unwrap()), seed: i as u64 };
        m.add(layer, if i == 0 { Some(vec![784]) } else { None }).unwrap();
    }
    let rows = 256;
    let x = HostTensor::new(vec![rows, 784], (0..rows * 784).map(|i| (i % 255) as f32 / 255.0).collect()).unwrap();
    let mut y = vec![0f32; rows * 10];
    for r in 0..rows {
        y[r * 10 + r % 10] = 1.0;
    }
    let y = HostTensor::new(vec![rows, 10], y).unwrap();
    let rows_all: Vec<usize> = (0..rows).collect();
    let compiled = || Compiled::single(Loss::CategoricalCrossentropy, vec![], Optimizer::new(OptimizerConfig::by_name("rmsprop").unwrap()));
    let execs: Vec<(&str, Executor)> = vec![
        ("local", Executor::Local(cpu_device())),
        ("1 replica", Executor::Replicated(ReplicaSet::new(vec![dev(0)], MergeDevice::Cpu).unwrap())),
        ("2 replicas", Executor::Replicated(ReplicaSet::new(vec![dev(0), dev(1)], MergeDevice::Cpu).unwrap())),
    ];
    for (name, exec) in &execs {
        let mut c = compiled();
        for _ in 0..3 {
            exec.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &rows_all, 0).unwrap();
        }
        let n = 20;
        let t = Instant::now();
        for _ in 0..n {
            exec.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &rows_all, 0).unwrap();
        }
        println!("{:>10}: {:.2} ms/step", name, t.elapsed().as_secs_f64() * 1000.0 / n as f64);
        if let Executor::Replicated(set) = exec {
            let tl = set.timeline();
            let busy: f64 = tl.iter().rev().take(2 * set.len()).map(|i| (i.end - i.start).as_secs_f64()).sum::<f64>() * 1000.0 / 2.0 / set.len() as f64;
            println!("            replica task: {:.2} ms", busy);
        }
    }
    // The serial pieces on their own.
    let mut c = compiled();
    let grads: Vec<Vec<f32>> = m.weights.iter().map(|w| vec![0.001; w.value.len()]).collect();
    let t = Instant::now();
    for _ in 0..20 {
        { let views: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect(); c.optimizer.apply(&mut m.weights, &[views]).unwrap(); }
    }
    println!("optimizer step: {:.2} ms", t.elapsed().as_secs_f64() * 1000.0 / 20.0);
}

fn dev(id: usize) -> DeviceInfo {
    DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("v{}", id), memory: None, threads: 1 }
}
