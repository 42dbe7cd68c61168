//! The registry: every layer type rustgpu has, found by its Keras class name. Saved configs,
//! `from_config()` and R's `layer_*()` functions all build layers through it.
use super::*;

/// A layer type's entry: its Keras class name and how to build it from its config.
pub struct Registration {
    pub class_name: &'static str,
    pub name_prefix: &'static str,
    parse: fn(&Value) -> Result<Arc<dyn AnyLayer>>,
    /// The type's [`LayerType::example`], for the generic test.
    pub example: fn() -> Example,
}

impl Registration {
    pub const fn of<T: LayerType>() -> Self {
        Self { class_name: T::CLASS_NAME, name_prefix: T::NAME_PREFIX, parse: parse::<T>, example: T::example }
    }

    /// A layer of this type from its Keras config (the type's fields; `name` and the like
    /// are ignored).
    pub fn build(&self, config: &Value) -> Result<Arc<dyn AnyLayer>> {
        if !config.is_object() {
            return Err(Error::Value(format!("the config of a {} layer must be a named list (a JSON object)", self.class_name)));
        }
        // A spatial layer on channels-first data is its channels-last twin between transpositions.
        if config.get("data_format").and_then(Value::as_str) == Some("channels_first") {
            let mut last = config.clone();
            last["data_format"] = Value::String("channels_last".into());
            return Ok(Arc::new(ChannelsFirst::new((self.parse)(&last)?)));
        }
        (self.parse)(config)
    }
}

fn parse<T: LayerType>(config: &Value) -> Result<Arc<dyn AnyLayer>> {
    Ok(Arc::new(parse_config::<T>(config)?))
}

/// One line per layer type.
pub static LAYER_TYPES: &[Registration] = &[
    Registration::of::<Dense>(),
    Registration::of::<Lambda>(),
    Registration::of::<CustomLayer>(),
    Registration::of::<CustomWrapper>(),
    Registration::of::<ActivationLayer>(),
    Registration::of::<Dropout>(),
    Registration::of::<Conv1D>(),
    Registration::of::<Conv2D>(),
    Registration::of::<Conv3D>(),
    Registration::of::<ConvLSTM2D>(),
    Registration::of::<DepthwiseConv2D>(),
    Registration::of::<SeparableConv2D>(),
    Registration::of::<MaxPooling1D>(),
    Registration::of::<MaxPooling2D>(),
    Registration::of::<AveragePooling2D>(),
    Registration::of::<GlobalAveragePooling2D>(),
    Registration::of::<GlobalMaxPooling2D>(),
    Registration::of::<GlobalAveragePooling1D>(),
    Registration::of::<GlobalMaxPooling1D>(),
    Registration::of::<AveragePooling1D>(),
    Registration::of::<ZeroPadding2D>(),
    Registration::of::<Flatten>(),
    Registration::of::<Reshape>(),
    Registration::of::<BatchNormalization>(),
    Registration::of::<Embedding>(),
    Registration::of::<Add>(),
    Registration::of::<Multiply>(),
    Registration::of::<Concatenate>(),
    Registration::of::<Subtract>(),
    Registration::of::<Average>(),
    Registration::of::<Maximum>(),
    Registration::of::<Minimum>(),
    Registration::of::<ReLU>(),
    Registration::of::<LeakyReLU>(),
    Registration::of::<ELU>(),
    Registration::of::<ThresholdedReLU>(),
    Registration::of::<Softmax>(),
    Registration::of::<UpSampling1D>(),
    Registration::of::<UpSampling2D>(),
    Registration::of::<Cropping1D>(),
    Registration::of::<Cropping2D>(),
    Registration::of::<Permute>(),
    Registration::of::<GaussianNoise>(),
    Registration::of::<GaussianDropout>(),
    Registration::of::<AlphaDropout>(),
    Registration::of::<SpatialDropout1D>(),
    Registration::of::<SpatialDropout2D>(),
    Registration::of::<LayerNormalization>(),
    Registration::of::<PReLU>(),
    Registration::of::<Dot>(),
    Registration::of::<Conv2DTranspose>(),
    Registration::of::<ActivityRegularization>(),
    Registration::of::<SimpleRNN>(),
    Registration::of::<LSTM>(),
    Registration::of::<GRU>(),
    Registration::of::<Bidirectional>(),
    Registration::of::<TimeDistributed>(),
    Registration::of::<RepeatVector>(),
    Registration::of::<Masking>(),
];

/// The registration of a Keras class name.
pub fn find(class_name: &str) -> Result<&'static Registration> {
    LAYER_TYPES
        .iter()
        .find(|r| r.class_name == class_name)
        .ok_or_else(|| Error::Value(format!("layer class \"{}\" is not supported by rustgpu yet", class_name.escape_default())))
}

