use super::*;
use candle_core::Device;

fn loss(name: &str) -> Loss {
    Loss::parse(name).unwrap()
}

#[test]
fn accuracy_resolution_and_values() {
    let dev = Device::Cpu;
    let m = Metric::resolve("accuracy", loss("categorical_crossentropy"), 3).unwrap();
    assert_eq!(m.keras_name(), "categorical_accuracy");
    let p = Tensor::new(&[[0.1f32, 0.8, 0.1], [0.6, 0.3, 0.1]], &dev).unwrap();
    let y = Tensor::new(&[[0.0f32, 1.0, 0.0], [0.0, 0.0, 1.0]], &dev).unwrap();
    assert_eq!(m.batch_sum(&p, &y).unwrap(), 1.0);
    assert_eq!(Metric::resolve("acc", loss("sparse_categorical_crossentropy"), 3).unwrap().keras_name(), "sparse_categorical_accuracy");
    let b = Metric::resolve("acc", loss("binary_crossentropy"), 1).unwrap();
    assert_eq!((b.name.as_str(), b.keras_name()), ("acc", "binary_accuracy"));
    let p = Tensor::new(&[[0.7f32], [0.2], [0.4]], &dev).unwrap();
    let y = Tensor::new(&[[1.0f32], [0.0], [1.0]], &dev).unwrap();
    assert_eq!(b.batch_sum(&p, &y).unwrap(), 2.0);
    let e = Metric::resolve("auc_typo", loss("mse"), 1).unwrap_err().to_string();
    assert!(e.contains("unknown metric") && e.contains("binary_accuracy") && e.contains("mae"), "{}", e);
}

#[test]
fn every_loss_is_a_metric_computed_from_the_values() {
    let dev = Device::Cpu;
    let p = Tensor::new(&[[0.2f32, 0.8], [0.6, 0.4]], &dev).unwrap();
    let y = Tensor::new(&[[0.0f32, 1.0], [0.0, 1.0]], &dev).unwrap();
    for name in Loss::names() {
        let l = loss(name);
        let m = Metric::resolve(name, loss("mse"), 2).unwrap();
        assert_eq!(m.keras_name(), l.name());
        let expected = l.per_sample(&ModelOutput::plain(p.clone()), &y).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        // Relative: percentage errors against zero targets run to 1e9.
        assert!((m.batch_sum(&p, &y).unwrap() - expected).abs() < 1e-6 * expected.abs().max(1.0), "{}", name);
    }
    // mae by hand: (0.2 + 0.2) / 2 + (0.6 + 0.6) / 2
    assert!((Metric::resolve("mae", loss("mse"), 2).unwrap().batch_sum(&p, &y).unwrap() - 0.8).abs() < 1e-6);
}

#[test]
fn top_k_accuracy_counts_ties_at_the_boundary_as_in() {
    let dev = Device::Cpu;
    // Six classes; the target's prediction ranks 5th, 6th, and ties the 5th place.
    let p = Tensor::new(&[[0.6f32, 0.5, 0.4, 0.3, 0.2, 0.1], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], [0.6, 0.5, 0.4, 0.3, 0.2, 0.2]], &dev).unwrap();
    let y = Tensor::new(&[[0f32, 0., 0., 0., 1., 0.], [0., 0., 0., 0., 0., 1.], [0., 0., 0., 0., 0., 1.]], &dev).unwrap();
    let m = Metric::resolve("top_k_categorical_accuracy", loss("categorical_crossentropy"), 6).unwrap();
    assert_eq!(m.batch_sum(&p, &y).unwrap(), 2.0);
}
