//! Times each layer's forward and backward pass of the benchmarks' small CNN (batch 128) on
//! the CPU, to find where a training step goes:
//! `cargo run --release -p rustgpu-core --example layer_profile`
//! (RAYON_NUM_THREADS sets threads; OPS=1 times single ops instead).
use rand::SeedableRng;
use rustgpu_core::layers::{ForwardContext, OutputGrad};
use rustgpu_core::model::weights_to_device;
use std::time::Instant;

extern "C" {
    fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
}

/// The R package allocates with mimalloc, which keeps freed memory for reuse; glibc's default
/// maps and unmaps every large buffer (page faults on each use), which made this profile's
/// figures several times the package's. Keep large blocks in the heap instead. (mimalloc
/// itself stays out of the core crate: the package's standalone lock file could not list it.)
fn allocate_like_the_package() {
    const M_TRIM_THRESHOLD: std::os::raw::c_int = -1;
    const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
    // SAFETY: glibc's mallopt, called before any thread of ours exists.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 1 << 30);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() {
    allocate_like_the_package();
    if std::env::var_os("OPS").is_some() {
        ops();
        return;
    }
    if std::env::var_os("DEPTHWISE").is_some() {
        depthwise_forward();
        return;
    }
    if std::env::var_os("DIRECT").is_some() {
        direct_against_patch_rows();
        return;
    }
    rustgpu_core::device::configure_threads();
    let json = r#"{"class_name":"Sequential","config":{"name":"cnn","layers":[
        {"class_name":"InputLayer","config":{"batch_input_shape":[null,28,28,1]}},
        {"class_name":"Conv2D","config":{"name":"conv1","filters":32,"kernel_size":[3,3],"activation":"relu"}},
        {"class_name":"MaxPooling2D","config":{"name":"pool1","pool_size":[2,2]}},
        {"class_name":"Conv2D","config":{"name":"conv2","filters":64,"kernel_size":[3,3],"activation":"relu"}},
        {"class_name":"MaxPooling2D","config":{"name":"pool2","pool_size":[2,2]}},
        {"class_name":"Flatten","config":{"name":"flatten"}},
        {"class_name":"Dense","config":{"name":"dense1","units":128,"activation":"relu"}},
        {"class_name":"Dense","config":{"name":"dense2","units":10,"activation":"softmax"}}]}}"#;
    let mut model = rustgpu_core::io::model_from_config(json).unwrap();
    model.ensure_built(&[vec![28, 28, 1]]).unwrap();
    let dev = candle_core::Device::Cpu;
    let values: Vec<_> = model.weights.iter().map(|w| w.value.clone()).collect();
    let shapes: Vec<_> = model.weights.iter().map(|w| w.shape.clone()).collect();
    let weights = weights_to_device(&values, &shapes, &dev).unwrap();
    let batch = 128;
    let x = candle_core::Tensor::rand(0f32, 1.0, (batch, 28, 28, 1), &dev).unwrap();
    let arch = &model.arch;
    // STEP_REPS=n: time only the whole step, n times (for `perf record`).
    let step_reps: Option<usize> = std::env::var("STEP_REPS").ok().and_then(|v| v.parse().ok());
    let reps = step_reps.unwrap_or(30);
    println!("{:<10} {:>12} {:>12}  (ms, median of {}, batch {}, {} threads)", "layer", "forward", "backward", reps, batch, rayon::current_num_threads());
    {
        // The whole training step, as fit() runs it (RMSprop, categorical crossentropy).
        use rustgpu_core::{Compiled, Executor, HostTensor};
        let exec = Executor::Local(rustgpu_core::device::cpu_device());
        let mut m = model.clone();
        let mut c = Compiled::single(
            rustgpu_core::loss::Loss::parse("categorical_crossentropy").unwrap(),
            vec![],
            rustgpu_core::optim::Optimizer::new(rustgpu_core::optim::OptimizerConfig::by_name("rmsprop").unwrap()),
        );
        let xs = HostTensor::from_tensor(&x).unwrap();
        let mut y = vec![0f32; batch * 10];
        for r in 0..batch {
            y[r * 10 + r % 10] = 1.0;
        }
        let ys = HostTensor::new(vec![batch, 10], y).unwrap();
        let rows: Vec<usize> = (0..batch).collect();
        let mut t: Vec<f64> = (0..reps)
            .map(|_| {
                let s = Instant::now();
                exec.train_on_batch(&mut m, &mut c, &[&xs], &[&ys], None, &rows, 0).unwrap();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("{:<10} {:>12.3}  (whole training step; best {:.3})", "step", t[reps / 2], t[0]);
    }
    if step_reps.is_some() {
        return;
    }
    let mut input = x;
    for (i, layer) in arch.layers.iter().enumerate() {
        let w = &weights[arch.weight_ranges[i].clone()];
        let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None };
        let median = |mut t: Vec<f64>| {
            t.sort_by(|a, b| a.partial_cmp(b).unwrap());
            t[t.len() / 2]
        };
        let fwd: Vec<f64> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                let _ = layer.forward(w, &input, &mut ctx).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let (out, cache) = layer.forward(w, &input, &mut ctx).unwrap();
        let dy = out.value.ones_like().unwrap();
        let bwd: Vec<f64> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                let _ = layer.backward(w, &cache, OutputGrad::Value(dy.clone()), i > 0).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        println!("{:<10} {:>12.3} {:>12.3}", layer.name, median(fwd), median(bwd));
        input = out.value;
    }
}

