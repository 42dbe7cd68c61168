//! A functional graph with two inputs, a shared layer and merges: its backward pass
//! matches finite differences, and replicas compute what one device does.
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rustgpu_core::activation::Activation;
use rustgpu_core::device::{DeviceInfo, DeviceKind};
use rustgpu_core::layers::{Add, Concatenate, Dense, ForwardContext, Layer, OutputGrad};
use rustgpu_core::loss::Loss;
use rustgpu_core::model::{Graph, Node, Source};
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::{Compiled, Executor, HostTensor, Model};

/// in0 -> shared -> a; in1 -> shared -> b; add(a, b) -> c; concat(c, a) -> out dense.
fn model() -> Model {
    let layers = vec![
        Layer::new("shared", Dense::new(4, Activation::Tanh, true).unwrap(), 1),
        Layer::new("add", Add {}, 0),
        Layer::new("concat", Concatenate::default(), 0),
        Layer::new("out", Dense::new(2, Activation::Softmax, true).unwrap(), 2),
    ];
    let graph = Graph {
        input_names: vec!["a".into(), "b".into()],
        input_shapes: vec![vec![3], vec![3]],
        nodes: vec![
            Node { layer: 0, inputs: vec![Source::Input(0)] },
            Node { layer: 0, inputs: vec![Source::Input(1)] },
            Node { layer: 1, inputs: vec![Source::Node(0), Source::Node(1)] },
            Node { layer: 2, inputs: vec![Source::Node(2), Source::Node(0)] },
            Node { layer: 3, inputs: vec![Source::Node(3)] },
        ],
        outputs: vec![Source::Node(4)],
    };
    Model::functional("f".into(), layers, graph).unwrap()
}

fn data(rows: usize) -> (HostTensor, HostTensor, HostTensor) {
    let v = |k: usize| (0..rows * 3).map(|i| ((i * 37 + k * 11) % 23) as f32 / 11.0 - 1.0).collect::<Vec<_>>();
    let mut y = vec![0f32; rows * 2];
    for r in 0..rows {
        y[r * 2 + r % 2] = 1.0;
    }
    (HostTensor::new(vec![rows, 3], v(0)).unwrap(), HostTensor::new(vec![rows, 3], v(1)).unwrap(), HostTensor::new(vec![rows, 2], y).unwrap())
}

fn loss_of(m: &Model, weights: &[Tensor], xs: &[Tensor], y: &Tensor) -> f32 {
    let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None };
    let (outs, _) = m.arch.forward(weights, xs, &mut ctx).unwrap();
    Loss::parse("categorical_crossentropy").unwrap().per_sample(&outs[0], y).unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn shared_layer_and_merge_gradients_match_finite_differences() {
    let m = model();
    let dev = Device::Cpu;
    let (x0, x1, y) = data(5);
    let xs = vec![x0.to_device(&dev).unwrap(), x1.to_device(&dev).unwrap()];
    let y = y.to_device(&dev).unwrap();
    let weights: Vec<Tensor> = m.get_weights().iter().map(|w| w.to_device(&dev).unwrap()).collect();
    let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None };
    let (outs, caches) = m.arch.forward(&weights, &xs, &mut ctx).unwrap();
    let g = Loss::parse("categorical_crossentropy").unwrap().gradient(&outs[0], &y, 5).unwrap();
    assert!(matches!(g, OutputGrad::Logits(_)));
    let grads = m.arch.backward(&weights, &caches, vec![g]).unwrap();
    for (wi, w) in weights.iter().enumerate() {
        let base = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let analytic = grads[wi].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for i in 0..base.len() {
            let h = 1e-2;
            let shifted = |d: f32| {
                let mut v = base.clone();
                v[i] += d;
                let mut ws = weights.clone();
                ws[wi] = Tensor::from_vec(v, w.dims(), &dev).unwrap();
                loss_of(&m, &ws, &xs, &y)
            };
            let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
            assert!((numeric - analytic[i]).abs() < 2e-3, "weight {} element {}: {} vs {}", wi, i, analytic[i], numeric);
        }
    }
}

