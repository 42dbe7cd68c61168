//! Synchronized batch normalization (Keras's `synchronized = TRUE`): replicas normalize with
//! the whole batch's statistics, so data-parallel training equals the template's training on
//! the whole batch, moving statistics included, which per-replica statistics cannot give.
use rustgpu_core::device::{DeviceInfo, DeviceKind};
use rustgpu_core::layers::Layer;
use rustgpu_core::loss::Loss;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::parallel::{FaultKind, MergeDevice, ReplicaSet};
use rustgpu_core::{Compiled, Executor, HostTensor, Model};
use serde_json::json;

/// Image-shaped input (4-d batches: the moving variance takes the unbiased batch variance)
/// normalized, flattened, a dense layer normalized (2-d batches), a softmax.
fn model(synchronized: bool) -> Model {
    let bn = |name: &str| json!({ "name": name, "momentum": 0.5, "synchronized": synchronized });
    let mut m = Model::new("m".into());
    m.add(Layer::from_config("BatchNormalization", &bn("bn_image"), 1).unwrap(), Some(vec![2, 2, 3])).unwrap();
    m.add(Layer::from_config("Flatten", &json!({ "name": "flatten" }), 2).unwrap(), None).unwrap();
    m.add(Layer::from_config("Dense", &json!({ "name": "hidden", "units": 5, "activation": "relu" }), 3).unwrap(), None).unwrap();
    m.add(Layer::from_config("BatchNormalization", &bn("bn_dense"), 4).unwrap(), None).unwrap();
    m.add(Layer::from_config("Dense", &json!({ "name": "out", "units": 3, "activation": "softmax" }), 5).unwrap(), None).unwrap();
    m
}

fn data(rows: usize) -> (HostTensor, HostTensor) {
    let x: Vec<f32> = (0..rows * 12).map(|i| ((i * 37 % 29) as f32 / 7.0) - 2.0 + (i % 3) as f32).collect();
    let mut y = vec![0f32; rows * 3];
    for r in 0..rows {
        y[r * 3 + (r * 7) % 3] = 1.0;
    }
    (HostTensor::new(vec![rows, 2, 2, 3], x).unwrap(), HostTensor::new(vec![rows, 3], y).unwrap())
}

fn compiled() -> Compiled {
    let sgd = OptimizerConfig::from_config("sgd", &json!({ "learning_rate": 0.5 })).unwrap();
    Compiled::single(Loss::parse("categorical_crossentropy").unwrap(), Vec::new(), Optimizer::new(sgd))
}

fn virtual_gpus(n: usize, merge: MergeDevice) -> Executor {
    let devices = (0..n).map(|id| DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("v{}", id), memory: None, threads: 1 }).collect();
    Executor::replicated(ReplicaSet::new(devices, merge).unwrap())
}

/// The model's weights after `steps` steps on 13 rows (split unevenly over replicas).
fn trained(ex: &Executor, synchronized: bool, steps: u64) -> Vec<HostTensor> {
    let mut m = model(synchronized);
    let mut c = compiled();
    let (x, y) = data(13);
    let rows: Vec<usize> = (0..13).collect();
    for step in 0..steps {
        ex.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &rows, step).unwrap();
    }
    m.get_weights()
}

fn largest_difference(a: &[HostTensor], b: &[HostTensor]) -> f32 {
    a.iter().zip(b).flat_map(|(a, b)| a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs() / y.abs().max(1.0))).fold(0.0, f32::max)
}

#[test]
fn replicas_train_as_the_template_on_the_whole_batch() {
    let template = trained(&Executor::Local(rustgpu_core::device::cpu_device()), true, 4);
    for n in [2, 4] {
        for merge in [MergeDevice::Cpu, MergeDevice::FirstReplica] {
            let replicated = trained(&virtual_gpus(n, merge), true, 4);
            let d = largest_difference(&replicated, &template);
            assert!(d <= 1e-5, "{} replicas merged on {:?}: weights differ by {}", n, merge, d);
        }
    }
}

#[test]
fn per_replica_statistics_do_not() {
    // The check above can fail: Keras's default (each replica its own statistics) departs
    // from the template, and one device is the same with or without synchronization.
    let template = trained(&Executor::Local(rustgpu_core::device::cpu_device()), false, 4);
    let unsynchronized = trained(&virtual_gpus(4, MergeDevice::Cpu), false, 4);
    assert!(largest_difference(&unsynchronized, &template) > 1e-3);
    let one_device_synchronized = trained(&Executor::Local(rustgpu_core::device::cpu_device()), true, 4);
    assert!(largest_difference(&one_device_synchronized, &template) <= 1e-5);
}

#[test]
fn a_failing_replica_stops_the_step_with_its_own_error_and_changes_nothing() {
    for merge in [MergeDevice::Cpu, MergeDevice::FirstReplica] {
        let ex = virtual_gpus(3, merge);
        let mut m = model(true);
        let before = m.get_weights();
        let mut c = compiled();
        let (x, y) = data(13);
        let rows: Vec<usize> = (0..13).collect();
        // Replica 2 fails before its forward pass; the others wait for its sums and are released.
        ex.replica_set().unwrap().inject_fault(2, 0, FaultKind::Error).unwrap();
        let err = ex.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &rows, 0).unwrap_err().to_string();
        assert!(err.contains("replica 2") && err.contains("injected failure"), "{}", err);
        assert_eq!(largest_difference(&m.get_weights(), &before), 0.0);
        // The replicas are still usable: the next step trains.
        ex.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &rows, 1).unwrap();
        assert!(largest_difference(&m.get_weights(), &before) > 0.0);
    }
}

#[test]
fn the_setting_is_saved_only_when_on() {
    let config = |sync: bool| model(sync).arch.layers[0].kind.config();
    assert_eq!(config(true)["synchronized"], json!(true));
    assert!(config(false).get("synchronized").is_none());
}
