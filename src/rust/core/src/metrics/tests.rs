use super::*;
use candle_core::Device;

fn loss(name: &str) -> Loss {
    Loss::parse(name).unwrap()
}

#[test]
fn accuracy_resolution_and_values() {
    let dev = Device::Cpu;
    let m = Metric::resolve("accuracy", &loss("categorical_crossentropy"), 3).unwrap();
    assert_eq!(m.keras_name(), "categorical_accuracy");
    let p = Tensor::new(&[[0.1f32, 0.8, 0.1], [0.6, 0.3, 0.1]], &dev).unwrap();
    let y = Tensor::new(&[[0.0f32, 1.0, 0.0], [0.0, 0.0, 1.0]], &dev).unwrap();
    assert_eq!(m.batch_sums(&p, &y, None).unwrap(), vec![1.0, 2.0]);
    assert_eq!(Metric::resolve("acc", &loss("sparse_categorical_crossentropy"), 3).unwrap().keras_name(), "sparse_categorical_accuracy");
    let b = Metric::resolve("acc", &loss("binary_crossentropy"), 1).unwrap();
    assert_eq!((b.name.as_str(), b.keras_name()), ("acc", "binary_accuracy"));
    let p = Tensor::new(&[[0.7f32], [0.2], [0.4]], &dev).unwrap();
    let y = Tensor::new(&[[1.0f32], [0.0], [1.0]], &dev).unwrap();
    assert_eq!(b.batch_sums(&p, &y, None).unwrap(), vec![2.0, 3.0]);
    let e = Metric::resolve("auc_typo", &loss("mse"), 1).unwrap_err().to_string();
    assert!(e.contains("unknown metric") && e.contains("binary_accuracy") && e.contains("mae"), "{}", e);
}

#[test]
fn every_loss_is_a_metric_computed_from_the_values() {
    let dev = Device::Cpu;
    let p = Tensor::new(&[[0.2f32, 0.8], [0.6, 0.4]], &dev).unwrap();
    let y = Tensor::new(&[[0.0f32, 1.0], [0.0, 1.0]], &dev).unwrap();
    for name in Loss::names() {
        let l = loss(name);
        let m = Metric::resolve(name, &loss("mse"), 2).unwrap();
        assert_eq!(m.keras_name(), l.name());
        let expected = l.per_sample(&ModelOutput::plain(p.clone()), &y).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        // Relative: percentage errors against zero targets run to 1e9.
        assert!((m.batch_sums(&p, &y, None).unwrap()[0] - expected).abs() < 1e-6 * expected.abs().max(1.0), "{}", name);
    }
    // mae by hand: (0.2 + 0.2) / 2 + (0.6 + 0.6) / 2
    assert!((Metric::resolve("mae", &loss("mse"), 2).unwrap().batch_sums(&p, &y, None).unwrap()[0] - 0.8).abs() < 1e-6);
}

#[test]
fn top_k_accuracy_counts_ties_at_the_boundary_as_in() {
    let dev = Device::Cpu;
    // Six classes; the target's prediction ranks 5th, 6th, and ties the 5th place.
    let p = Tensor::new(&[[0.6f32, 0.5, 0.4, 0.3, 0.2, 0.1], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], [0.6, 0.5, 0.4, 0.3, 0.2, 0.2]], &dev).unwrap();
    let y = Tensor::new(&[[0f32, 0., 0., 0., 1., 0.], [0., 0., 0., 0., 0., 1.], [0., 0., 0., 0., 0., 1.]], &dev).unwrap();
    let m = Metric::resolve("top_k_categorical_accuracy", &loss("categorical_crossentropy"), 6).unwrap();
    assert_eq!(m.batch_sums(&p, &y, None).unwrap()[0], 2.0);
}

#[test]
fn stateful_metrics_add_their_counts_over_batches() {
    let dev = candle_core::Device::Cpu;
    let auc = Metric::resolve("AUC", &Loss::parse("binary_crossentropy").unwrap(), 1).unwrap();
    let precision = Metric::resolve("precision", &Loss::parse("binary_crossentropy").unwrap(), 1).unwrap();
    assert!(auc.is_stateful() && precision.is_stateful());
    assert_eq!(auc.accumulators(), 800);
    let p = Tensor::new(&[[0.9f32], [0.8], [0.3], [0.6], [0.1]], &dev).unwrap();
    let y = Tensor::new(&[[1f32], [0.0], [1.0], [0.0], [0.0]], &dev).unwrap();
    // Counted in two batches or in one: the same sums, the same figures.
    let whole = precision.batch_sums(&p, &y, None).unwrap();
    let a = precision.batch_sums(&p.narrow(0, 0, 2).unwrap(), &y.narrow(0, 0, 2).unwrap(), None).unwrap();
    let b = precision.batch_sums(&p.narrow(0, 2, 3).unwrap(), &y.narrow(0, 2, 3).unwrap(), None).unwrap();
    assert_eq!(whole, a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>());
    // Predicted positive: 0.9 (right), 0.8 and 0.6 (wrong): precision 1/3.
    assert!((precision.result(&whole) - 1.0 / 3.0).abs() < 1e-12);
    // Of the 2 x 3 positive/negative pairs, the positive is ranked higher in 4: AUC 4/6.
    let sums = auc.batch_sums(&p, &y, None).unwrap();
    assert!((auc.result(&sums) - 4.0 / 6.0).abs() < 1e-9, "{}", auc.result(&sums));
    assert!(auc.per_sample(&p, &y).unwrap_err().to_string().contains("all samples together"));
}

#[test]
fn masked_outputs_count_only_unmasked_steps() {
    let dev = Device::Cpu;
    // (batch 2, time 3, classes 2); the second sample's last two steps are masked.
    let p = Tensor::new(&[[[0.9f32, 0.1], [0.2, 0.8], [0.6, 0.4]], [[0.3, 0.7], [0.9, 0.1], [0.1, 0.9]]], &dev).unwrap();
    let y = Tensor::new(&[[[1.0f32, 0.0], [1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]], &dev).unwrap();
    let mask = Tensor::new(&[[1.0f32, 1.0, 1.0], [1.0, 0.0, 0.0]], &dev).unwrap();
    let acc = Metric::resolve("accuracy", &loss("categorical_crossentropy"), 2).unwrap();
    // Correct steps: (0,0), (0,2), (1,0); (1,2) is correct but masked.
    let sums = acc.batch_sums(&p, &y, Some(&mask)).unwrap();
    assert_eq!(sums, vec![3.0, 4.0]);
    assert_eq!(acc.result(&sums), 0.75);
    // Unmasked, the accuracy is over samples, each the mean of its steps.
    let unmasked = acc.batch_sums(&p, &y, None).unwrap();
    assert!((unmasked[0] - 4.0 / 3.0).abs() < 1e-6 && unmasked[1] == 2.0, "{:?}", unmasked);
    // A mask that does not match the output's time axis does not apply.
    let other = Tensor::new(&[[1.0f32, 0.0], [1.0, 0.0]], &dev).unwrap();
    assert_eq!(acc.batch_sums(&p, &y, Some(&other)).unwrap()[1], 2.0);
}
