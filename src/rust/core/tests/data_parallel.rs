//! The data-parallel path equals the single-device path: predictions exactly, training
//! up to float rounding, for every merge device and for batches smaller than the replica count.
use rustgpu_core::activation::Activation;
use rustgpu_core::device::{DeviceInfo, DeviceKind};
use rustgpu_core::layers::{Dense, Layer};
use rustgpu_core::loss::Loss;
use rustgpu_core::metrics::Metric;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::{Compiled, Executor, HostTensor, Model};

fn model() -> Model {
    let mut m = Model::new("m".into());
    let dense = |name: &str, units, act, seed| Layer::new(name, Dense::new(units, act, true).unwrap(), seed);
    m.add(dense("d1", 16, Activation::Relu, 1), Some(vec![6])).unwrap();
    m.add(dense("d2", 3, Activation::Softmax, 2), None).unwrap();
    m
}

fn data(rows: usize) -> (HostTensor, HostTensor) {
    let x: Vec<f32> = (0..rows * 6).map(|i| ((i * 7919 % 97) as f32 / 48.0) - 1.0).collect();
    let mut y = vec![0f32; rows * 3];
    for r in 0..rows {
        y[r * 3 + (r * 31 % 3)] = 1.0;
    }
    (HostTensor::new(vec![rows, 6], x).unwrap(), HostTensor::new(vec![rows, 3], y).unwrap())
}

fn all(rows: usize) -> Vec<usize> {
    (0..rows).collect()
}

fn replicas(n: usize, merge: MergeDevice) -> Executor {
    let devices = (0..n).map(|id| DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("v{}", id), memory: None, threads: 1 }).collect();
    Executor::replicated(ReplicaSet::new(devices, merge).unwrap())
}

fn compiled(opt: &str) -> Compiled {
    Compiled::single(
        Loss::parse("categorical_crossentropy").unwrap(),
        vec![Metric::resolve("accuracy", &Loss::parse("categorical_crossentropy").unwrap(), 3).unwrap()],
        Optimizer::new(OptimizerConfig::by_name(opt).unwrap()),
    )
}

#[test]
fn predictions_equal_single_device_exactly() {
    let m = model();
    let local = Executor::Local(rustgpu_core::device::cpu_device());
    for merge in [MergeDevice::Cpu, MergeDevice::FirstReplica] {
        let par = replicas(4, merge);
        for rows in [1, 3, 5, 64, 257] {
            let (x, _) = data(rows);
            let a = local.predict_on_batch(&m, &[&x], &all(rows), 0).unwrap().remove(0);
            let b = par.predict_on_batch(&m, &[&x], &all(rows), 0).unwrap().remove(0);
            assert_eq!(a, b, "rows {} merge {:?}", rows, merge);
        }
    }
}

#[test]
fn training_through_replicas_matches_the_template() {
    for opt in ["sgd", "adam"] {
        for merge in [MergeDevice::Cpu, MergeDevice::FirstReplica] {
            let (mut a, mut b) = (model(), model());
            let (mut ca, mut cb) = (compiled(opt), compiled(opt));
            let local = Executor::Local(rustgpu_core::device::cpu_device());
            let par = replicas(4, merge);
            for step in 0..6 {
                let (x, y) = data(10 + step); // 10..15 rows: uneven splits
                let sa = local.train_on_batch(&mut a, &mut ca, &[&x], &[&y], None, &all(10 + step), step as u64).unwrap();
                let sb = par.train_on_batch(&mut b, &mut cb, &[&x], &[&y], None, &all(10 + step), step as u64).unwrap();
                assert!((sa.loss - sb.loss).abs() <= 1e-5 * sa.loss.abs().max(1.0), "{} vs {}", sa.loss, sb.loss);
                assert_eq!(sa.metrics, sb.metrics);
            }
            for (wa, wb) in a.weights.iter().zip(&b.weights) {
                for (u, v) in wa.value.iter().zip(wb.value.iter()) {
                    assert!((u - v).abs() <= 1e-5 * u.abs().max(1.0), "{} {}: {} vs {}", opt, wa.name, u, v);
                }
            }
        }
    }
}

#[test]
fn a_batch_smaller_than_the_replica_count_trains() {
    let mut m = model();
    let mut c = compiled("sgd");
    let before = m.get_weights();
    let (x, y) = data(2);
    let stats = replicas(4, MergeDevice::Cpu).train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &all(2), 0).unwrap();
    assert_eq!(stats.rows, 2);
    assert_ne!(before, m.get_weights());
}

#[test]
fn replicas_gather_only_the_rows_asked_for() {
    // A shuffled subset of a larger array: the result equals training on those rows copied out.
    let (x, y) = data(40);
    let rows = vec![37, 2, 19, 5, 23, 11, 30];
    let (xs, ys) = (rustgpu_core::tensor::BatchSource::gather(&x, &rows), rustgpu_core::tensor::BatchSource::gather(&y, &rows));
    let (mut a, mut b) = (model(), model());
    let (mut ca, mut cb) = (compiled("sgd"), compiled("sgd"));
    let par = replicas(3, MergeDevice::Cpu);
    let sa = par.train_on_batch(&mut a, &mut ca, &[&x], &[&y], None, &rows, 1).unwrap();
    let sb = par.train_on_batch(&mut b, &mut cb, &[&xs], &[&ys], None, &all(rows.len()), 1).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(a.get_weights(), b.get_weights());
}