#[cfg(test)]
mod tests {
    //! What every registered layer type gets without a test of its own: its config read
    //! back as written, output shapes as predicted, weight names, and backward passes that
    //! match finite differences for the inputs and every trainable weight.
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;
    use rand::SeedableRng;

    struct Instance {
        layer: Layer,
        inputs: Vec<Tensor>,
        weights: Vec<Tensor>,
        specs: Vec<WeightSpec>,
    }

    fn instance(r: &Registration) -> (Instance, Example) {
        let ex = (r.example)();
        let mut config = ex.config.clone();
        config["name"] = serde_json::json!(format!("test_{}", r.name_prefix));
        let layer = Layer::from_config(r.class_name, &config, 7).unwrap_or_else(|e| panic!("{}: {}", r.class_name, e));
        let specs = layer.weight_specs(&ex.inputs[0]);
        let mut rng = StdRng::seed_from_u64(3);
        let weights = specs
            .iter()
            .map(|s| {
                // Trainable weights drawn around 0; statistics as initialized.
                let values = if s.trainable { Initializer::random_normal(0.1, 0.5) } else { s.initializer.clone() }.sample(&s.shape, &mut rng).unwrap();
                Tensor::from_vec(values, s.shape.as_slice(), &Device::Cpu).unwrap()
            })
            .collect();
        let inputs = ex
            .inputs
            .iter()
            .enumerate()
            .map(|(k, shape)| {
                let mut full = vec![3usize];
                full.extend(shape);
                let n: usize = full.iter().product();
                let values: Vec<f32> = match ex.index_bound {
                    Some(bound) => (0..n).map(|i| ((i * 7 + k) % bound) as f32).collect(),
                    None => (0..n).map(|i| (1.1 * (0.7 * i as f32 + k as f32)).sin()).collect(),
                };
                Tensor::from_vec(values, full.as_slice(), &Device::Cpu).unwrap()
            })
            .collect();
        (Instance { layer, inputs, weights, specs }, ex)
    }

    fn ctx() -> ForwardContext {
        // The same seed for every call: dropout draws the same mask for each probe.
        ForwardContext { training: true, rng: StdRng::seed_from_u64(11), mask: None, collective: None }
    }

    #[test]
    fn the_registry_has_one_entry_per_class_and_prefix() {
        for (i, r) in LAYER_TYPES.iter().enumerate() {
            assert!(LAYER_TYPES[..i].iter().all(|o| o.class_name != r.class_name && o.name_prefix != r.name_prefix), "{} twice", r.class_name);
        }
        assert!(find("NoSuchLayer").err().unwrap().to_string().contains("not supported"));
    }

    #[test]
    fn configs_read_back_as_written() {
        for r in LAYER_TYPES {
            let (inst, _) = instance(r);
            let written = inst.layer.keras_config();
            // A layer class written in R shows and saves its own class name.
            let shown = inst.layer.class_name().to_string();
            assert!(shown == r.class_name || r.class_name == "CustomLayer" || r.class_name == "CustomWrapper", "{}", shown);
            assert_eq!(written["class_name"], shown.as_str());
            assert_eq!(written["config"]["name"], format!("test_{}", r.name_prefix));
            let again = Layer::from_config(&shown, &written["config"], 0).unwrap();
            assert_eq!(again.keras_config(), written, "{} config round trip", r.class_name);
            assert_eq!(again.class_name(), shown);
        }
    }

    #[test]
    fn output_shapes_and_weight_names_are_what_forward_makes() {
        for r in LAYER_TYPES {
            let (inst, ex) = instance(r);
            let predicted = inst.layer.node_output_shape(&ex.inputs).unwrap();
            let (out, _) = inst.layer.forward_node(&inst.weights, &inst.inputs, &mut ctx()).unwrap();
            assert_eq!(&out.value.dims()[1..], predicted.as_slice(), "{} output shape", r.class_name);
            for (i, s) in inst.specs.iter().enumerate() {
                assert!(
                    !s.name.is_empty() && !s.name.starts_with('/') && !s.name.ends_with('/') && !s.name.contains(':'),
                    "{} weight name {}",
                    r.class_name,
                    s.name
                );
                assert!(inst.specs[..i].iter().all(|o| o.name != s.name), "{} weight {} twice", r.class_name, s.name);
            }
        }
    }

