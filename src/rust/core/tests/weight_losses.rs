//! Losses on a layer's weights alone (R keras's `add_loss()` in a custom wrapper's or layer's
//! `build()`): they join the reported loss, their gradient joins the update's (with clipping
//! too), once per step whether one device or several replicas train, and the wrapped layer
//! trains as it does unwrapped.
use rustgpu_core::device::{DeviceInfo, DeviceKind};
use rustgpu_core::layers::Layer;
use rustgpu_core::loss::Loss;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::{Compiled, Executor, HostTensor, Model};
use serde_json::json;

const W0: f32 = 2.0;

/// The dense layer alone, or wrapped with a weight `w` (initially W0) and the loss log(w).
fn model(wrapped: bool) -> Model {
    let dense = json!({ "name": "inner", "units": 3, "activation": "softmax" });
    let layer = if wrapped {
        // log(w): a trace with no inputs and the wrapper's one weight.
        let loss =
            json!({ "inputs": [], "weights": [[1]], "nodes": [{ "op": "weight", "index": 0 }, { "op": "unary", "f": "log", "args": [0] }], "outputs": [1] });
        let config = json!({
            "name": "wrapper", "layer_class": "LoggedWrapper", "layer": { "class_name": "Dense", "config": dense },
            "weight_specs": [{ "name": "w", "shape": [1], "initializer": { "class_name": "Constant", "config": { "value": W0 } } }],
            "losses": [loss],
        });
        Layer::from_config("LoggedWrapper", &config, 5).unwrap()
    } else {
        Layer::from_config("Dense", &dense, 5).unwrap()
    };
    let mut m = Model::new("m".into());
    m.add(layer, Some(vec![4])).unwrap();
    m
}

fn data(rows: usize) -> (HostTensor, HostTensor) {
    let x: Vec<f32> = (0..rows * 4).map(|i| ((i * 37 % 23) as f32 / 11.0) - 1.0).collect();
    let mut y = vec![0f32; rows * 3];
    for r in 0..rows {
        y[r * 3 + r % 3] = 1.0;
    }
    (HostTensor::new(vec![rows, 4], x).unwrap(), HostTensor::new(vec![rows, 3], y).unwrap())
}

fn compiled(config: serde_json::Value) -> Compiled {
    Compiled::single(Loss::parse("categorical_crossentropy").unwrap(), Vec::new(), Optimizer::new(OptimizerConfig::from_config("sgd", &config).unwrap()))
}

fn executors() -> Vec<Executor> {
    let virtual_gpus = (0..2).map(|id| DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("v{}", id), memory: None, threads: 1 }).collect();
    vec![Executor::Local(rustgpu_core::device::cpu_device()), Executor::replicated(ReplicaSet::new(virtual_gpus, MergeDevice::Cpu).unwrap())]
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{}: {} vs {}", what, a, b);
}

#[test]
fn a_loss_on_weights_joins_the_loss_and_the_update_once_per_step() {
    let lr = 0.1f64;
    for ex in executors() {
        let (mut wrapped, mut plain) = (model(true), model(false));
        // The same dense weights in both (the wrapper's own weight comes first).
        plain.set_weights(wrapped.get_weights()[1..].to_vec()).unwrap();
        let (mut cw, mut cp) = (compiled(json!({ "learning_rate": lr })), compiled(json!({ "learning_rate": lr })));
        let (x, y) = data(7);
        let rows: Vec<usize> = (0..7).collect();
        let sw = ex.train_on_batch(&mut wrapped, &mut cw, &[&x], &[&y], None, &rows, 0).unwrap();
        let sp = ex.train_on_batch(&mut plain, &mut cp, &[&x], &[&y], None, &rows, 0).unwrap();
        // The loss is reported at the weights the step starts from.
        close(sw.loss, sp.loss + (W0 as f64).ln(), "loss with log(w)");
        // d log(w) / dw = 1 / w.
        let w = wrapped.get_weights()[0].data[0] as f64;
        close(w, W0 as f64 - lr / W0 as f64, "w after one step");
        for (a, b) in wrapped.get_weights()[1..].iter().zip(plain.get_weights()) {
            assert_eq!(a.data, b.data, "the wrapped dense layer trains as the plain one");
        }
        let ew = ex.test_on_batch(&wrapped, &cw, &[&x], &[&y], None, &rows).unwrap();
        let ep = ex.test_on_batch(&plain, &cp, &[&x], &[&y], None, &rows).unwrap();
        close(ew.loss, ep.loss + w.ln(), "evaluation's loss with log(w)");
    }
}

#[test]
fn clipping_sees_the_weight_losses_gradient() {
    // clipnorm 0.1 on w's gradient 1/W0 = 0.5: the step is lr * 0.1.
    let mut wrapped = model(true);
    let mut c = compiled(json!({ "learning_rate": 1.0, "clipnorm": 0.1 }));
    let (x, y) = data(5);
    Executor::Local(rustgpu_core::device::cpu_device()).train_on_batch(&mut wrapped, &mut c, &[&x], &[&y], None, &[0, 1, 2, 3, 4], 0).unwrap();
    close(wrapped.get_weights()[0].data[0] as f64, W0 as f64 - 0.1, "w after a clipped step");
}

#[test]
fn wrappers_and_their_losses_are_checked_when_read() {
    let bad_loss = json!({ "inputs": [[null, 4]], "weights": [[1]], "nodes": [{ "op": "input", "index": 0 }, { "op": "weight", "index": 0 }], "outputs": [0] });
    let config = json!({
        "name": "wrapper", "layer_class": "LoggedWrapper", "layer": { "class_name": "Dense", "config": { "units": 3 } },
        "weight_specs": [{ "name": "w", "shape": [1], "initializer": { "class_name": "Ones", "config": {} } }],
        "losses": [bad_loss],
    });
    let e = Layer::from_config("LoggedWrapper", &config, 0).err().unwrap().to_string();
    assert!(e.contains("computed from the layer's 1 weights alone"), "{}", e);
    let e = Layer::from_config("LoggedWrapper", &json!({ "layer_class": "LoggedWrapper", "layer": 3 }), 0).err().unwrap().to_string();
    assert!(e.contains("must be a Keras layer config"), "{}", e);
    // Saved and read back: same class, same losses.
    let layer = model(true).arch.layers[0].clone();
    let written = layer.keras_config();
    assert_eq!(written["class_name"], "LoggedWrapper");
    let again = Layer::from_config("LoggedWrapper", &written["config"], 0).unwrap();
    assert_eq!(again.keras_config(), written);
    assert_eq!(again.kind.weight_losses().len(), 1);
}
