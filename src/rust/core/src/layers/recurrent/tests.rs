//! The options the registry's generic test does not reach (masks, dropout, go_backwards,
//! GRU without reset_after, the last output only), each checked by finite differences, and
//! the stateful layers' kept states.
use super::super::{ForwardContext, Layer, OutputGrad};
use crate::initializer::Initializer;
use crate::testutil::check_backward;
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn ctx(mask: Option<&Tensor>) -> ForwardContext {
    ForwardContext { training: true, rng: StdRng::seed_from_u64(5), mask: mask.cloned(), collective: None }
}

fn layer(class: &str, config: serde_json::Value) -> (Layer, Vec<Tensor>) {
    let layer = Layer::from_config(class, &config, 1).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let weights = layer
        .weight_specs(&[5, 2])
        .iter()
        .map(|s| Tensor::from_vec(Initializer::random_normal(0.0, 0.6).sample(&s.shape, &mut rng).unwrap(), s.shape.as_slice(), &Device::Cpu).unwrap())
        .collect();
    (layer, weights)
}

/// Finite differences for the input and every weight, with an optional mask.
fn check(class: &str, config: serde_json::Value, mask: Option<Tensor>) {
    let (layer, weights) = layer(class, config.clone());
    // Fixed inputs (random ones could land on a kink of relu or hard_sigmoid).
    let x0 = Tensor::from_vec((0..30).map(|i| (1.3 * i as f32 + 0.4).sin()).collect::<Vec<f32>>(), (3, 5, 2), &Device::Cpu).unwrap();
    let forward = |w: &[Tensor], x: &Tensor| Ok(layer.forward(w, x, &mut ctx(mask.as_ref()))?.0.value);
    let backward = |w: &[Tensor], x: &Tensor, dy: &Tensor| {
        let (_, cache) = layer.forward(w, x, &mut ctx(mask.as_ref())).unwrap();
        layer.backward(w, &cache, OutputGrad::Value(dy.clone()), true).unwrap()
    };
    eprintln!("{} {}", class, config);
    check_backward(&[3, 5, 2], |x| forward(&weights, x), |x, dy| Ok(backward(&weights, x, dy).input.unwrap()), 3e-2);
    for i in 0..weights.len() {
        let with = |w: &Tensor| {
            let mut ws = weights.clone();
            ws[i] = w.clone();
            ws
        };
        check_backward(weights[i].dims(), |w| forward(&with(w), &x0), |w, dy| Ok(backward(&with(w), &x0, dy).weights[i].clone()), 3e-2);
    }
}

fn mask() -> Tensor {
    // Row 0 whole, row 1 padded at the start, row 2 with a hole and a masked end.
    Tensor::new(&[[1f32, 1., 1., 1., 1.], [0., 0., 1., 1., 1.], [1., 0., 1., 1., 0.]], &Device::Cpu).unwrap()
}

#[test]
fn every_option_backpropagates_through_time() {
    use serde_json::json;
    for class in ["SimpleRNN", "LSTM", "GRU"] {
        check(class, json!({ "units": 3 }), None);
        check(class, json!({ "units": 3, "return_sequences": true, "go_backwards": true }), Some(mask()));
        check(class, json!({ "units": 2 }), Some(mask()));
        check(class, json!({ "units": 3, "dropout": 0.3, "recurrent_dropout": 0.4, "return_sequences": true }), None);
        check(class, json!({ "units": 2, "use_bias": false, "activation": "relu" }), None);
    }
    check("GRU", json!({ "units": 3, "reset_after": false, "return_sequences": true }), Some(mask()));
    check("GRU", json!({ "units": 3, "reset_after": false, "recurrent_dropout": 0.3 }), None);
    check("LSTM", json!({ "units": 3, "recurrent_activation": "hard_sigmoid", "unit_forget_bias": false }), None);
}

#[test]
fn masked_steps_keep_the_previous_output_as_keras_does() {
    let (layer, weights) = layer("LSTM", serde_json::json!({ "units": 2, "return_sequences": true }));
    let x = Tensor::randn(0f32, 1.0, (3, 5, 2), &Device::Cpu).unwrap();
    let mut c = ForwardContext { training: false, rng: StdRng::seed_from_u64(0), mask: Some(mask()), collective: None };
    let y = layer.forward(&weights, &x, &mut c).unwrap().0.value.to_vec3::<f32>().unwrap();
    assert_eq!(y[1][0], vec![0.0, 0.0], "masked first steps output the initial state");
    assert_eq!(y[1][1], vec![0.0, 0.0]);
    assert_eq!(y[2][1], y[2][0], "a masked step repeats the output before it");
    assert_eq!(y[2][4], y[2][3]);
    assert_ne!(y[0][1], y[0][0]);
}

