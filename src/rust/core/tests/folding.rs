//! `predict()`'s inference pass folds batch normalization and ReLUs into the convolutions
//! before them; its outputs equal the plain inference forward pass's, including where a
//! value in between is read twice (no folding there) or a convolution has an activation of
//! its own; and max pooling run by the convolution before it (image by image on the direct
//! route, which then never writes the unpooled output). A training pass lets batch
//! normalization take in the ReLU after it: outputs, moving statistics and gradients
//! bit for bit those of the two layers run apart.
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rustgpu_core::activation::Activation;
use rustgpu_core::layers::{ActivationLayer, Add, BatchNormalization, Conv2D, ForwardContext, Layer, MaxPooling2D, Padding, SeparableConv2D, Tuple2};
use rustgpu_core::model::{Graph, Node, Source};
use rustgpu_core::{HostTensor, Model};

fn conv(filters: usize, activation: Activation, use_bias: bool) -> Conv2D {
    Conv2D { filters, kernel_size: Tuple2(3, 3), padding: Padding::Same, activation, use_bias, ..Conv2D::default() }
}

fn bn() -> BatchNormalization {
    BatchNormalization::default()
}

fn relu() -> ActivationLayer {
    ActivationLayer { activation: Activation::Relu }
}

/// x -> conv(bias) -> bn -> relu -> sep(no bias) -> bn -> [relu -> conv(relu) -> bn] + [bn2 read
/// twice: by add and by conv c2] ; a linear conv followed only by a ReLU; outputs: the add and c2.
fn model() -> Model {
    let layers = vec![
        Layer::new("c0", conv(4, Activation::Linear, true), 1),
        Layer::new("bn0", bn(), 2),
        Layer::new("r0", relu(), 0),
        Layer::new("s1", SeparableConv2D { filters: 6, kernel_size: Tuple2(3, 3), padding: Padding::Same, use_bias: false, ..SeparableConv2D::default() }, 3),
        Layer::new("bn1", bn(), 4),
        Layer::new("r1", relu(), 0),
        Layer::new("c2", conv(6, Activation::Relu, true), 5),
        Layer::new("bn2", bn(), 6),
        Layer::new("add", Add {}, 0),
        Layer::new("c3", conv(6, Activation::Linear, false), 7),
        Layer::new("r3", relu(), 0),
    ];
    let n = |layer: usize, inputs: Vec<Source>| Node { layer, inputs };
    let graph = Graph {
        input_names: vec!["x".into()],
        input_shapes: vec![vec![7, 6, 3]],
        nodes: vec![
            n(0, vec![Source::Input(0)]),                 // 0 c0: absorbs bn0 and r0
            n(1, vec![Source::Node(0)]),                  // 1 bn0
            n(2, vec![Source::Node(1)]),                  // 2 r0
            n(3, vec![Source::Node(2)]),                  // 3 s1: absorbs bn1 and r1
            n(4, vec![Source::Node(3)]),                  // 4 bn1
            n(5, vec![Source::Node(4)]),                  // 5 r1
            n(6, vec![Source::Node(5)]),                  // 6 c2 (relu of its own: keeps bn2 apart)
            n(7, vec![Source::Node(6)]),                  // 7 bn2, read by add and c3
            n(8, vec![Source::Node(7), Source::Node(5)]), // 8 add
            n(9, vec![Source::Node(7)]),                  // 9 c3: absorbs r3
            n(10, vec![Source::Node(9)]),                 // 10 r3
        ],
        outputs: vec![Source::Node(8), Source::Node(10)],
    };
    Model::functional("folding".into(), layers, graph).unwrap()
}

/// Sets deterministic weights away from their initial values (so batch normalization's
/// statistics and scales matter): kernels signed (so the ReLUs zero some values), one-axis
/// weights (biases, gammas, betas, moving means and variances) positive. Returns them on the
/// CPU.
fn set_weights(m: &mut Model, (step, shift, modulus): (usize, usize, usize)) -> Vec<Tensor> {
    let values: Vec<HostTensor> = m
        .get_weights()
        .iter()
        .enumerate()
        .map(|(k, w)| {
            let offset = if w.shape.len() > 1 { -0.5 } else { 0.5 };
            let data = (0..w.data.len()).map(|i| offset + (((i * step + k * shift) % modulus) as f32) / modulus as f32).collect();
            HostTensor::new(w.shape.clone(), data).unwrap()
        })
        .collect();
    m.set_weights(values).unwrap();
    m.get_weights().iter().map(|w| w.to_device(&Device::Cpu).unwrap()).collect()
}