    /// Declaring one axis of the inputs variable (Keras's None): the shapes inferred keep
    /// every other size as with the axis known, weights either keep their shapes or say they
    /// need the axis (then the model refuses to build), and where a layer accepts another
    /// size on that axis its forward pass makes the shape inferred for that size.
    #[test]
    fn variable_sizes_give_the_shapes_of_known_sizes() {
        use crate::shape::VARIABLE;
        for r in LAYER_TYPES {
            let (inst, ex) = instance(r);
            let known = inst.layer.node_output_shape(&ex.inputs).unwrap();
            let known_specs = inst.layer.weight_specs(&ex.inputs[0]);
            for axis in 0..ex.inputs[0].len() {
                let with_axis = |size: usize| -> Vec<Vec<usize>> {
                    ex.inputs
                        .iter()
                        .map(|s| {
                            let mut s = s.clone();
                            if axis < s.len() {
                                s[axis] = size;
                            }
                            s
                        })
                        .collect()
                };
                let declared = with_axis(VARIABLE);
                let what = format!("{} with input axis {} variable", r.class_name, axis + 1);
                let Ok(out) = inst.layer.node_output_shape(&declared) else { continue };
                assert_eq!(out.len(), known.len(), "{}: rank", what);
                assert!(out.iter().zip(&known).all(|(o, k)| o == k || *o == VARIABLE), "{}: ({:?}) against ({:?})", what, out, known);
                let specs = inst.layer.weight_specs(&declared[0]);
                assert_eq!(specs.len(), known_specs.len(), "{}: weights", what);
                if specs.iter().zip(&known_specs).any(|(s, k)| s.shape != k.shape && !crate::shape::has_variable(&s.shape)) {
                    panic!("{}: a weight's shape changed without depending on the variable size", what);
                }
                if specs.iter().any(|s| crate::shape::has_variable(&s.shape)) || ex.index_bound.is_some() {
                    continue;
                }
                // Another size on that axis: the forward pass makes the shape inferred for it.
                let other = with_axis(ex.inputs[0][axis] + 1);
                let Ok(expected) = inst.layer.node_output_shape(&other) else { continue };
                let xs: Vec<Tensor> = other
                    .iter()
                    .map(|s| {
                        let mut full = vec![2usize];
                        full.extend(s);
                        Tensor::randn(0f32, 1f32, full, &Device::Cpu).unwrap()
                    })
                    .collect();
                let (y, _) = inst.layer.forward_node(&inst.weights, &xs, &mut ctx()).unwrap_or_else(|e| panic!("{}: forward at another size: {}", what, e));
                assert_eq!(&y.value.dims()[1..], expected.as_slice(), "{}: forward at another size", what);
            }
        }
    }

    #[test]
    fn backward_passes_match_finite_differences() {
        check_every_backward(true);
    }

    /// In inference too (batch normalization's moving statistics, dropout passing through):
    /// what `k_gradients()` differentiates in the learning phase 0.
    #[test]
    fn inference_backward_passes_match_finite_differences() {
        check_every_backward(false);
    }

    fn check_every_backward(training: bool) {
        let ctx = || {
            let mut c = ctx();
            c.training = training;
            c
        };
        for r in LAYER_TYPES {
            eprintln!("checking {} (training: {})", r.class_name, training);
            let (inst, ex) = instance(r);
            let backward = |weights: &[Tensor], inputs: &[Tensor], dy: &Tensor| -> LayerGrads {
                let (_, cache) = inst.layer.forward_node(weights, inputs, &mut ctx()).unwrap();
                inst.layer.backward(weights, &cache, OutputGrad::Value(dy.clone()), true).unwrap()
            };
            let forward = |weights: &[Tensor], inputs: &[Tensor]| Ok(inst.layer.forward_node(weights, inputs, &mut ctx())?.0.value);
            let grads = backward(&inst.weights, &inst.inputs, &inst.layer.forward_node(&inst.weights, &inst.inputs, &mut ctx()).unwrap().0.value);
            assert_eq!(grads.weights.len(), inst.weights.len(), "{}: one gradient per weight", r.class_name);
            for (g, w) in grads.weights.iter().zip(&inst.weights) {
                assert_eq!(g.dims(), w.dims(), "{}: weight gradient shapes", r.class_name);
            }
            if ex.index_bound.is_none() {
                for k in 0..inst.inputs.len() {
                    let with = |x: &Tensor| {
                        let mut xs = inst.inputs.clone();
                        xs[k] = x.clone();
                        xs
                    };
                    check_backward(
                        inst.inputs[k].dims(),
                        |x| forward(&inst.weights, &with(x)),
                        |x, dy| {
                            let g = backward(&inst.weights, &with(x), dy);
                            Ok(if k == 0 { g.input.unwrap() } else { g.more_inputs[k - 1].clone() })
                        },
                        3e-2,
                    );
                }
            }
            for (i, spec) in inst.specs.iter().enumerate().filter(|(_, s)| s.trainable) {
                let with = |w: &Tensor| {
                    let mut ws = inst.weights.clone();
                    ws[i] = w.clone();
                    ws
                };
                check_backward(&spec.shape, |w| forward(&with(w), &inst.inputs), |w, dy| Ok(backward(&with(w), &inst.inputs, dy).weights[i].clone()), 3e-2);
            }
        }
    }
}
