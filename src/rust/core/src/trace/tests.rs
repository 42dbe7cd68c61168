use super::*;
use crate::testutil::check_backward;
use rand::SeedableRng;

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(7)
}

fn known(shape: &[usize]) -> SymShape {
    shape.iter().map(|d| Some(*d)).collect()
}

/// Values for the arguments that stay fixed in a check, unlike check_backward's.
fn fixed(shape: &[usize], positive: bool) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| 0.8 * (0.7 * i as f32 + 1.1).cos()).map(|v| if positive { v.abs() + 0.5 } else { v }).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A trace of `build` over inputs of `shapes`, checked by finite differences in input
/// `which` (the others fixed; positive where `positive`).
fn check(shapes: &[&[usize]], which: usize, positive: bool, build: impl Fn(&mut Trace) -> usize) {
    let mut t = Trace::new(shapes.iter().map(|s| known(s)).collect(), Vec::new());
    let out = build(&mut t);
    t.set_outputs(vec![out]).unwrap();
    let others: Vec<Tensor> = shapes.iter().map(|s| fixed(s, positive)).collect();
    let inputs = |x: &Tensor| -> Vec<Tensor> {
        let mut v = others.clone();
        v[which] = x.clone();
        v
    };
    check_backward(
        shapes[which],
        |x| Ok(t.forward(&inputs(x), &[], false, &mut rng())?.outputs(&t).remove(0)),
        |x, w| {
            let run = t.forward(&inputs(x), &[], false, &mut rng())?;
            let g = t.backward(&run, &[Some(w.clone())])?;
            Ok(g.inputs[which].clone().unwrap_or(x.zeros_like()?))
        },
        2e-2,
    );
}

fn op1(op: Op) -> impl Fn(&mut Trace) -> usize {
    move |t: &mut Trace| t.record(op.clone(), vec![0]).unwrap()
}

fn op2(op: Op) -> impl Fn(&mut Trace) -> usize {
    move |t: &mut Trace| t.record(op.clone(), vec![0, 1]).unwrap()
}

#[test]
fn unary_ops_match_finite_differences() {
    for f in [Unary::Neg, Unary::Abs, Unary::Exp, Unary::Tanh, Unary::Sigmoid, Unary::Relu, Unary::Softplus, Unary::Sin, Unary::Cos] {
        check(&[&[2, 3]], 0, false, op1(Op::Unary { f }));
    }
    // log and sqrt on exp(x) > 0.
    for f in [Unary::Log, Unary::Sqrt] {
        check(&[&[2, 3]], 0, false, |t: &mut Trace| {
            let e = t.record(Op::Unary { f: Unary::Exp }, vec![0]).unwrap();
            t.record(Op::Unary { f }, vec![e]).unwrap()
        });
    }
    check(&[&[2, 3]], 0, false, op1(Op::Elu { alpha: 0.7 }));
    check(&[&[2, 3]], 0, false, op1(Op::PowScalar { exponent: 3.0 }));
    check(&[&[2, 3]], 0, false, op1(Op::Clip { min: -0.5, max: 0.8 }));
    check(&[&[2, 4]], 0, false, op1(Op::Softmax { axis: 1 }));
    check(&[&[2, 3, 2]], 0, false, op1(Op::Softmax { axis: 1 }));
}

#[test]
fn broadcasting_binary_ops_match_finite_differences_in_both_arguments() {
    let pairs: [(&[usize], &[usize]); 3] = [(&[2, 3], &[2, 3]), (&[2, 3], &[3]), (&[2, 3], &[2, 1])];
    for f in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Maximum, Binary::Minimum] {
        for (a, b) in pairs {
            check(&[a, b], 0, false, op2(Op::Binary { f }));
            check(&[a, b], 1, false, op2(Op::Binary { f }));
        }
    }
    for (a, b) in pairs {
        // Divisors and bases kept positive (the fixed argument), then each side varied.
        check(&[a, b], 0, true, op2(Op::Binary { f: Binary::Div }));
        check(&[a, b], 0, true, op2(Op::Binary { f: Binary::Pow }).compose_exp());
        check(&[a, b], 1, true, op2(Op::Binary { f: Binary::Pow }));
    }
    check(&[&[2, 3], &[2, 3], &[2, 3]], 1, false, |t: &mut Trace| t.record(Op::Where, vec![0, 1, 2]).unwrap());
    check(&[&[2, 3], &[2, 3], &[3]], 2, false, |t: &mut Trace| t.record(Op::Where, vec![0, 1, 2]).unwrap());
}

