//! Generic checks over every registered loss (a new loss gets them free), then the fused
//! (logits) paths and the targets' preparation.
use super::*;
use crate::activation::Activation;
use crate::testutil::check_backward;
use candle_core::Device;

fn loss(name: &str) -> Loss {
    Loss::parse(name).unwrap()
}

/// Probabilities in (0, 1), rows summing to 1 over the last axis, so that every loss
/// (crossentropies included) is defined and smooth around them.
fn probabilities(dims: &[usize], shift: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let z: Vec<f32> = (0..n).map(|i| (1.3 * i as f32 + shift).sin()).collect();
    Activation::Softmax.apply(&Tensor::from_vec(z, dims, &Device::Cpu).unwrap()).unwrap()
}

/// One-hot targets (valid for every loss: classes, binary labels, regression values).
fn one_hot(dims: &[usize]) -> Tensor {
    let classes = *dims.last().unwrap();
    let rows: usize = dims.iter().product::<usize>() / classes;
    let v: Vec<f32> = (0..rows * classes).map(|i| if i % classes == (i / classes * 2 + 1) % classes { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// `gradient` against central differences of the mean loss, with respect to the output
/// values, for outputs of any rank.
fn check_value_gradient(l: Loss, p0: &Tensor, y: &Tensor) {
    let rows = p0.dim(0).unwrap();
    let f =
        |p: &Tensor| -> f64 { (l.per_sample(&ModelOutput::plain(p.clone()), y).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() / rows as f32) as f64 };
    let OutputGrad::Value(g) = l.gradient(&ModelOutput::plain(p0.clone()), y, rows).unwrap() else { panic!("{:?}: plain outputs take value gradients", l) };
    assert_eq!(g.dims(), p0.dims(), "{:?}", l);
    let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let base = p0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for i in 0..base.len() {
        let h = 1e-3;
        let at = |d: f32| {
            let mut a = base.clone();
            a[i] += d;
            Tensor::from_vec(a, p0.dims(), &Device::Cpu).unwrap()
        };
        let num = (f(&at(h)) - f(&at(-h))) / (2.0 * h as f64);
        assert!((num - g[i] as f64).abs() < 2e-2 * num.abs().max(1.0), "{:?} at {}: {} vs {}", l, i, g[i], num);
    }
}

/// Soft labels in (0, 1): valid targets for every loss, and no zero (the percentage error
/// divides by the target, so zeros would put its values out of f32's reach of a difference).
fn soft_labels(dims: &[usize]) -> Tensor {
    (one_hot(dims) * 0.8).unwrap().affine(1.0, 0.1).unwrap()
}

#[test]
fn every_loss_has_finite_difference_gradients_for_matrix_and_sequence_outputs() {
    for r in LOSSES {
        for dims in [&[2usize, 3][..], &[2, 4, 3]] {
            check_value_gradient(r.loss.clone(), &probabilities(dims, 0.3), &soft_labels(dims));
        }
    }
}

#[test]
fn every_loss_gives_one_value_per_sample_and_is_found_by_its_names() {
    for r in LOSSES {
        let l = r.loss.clone();
        let out = l.per_sample(&ModelOutput::plain(probabilities(&[5, 3], 0.1)), &one_hot(&[5, 3])).unwrap();
        assert_eq!(out.dims(), &[5], "{:?}", l);
        assert_eq!(Loss::parse(l.name()).unwrap(), l);
        for a in r.aliases {
            assert_eq!(Loss::parse(a).unwrap(), l);
        }
    }
    let e = Loss::parse("mean_sqared_error").unwrap_err().to_string();
    assert!(e.contains("unknown loss") && e.contains("mean_squared_error"), "{}", e);
}

fn softmax_output(z: &Tensor) -> ModelOutput {
    ModelOutput { value: Activation::Softmax.apply(z).unwrap(), logits: Some((z.clone(), Activation::Softmax)) }
}

#[test]
fn crossentropy_from_logits_equals_from_probabilities() {
    let dev = Device::Cpu;
    let z = Tensor::new(&[[1.0f32, 2.0, 0.5], [0.1, -1.0, 2.0]], &dev).unwrap();
    let y = Tensor::new(&[[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0]], &dev).unwrap();
    let cce = loss("categorical_crossentropy");
    let from_logits = cce.per_sample(&softmax_output(&z), &y).unwrap();
    let probs = ModelOutput { value: Activation::Softmax.apply(&z).unwrap(), logits: None };
    let from_probs = cce.per_sample(&probs, &y).unwrap();
    let a = from_logits.to_vec1::<f32>().unwrap();
    let b = from_probs.to_vec1::<f32>().unwrap();
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() < 1e-5);
    }
    let expected0 = -((2.0f64).exp() / (1f64.exp() + 2f64.exp() + 0.5f64.exp())).ln();
    assert!((a[0] as f64 - expected0).abs() < 1e-5);
}

/// The fused paths: gradients with respect to the logits.
fn check_logit_gradient(l: Loss, y: &Tensor, output: impl Fn(&Tensor) -> ModelOutput) {
    let rows = y.dim(0).unwrap();
    check_backward(
        y.dims(),
        |z| Ok((l.per_sample(&output(z), y)?.sum_all()? / rows as f64)?.reshape(1)?),
        |z, w| {
            let scale = w.flatten_all()?.to_vec1::<f32>()?[0] as f64;
            let OutputGrad::Logits(g) = l.gradient(&output(z), y, rows)? else { panic!("{:?}: a fused output takes logit gradients", l) };
            Ok((g * scale)?)
        },
        1e-2,
    );
}

#[test]
fn fused_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let y = Tensor::new(&[[0.0f32, 1.0, 0.0], [1.0, 0.0, 0.0]], &dev).unwrap();
    let yb = Tensor::new(&[[0.0f32, 1.0, 1.0], [1.0, 0.0, 0.0]], &dev).unwrap();
    let sigmoid_out = |z: &Tensor| ModelOutput { value: Activation::Sigmoid.apply(z).unwrap(), logits: Some((z.clone(), Activation::Sigmoid)) };
    check_logit_gradient(loss("categorical_crossentropy"), &y, softmax_output);
    check_logit_gradient(loss("sparse_categorical_crossentropy"), &y, softmax_output);
    check_logit_gradient(loss("binary_crossentropy"), &yb, sigmoid_out);
    let seq = one_hot(&[2, 4, 3]);
    check_logit_gradient(loss("categorical_crossentropy"), &seq, softmax_output);
}