fn ctx() -> ForwardContext {
    ForwardContext { training: false, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None }
}

/// The plain inference pass's outputs and the folded pass's, asserted equal to float
/// rounding and not vanishing; returns the folded ones.
fn folded_equals_plain(m: &Model, weights: &[Tensor], x: &Tensor) -> Vec<Tensor> {
    let (plain, _) = m.arch.forward(weights, std::slice::from_ref(x), &mut ctx()).unwrap();
    let folded = m.arch.forward_inference(weights, std::slice::from_ref(x), &mut ctx()).unwrap();
    assert_eq!(plain.len(), folded.len());
    for (p, f) in plain.iter().zip(&folded) {
        assert_eq!(p.value.dims(), f.value.dims());
        let scale = p.value.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let diff = (&p.value - &f.value).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(scale > 0.1, "the output should not vanish: {}", scale);
        assert!(diff <= 1e-5 * scale.max(1.0), "folded output differs by {} (scale {})", diff, scale);
    }
    folded.into_iter().map(|f| f.value).collect()
}

#[test]
fn folded_inference_equals_the_plain_inference_pass() {
    let mut m = model();
    let weights = set_weights(&mut m, (37, 11, 23));
    let x = Tensor::randn(0f32, 1.0, (3, 7, 6, 3), &Device::Cpu).unwrap();
    // c0 takes bn0 and r0 in, s1 bn1 and r1, c3 r3; c2 (a ReLU of its own) nothing, and
    // bn2 (read twice) goes nowhere.
    assert_eq!(m.arch.inference_fold_plan(&weights).unwrap(), vec![(0, vec![1, 2]), (3, vec![4, 5]), (9, vec![10])]);
    let folded = folded_equals_plain(&m, &weights, &x);
    assert_eq!(folded.len(), 2);
    // The second output ends in a folded ReLU: it zeroes values.
    let zeros = folded[1].eq(0f32).unwrap().to_dtype(candle_core::DType::F32).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(zeros > 0.0, "the folded ReLU should zero some values");
}

/// x (one channel) -> conv (relu of its own; the direct route) -> max pool -> conv (linear,
/// im2col) -> bn -> relu -> max pool (3, stride 2, same) -> pool read twice (no fold) ->
/// outputs: the last pool, and a conv with bias -> pool whose output is the model's output.
#[test]
fn max_pooling_folds_into_the_convolution_before_it() {
    let pool = |size: usize, stride: usize, padding: Padding| MaxPooling2D {
        pool_size: Tuple2(size, size),
        strides: Some(Tuple2(stride, stride)),
        padding,
        ..MaxPooling2D::default()
    };
    let layers = vec![
        Layer::new("c0", Conv2D { padding: Padding::Valid, ..conv(5, Activation::Relu, true) }, 1),
        Layer::new("p0", pool(2, 2, Padding::Valid), 0),
        Layer::new("c1", conv(4, Activation::Linear, false), 2),
        Layer::new("bn1", bn(), 3),
        Layer::new("r1", relu(), 0),
        Layer::new("p1", pool(3, 2, Padding::Same), 0),
        Layer::new("p2", pool(2, 1, Padding::Valid), 0),
        Layer::new("c3", conv(3, Activation::Linear, true), 4),
    ];
    let n = |layer: usize, inputs: Vec<Source>| Node { layer, inputs };
    let graph = Graph {
        input_names: vec!["x".into()],
        input_shapes: vec![vec![13, 12, 1]],
        nodes: vec![
            n(0, vec![Source::Input(0)]), // 0 c0: takes p0
            n(1, vec![Source::Node(0)]),  // 1 p0
            n(2, vec![Source::Node(1)]),  // 2 c1: takes bn1, r1 and p1
            n(3, vec![Source::Node(2)]),  // 3 bn1
            n(4, vec![Source::Node(3)]),  // 4 r1
            n(5, vec![Source::Node(4)]),  // 5 p1, read by p2 and c3
            n(6, vec![Source::Node(5)]),  // 6 p2 (after a pool: runs)
            n(7, vec![Source::Node(5)]),  // 7 c3: an output itself, so takes nothing
        ],
        outputs: vec![Source::Node(6), Source::Node(7)],
    };
    let mut m = Model::functional("pooling".into(), layers, graph).unwrap();
    let weights = set_weights(&mut m, (41, 7, 19));
    assert_eq!(m.arch.inference_fold_plan(&weights).unwrap(), vec![(0, vec![1]), (2, vec![3, 4, 5])]);
    let x = Tensor::randn(0f32, 1.0, (5, 13, 12, 1), &Device::Cpu).unwrap();
    folded_equals_plain(&m, &weights, &x);
}