/// Composes `exp` before the op on input 0 (a positive base for pow's first argument).
trait ComposeExp {
    fn compose_exp(self) -> Box<dyn Fn(&mut Trace) -> usize>;
}

impl<F: Fn(&mut Trace) -> usize + 'static> ComposeExp for F {
    fn compose_exp(self) -> Box<dyn Fn(&mut Trace) -> usize> {
        Box::new(move |t: &mut Trace| {
            // Record exp(input 0) and swap it in as the op's first argument.
            let e = t.record(Op::Unary { f: Unary::Exp }, vec![0]).unwrap();
            let out = self(t);
            let node = t.nodes[out].clone();
            let args = node.args.iter().map(|a| if *a == 0 { e } else { *a }).collect();
            t.record(node.op, args).unwrap()
        })
    }
}

#[test]
fn reductions_match_finite_differences() {
    for f in [Reduction::Sum, Reduction::Mean, Reduction::Max, Reduction::Min] {
        for (axes, keepdims) in [(vec![1], false), (vec![0, 2], true), (vec![2], true)] {
            check(&[&[2, 3, 4]], 0, false, op1(Op::Reduce { f, axes, keepdims }));
        }
    }
    check(&[&[2, 3]], 0, false, op1(Op::Reduce { f: Reduction::Prod, axes: vec![1], keepdims: false }));
    // The product's gradient is exact at 0 (no division by the entry).
    let mut t = Trace::new(vec![known(&[1, 3])], Vec::new());
    let p = t.record(Op::Reduce { f: Reduction::Prod, axes: vec![1], keepdims: false }, vec![0]).unwrap();
    t.set_outputs(vec![p]).unwrap();
    let x = Tensor::new(&[[0f32, 2.0, 3.0]], &Device::Cpu).unwrap();
    let run = t.forward(&[x], &[], false, &mut rng()).unwrap();
    let g = t.backward(&run, &[Some(Tensor::new(&[1f32], &Device::Cpu).unwrap())]).unwrap();
    assert_eq!(g.inputs[0].as_ref().unwrap().to_vec2::<f32>().unwrap(), vec![vec![6.0, 0.0, 0.0]]);
}

#[test]
fn shape_ops_match_finite_differences() {
    check(&[&[2, 3, 2]], 0, false, op1(Op::Reshape { shape: vec![-1, 6] }));
    check(&[&[2, 3, 2]], 0, false, op1(Op::Permute { perm: vec![2, 0, 1] }));
    // Repeated indices add up their gradients.
    check(&[&[2, 4]], 0, false, op1(Op::Take { axis: 1, indices: vec![3, 0, 3] }));
    check(&[&[2, 3], &[2, 2]], 0, false, op2(Op::Concat { axis: 1 }));
    check(&[&[2, 3], &[2, 2]], 1, false, op2(Op::Concat { axis: 1 }));
    check(&[&[2, 3]], 0, false, op1(Op::Tile { reps: vec![2, 3] }));
    // Keras's dot: (batch, time, k) by (k, n), and batched matrix products.
    check(&[&[2, 3, 4], &[4, 2]], 0, false, op2(Op::Dot));
    check(&[&[2, 3, 4], &[4, 2]], 1, false, op2(Op::Dot));
    check(&[&[2, 3, 4], &[2, 4, 2]], 0, false, op2(Op::Dot));
    check(&[&[2, 3, 4], &[2, 4, 2]], 1, false, op2(Op::Dot));
}