#[test]
fn sparse_targets_become_one_hot_and_bad_ids_are_rejected() {
    let scce = loss("sparse_categorical_crossentropy");
    let y = HostTensor::new(vec![3, 1], vec![2.0, 0.0, 1.0]).unwrap();
    let t = scce.prepare_targets(&y, &[3]).unwrap();
    assert_eq!(t.data, vec![0., 0., 1., 1., 0., 0., 0., 1., 0.]);
    // A sequence output: one class id per step.
    let y = HostTensor::new(vec![1, 2], vec![1.0, 0.0]).unwrap();
    assert_eq!(scce.prepare_targets(&y, &[2, 2]).unwrap().data, vec![0., 1., 1., 0.]);
    for bad in [vec![3.0], vec![-1.0], vec![0.5]] {
        assert!(scce.prepare_targets(&HostTensor::new(vec![1, 1], bad).unwrap(), &[3]).is_err());
    }
    assert!(loss("mse").prepare_targets(&HostTensor::new(vec![1, 2], vec![1.0, 2.0]).unwrap(), &[3]).is_err());
}

/// A loss written as traced ops: mean(square(y_pred - y_true), last axis), the same as "mse".
fn traced_mse(rank: usize) -> Loss {
    use crate::trace::{Binary, Op, Reduction, Trace};
    let shape: Vec<Option<usize>> = std::iter::once(None).chain(std::iter::repeat_n(Some(3), rank - 1)).collect();
    let mut t = Trace::new(vec![shape.clone(), shape], Vec::new());
    let d = t.record(Op::Binary { f: Binary::Sub }, vec![1, 0]).unwrap();
    let sq = t.record(Op::PowScalar { exponent: 2.0 }, vec![d]).unwrap();
    let m = t.record(Op::Reduce { f: Reduction::Mean, axes: vec![rank - 1], keepdims: false }, vec![sq]).unwrap();
    t.set_outputs(vec![m]).unwrap();
    Loss::traced("my_mse", t, Vec::new()).unwrap()
}

#[test]
fn a_traced_loss_equals_the_builtin_it_spells_out() {
    for dims in [vec![4, 3], vec![2, 3, 3]] {
        let l = traced_mse(dims.len());
        assert_eq!(l.name(), "my_mse");
        let (p, y) = (probabilities(&dims, 0.2), soft_labels(&dims));
        let ours = l.per_sample(&ModelOutput::plain(p.clone()), &y).unwrap().to_vec1::<f32>().unwrap();
        let builtin = loss("mse").per_sample(&ModelOutput::plain(p.clone()), &y).unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(&builtin) {
            assert!((a - b).abs() < 1e-6, "{} vs {}", a, b);
        }
        check_value_gradient(l, &p, &y);
    }
}
