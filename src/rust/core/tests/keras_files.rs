//! The io module on its own: configs written and read back, models saved and loaded, files
//! made by tf-keras read with the predictions Keras made, and bad files and configs refused
//! with errors that say what is wrong.
use rustgpu_core::activation::Activation;
use rustgpu_core::device::cpu_device;
use rustgpu_core::io::{self, TrainingConfig};
use rustgpu_core::layers::{Conv2D, Dense, Flatten, Layer, MaxPooling2D, Tuple2};
use rustgpu_core::loss::Loss;
use rustgpu_core::optim::{Optimizer, OptimizerConfig};
use rustgpu_core::{Compiled, Error, Executor, HostTensor, Model};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures/h5").join(name)
}

fn small_cnn() -> Model {
    let mut m = Model::new("cnn".into());
    let conv = Conv2D { filters: 3, kernel_size: Tuple2(3, 3), activation: Activation::Relu, ..Conv2D::default() };
    m.add(Layer::new("conv", conv, 1), Some(vec![6, 6, 2])).unwrap();
    m.add(Layer::new("pool", MaxPooling2D { strides: Some(Tuple2(2, 2)), ..MaxPooling2D::default() }, 0), None).unwrap();
    m.add(Layer::new("flat", Flatten::default(), 0), None).unwrap();
    m.add(Layer::new("out", Dense::new(2, Activation::Softmax, true).unwrap(), 2), None).unwrap();
    m
}

fn rows(x: &HostTensor) -> Vec<usize> {
    (0..x.rows()).collect()
}

fn predict(m: &Model, xs: &[&HostTensor]) -> Vec<f32> {
    let sources: Vec<&dyn rustgpu_core::tensor::BatchSource> = xs.iter().map(|x| *x as &dyn rustgpu_core::tensor::BatchSource).collect();
    Executor::Local(cpu_device()).predict_on_batch(m, &sources, &rows(xs[0]), 0).unwrap().remove(0).data
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rustgpu-io-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_sequential_config_reads_back_as_written() {
    let m = small_cnn();
    let config = io::model_config(&m).unwrap();
    assert_eq!(config["class_name"], "Sequential");
    let classes: Vec<&str> = config["config"]["layers"].as_array().unwrap().iter().map(|l| l["class_name"].as_str().unwrap()).collect();
    assert_eq!(classes, ["InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense"]);
    assert_eq!(config["config"]["layers"][1]["config"]["kernel_size"], serde_json::json!([3, 3]));
    let again = io::model_from_config(&config.to_string()).unwrap();
    assert_eq!(io::model_config(&again).unwrap(), config);
}

#[test]
fn a_saved_model_loads_with_its_weights_and_training_setup() {
    let m = small_cnn();
    let compiled = Compiled {
        losses: vec![Loss::parse("categorical_crossentropy").unwrap()],
        loss_weights: vec![1.0],
        metrics: Vec::new(),
        optimizer: Optimizer::new(OptimizerConfig::by_name("adam").unwrap()),
    };
    let path = temp_path("cnn.h5");
    io::save_model(&path, &m, Some(&compiled), true, true).unwrap();
    let loaded = io::load_model(&path).unwrap();
    assert_eq!(loaded.model.get_weights(), m.get_weights());
    let training = loaded.training.expect("a training config");
    assert_eq!(training.losses, vec!["categorical_crossentropy".to_string()]);
    assert_eq!(training.optimizer.name(), "Adam");
    // overwrite = false refuses an existing file and leaves it as it was.
    let e = io::save_model(&path, &m, None, false, false).unwrap_err();
    assert!(e.to_string().contains("exists"), "{}", e);
    assert!(io::load_model(&path).unwrap().training.is_some());
    std::fs::remove_file(&path).unwrap();
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

fn host(v: &Value) -> HostTensor {
    let rows = v.as_array().unwrap();
    let mut shape = vec![rows.len()];
    let mut data = Vec::new();
    fn walk(v: &Value, depth: usize, shape: &mut Vec<usize>, data: &mut Vec<f32>) {
        match v {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                }
                items.iter().for_each(|i| walk(i, depth + 1, shape, data));
            }
            other => data.push(other.as_f64().unwrap() as f32),
        }
    }
    rows.iter().for_each(|r| walk(r, 1, &mut shape, &mut data));
    HostTensor::new(shape, data).unwrap()
}

fn close(a: &[f32], b: &HostTensor) {
    assert_eq!(a.len(), b.data.len());
    for (x, y) in a.iter().zip(&b.data) {
        assert!((x - y).abs() < 1e-5, "{} vs {}", x, y);
    }
}

#[test]
fn files_written_by_tf_keras_predict_what_keras_predicted() {
    let want = expected();
    for (file, case) in [("keras_dense_model.h5", "dense"), ("keras_cnn_model.h5", "cnn")] {
        let loaded = io::load_model(&fixture(file)).unwrap();
        let x = host(&want[case]["x"]);
        close(&predict(&loaded.model, &[&x]), &host(&want[case]["predictions"]));
    }
    let loaded = io::load_model(&fixture("keras_functional_model.h5")).unwrap();
    let (xa, xb) = (host(&want["functional"]["xa"]), host(&want["functional"]["xb"]));
    close(&predict(&loaded.model, &[&xa, &xb]), &host(&want["functional"]["predictions"]));
}

#[test]
fn bad_files_and_configs_are_refused_with_what_is_wrong() {
    assert!(matches!(io::load_model(&fixture("broken_missing_group.h5")), Err(Error::Io(_)) | Err(Error::Value(_))));
    assert!(matches!(io::load_model(&fixture("no_such_file.h5")), Err(Error::Io(_))));
    let e = io::model_from_config(r#"{"class_name": "Sequential", "config": {"layers": [{"class_name": "Magic", "config": {}}]}}"#).unwrap_err();
    assert!(e.to_string().contains("\"Magic\" is not supported"), "{}", e);
    let e = io::model_from_config(r#"{"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": {"units": -3}}]}}"#).unwrap_err();
    assert!(e.to_string().contains("units"), "{}", e);
    assert!(matches!(io::model_from_config("{not json"), Err(Error::Io(_))));
    assert!(TrainingConfig::parse(r#"{"loss": "mse", "optimizer_config": {"class_name": "Lion", "config": {}}}"#).is_err());
}