#[test]
fn ops_without_gradients_stop_it_and_random_draws_follow_the_batch() {
    let mut t = Trace::new(vec![vec![None, Some(3)]], Vec::new());
    let a = t.record(Op::ArgMax { axis: 1 }, vec![0]).unwrap();
    let r =
        t.record(Op::Random { distribution: Distribution::Normal, shape: vec![Dim::Of { node: 0, axis: 0 }, Dim::Fixed(2)], a: 1.0, b: 0.0 }, vec![]).unwrap();
    assert_eq!(t.shape(a).unwrap(), &vec![None]);
    assert_eq!(t.shape(r).unwrap(), &vec![None, Some(2)]);
    t.set_outputs(vec![a, r]).unwrap();
    let x = fixed(&[5, 3], false);
    let run = t.forward(std::slice::from_ref(&x), &[], false, &mut rng()).unwrap();
    let outs = run.outputs(&t);
    assert_eq!(outs[1].dims(), &[5, 2]);
    // Standard deviation 0: every draw is the mean.
    assert!(outs[1].flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| *v == 1.0));
    let g = t.backward(&run, &[Some(outs[0].ones_like().unwrap()), Some(outs[1].ones_like().unwrap())]).unwrap();
    assert!(g.inputs[0].is_none());
}

#[test]
fn dropout_trains_with_its_mask_and_is_identity_in_inference() {
    let mut t = Trace::new(vec![known(&[4, 50])], Vec::new());
    let d = t.record(Op::Dropout { rate: 0.5 }, vec![0]).unwrap();
    t.set_outputs(vec![d]).unwrap();
    let x = fixed(&[4, 50], true);
    let run = t.forward(std::slice::from_ref(&x), &[], true, &mut rng()).unwrap();
    let y = run.outputs(&t).remove(0);
    let g = t.backward(&run, &[Some(x.ones_like().unwrap())]).unwrap().inputs.remove(0).unwrap();
    // Where a value was dropped its gradient is 0; kept ones are scaled by 2 both ways.
    let (yv, gv, xv) = (
        y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    let dropped = yv.iter().filter(|v| **v == 0.0).count();
    assert!(dropped > 50 && dropped < 150, "{}", dropped);
    for ((y, g), x) in yv.iter().zip(&gv).zip(&xv) {
        assert!((*y == 0.0 && *g == 0.0) || ((y - 2.0 * x).abs() < 1e-6 && *g == 2.0));
    }
    let inference = t.forward(std::slice::from_ref(&x), &[], false, &mut rng()).unwrap().outputs(&t).remove(0);
    assert_eq!(inference.to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
}

#[test]
fn weights_get_gradients_and_a_trace_survives_a_round_trip() {
    // x %*% w + b, as a custom layer records it.
    let mut t = Trace::new(vec![vec![None, Some(3)]], vec![vec![3, 2], vec![2]]);
    let xw = t.record(Op::Dot, vec![t.input_node(0), t.weight_node(0)]).unwrap();
    let y = t.record(Op::Binary { f: Binary::Add }, vec![xw, t.weight_node(1)]).unwrap();
    t.set_outputs(vec![y]).unwrap();
    assert_eq!(t.shape(y).unwrap(), &vec![None, Some(2)]);
    let json = serde_json::to_string(&t).unwrap();
    let back: Trace = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
    let x = fixed(&[4, 3], false);
    let w = fixed(&[3, 2], false);
    let b = fixed(&[2], false);
    let run = back.forward(std::slice::from_ref(&x), &[w.clone(), b.clone()], false, &mut rng()).unwrap();
    let g = back.backward(&run, &[Some(Tensor::ones((4, 2), candle_core::DType::F32, &Device::Cpu).unwrap())]).unwrap();
    // d/db of the sum is the row count; d/dw is x's column sums.
    assert_eq!(g.weights[1].as_ref().unwrap().to_vec1::<f32>().unwrap(), vec![4.0, 4.0]);
    let col_sums = x.sum(0).unwrap().to_vec1::<f32>().unwrap();
    let gw = g.weights[0].as_ref().unwrap().to_vec2::<f32>().unwrap();
    for (row, s) in gw.iter().zip(col_sums) {
        assert!(row.iter().all(|v| (v - s).abs() < 1e-5));
    }
}

#[test]
fn bad_ops_and_untrusted_traces_are_value_errors() {
    let mut t = Trace::new(vec![vec![None, Some(3)]], Vec::new());
    let e = t.record(Op::Binary { f: Binary::Add }, vec![0, 5]).unwrap_err().to_string();
    assert!(e.contains("not an earlier node"), "{}", e);
    let c = t.record(Op::Constant { shape: vec![4], values: vec![1.0; 4] }, vec![]).unwrap();
    let e = t.record(Op::Binary { f: Binary::Add }, vec![0, c]).unwrap_err().to_string();
    assert!(e.contains("cannot be broadcast") && e.contains("(None, 3)"), "{}", e);
    let e = t.record(Op::Reduce { f: Reduction::Sum, axes: vec![2], keepdims: false }, vec![0]).unwrap_err().to_string();
    assert!(e.contains("axis 3") && e.contains("rank 2"), "{}", e);
    // Indices into the batch axis are checked when a batch comes (style transfer's samples).
    let mut picks = Trace::new(vec![vec![None, Some(3)]], Vec::new());
    let p = picks.record(Op::Take { axis: 0, indices: vec![5] }, vec![0]).unwrap();
    assert_eq!(picks.shape(p).unwrap(), &vec![Some(1), Some(3)]);
    picks.set_outputs(vec![p]).unwrap();
    let two_rows = Tensor::from_vec(vec![0f32; 6], (2, 3), &Device::Cpu).unwrap();
    let e = picks.forward(&[two_rows], &[], false, &mut rng()).err().unwrap().to_string();
    assert!(e.contains("outside an axis of size 2"), "{}", e);
    let mut fixed_size = Trace::new(vec![known(&[2, 3])], Vec::new());
    let e = fixed_size.record(Op::Reshape { shape: vec![-1, 4] }, vec![0]).unwrap_err().to_string();
    assert!(e.contains("do not match"), "{}", e);
    // With the batch unknown, the sizes are checked when it runs.
    let r = t.record(Op::Reshape { shape: vec![-1, 4] }, vec![0]).unwrap();
    t.set_outputs(vec![r]).unwrap();
    let e = t.forward(&[fixed(&[5, 3], false)], &[], false, &mut rng()).err().unwrap().to_string();
    assert!(e.contains("cannot reshape (5, 3)"), "{}", e);
    let e = t.record(Op::Constant { shape: vec![3], values: vec![1.0] }, vec![]).unwrap_err().to_string();
    assert!(e.contains("needs that many values"), "{}", e);
    // From a file: a node that refers forward, a constant declaring a gigantic size.
    let forward_ref = r#"{"inputs":[[null,3]],"nodes":[{"op":"input","index":0},{"op":"unary","f":"exp","args":[2]}],"outputs":[1]}"#;
    assert!(serde_json::from_str::<Trace>(forward_ref).unwrap_err().to_string().contains("not an earlier node"));
    let huge = r#"{"inputs":[[null,3]],"nodes":[{"op":"input","index":0},{"op":"random","distribution":"normal","shape":[{"fixed":100000},{"fixed":100000000}],"a":0,"b":1}],"outputs":[1]}"#;
    let e = serde_json::from_str::<Trace>(huge).unwrap_err().to_string();
    assert!(e.contains("a traced op's output"), "{}", e);
}

#[test]
fn a_traces_kept_values_per_row_are_counted() {
    let mut t = Trace::new(vec![vec![None, Some(3)]], vec![vec![3, 2]]);
    let d = t.record(Op::Dot, vec![0, 1]).unwrap();
    let tile = t.record(Op::Tile { reps: vec![1, 4] }, vec![d]).unwrap();
    t.set_outputs(vec![tile]).unwrap();
    // Per row: the input (3), the product (2), the tiled product (8); the weight is no row's.
    assert_eq!(t.elements_per_row(), Some(13));
}
