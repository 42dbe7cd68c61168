//! Multi-worker training (`multi_worker_mirrored_strategy()`): each worker takes its share of
//! every global batch and the sums are added up over the workers, so that every worker ends
//! with the weights one process gets on the whole batches. Here the workers are threads
//! exchanging through a `ReplicaGroup` (the MPI path is tested from R, with mpirun).
use rustgpu_core::collective::{Collective, DeviceSums, Ranked, ReplicaGroup};
use rustgpu_core::layers::Layer;
use rustgpu_core::loss::Loss;
use rustgpu_core::metrics::Metric;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::{Compiled, Executor, HostTensor, Model};
use serde_json::json;
use std::sync::Arc;

fn model(synchronized: bool) -> Model {
    let mut m = Model::new("m".into());
    m.add(Layer::from_config("Dense", &json!({ "name": "hidden", "units": 6, "activation": "relu" }), 1).unwrap(), Some(vec![5])).unwrap();
    m.add(Layer::from_config("BatchNormalization", &json!({ "name": "bn", "momentum": 0.5, "synchronized": synchronized }), 2).unwrap(), None).unwrap();
    m.add(Layer::from_config("Dense", &json!({ "name": "out", "units": 3, "activation": "softmax" }), 3).unwrap(), None).unwrap();
    m
}

fn data(rows: usize) -> (HostTensor, HostTensor) {
    let x: Vec<f32> = (0..rows * 5).map(|i| ((i * 53 % 31) as f32 / 9.0) - 1.5).collect();
    let mut y = vec![0f32; rows * 3];
    for r in 0..rows {
        y[r * 3 + (r * 5) % 3] = 1.0;
    }
    (HostTensor::new(vec![rows, 5], x).unwrap(), HostTensor::new(vec![rows, 3], y).unwrap())
}

fn compiled() -> Compiled {
    let loss = Loss::parse("categorical_crossentropy").unwrap();
    let accuracy = Metric::resolve("accuracy", &loss, 3).unwrap();
    Compiled::single(loss, vec![accuracy], Optimizer::new(OptimizerConfig::from_config("sgd", &json!({ "learning_rate": 0.3 })).unwrap()))
}

/// Batches of 10, 10 and 7 rows of 27, in a fixed shuffled order.
fn batches() -> Vec<Vec<usize>> {
    let order: Vec<usize> = (0..27).map(|i| (i * 11) % 27).collect();
    order.chunks(10).map(|c| c.to_vec()).collect()
}

/// (weights, each batch's loss and accuracy) after two passes over the batches.
fn train(ex: &Executor, synchronized: bool) -> (Vec<HostTensor>, Vec<(f64, Vec<f64>)>) {
    let mut m = model(synchronized);
    let mut c = compiled();
    let (x, y) = data(27);
    let mut stats = Vec::new();
    for (step, rows) in batches().iter().cycle().take(6).enumerate() {
        let s = ex.train_on_batch(&mut m, &mut c, &[&x], &[&y], None, rows, step as u64).unwrap();
        stats.push((s.loss, s.metrics));
    }
    (m.get_weights(), stats)
}

/// A worker whose members sum tensors "on the device" (as NCCL does between GPUs), here on
/// the CPU through the host exchange: the multi-worker step's device path, run without GPUs.
struct OnDevice(Arc<dyn Ranked>);

struct HostSums(Arc<dyn Ranked>);

impl Collective for OnDevice {
    fn all_reduce_sum(&self, values: &mut [f64]) -> rustgpu_core::Result<()> {
        self.0.all_reduce_sum(values)
    }
}

impl Ranked for OnDevice {
    fn rank(&self) -> usize {
        self.0.rank()
    }
    fn size(&self) -> usize {
        self.0.size()
    }
    fn device_sums(&self, _device: &candle_core::Device) -> rustgpu_core::Result<Option<Arc<dyn DeviceSums>>> {
        Ok(Some(Arc::new(HostSums(self.0.clone()))))
    }
}

impl DeviceSums for HostSums {
    fn sum(&self, t: &candle_core::Tensor) -> rustgpu_core::Result<candle_core::Tensor> {
        let mut v: Vec<f64> = t.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
        self.0.all_reduce_sum(&mut v)?;
        Ok(candle_core::Tensor::from_vec(v.into_iter().map(|x| x as f32).collect::<Vec<f32>>(), t.dims(), t.device())?)
    }
}

fn in_workers<T: Send>(n: usize, f: impl Fn(Executor) -> T + Sync) -> Vec<T> {
    in_workers_as(n, false, f)
}