#[test]
fn stateful_layers_carry_states_until_reset() {
    let (layer, weights) = layer("GRU", serde_json::json!({ "units": 2, "stateful": true }));
    let x = Tensor::randn(0f32, 1.0, (3, 5, 2), &Device::Cpu).unwrap();
    let run = |x: &Tensor| layer.forward(&weights, x, &mut ctx(None)).unwrap().0.value.to_vec2::<f32>().unwrap();
    let first = run(&x);
    let second = run(&x);
    assert_ne!(first, second, "the second batch starts from the first's states");
    layer.kind.reset_states();
    assert_eq!(run(&x), first, "reset_states() starts again from zeros");
    let e = layer.forward(&weights, &x.narrow(0, 0, 2).unwrap(), &mut ctx(None)).unwrap_err().to_string();
    assert!(e.contains("stateful") && e.contains("reset_states"), "{}", e);
    assert!(layer.kind.is_stateful());
}

#[test]
fn keras_weight_layout_and_refusals() {
    let (lstm, _) = layer("LSTM", serde_json::json!({ "units": 4 }));
    let specs = lstm.weight_specs(&[7, 3]);
    let shapes: Vec<(&str, Vec<usize>)> = specs.iter().map(|s| (s.name.as_str(), s.shape.clone())).collect();
    assert_eq!(shapes, vec![("lstm_cell/kernel", vec![3, 16]), ("lstm_cell/recurrent_kernel", vec![4, 16]), ("lstm_cell/bias", vec![16])]);
    let bias = specs[2].initializer.sample(&[16], &mut StdRng::seed_from_u64(0)).unwrap();
    assert_eq!(bias, [vec![0.0; 4], vec![1.0; 4], vec![0.0; 8]].concat(), "unit_forget_bias");
    let (gru, _) = layer("GRU", serde_json::json!({ "units": 4 }));
    assert_eq!(gru.weight_specs(&[7, 3])[2].shape, vec![2, 12]);
    let (gru, _) = layer("GRU", serde_json::json!({ "units": 4, "reset_after": false }));
    assert_eq!(gru.weight_specs(&[7, 3])[2].shape, vec![12]);
    for (config, field) in [
        (serde_json::json!({ "units": 0 }), "units"),
        (serde_json::json!({ "units": 2, "dropout": 1.0 }), "dropout"),
        (serde_json::json!({ "units": 2, "time_major": true }), "time_major"),
    ] {
        let e = Layer::from_config("LSTM", &config, 0).unwrap_err().to_string();
        assert!(e.contains(field), "{}", e);
    }
    let e = lstm.output_shape(&[4]).unwrap_err().to_string();
    assert!(e.contains("(batch, time, features)"), "{}", e);
}

/// `return_state` and `initial_state`: the gradients reaching the initial states, through the
/// output and the final states both, match finite differences.
#[test]
fn initial_states_get_gradients_from_the_output_and_the_final_states() {
    for class in ["LSTM", "GRU", "SimpleRNN"] {
        let (layer, weights) = layer(class, serde_json::json!({ "units": 3, "return_state": true }));
        let states = if class == "LSTM" { 2 } else { 1 };
        let x = Tensor::from_vec((0..30).map(|i| (0.7 * i as f32).cos()).collect::<Vec<f32>>(), (3, 5, 2), &Device::Cpu).unwrap();
        let init = |k: usize| Tensor::from_vec((0..9).map(|i| 0.3 * ((i + 4 * k) as f32).sin()).collect::<Vec<f32>>(), (3, 3), &Device::Cpu).unwrap();
        let inputs = |h: &Tensor| -> Vec<Tensor> { [vec![x.clone(), h.clone()], (1..states).map(init).collect()].concat() };
        // All outputs side by side: (3, 3 * (1 + states)).
        let forward = |h: &Tensor| -> crate::error::Result<Tensor> {
            let (out, cache) = layer.forward_node(&weights, &inputs(h), &mut ctx(None))?;
            let mut all = vec![out.value];
            all.extend(layer.kind.more_outputs(&cache)?);
            Ok(Tensor::cat(&all, 1)?)
        };
        let backward = |h: &Tensor, dy: &Tensor| -> crate::error::Result<Tensor> {
            let (_, cache) = layer.forward_node(&weights, &inputs(h), &mut ctx(None))?;
            let part = |k: usize| dy.narrow(1, 3 * k, 3).unwrap().contiguous().unwrap();
            let more = (1..=states).map(|k| Some(part(k))).collect();
            let g = layer.kind.backward_more(&layer.name, &weights, &[], &cache, Some(OutputGrad::Value(part(0))), more, true)?;
            assert_eq!(g.more_inputs.len(), states, "{}: one gradient per initial state", class);
            Ok(g.more_inputs[0].clone())
        };
        check_backward(&[3, 3], forward, backward, 3e-2);
        assert_eq!(layer.more_output_shapes(&[vec![5, 2]]), vec![vec![3]; states]);
    }
}

