//! GPU check, run on a machine with a CUDA GPU (build with `--features cuda`; see
//! tools/gpu_check.sh): every layer's forward/backward on CUDA against the CPU, data-parallel
//! predict and training with 2 replicas on one GPU against one device, out-of-memory handling,
//! and the training step times of the MLP 784-512-512-10 and the benchmarks' small CNN at
//! batch 256.
use rustgpu_core::activation::Activation;
use rustgpu_core::device::{cpu_device, cuda_device_count, DeviceInfo, DeviceKind};
use rustgpu_core::layers::{BatchNormalization, Dense, Layer};
use rustgpu_core::loss::Loss;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::{Compiled, Executor, HostTensor, Model};
use std::time::Instant;

/// RUSTGPU_CHECK_ON_CPU=1 runs the whole check with CPU-backed stand-ins (to test the check
/// itself on a machine without a GPU; the out-of-memory part is skipped there).
fn dry_run() -> bool {
    std::env::var_os("RUSTGPU_CHECK_ON_CPU").is_some()
}

fn cuda(id: usize, name: &str) -> DeviceInfo {
    let kind = if dry_run() { DeviceKind::Virtual } else { DeviceKind::Cuda };
    DeviceInfo { id, kind, name: name.into(), memory: None, threads: 1 }
}

fn mlp(widths: &[usize], input: usize, bn: bool) -> Model {
    let mut m = Model::new("mlp".into());
    for (i, w) in widths.iter().enumerate() {
        let last = i + 1 == widths.len();
        let act = if last { Activation::Softmax } else { Activation::Relu };
        let dense = Layer::new(format!("d{}", i), Dense::new(*w, act, true).unwrap(), i as u64 + 1);
        m.add(dense, if i == 0 { Some(vec![input]) } else { None }).unwrap();
        if bn && !last {
            m.add(Layer::new(format!("bn{}", i), BatchNormalization::default(), 0), None).unwrap();
        }
    }
    m
}

fn data(rows: usize, input: usize, classes: usize) -> (HostTensor, HostTensor) {
    shaped_data(rows, &[input], classes)
}

fn shaped_data(rows: usize, sample: &[usize], classes: usize) -> (HostTensor, HostTensor) {
    let input: usize = sample.iter().product();
    let x: Vec<f32> = (0..rows * input).map(|i| ((i * 7919 % 997) as f32 / 498.0) - 1.0).collect();
    let mut y = vec![0f32; rows * classes];
    for r in 0..rows {
        y[r * classes + r % classes] = 1.0;
    }
    let mut shape = vec![rows];
    shape.extend_from_slice(sample);
    (HostTensor::new(shape, x).unwrap(), HostTensor::new(vec![rows, classes], y).unwrap())
}

/// A Sequential model from Keras layer configs (the same reader as load_model_hdf5()).
fn keras_sequential(input: &[usize], layers: &[&str]) -> Model {
    let dims: Vec<String> = input.iter().map(|d| d.to_string()).collect();
    let json = format!(
        r#"{{"class_name":"Sequential","config":{{"name":"m","layers":[{{"class_name":"InputLayer","config":{{"batch_input_shape":[null,{}]}}}},{}]}}}}"#,
        dims.join(","),
        layers.join(",")
    );
    let mut m = rustgpu_core::io::model_from_config(&json).unwrap();
    m.ensure_built(&[input.to_vec()]).unwrap();
    m
}

