//! Times a recurrent layer's forward and backward pass at the IMDB benchmark's sizes (batch
//! 32, 80 steps, 128 features, 128 units) on the CPU, and the pieces of one step:
//! `cargo run --release -p rustgpu-core --example rnn_profile [LSTM|GRU|SimpleRNN]`.
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rustgpu_core::layers::{ForwardContext, Layer, OutputGrad};
use std::time::Instant;

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[reps / 2]
}

fn main() {
    rustgpu_core::device::configure_threads();
    let class = std::env::args().nth(1).unwrap_or_else(|| "LSTM".into());
    let (b, t, d, u) = (32, 80, 128, 128);
    let layer = Layer::from_config(&class, &serde_json::json!({ "units": u }), 0).unwrap();
    let dev = Device::Cpu;
    let weights: Vec<Tensor> = layer.weight_specs(&[t, d]).iter().map(|s| Tensor::randn(0f32, 0.1, s.shape.as_slice(), &dev).unwrap()).collect();
    let x = Tensor::randn(0f32, 1.0, (b, t, d), &dev).unwrap();
    let ctx = || ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None };
    // FORWARD_REPS=n: only n inference passes (training off, as predict runs them), for perf.
    if let Some(reps) = std::env::var("FORWARD_REPS").ok().and_then(|v| v.parse::<usize>().ok()) {
        let infer = || ForwardContext { training: false, ..ctx() };
        let ms = median_ms(reps, || {
            layer.forward(&weights, &x, &mut infer()).unwrap();
        });
        println!("{} batch {} x {} steps: inference forward {:.2} ms ({} threads)", class, b, t, ms, rayon::current_num_threads());
        let x2 = x.reshape((b * t, d)).unwrap();
        let projection = median_ms(reps, || {
            rustgpu_core::kernels::linear(&x2, &weights[0], weights.get(2), false).unwrap();
        });
        println!("  input projection ({} x {}) . ({} x {}): {:.2} ms", b * t, d, d, weights[0].dim(1).unwrap(), projection);
        let n = weights[1].dim(1).unwrap();
        let recurrent = weights[1].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let rows = b / 2;
        let (a, base) = (vec![0.5f32; rows * u], vec![0.1f32; rows * n]);
        if class == "LSTM" {
            let xw = vec![0.1f32; t * b * n];
            let (h0, c0) = (vec![0f32; b * u], vec![0f32; b * u]);
            let gate = rustgpu_core::kernels::recurrent::Gate::Sigmoid;
            let whole = median_ms(reps, || {
                std::hint::black_box(rustgpu_core::kernels::recurrent::lstm_sequence(&xw, &h0, &c0, &recurrent, t, u, gate, &|| false));
            });
            println!("  lstm_sequence kernel: {:.2} ms", whole);
        }
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let (a_t, base_t) = (Tensor::from_vec(a, (rows, u), &dev).unwrap(), Tensor::from_vec(base, (rows, n), &dev).unwrap());
        let through_gemm = one_thread.install(|| {
            median_ms(2001, || {
                std::hint::black_box((rustgpu_core::kernels::matmul(&a_t, &weights[1]).unwrap() + &base_t).unwrap());
            })
        });
        println!("  one thread's step product ({} x {}) . ({} x {}) and add: {:.1} us", rows, u, u, n, through_gemm * 1e3);
        return;
    }
    let fwd = median_ms(15, || {
        layer.forward(&weights, &x, &mut ctx()).unwrap();
    });
    let (out, cache) = layer.forward(&weights, &x, &mut ctx()).unwrap();
    let dy = out.value.ones_like().unwrap();
    let bwd = median_ms(15, || {
        layer.backward(&weights, &cache, OutputGrad::Value(dy.clone()), false).unwrap();
    });
    println!("{} batch {} x {} steps: forward {:.2} ms, backward {:.2} ms ({} threads)", class, b, t, fwd, bwd, rayon::current_num_threads());
    let h = Tensor::randn(0f32, 1.0, (b, u), &dev).unwrap();
    let gates = weights[1].dim(1).unwrap();
    let xw = Tensor::randn(0f32, 1.0, (b, gates), &dev).unwrap();
    let per_step = |name: &str, f: &mut dyn FnMut()| println!("  {:<34} {:>8.1} us", name, median_ms(201, f) * 1e3);
    per_step("matmul h . U", &mut || {
        rustgpu_core::kernels::matmul(&h, &weights[1]).unwrap();
    });
    per_step("candle matmul h . U", &mut || {
        h.matmul(&weights[1]).unwrap();
    });
    per_step("add (b, gates)", &mut || {
        (&xw + &xw).unwrap();
    });
    per_step("tanh (b, units)", &mut || {
        h.tanh().unwrap();
    });
    let z = vec![0.3f32; b * gates];
    let c = vec![0.1f32; b * u];
    per_step("fused LSTM step (b, 4 units)", &mut || {
        std::hint::black_box(rustgpu_core::kernels::recurrent::lstm_forward(&z, &c, u, rustgpu_core::kernels::recurrent::Gate::Sigmoid));
    });
    let v: Vec<f32> = (0..b * u).map(|i| (i as f32 * 0.001).sin()).collect();
    per_step("f32::tanh x (b, units)", &mut || {
        std::hint::black_box(v.iter().map(|x| x.tanh()).sum::<f32>());
    });
    per_step("f32::exp x (b, units)", &mut || {
        std::hint::black_box(v.iter().map(|x| x.exp()).sum::<f32>());
    });
    let ut = weights[1].t().unwrap().contiguous().unwrap();
    per_step("matmul dz . (U^T contiguous)", &mut || {
        rustgpu_core::kernels::matmul(&xw, &ut).unwrap();
    });
    per_step("matmul_by_transpose dz . U^T", &mut || {
        rustgpu_core::kernels::matmul_by_transpose(&xw, &weights[1]).unwrap();
    });
}