/// A training pass: the model's outputs, the moving statistics it moves to, and every
/// weight's gradient for fixed output gradients; `also_record` nodes are recorded (which
/// keeps a batch normalization recorded from taking its ReLU in).
fn training_step(m: &Model, weights: &[Tensor], x: &Tensor, also_record: &[usize]) -> (Vec<Tensor>, Vec<Tensor>, Vec<Tensor>, Vec<bool>) {
    let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None };
    let f = m.arch.forward_recording(weights, std::slice::from_ref(x), &mut ctx, also_record).unwrap();
    let taken: Vec<bool> = f.caches.iter().map(|c| c.get::<rustgpu_core::model::ReluTakenIn>().is_ok()).collect();
    let outputs: Vec<Tensor> = f.outputs.iter().map(|o| o.value.clone()).collect();
    let moved: Vec<Tensor> = m.arch.state_updates(&f.caches).into_iter().map(|(_, t)| t).collect();
    let grads = outputs
        .iter()
        .map(|o| {
            let n = o.elem_count();
            let values: Vec<f32> = (0..n).map(|i| ((i * 7919) % 23) as f32 / 23.0 - 0.4).collect();
            rustgpu_core::layers::OutputGrad::Value(Tensor::from_vec(values, o.dims(), &Device::Cpu).unwrap())
        })
        .collect();
    let weight_grads = m.arch.backward(weights, &f.caches, grads).unwrap();
    (outputs, moved, weight_grads, taken)
}

#[test]
fn batch_normalization_takes_in_the_relu_after_it_in_training_with_the_same_bits() {
    let mut m = model();
    let weights = set_weights(&mut m, (7, 3, 11));
    let x = Tensor::from_vec((0..2 * 7 * 6 * 3).map(|i| ((i * 37) % 29) as f32 / 29.0 - 0.5).collect::<Vec<f32>>(), (2, 7, 6, 3), &Device::Cpu).unwrap();
    let fused = training_step(&m, &weights, &x, &[]);
    // bn0 -> r0 and bn1 -> r1 are taken in; bn2 is read twice and c3 is a convolution.
    let taken: Vec<usize> = (0..fused.3.len()).filter(|&j| fused.3[j]).collect();
    assert_eq!(taken, vec![2, 5]);
    // Recording bn0's and bn1's outputs keeps them apart: the two-pass reference.
    let apart = training_step(&m, &weights, &x, &[1, 4]);
    assert!(apart.3.iter().all(|t| !t));
    let bits = |ts: &[Tensor]| -> Vec<Vec<u32>> {
        ts.iter().map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()).collect()
    };
    assert_eq!(bits(&fused.0), bits(&apart.0), "outputs");
    assert_eq!(bits(&fused.1), bits(&apart.1), "moving statistics");
    assert_eq!(fused.2.len(), weights.len());
    assert_eq!(bits(&fused.2), bits(&apart.2), "weight gradients");
    // The gradients reach the first convolution and are not all zero.
    let first = fused.2[0].abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(first > 1e-4, "c0's kernel gradient vanished: {}", first);
}