#[test]
fn replicas_train_a_functional_model_like_one_device() {
    let (mut a, mut b) = (model(), model());
    let compiled = || {
        Compiled::single(
            Loss::parse("categorical_crossentropy").unwrap(),
            vec![],
            Optimizer::new(OptimizerConfig::from_config("sgd", &serde_json::json!({"learning_rate": 0.1, "momentum": 0.9})).unwrap()),
        )
    };
    let (mut ca, mut cb) = (compiled(), compiled());
    let local = Executor::Local(rustgpu_core::device::cpu_device());
    let devices = (0..3).map(|id| DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("f{}", id), memory: None, threads: 1 }).collect();
    let par = Executor::replicated(ReplicaSet::new(devices, MergeDevice::Cpu).unwrap());
    let (x0, x1, y) = data(11);
    let rows: Vec<usize> = (0..11).collect();
    for step in 0..4 {
        let sa = local.train_on_batch(&mut a, &mut ca, &[&x0, &x1], &[&y], None, &rows, step).unwrap();
        let sb = par.train_on_batch(&mut b, &mut cb, &[&x0, &x1], &[&y], None, &rows, step).unwrap();
        assert!((sa.loss - sb.loss).abs() < 1e-5);
    }
    for (wa, wb) in a.weights.iter().zip(&b.weights) {
        for (u, v) in wa.value.iter().zip(wb.value.iter()) {
            assert!((u - v).abs() < 1e-5, "{}: {} vs {}", wa.name, u, v);
        }
    }
    assert_eq!(local.predict_on_batch(&a, &[&x0, &x1], &rows, 0).unwrap(), par.predict_on_batch(&a, &[&x0, &x1], &rows, 0).unwrap());
}

/// The gradients k_gradients() asks for: of an expression of the outputs (the sum of the
/// squared output, over the batch too) at the inputs and at a layer output, in inference.
#[test]
fn expression_gradients_at_inputs_and_layer_outputs_match_finite_differences() {
    use rustgpu_core::trace::{Op, Reduction, Trace};
    let m = model();
    let (x0, x1, _) = data(3);
    let mut t = Trace::new(vec![vec![None, Some(2)]], Vec::new());
    let sq = t.record(Op::PowScalar { exponent: 2.0 }, vec![0]).unwrap();
    let total = t.record(Op::Reduce { f: Reduction::Sum, axes: vec![0, 1], keepdims: false }, vec![sq]).unwrap();
    t.set_outputs(vec![total]).unwrap();
    let value = |a: &HostTensor, b: &HostTensor| -> f32 {
        let (outs, _) = rustgpu_core::gradients::expression_gradients(&m, &t, &[a.clone(), b.clone()], &[], 0).unwrap();
        outs[0].data[0]
    };
    let wanted = [Source::Input(0), Source::Input(1), Source::Node(2)];
    let (outs, grads) = rustgpu_core::gradients::expression_gradients(&m, &t, &[x0.clone(), x1.clone()], &wanted, 0).unwrap();
    assert!((outs[0].data[0] - value(&x0, &x1)).abs() < 1e-6);
    let eps = 1e-2f32;
    for (k, x) in [&x0, &x1].into_iter().enumerate() {
        assert_eq!(grads[k].shape, x.shape);
        for i in 0..x.data.len() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up.data[i] += eps;
            down.data[i] -= eps;
            let (fu, fd) = if k == 0 { (value(&up, &x1), value(&down, &x1)) } else { (value(&x0, &up), value(&x0, &down)) };
            let numeric = (fu - fd) / (2.0 * eps);
            assert!((numeric - grads[k].data[i]).abs() < 2e-2 * (1.0 + numeric.abs()), "input {} value {}: {} against {}", k, i, grads[k].data[i], numeric);
        }
    }
    // At the add layer's output (node 2): shaped as it, and zero-free.
    assert_eq!(grads[2].shape, vec![3, 4]);
    assert!(grads[2].data.iter().any(|v| *v != 0.0));
}