/// Bidirectional with `return_state` and initial states for both directions: the gradients
/// reaching the forward direction's initial state (through the merged output and all four
/// final states) match finite differences.
#[test]
fn bidirectional_states_pass_gradients_both_ways() {
    let config = serde_json::json!({ "layer": { "class_name": "LSTM", "config": { "units": 3, "return_state": true, "name": "lstm" } } });
    let (layer, weights) = layer("Bidirectional", config);
    let x = Tensor::from_vec((0..30).map(|i| (0.3 * i as f32).sin()).collect::<Vec<f32>>(), (3, 5, 2), &Device::Cpu).unwrap();
    let init = |k: usize| Tensor::from_vec((0..9).map(|i| 0.2 * ((2 * i + k) as f32).cos()).collect::<Vec<f32>>(), (3, 3), &Device::Cpu).unwrap();
    let inputs = |h: &Tensor| vec![x.clone(), h.clone(), init(1), init(2), init(3)];
    let forward = |h: &Tensor| -> crate::error::Result<Tensor> {
        let (out, cache) = layer.forward_node(&weights, &inputs(h), &mut ctx(None))?;
        let mut all = vec![out.value];
        all.extend(layer.kind.more_outputs(&cache)?);
        assert_eq!(all.len(), 5, "merged output and four states");
        Ok(Tensor::cat(&all, 1)?)
    };
    let backward = |h: &Tensor, dy: &Tensor| -> crate::error::Result<Tensor> {
        let (_, cache) = layer.forward_node(&weights, &inputs(h), &mut ctx(None))?;
        let main = dy.narrow(1, 0, 6)?.contiguous()?;
        let more = (0..4).map(|k| Some(dy.narrow(1, 6 + 3 * k, 3).unwrap().contiguous().unwrap())).collect();
        let g = layer.kind.backward_more(&layer.name, &weights, &[], &cache, Some(OutputGrad::Value(main)), more, true)?;
        assert_eq!(g.more_inputs.len(), 4, "one gradient per initial state");
        Ok(g.more_inputs[0].clone())
    };
    check_backward(&[3, 3], forward, backward, 3e-2);
}

/// The whole-sequence kernels of LSTM and GRU (taken without a mask) against the
/// step-by-step loop (taken with a mask of ones, which changes nothing else): outputs, final
/// states and every gradient, for both gate activations, 19 rows that split unevenly over
/// two threads (10 and 9).
#[test]
fn sequence_kernels_equal_the_step_loop() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for (class, gate) in [("LSTM", "sigmoid"), ("LSTM", "hard_sigmoid"), ("GRU", "sigmoid"), ("GRU", "hard_sigmoid")] {
        let config = serde_json::json!({ "units": 20, "return_sequences": true, "return_state": true, "recurrent_activation": gate });
        let layer = Layer::from_config(class, &config, 1).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let weights: Vec<Tensor> = layer
            .weight_specs(&[6, 5])
            .iter()
            .map(|s| Tensor::from_vec(Initializer::random_normal(0.0, 0.4).sample(&s.shape, &mut rng).unwrap(), s.shape.as_slice(), &Device::Cpu).unwrap())
            .collect();
        let x = Tensor::from_vec((0..19 * 6 * 5).map(|i| (0.37 * i as f32).sin()).collect::<Vec<f32>>(), (19, 6, 5), &Device::Cpu).unwrap();
        let dy = Tensor::from_vec((0..19 * 6 * 20).map(|i| (0.11 * i as f32).cos()).collect::<Vec<f32>>(), (19, 6, 20), &Device::Cpu).unwrap();
        let ones = Tensor::ones((19, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
        let run = |mask: Option<&Tensor>| {
            pool.install(|| {
                let (out, cache) = layer.forward(&weights, &x, &mut ctx(mask)).unwrap();
                let states = layer.kind.more_outputs(&cache).unwrap();
                let more = states.iter().map(|s| Some(s.ones_like().unwrap())).collect();
                let g = layer.kind.backward_more(&layer.name, &weights, &[], &cache, Some(OutputGrad::Value(dy.clone())), more, true).unwrap();
                let mut all = vec![out.value.flatten_all().unwrap()];
                all.extend(states.iter().map(|s| s.flatten_all().unwrap()));
                all.push(g.input.unwrap().flatten_all().unwrap());
                all.extend(g.weights.iter().map(|w| w.flatten_all().unwrap()));
                all.into_iter().map(|t| t.to_vec1::<f32>().unwrap()).collect::<Vec<_>>()
            })
        };
        let (sequence, steps) = (run(None), run(Some(&ones)));
        for (k, (a, b)) in sequence.iter().zip(&steps).enumerate() {
            let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs() / (1.0 + q.abs())).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{} {}: part {} differs by {}", class, gate, k, worst);
        }
    }
}
