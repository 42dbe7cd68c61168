//! Times the pieces of a data-parallel training step (MLP 784-512-512-10, batch 256):
//! `RAYON_NUM_THREADS=1 cargo run --release -p rustgpu-core --example step_profile`
//! prints the step on one device, on one replica and on two virtual GPUs, a half-batch step
//! on one device, and the optimizer update alone. Options: `ONLY="2 replicas"` (one of the
//! three), `STEPS=n`; `HALF_STEPS=n` (and `HALF_ROWS=r`) times only the half-batch step, for
//! `perf record`; `CEILING=1` runs two independent half-batch steps on two pinned threads at
//! once, against the full step alone: what the machine allows without any synchronisation.
use rustgpu_core::activation::Activation;
use rustgpu_core::device::{cpu_device, DeviceInfo, DeviceKind};
use rustgpu_core::layers::{Dense, Layer};
use rustgpu_core::loss::Loss;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::{Compiled, Executor, HostTensor, Model};
use std::time::Instant;

extern "C" {
    fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
}

/// Large blocks kept in the heap, as mimalloc (the package's allocator) keeps them; glibc's
/// default maps and unmaps each one (see layer_profile.rs).
fn allocate_like_the_package() {
    // SAFETY: glibc's mallopt (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD), before any thread exists.
    unsafe {
        mallopt(-3, 1 << 30);
        mallopt(-1, i32::MAX);
    }
}

fn main() {
    allocate_like_the_package();
    rustgpu_core::device::configure_threads();
    // Two virtual GPUs of one thread each, as `use_virtual_gpus(2, threads_per_gpu = 1)`
    // sets them in R: their workers are pinned to cores of their own.
    rustgpu_core::device::set_virtual_gpus(2, &[1, 1]).unwrap();
    let mut m = Model::new("mlp".into());
    for (i, (units, act)) in [(512, Activation::Relu), (512, Activation::Relu), (10, Activation::Softmax)].into_iter().enumerate() {
        let layer = Layer::new(format!("d{}", i), Dense::new(units, act, true).unwrap(), i as u64);
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
    let compiled = || Compiled::single(Loss::parse("categorical_crossentropy").unwrap(), vec![], Optimizer::new(OptimizerConfig::by_name("rmsprop").unwrap()));
    let only_half = std::env::var("HALF_STEPS").is_ok();
    let execs: Vec<(&str, Executor)> = if only_half {
        vec![]
    } else {
        vec![
            ("local", Executor::Local(cpu_device())),
            ("1 replica", Executor::replicated(ReplicaSet::new(vec![dev(0)], MergeDevice::Cpu).unwrap())),
            ("2 replicas", Executor::replicated(ReplicaSet::new(vec![dev(0), dev(1)], MergeDevice::Cpu).unwrap())),
        ]
    };
    let only: Option<String> = std::env::var("ONLY").ok();
    for (name, exec) in &execs {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let mut c = compiled();
        for _ in 0..3 {
            exec.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &rows_all, 0).unwrap();
        }
        let n: usize = std::env::var("STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
        let t = Instant::now();
        for _ in 0..n {
            exec.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &rows_all, 0).unwrap();
        }
        println!("{:>10}: {:.2} ms/step", name, t.elapsed().as_secs_f64() * 1000.0 / n as f64);
        if let Some(set) = exec.replica_set() {
            // Virtual GPUs run a step as one task per replica (forward, backward, their share
            // of the update): the rest of the step is handing work out and collecting it.
            let tl = set.timeline();
            let k = set.len();
            let steps: Vec<&[rustgpu_core::parallel::Interval]> = tl.chunks(k).filter(|c| c.len() == k).collect();
            let slowest =
                steps.iter().map(|c| c.iter().map(|i| (i.end - i.start).as_secs_f64()).fold(0.0, f64::max)).sum::<f64>() * 1000.0 / steps.len() as f64;
            println!("            slowest replica's task {:.2} ms", slowest);
        }
    }
    // Half a batch on one device alone: what each of two replicas would take without contention.
    {
        let half_rows: usize = std::env::var("HALF_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(rows / 2);
        let half: Vec<usize> = (0..half_rows).collect();
        let exec = Executor::Local(cpu_device());
        let mut c = compiled();
        for _ in 0..3 {
            exec.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &half, 0).unwrap();
        }
        let n: usize = std::env::var("HALF_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
        let t = Instant::now();
        for _ in 0..n {
            exec.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &half, 0).unwrap();
        }
        println!("local, half batch: {:.2} ms/step", t.elapsed().as_secs_f64() * 1000.0 / n as f64);
    }
    // The machine's ceiling: two independent half-batch steps on two pinned threads at once
    // (no synchronisation at all) against the full-batch step alone.
    if std::env::var_os("CEILING").is_some() {
        let steps = 40;
        let run = |m: Model, rows: Vec<usize>, cpu: usize| {
            let (x, y) = (&x, &y);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            pool.install(move || {
                pin(cpu);
                let mut m = m.clone();
                let exec = Executor::Local(cpu_device());
                let mut c = compiled();
                for _ in 0..3 {
                    exec.train_on_batch(&mut m, &mut c, &[x], &[y], None, &rows, 0).unwrap();
                }
                let t = Instant::now();
                for _ in 0..steps {
                    exec.train_on_batch(&mut m, &mut c, &[x], &[y], None, &rows, 0).unwrap();
                }
                t.elapsed().as_secs_f64() * 1000.0 / steps as f64
            })
        };
        for _ in 0..5 {
            let full = run(m.clone(), rows_all.clone(), 0);
            let half_solo = run(m.clone(), (0..rows / 2).collect(), 0);
            let (a, b) = std::thread::scope(|sc| {
                let h = sc.spawn(|| run(m.clone(), (0..rows / 2).collect(), 1));
                let a = run(m.clone(), (0..rows / 2).collect(), 0);
                (a, h.join().unwrap())
            });
            println!("full {:.2} ms, half alone {:.2}, half x2 concurrent {:.2}/{:.2}: ceiling {:.2}x", full, half_solo, a, b, full / a.max(b));
        }
        return;
    }
    // The serial pieces on their own.
    let mut c = compiled();
    let grads: Vec<Vec<f32>> = m.weights.iter().map(|w| vec![0.001; w.value.len()]).collect();
    let t = Instant::now();
    for _ in 0..20 {
        {
            let views: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect();
            c.optimizer.apply(&mut m.weights, &[views]).unwrap();
        }
    }
    println!("optimizer step: {:.2} ms", t.elapsed().as_secs_f64() * 1000.0 / 20.0);
}

fn pin(cpu: usize) {
    extern "C" {
        fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }
    let mask = [1u64 << cpu];
    unsafe { sched_setaffinity(0, 8, mask.as_ptr()) };
}

fn dev(id: usize) -> DeviceInfo {
    DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("v{}", id), memory: None, threads: 1 }
}