#[allow(dead_code)]
fn ops() {
    let dev = candle_core::Device::Cpu;
    let time = |label: &str, f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..20)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("{:<40} {:>8.3} ms", label, t[10]);
    };
    if std::env::var_os("MLP").is_some() {
        let w = candle_core::Tensor::rand(0f32, 1.0, (784, 512), &dev).unwrap();
        use rustgpu_core::kernels::{matmul, matmul_by_transpose};
        let w2 = candle_core::Tensor::rand(0f32, 1.0, (512, 512), &dev).unwrap();
        for rows in [128usize, 256] {
            let x = candle_core::Tensor::rand(0f32, 1.0, (rows, 784), &dev).unwrap();
            let h = candle_core::Tensor::rand(0f32, 1.0, (rows, 512), &dev).unwrap();
            let dz = candle_core::Tensor::rand(0f32, 1.0, (rows, 512), &dev).unwrap();
            time(&format!("x({}x784) w(784x512)", rows), &|| {
                let _ = matmul(&x, &w).unwrap();
            });
            time("  as (w^T x^T)^T", &|| {
                let _ = matmul_by_transpose(&x, &w.t().unwrap()).unwrap();
            });
            time(&format!("h({}x512) w2(512x512)", rows), &|| {
                let _ = matmul(&h, &w2).unwrap();
            });
            time("  as (w2^T h^T)^T", &|| {
                let _ = matmul_by_transpose(&h, &w2.t().unwrap()).unwrap();
            });
            time(&format!("dz({}x512) w2^T as (w2 dz^T)^T", rows), &|| {
                let _ = matmul_by_transpose(&dz, &w2).unwrap();
            });
            time("  as dz w2^T", &|| {
                let _ = matmul(&dz, &w2.t().unwrap()).unwrap();
            });
            time(&format!("x^T dz ({} rows)", rows), &|| {
                let _ = matmul(&x.t().unwrap(), &dz).unwrap();
            });
            time("  as (dz^T x)^T", &|| {
                let _ = matmul_by_transpose(&x.t().unwrap(), &dz.t().unwrap()).unwrap();
            });
            time(&format!("h^T dz ({} rows)", rows), &|| {
                let _ = matmul(&h.t().unwrap(), &dz).unwrap();
            });
            // A kernel stored transposed (column-major), seen as an (in, out) view: its
            // rows are adjacent, so gemm need not gather it when it is the left operand.
            let w2v = w2.t().unwrap().contiguous().unwrap().t().unwrap();
            let best = |label: &str, f: &dyn Fn()| {
                let t = (0..200)
                    .map(|_| {
                        let s = Instant::now();
                        f();
                        s.elapsed().as_secs_f64() * 1e3
                    })
                    .fold(f64::INFINITY, f64::min);
                println!("{:<40} {:>8.3} ms (best of 200)", label, t);
            };
            best(&format!("h w2 row-major ({} rows)", rows), &|| {
                let _ = matmul(&h, &w2).unwrap();
            });
            best(&format!("h w2 col-major ({} rows)", rows), &|| {
                let _ = matmul(&h, &w2v).unwrap();
            });
            best(&format!("dz w2^T row-major ({} rows)", rows), &|| {
                let _ = matmul_by_transpose(&dz, &w2).unwrap();
            });
            best(&format!("dz w2^T col-major ({} rows)", rows), &|| {
                let _ = matmul_by_transpose(&dz, &w2v).unwrap();
            });
        }
        return;
    }
    let cols = candle_core::Tensor::rand(0f32, 1.0, (86528, 9), &dev).unwrap();
    {
        let dz1 = candle_core::Tensor::rand(0f32, 1.0, (86528, 32), &dev).unwrap();
        time("conv1 dW = cols^T dz (ours)", &|| {
            let _ = rustgpu_core::kernels::matmul(&cols.t().unwrap(), &dz1).unwrap();
        });
        time("conv1 relu backward", &|| {
            let _ = rustgpu_core::kernels::relu_backward(&dz1, &dz1).unwrap();
        });
        time("conv1 bias grad", &|| {
            let _ = rustgpu_core::kernels::sum_rows(&dz1).unwrap();
        });
    }
    let k = candle_core::Tensor::rand(0f32, 1.0, (9, 32), &dev).unwrap();
    let b = candle_core::Tensor::rand(0f32, 1.0, 32, &dev).unwrap();
    let z = cols.matmul(&k).unwrap();
    time("matmul (86528x9)(9x32)", &|| {
        let _ = cols.matmul(&k).unwrap();
    });
    time("broadcast_add bias", &|| {
        let _ = z.broadcast_add(&b).unwrap();
    });
    time("relu", &|| {
        let _ = z.relu().unwrap();
    });
    let x = candle_core::Tensor::rand(0f32, 1.0, (128, 28, 28, 1), &dev).unwrap();
    let g = rustgpu_core::kernels::window_geometry("c", "Conv2D", &[28, 28, 1], (3, 3), (1, 1), (1, 1), false).unwrap();
    time("im2col 28x28x1 3x3", &|| {
        let _ = rustgpu_core::kernels::im2col_on_device(&x, &g).unwrap();
    });
    let y = z.reshape((128, 26, 26, 32)).unwrap();
    let pg = rustgpu_core::kernels::window_geometry("p", "MaxPooling2D", &[26, 26, 32], (2, 2), (2, 2), (1, 1), false).unwrap();
    let kk = candle_core::Tensor::rand(0f32, 1.0, (3, 3, 1, 32), &dev).unwrap();
    time("chain im2col+matmul+bias+relu", &|| {
        let c = rustgpu_core::kernels::im2col_on_device(&x, &g).unwrap();
        let z = c.matmul(&kk.reshape((9, 32)).unwrap()).unwrap().broadcast_add(&b).unwrap();
        let _ = z.relu().unwrap();
    });
    time("matmul with reshaped kernel", &|| {
        let _ = cols.matmul(&kk.reshape((9, 32)).unwrap()).unwrap();
    });
    let cols2 = candle_core::Tensor::rand(0f32, 1.0, (15488, 288), &dev).unwrap();
    let dz2 = candle_core::Tensor::rand(0f32, 1.0, (15488, 64), &dev).unwrap();
    let k2 = candle_core::Tensor::rand(0f32, 1.0, (288, 64), &dev).unwrap();
    time("conv2 dW = cols^T dz", &|| {
        let _ = cols2.t().unwrap().matmul(&dz2).unwrap();
    });
    time("conv2 dcols = dz K^T", &|| {
        let _ = dz2.matmul(&k2.t().unwrap()).unwrap();
    });
    time("conv2 forward matmul", &|| {
        let _ = cols2.matmul(&k2).unwrap();
    });
    let g2 = rustgpu_core::kernels::window_geometry("c", "Conv2D", &[13, 13, 32], (3, 3), (1, 1), (1, 1), false).unwrap();
    time("conv2 col2im", &|| {
        let _ = rustgpu_core::kernels::col2im_on_device(&cols2, 128, &g2).unwrap();
    });
    let x2 = candle_core::Tensor::rand(0f32, 1.0, (128, 13, 13, 32), &dev).unwrap();
    time("conv2 im2col", &|| {
        let _ = rustgpu_core::kernels::im2col_on_device(&x2, &g2).unwrap();
    });
    time("conv2 relu backward", &|| {
        let _ = rustgpu_core::kernels::relu_backward(&dz2, &dz2).unwrap();
    });
    time("conv2 bias grad", &|| {
        let _ = rustgpu_core::kernels::sum_rows(&dz2).unwrap();
    });
    {
        let yv = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        time("pure max 2x2 (no argmax), serial", &|| {
            let (h, w, c, oh, ow) = (26usize, 26usize, 32usize, 13usize, 13usize);
            let mut out = vec![f32::NEG_INFINITY; 128 * oh * ow * c];
            for b in 0..128 {
                let img = &yv[b * h * w * c..][..h * w * c];
                let o = &mut out[b * oh * ow * c..][..oh * ow * c];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let cell = &mut o[(oy * ow + ox) * c..][..c];
                        for i in 0..2 {
                            for j in 0..2 {
                                let src = &img[((oy * 2 + i) * w + ox * 2 + j) * c..][..c];
                                for (a, v) in cell.iter_mut().zip(src) {
                                    *a = if *v > *a { *v } else { *a };
                                }
                            }
                        }
                    }
                }
            }
            std::hint::black_box(out);
        });
    }
    time("max pool 26x26x32", &|| {
        let _ = rustgpu_core::kernels::max_pool_on_device(&y, &pg).unwrap();
    });
}