/// `n` workers as threads; `on_device`: their gradients summed by device sums.
fn in_workers_as<T: Send>(n: usize, on_device: bool, f: impl Fn(Executor) -> T + Sync) -> Vec<T> {
    let group = ReplicaGroup::new(n);
    let seats: Vec<_> = (0..n).map(|i| group.seat(i)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = seats
            .iter()
            .map(|seat| {
                let member: Arc<dyn Ranked> = seat.ranked_member();
                let ranked: Arc<dyn Ranked> = if on_device { Arc::new(OnDevice(member)) } else { member };
                let f = &f;
                scope.spawn(move || f(Executor::Workers(rustgpu_core::device::cpu_device(), ranked)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn largest_difference(a: &[HostTensor], b: &[HostTensor]) -> f32 {
    a.iter().zip(b).flat_map(|(a, b)| a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs())).fold(0.0, f32::max)
}

#[test]
fn every_worker_trains_as_one_process_on_the_whole_batches() {
    for synchronized in [false, true] {
        let (one_weights, one_stats) = train(&Executor::Local(rustgpu_core::device::cpu_device()), synchronized);
        for n in [2, 3] {
            for (rank, (weights, stats)) in in_workers(n, |ex| train(&ex, synchronized)).into_iter().enumerate() {
                let d = largest_difference(&weights, &one_weights);
                // Without synchronization each worker normalizes with its own rows' statistics
                // (Keras's default), which differs from one process's whole batch.
                if synchronized {
                    assert!(d <= 1e-5, "{} workers, rank {}: weights differ by {}", n, rank, d);
                    for ((l, m), (l1, m1)) in stats.iter().zip(&one_stats) {
                        assert!((l - l1).abs() <= 1e-5 && m == m1, "{} workers: loss {} vs {}, metrics {:?} vs {:?}", n, l, l1, m, m1);
                    }
                } else {
                    assert!(d > 1e-4, "{} workers without synchronization: {}", n, d);
                }
            }
        }
    }
}

#[test]
fn gradients_summed_on_the_devices_train_as_one_process_too() {
    for synchronized in [false, true] {
        let (one_weights, one_stats) = train(&Executor::Local(rustgpu_core::device::cpu_device()), synchronized);
        for (weights, stats) in in_workers_as(3, true, |ex| train(&ex, synchronized)) {
            let d = largest_difference(&weights, &one_weights);
            if synchronized {
                assert!(d <= 1e-5, "weights differ by {}", d);
                assert!(stats.iter().zip(&one_stats).all(|((l, _), (l1, _))| (l - l1).abs() <= 1e-5));
            } else {
                assert!(d > 1e-4);
            }
        }
    }
}

#[test]
fn workers_stay_equal_to_each_other() {
    let results = in_workers(3, |ex| train(&ex, false));
    for (w, _) in &results[1..] {
        assert_eq!(largest_difference(w, &results[0].0), 0.0);
    }
}

#[test]
fn evaluation_adds_up_over_the_workers() {
    let m = model(false);
    let c = compiled();
    let (x, y) = data(27);
    let rows: Vec<usize> = (0..27).collect();
    let one = Executor::Local(rustgpu_core::device::cpu_device()).test_on_batch(&m, &c, &[&x], &[&y], None, &rows).unwrap();
    for s in in_workers(3, |ex| ex.test_on_batch(&m, &c, &[&x], &[&y], None, &rows).unwrap()) {
        assert!((s.loss - one.loss).abs() <= 1e-6 && s.metrics == one.metrics, "{:?} vs {:?}", s, one);
    }
}

#[test]
fn a_failing_worker_stops_the_others_and_a_batch_too_small_is_refused() {
    let (x, y) = data(27);
    let rows: Vec<usize> = (0..10).collect();
    let errors = in_workers(2, |ex| {
        let mut m = model(false);
        let mut c = compiled();
        let before = m.get_weights();
        // Worker 1's targets have the wrong width: its step fails before the exchange.
        let bad = HostTensor::new(vec![27, 2], vec![0.0; 54]).unwrap();
        let mine = if ex.workers().unwrap().rank() == 1 { &bad } else { &y };
        let err = ex.train_on_batch(&mut m, &mut c, &[&x], &[mine], None, &rows, 0).unwrap_err().to_string();
        assert_eq!(largest_difference(&m.get_weights(), &before), 0.0, "weights unchanged");
        err
    });
    assert!(errors[0].contains("another replica failed"), "{}", errors[0]);
    assert!(!errors[1].contains("another replica failed"), "{}", errors[1]);
    let small = in_workers(3, |ex| {
        let mut m = model(false);
        ex.train_on_batch(&mut m, &mut compiled(), &[&x], &[&y], None, &[0, 1], 0).unwrap_err().to_string()
    });
    assert!(small.iter().all(|e| e.contains("a batch of 2 rows cannot be shared by 3 workers")), "{:?}", small);
}