#[test]
fn replicas_stage_column_major_data_like_one_device() {
    // 131 rows of (3, 2) samples, column-major; 3 replicas each convert a share of the rows.
    let dims = [131usize, 3, 2];
    let values: Vec<f64> = (0..131 * 6).map(|i| i as f64 * 0.5).collect();
    let local = HostTensor::from_column_major(&values, &dims).unwrap();
    for n in [1, 3] {
        let staged = replicas(n, MergeDevice::Cpu).stage_column_major(&values, &dims).unwrap();
        assert_eq!(staged, local);
    }
    // Row 7, element (i = 2, j = 1) sits at 7 + 131 * (2 + 3 * 1) in R's layout.
    assert_eq!(local.data[7 * 6 + 2 * 2 + 1], values[7 + 131 * (2 + 3)] as f32);
}

#[test]
fn replicas_see_weights_changed_between_steps() {
    // The replicas keep the weights as tensors from one step to the next; weights set from
    // outside, or trained by the template in between, must reach them all the same.
    let (x, y) = data(12);
    let (mut a, mut b) = (model(), model());
    let (mut ca, mut cb) = (compiled("adam"), compiled("adam"));
    let local = Executor::Local(rustgpu_core::device::cpu_device());
    let par = replicas(2, MergeDevice::Cpu);
    for step in 0..6u64 {
        let sa = local.train_on_batch(&mut a, &mut ca, &[&x], &[&y], None, &all(12), step).unwrap();
        let sb = match step {
            // Both trained by the template (one device) for this step.
            2 => local.train_on_batch(&mut b, &mut cb, &[&x], &[&y], None, &all(12), step).unwrap(),
            _ => par.train_on_batch(&mut b, &mut cb, &[&x], &[&y], None, &all(12), step).unwrap(),
        };
        assert!((sa.loss - sb.loss).abs() <= 1e-5 * sa.loss.abs().max(1.0), "step {}: {} vs {}", step, sa.loss, sb.loss);
        if step == 3 {
            // set_weights() on both between steps.
            let w: Vec<HostTensor> =
                a.get_weights().into_iter().map(|w| HostTensor::new(w.shape.clone(), w.data.iter().map(|v| v * 0.5).collect()).unwrap()).collect();
            a.set_weights(w.clone()).unwrap();
            b.set_weights(w).unwrap();
        }
    }
    for (wa, wb) in a.weights.iter().zip(&b.weights) {
        for (u, v) in wa.value.iter().zip(wb.value.iter()) {
            assert!((u - v).abs() <= 1e-5 * u.abs().max(1.0), "{}: {} vs {}", wa.name, u, v);
        }
    }
}

#[test]
fn a_failing_replica_neither_hangs_the_others_nor_changes_the_weights() {
    use rustgpu_core::parallel::FaultKind;
    let (x, y) = data(12);
    let mut m = model();
    let mut c = compiled("sgd");
    let set = ReplicaSet::new(
        (0..3).map(|id| DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("v{}", id), memory: None, threads: 1 }).collect(),
        MergeDevice::Cpu,
    )
    .unwrap();
    set.inject_fault(1, 1, FaultKind::Panic).unwrap();
    let par = Executor::replicated(set);
    par.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &all(12), 0).unwrap();
    let before = m.get_weights();
    let err = par.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &all(12), 1).unwrap_err();
    assert!(err.to_string().contains("replica 1"), "{}", err);
    assert_eq!(before, m.get_weights());
    assert_eq!(c.optimizer.iterations, 1);
    // The next step runs, and from the same state as a fresh copy would.
    let mut twin = m.clone();
    let mut twin_c = c.clone();
    let a = par.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, &all(12), 2).unwrap();
    let b = Executor::Local(rustgpu_core::device::cpu_device()).train_on_batch(&mut twin, &mut twin_c, &[&x], &[&y], None, &all(12), 2).unwrap();
    assert!((a.loss - b.loss).abs() <= 1e-6 * b.loss.abs().max(1.0));
}

#[test]
fn a_measured_split_follows_speed_and_trains_as_the_template() {
    use rustgpu_core::row_split::SplitMode;
    let (x, y) = data(64);
    let local = Executor::Local(rustgpu_core::device::cpu_device());
    for merge in [MergeDevice::Cpu, MergeDevice::FirstReplica] {
        let devices = (0..2).map(|id| DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("v{}", id), memory: None, threads: 1 }).collect();
        let par = Executor::replicated(ReplicaSet::with_split(devices, merge, SplitMode::Measured).unwrap());
        let set = par.replica_set().unwrap();
        // Replica 1 takes 1 ms more per row: far slower than replica 0's microseconds per row.
        set.split.slow_down(1, std::time::Duration::from_millis(1));
        let (mut a, mut b) = (model(), model());
        let (mut ca, mut cb) = (compiled("sgd"), compiled("sgd"));
        for step in 0..12 {
            par.train_on_batch(&mut a, &mut ca, &[&x], &[&y], None, &all(64), step).unwrap();
            local.train_on_batch(&mut b, &mut cb, &[&x], &[&y], None, &all(64), step).unwrap();
        }
        let rows: Vec<usize> = set.split.ranges(64).iter().map(|r| r.len()).collect();
        assert!(rows[0] > 4 * rows[1], "merge {:?}: rows {:?}, speeds {:?}", merge, rows, set.split.speeds());
        for (wa, wb) in a.get_weights().iter().zip(b.get_weights()) {
            for (p, q) in wa.data.iter().zip(&wb.data) {
                assert!((p - q).abs() <= 1e-5, "merge {:?}: {} vs {}", merge, p, q);
            }
        }
    }
}