fn layer(class: &str, config: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sep = if config.is_empty() { "" } else { "," };
    format!(r#"{{"class_name":"{}","config":{{"name":"l{}"{}{}}}}}"#, class, id, sep, config)
}

/// Models that together hold every layer kind with a window (conv, depthwise, separable,
/// pooling, 1-d variants) and batch normalization, in several paddings and strides.
fn window_models() -> Vec<(&'static str, Vec<usize>, Model)> {
    let dense = layer("Dense", r#""units":5,"activation":"softmax""#);
    let mut out = Vec::new();
    let conv = [
        layer("Conv2D", r#""filters":8,"kernel_size":[3,3],"padding":"same","activation":"relu""#),
        layer("MaxPooling2D", r#""pool_size":[2,2]"#),
        layer("Conv2D", r#""filters":6,"kernel_size":[3,3],"strides":[2,2],"activation":"tanh""#),
        layer("MaxPooling2D", r#""pool_size":[2,2],"strides":[1,1],"padding":"same""#),
        layer("Flatten", ""),
        dense.clone(),
    ];
    out.push(("conv2d (same, strided) + max pooling + flatten", vec![12, 12, 3]));
    let separable = [
        layer("SeparableConv2D", r#""filters":8,"kernel_size":[3,3],"padding":"same","depth_multiplier":2,"activation":"relu""#),
        layer("AveragePooling2D", r#""pool_size":[3,3],"strides":[2,2],"padding":"same""#),
        layer("DepthwiseConv2D", r#""kernel_size":[3,3],"dilation_rate":[2,2],"activation":"tanh""#),
        layer("GlobalAveragePooling2D", ""),
        dense.clone(),
    ];
    out.push(("separable + average pooling + depthwise (dilated) + global avg", vec![12, 12, 3]));
    let norm = [
        layer("Conv2D", r#""filters":4,"kernel_size":[1,1]"#),
        layer("BatchNormalization", r#""axis":-1,"momentum":0.99,"epsilon":0.001"#),
        layer("ZeroPadding2D", r#""padding":[[1,1],[1,1]]"#),
        layer("AveragePooling2D", r#""pool_size":[2,2]"#),
        layer("GlobalMaxPooling2D", ""),
        dense.clone(),
    ];
    out.push(("conv 1x1 + batch norm + zero padding + global max", vec![9, 9, 3]));
    let seq1d = [
        layer("Conv1D", r#""filters":8,"kernel_size":3,"padding":"same","activation":"relu""#),
        layer("MaxPooling1D", r#""pool_size":2"#),
        layer("Flatten", ""),
        dense,
    ];
    out.push(("conv1d + max pooling 1d", vec![16, 4]));
    let configs: Vec<Vec<String>> = vec![conv.to_vec(), separable.to_vec(), norm.to_vec(), seq1d.to_vec()];
    out.into_iter()
        .zip(configs)
        .map(|((label, shape), layers)| {
            let refs: Vec<&str> = layers.iter().map(|s| s.as_str()).collect();
            (label, shape.clone(), keras_sequential(&shape, &refs))
        })
        .collect()
}

/// A functional model with the merge layers (add, multiply, concatenate) on two branches.
fn merge_model() -> Model {
    let node = |class: &str, name: &str, config: &str, inputs: &[&str]| {
        let refs: Vec<String> = inputs.iter().map(|i| format!(r#"["{}",0,0,{{}}]"#, i)).collect();
        let sep = if config.is_empty() { "" } else { "," };
        format!(r#"{{"class_name":"{}","name":"{}","config":{{"name":"{}"{}{}}},"inbound_nodes":[[{}]]}}"#, class, name, name, sep, config, refs.join(","))
    };
    let layers = [
        r#"{"class_name":"InputLayer","name":"in","config":{"name":"in","batch_input_shape":[null,8]},"inbound_nodes":[]}"#.to_string(),
        node("Dense", "a", r#""units":6,"activation":"tanh""#, &["in"]),
        node("Dense", "b", r#""units":6,"activation":"sigmoid""#, &["in"]),
        node("Add", "add", "", &["a", "b"]),
        node("Multiply", "mul", "", &["a", "b"]),
        node("Concatenate", "cat", r#""axis":-1"#, &["add", "mul"]),
        node("Dense", "out", r#""units":5,"activation":"softmax""#, &["cat"]),
    ];
    let json = format!(
        r#"{{"class_name":"Functional","config":{{"name":"f","layers":[{}],"input_layers":[["in",0,0]],"output_layers":[["out",0,0]]}}}}"#,
        layers.join(",")
    );
    let mut m = rustgpu_core::io::model_from_config(&json).unwrap();
    m.ensure_built(&[vec![8]]).unwrap();
    m
}

/// Embedding (integer ids as floats), activation, reshape and dropout (identity at
/// inference; in training its mask is drawn per device, so only the forward is compared).
fn sequence_model() -> Model {
    keras_sequential(
        &[6],
        &[
            &layer("Embedding", r#""input_dim":20,"output_dim":4"#),
            &layer("Activation", r#""activation":"tanh""#),
            &layer("Reshape", r#""target_shape":[3,8]"#),
            &layer("Conv1D", r#""filters":5,"kernel_size":2,"activation":"relu""#),
            &layer("Flatten", ""),
            &layer("Dense", r#""units":5,"activation":"softmax""#),
        ],
    )
}

/// Relative errors of `gpu` against `cpu`: the predictions, and the weight change of one
/// SGD step; a device error as its message.
fn compare_on_devices(cpu: &Executor, gpu: &Executor, m: &Model, x: &HostTensor, y: &HostTensor) -> (Result<f64, String>, Result<f64, String>) {
    let rows: Vec<usize> = (0..x.rows()).collect();
    let p_cpu = cpu.predict_on_batch(m, &[x], &rows, 0).unwrap().remove(0);
    let forward = gpu.predict_on_batch(m, &[x], &rows, 0).map(|mut p| rel(&p.remove(0).data, &p_cpu.data)).map_err(|e| e.to_string());
    let (mut a, mut b) = (m.clone(), m.clone());
    let (mut ca, mut cb) = (compiled("sgd"), compiled("sgd"));
    cpu.train_on_batch(&mut a, &mut ca, &[x], &[y], None, &rows, 0).unwrap();
    let backward = gpu.train_on_batch(&mut b, &mut cb, &[x], &[y], None, &rows, 0).map_err(|e| e.to_string()).map(|_| {
        let w0 = all_weights(m);
        let da: Vec<f32> = all_weights(&a).iter().zip(&w0).map(|(p, q)| p - q).collect();
        let db: Vec<f32> = all_weights(&b).iter().zip(&w0).map(|(p, q)| p - q).collect();
        rel(&db, &da)
    });
    (forward, backward)
}

fn all_weights(m: &Model) -> Vec<f32> {
    m.weights.iter().flat_map(|w| w.value.iter().copied()).collect()
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
    num / den
}

fn compiled(opt: &str) -> Compiled {
    Compiled::single(Loss::parse("categorical_crossentropy").unwrap(), vec![], Optimizer::new(OptimizerConfig::by_name(opt).unwrap()))
}

fn main() {
    rustgpu_core::device::configure_threads();
    let n = if dry_run() { 1 } else { cuda_device_count() };
    println!("cuda_device_count: {}", n);
    for d in rustgpu_core::device::gpu_devices() {
        println!("device {}: {} ({} bytes)", d.label(), d.name, d.memory.unwrap_or(0));
    }
    let (driver, cublas) = rustgpu_core::device::cuda_versions();
    println!("CUDA driver {:?}, cuBLAS {:?}", driver, cublas);
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
        let p_cpu = cpu.predict_on_batch(&m, &[&x], &rows, 0).unwrap().remove(0);
        let p_gpu = gpu.predict_on_batch(&m, &[&x], &rows, 0).unwrap().remove(0);
        check(&format!("forward {} CUDA vs CPU", label), rel(&p_gpu.data, &p_cpu.data), 1e-4);
        let (mut a, mut b) = (m.clone(), m.clone());
        let (mut ca, mut cb) = (compiled("sgd"), compiled("sgd"));
        cpu.train_on_batch(&mut a, &mut ca, &[&x], &[&y], None, &rows, 0).unwrap();
        gpu.train_on_batch(&mut b, &mut cb, &[&x], &[&y], None, &rows, 0).unwrap();
        let (wa, wb): (Vec<f32>, Vec<f32>) =
            (a.weights.iter().flat_map(|w| w.value.iter().copied()).collect(), b.weights.iter().flat_map(|w| w.value.iter().copied()).collect());
        check(&format!("one SGD step (backward) {} CUDA vs CPU", label), rel(&wb, &wa), 1e-4);
    }
    // Window layers, merges (functional), embedding/activation/reshape: the forward pass and
    // the weight change of one SGD step (the gradients times the learning rate).
    let ids = |rows: usize| {
        let x: Vec<f32> = (0..rows * 6).map(|i| ((i * 7) % 20) as f32).collect();
        HostTensor::new(vec![rows, 6], x).unwrap()
    };
    let mut cases: Vec<(&str, Model, HostTensor, HostTensor)> = window_models()
        .into_iter()
        .map(|(label, shape, m)| {
            let (x, y) = shaped_data(32, &shape, 5);
            (label, m, x, y)
        })
        .collect();
    cases.push(("add/multiply/concatenate (functional)", merge_model(), data(32, 8, 5).0, data(32, 8, 5).1));
    cases.push(("embedding + activation + reshape + conv1d", sequence_model(), ids(32), data(32, 8, 5).1));
    for (label, m, x, y) in cases {
        let (forward, backward) = compare_on_devices(&cpu, &gpu, &m, &x, &y);
        match forward {
            Ok(err) => check(&format!("forward {} CUDA vs CPU", label), err, 1e-4),
            Err(e) => check(&format!("forward {} CUDA: {}", label, e), f64::INFINITY, 1e-4),
        }
        match backward {
            Ok(err) => check(&format!("backward {} CUDA vs CPU (SGD step)", label), err, 1e-4),
            Err(e) => check(&format!("backward {} CUDA: {}", label, e), f64::INFINITY, 1e-4),
        }
    }
    {
        let m = keras_sequential(
            &[8],
            &[&layer("Dense", r#""units":6"#), &layer("Dropout", r#""rate":0.5"#), &layer("Dense", r#""units":5,"activation":"softmax""#)],
        );
        let (x, _) = data(32, 8, 5);
        let rows: Vec<usize> = (0..32).collect();
        let p_cpu = cpu.predict_on_batch(&m, &[&x], &rows, 0).unwrap().remove(0);
        let p_gpu = gpu.predict_on_batch(&m, &[&x], &rows, 0).unwrap().remove(0);
        check("forward dropout (inference) CUDA vs CPU", rel(&p_gpu.data, &p_cpu.data), 1e-4);
    }
    // Two replicas on one GPU (two workers) against one device.
    for merge in [MergeDevice::Cpu, MergeDevice::FirstReplica] {
        let set = ReplicaSet::new(vec![cuda(0, "cuda0 replica a"), cuda(0, "cuda0 replica b")], merge).unwrap();
        let par = Executor::replicated(set);
        let (x, y) = data(100, 32, 5);
        let rows: Vec<usize> = (0..100).collect();
        let m = mlp(&[48, 24, 5], 32, false);
        let p1 = gpu.predict_on_batch(&m, &[&x], &rows, 0).unwrap().remove(0);
        let p2 = par.predict_on_batch(&m, &[&x], &rows, 0).unwrap().remove(0);
        check(&format!("predict 2 replicas vs 1 device (merge {:?})", merge), rel(&p2.data, &p1.data), 1e-6);
        let (mut a, mut b) = (m.clone(), m.clone());
        let (mut ca, mut cb) = (compiled("sgd"), compiled("sgd"));
        for epoch in 0..2 {
            for chunk in rows.chunks(25) {
                gpu.train_on_batch(&mut a, &mut ca, &[&x], &[&y], None, chunk, epoch).unwrap();
                par.train_on_batch(&mut b, &mut cb, &[&x], &[&y], None, chunk, epoch).unwrap();
            }
        }
        let (wa, wb): (Vec<f32>, Vec<f32>) =
            (a.weights.iter().flat_map(|w| w.value.iter().copied()).collect(), b.weights.iter().flat_map(|w| w.value.iter().copied()).collect());
        check(&format!("2 epochs, 2 replicas vs 1 device (merge {:?})", merge), rel(&wb, &wa), 1e-5);
    }
    // A CNN through 2 replicas on one GPU against one device.
    {
        let set = ReplicaSet::new(vec![cuda(0, "cuda0 replica a"), cuda(0, "cuda0 replica b")], MergeDevice::Cpu).unwrap();
        let par = Executor::replicated(set);
        let (label, shape, m) = window_models().remove(0);
        let (x, y) = shaped_data(90, &shape, 5);
        let rows: Vec<usize> = (0..90).collect();
        let p1 = gpu.predict_on_batch(&m, &[&x], &rows, 0).unwrap().remove(0);
        let p2 = par.predict_on_batch(&m, &[&x], &rows, 0).unwrap().remove(0);
        check(&format!("predict 2 replicas vs 1 device ({})", label), rel(&p2.data, &p1.data), 1e-5);
        let (mut a, mut b) = (m.clone(), m.clone());
        let (mut ca, mut cb) = (compiled("adam"), compiled("adam"));
        for epoch in 0..2 {
            for chunk in rows.chunks(30) {
                gpu.train_on_batch(&mut a, &mut ca, &[&x], &[&y], None, chunk, epoch).unwrap();
                par.train_on_batch(&mut b, &mut cb, &[&x], &[&y], None, chunk, epoch).unwrap();
            }
        }
        check(&format!("2 epochs Adam, 2 replicas vs 1 device ({})", label), rel(&all_weights(&b), &all_weights(&a)), 1e-4);
    }
    // Out of memory: a clear error naming the device and the fix; the model stays usable.
    if !dry_run() {
        let wide = keras_sequential(&[8], &[&layer("Dense", r#""units":131072"#)]);
        let (x, _) = data(1 << 18, 8, 2);
        let all: Vec<usize> = (0..1 << 18).collect();
        let before = all_weights(&wide);
        match gpu.predict_on_batch(&wide, &[&x], &all, 0) {
            Ok(_) => check("out of memory: 128 GiB output did not fail", f64::INFINITY, 0.0),
            Err(e) => {
                let msg = e.to_string();
                println!("out-of-memory error: {}", msg);
                // Refused before allocating, against the device's free memory (a resource
                // error), or, where the estimate falls short, CUDA's own out-of-memory error.
                let checked_first = e.class() == "rustgpu_resource_error" && msg.contains("of GPU memory but");
                let clear = (checked_first || msg.contains("out of memory")) && msg.contains("batch_size") && msg.contains("/gpu:0");
                check("out of memory: error names the device and batch_size", if clear { 0.0 } else { 1.0 }, 0.0);
                check("out of memory: refused before allocating, against the free memory", if checked_first { 0.0 } else { 1.0 }, 0.0);
            }
        }
        let small: Vec<usize> = (0..256).collect();
        let usable = gpu.predict_on_batch(&wide, &[&x], &small, 0).is_ok() && all_weights(&wide) == before;
        check("out of memory: model usable afterwards, weights unchanged", if usable { 0.0 } else { 1.0 }, 0.0);
    }
    // Step times, batch 256, RMSprop: the MLP 784-512-512-10 and the benchmarks' small CNN.
    let cnn = keras_sequential(
        &[28, 28, 1],
        &[
            &layer("Conv2D", r#""filters":32,"kernel_size":[3,3],"activation":"relu""#),
            &layer("MaxPooling2D", r#""pool_size":[2,2]"#),
            &layer("Conv2D", r#""filters":64,"kernel_size":[3,3],"activation":"relu""#),
            &layer("MaxPooling2D", r#""pool_size":[2,2]"#),
            &layer("Flatten", ""),
            &layer("Dense", r#""units":128,"activation":"relu""#),
            &layer("Dense", r#""units":10,"activation":"softmax""#),
        ],
    );
    let (cx, cy) = shaped_data(256, &[28, 28, 1], 10);
    let (x, y) = data(256, 784, 10);
    let rows: Vec<usize> = (0..256).collect();
    for (label, start, xs, ys) in [("mlp", mlp(&[512, 512, 10], 784, false), &x, &y), ("cnn", cnn, &cx, &cy)] {
        let exec = &gpu;
        let mut m = start;
        let mut c = compiled("rmsprop");
        for _ in 0..10 {
            exec.train_on_batch(&mut m, &mut c, &[xs], &[ys], None, &rows, 0).unwrap();
        }
        // Each step ends with the weights back on the host, so the device is synchronized.
        let mut times: Vec<f64> = (0..60)
            .map(|_| {
                let t = Instant::now();
                exec.train_on_batch(&mut m, &mut c, &[xs], &[ys], None, &rows, 0).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("step_ms rustgpu {} {:.3}", label, times[30]);
    }
    println!("failures: {}", failures);
    std::process::exit(if failures == 0 { 0 } else { 1 });
}