/// DIRECT=1: the direct convolution against im2col + matmul for the CNN's first convolution
/// (28x28x1, 32 filters, batch 128) and the block net's (71x71x3, stride 2, batch 32), the
/// two routes alternated within each repeat; best of 40 (this VM's noise only adds).
fn direct_against_patch_rows() {
    use candle_core::Tensor;
    use rustgpu_core::kernels::{direct_conv_forward, direct_conv_kernel_gradient, im2col, linear, matmul, relu_backward, sum_rows, window_geometry};
    let dev = candle_core::Device::Cpu;
    for (label, batch, h, c, stride) in [("28x28x1, 3x3, 32 filters, batch 128", 128, 28, 1, 1), ("71x71x3, 3x3/2, 32 filters, batch 32", 32, 71, 3, 2)] {
        let g = window_geometry("c", "Conv2D", &[h, h, c], (3, 3), (stride, stride), (1, 1), false).unwrap();
        let filters = 32;
        let x: Vec<f32> = (0..batch * g.image_len()).map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0).collect();
        let kernel: Vec<f32> = (0..g.patch_len() * filters).map(|i| ((i * 104_729 % 1000) as f32) / 500.0 - 1.0).collect();
        let bias = vec![0.1f32; filters];
        let rows = batch * g.out_h * g.out_w;
        let kt = Tensor::from_slice(&kernel, (g.patch_len(), filters), &dev).unwrap();
        let bt = Tensor::from_slice(&bias, filters, &dev).unwrap();
        let dy: Vec<f32> = (0..rows * filters).map(|i| ((i * 31 % 97) as f32) / 50.0 - 1.0).collect();
        let dyt = Tensor::from_slice(&dy, (rows, filters), &dev).unwrap();
        let mut best = [f64::INFINITY; 4];
        for _ in 0..40 {
            let t = Instant::now();
            let y = direct_conv_forward(&x, batch, &g, &kernel, Some(&bias), true, filters);
            best[0] = best[0].min(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let _ = direct_conv_kernel_gradient(&x, &dy, Some(&y), batch, &g, filters);
            best[1] = best[1].min(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let cols = Tensor::from_vec(im2col(&x, batch, &g), (rows, g.patch_len()), &dev).unwrap();
            let yt = linear(&cols, &kt, Some(&bt), true).unwrap();
            best[2] = best[2].min(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let dz = relu_backward(&yt, &dyt).unwrap();
            let _ = matmul(&cols.t().unwrap(), &dz).unwrap();
            let _ = sum_rows(&dz).unwrap();
            best[3] = best[3].min(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "{}: forward direct {:.3} ms, im2col+matmul {:.3} ms; kernel gradient (ReLU's included) direct {:.3} ms, matmuls {:.3} ms",
            label, best[0], best[2], best[1], best[3]
        );
    }
}

/// DEPTHWISE=1: the depthwise forward and backward passes at the block net's two separable convolutions'
/// sizes (batch 32, 3x3 "same"), best of 40.
fn depthwise_forward() {
    use rustgpu_core::kernels::{depthwise, window_geometry};
    for (h, c) in [(35, 32), (35, 64), (18, 64), (18, 128)] {
        let g = window_geometry("d", "DepthwiseConv2D", &[h, h, c], (3, 3), (1, 1), (1, 1), true).unwrap();
        let batch = 32;
        let x: Vec<f32> = (0..batch * g.image_len()).map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0).collect();
        let kernel: Vec<f32> = (0..9 * c).map(|i| ((i * 104_729 % 1000) as f32) / 500.0 - 1.0).collect();
        let best = (0..40)
            .map(|_| {
                let t = Instant::now();
                let _ = depthwise::forward(&x, &kernel, batch, &g, 1);
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min);
        let dz: Vec<f32> = (0..batch * g.out_h * g.out_w * c).map(|i| ((i * 31 % 97) as f32) / 50.0 - 1.0).collect();
        let best_backward = (0..40)
            .map(|_| {
                let t = Instant::now();
                let _ = depthwise::backward(&x, &kernel, &dz, batch, &g, 1, true);
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min);
        println!("depthwise {}x{}x{}, batch {}: forward {:.3} ms, backward {:.3} ms (best of 40)", h, h, c, batch, best, best_backward);
    }
}
