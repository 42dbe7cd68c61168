//! Keras's JSON configs: `model_config` (the architecture) and `training_config` (loss,
//! metrics, optimizer), written as tf-keras 2.x writes them and read from its files.
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::layers::{ActivationLayer, AveragePooling2D, BatchNormalization, DepthwiseConv2D, SeparableConv2D, Conv2D, Dense, Dropout, Layer, LayerKind, MaxPooling2D, Reshape, ZeroPadding2D};
use crate::loss::Loss;
use crate::model::{Graph, Model, Node, Source};
use crate::optim::OptimizerConfig;
use crate::train::Compiled;
use serde_json::{json, Value};

pub const KERAS_VERSION: &str = "2.21.0";

fn initializer_json(init: &Initializer) -> Value {
    let (class, config) = match init {
        Initializer::Zeros => ("Zeros", json!({})),
        Initializer::Ones => ("Ones", json!({})),
        Initializer::Constant(v) => ("Constant", json!({ "value": v })),
        Initializer::GlorotUniform => ("GlorotUniform", json!({ "seed": null })),
        Initializer::GlorotNormal => ("GlorotNormal", json!({ "seed": null })),
        Initializer::HeUniform => ("HeUniform", json!({ "seed": null })),
        Initializer::HeNormal => ("HeNormal", json!({ "seed": null })),
        Initializer::LecunUniform => ("LecunUniform", json!({ "seed": null })),
        Initializer::LecunNormal => ("LecunNormal", json!({ "seed": null })),
        Initializer::RandomUniform { min, max } => ("RandomUniform", json!({ "minval": min, "maxval": max, "seed": null })),
        Initializer::RandomNormal { mean, stddev } => ("RandomNormal", json!({ "mean": mean, "stddev": stddev, "seed": null })),
    };
    json!({ "module": "keras.initializers", "class_name": class, "config": config, "registered_name": null })
}

fn initializer_from(v: Option<&Value>) -> Result<Initializer> {
    let Some(v) = v else { return Ok(Initializer::GlorotUniform) };
    if let Some(s) = v.as_str() {
        return Initializer::parse(s);
    }
    let class = v.get("class_name").and_then(Value::as_str).unwrap_or("");
    let cfg = v.get("config").cloned().unwrap_or(json!({}));
    let num = |k: &str, d: f64| cfg.get(k).and_then(Value::as_f64).unwrap_or(d);
    Ok(match class {
        "Zeros" => Initializer::Zeros,
        "Ones" => Initializer::Ones,
        "Constant" => Initializer::Constant(num("value", 0.0)),
        "GlorotUniform" => Initializer::GlorotUniform,
        "GlorotNormal" => Initializer::GlorotNormal,
        "HeUniform" => Initializer::HeUniform,
        "HeNormal" => Initializer::HeNormal,
        "LecunUniform" => Initializer::LecunUniform,
        "LecunNormal" => Initializer::LecunNormal,
        "RandomUniform" => Initializer::RandomUniform { min: num("minval", -0.05), max: num("maxval", 0.05) },
        "RandomNormal" => Initializer::RandomNormal { mean: num("mean", 0.0), stddev: num("stddev", 0.05) },
        // Weights come from the file anyway: an unknown initializer only matters for rebuilds.
        _ => Initializer::GlorotUniform,
    })
}

fn pair(v: (usize, usize)) -> Value {
    json!([v.0, v.1])
}

fn layer_json(layer: &Layer) -> Value {
    let base = |extra: Value| {
        let mut cfg = json!({ "name": layer.name, "trainable": true, "dtype": "float32" });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        json!({ "class_name": layer.class_name(), "config": cfg })
    };
    match &layer.kind {
        LayerKind::Dense(d) => base(json!({
            "units": d.units, "activation": d.activation.name(), "use_bias": d.use_bias,
            "kernel_initializer": initializer_json(&d.kernel_initializer),
            "bias_initializer": initializer_json(&d.bias_initializer),
            "kernel_regularizer": null, "bias_regularizer": null, "activity_regularizer": null,
            "kernel_constraint": null, "bias_constraint": null
        })),
        LayerKind::Conv2D(c) => base(json!({
            "filters": c.filters, "kernel_size": pair(c.kernel_size), "strides": pair(c.strides),
            "padding": if c.same { "same" } else { "valid" }, "data_format": "channels_last",
            "dilation_rate": pair(c.dilation), "groups": 1, "activation": c.activation.name(), "use_bias": c.use_bias,
            "kernel_initializer": initializer_json(&c.kernel_initializer),
            "bias_initializer": initializer_json(&c.bias_initializer),
            "kernel_regularizer": null, "bias_regularizer": null, "activity_regularizer": null,
            "kernel_constraint": null, "bias_constraint": null
        })),
        LayerKind::MaxPooling2D(p) => base(json!({
            "pool_size": pair(p.pool_size), "padding": if p.same { "same" } else { "valid" },
            "strides": pair(p.strides), "data_format": "channels_last"
        })),
        LayerKind::Flatten => base(json!({ "data_format": "channels_last" })),
        LayerKind::AveragePooling2D(a) => base(json!({
            "pool_size": pair(a.window.pool_size), "padding": if a.window.same { "same" } else { "valid" },
            "strides": pair(a.window.strides), "data_format": "channels_last"
        })),
        LayerKind::GlobalAveragePooling2D | LayerKind::GlobalMaxPooling2D => {
            base(json!({ "data_format": "channels_last", "keepdims": false }))
        }
        LayerKind::ZeroPadding2D(z) => {
            let ((t, b), (l, r)) = z.padding;
            base(json!({ "padding": [[t, b], [l, r]], "data_format": "channels_last" }))
        }
        LayerKind::DepthwiseConv2D(d) => base(json!({
            "kernel_size": pair(d.kernel_size), "strides": pair(d.strides), "padding": if d.same { "same" } else { "valid" },
            "data_format": "channels_last", "dilation_rate": pair(d.dilation), "groups": 1, "activation": d.activation.name(),
            "use_bias": d.use_bias, "depth_multiplier": d.depth_multiplier,
            "depthwise_initializer": initializer_json(&d.depthwise_initializer), "bias_initializer": initializer_json(&d.bias_initializer),
            "depthwise_regularizer": null, "bias_regularizer": null, "activity_regularizer": null,
            "depthwise_constraint": null, "bias_constraint": null
        })),
        LayerKind::SeparableConv2D(s) => {
            let d = &s.depthwise;
            base(json!({
                "filters": s.filters, "kernel_size": pair(d.kernel_size), "strides": pair(d.strides),
                "padding": if d.same { "same" } else { "valid" }, "data_format": "channels_last", "dilation_rate": pair(d.dilation),
                "groups": 1, "activation": d.activation.name(), "use_bias": d.use_bias, "depth_multiplier": d.depth_multiplier,
                "depthwise_initializer": initializer_json(&d.depthwise_initializer),
                "pointwise_initializer": initializer_json(&s.pointwise_initializer),
                "bias_initializer": initializer_json(&d.bias_initializer),
                "kernel_regularizer": null, "bias_regularizer": null, "activity_regularizer": null, "depthwise_regularizer": null,
                "pointwise_regularizer": null, "kernel_constraint": null, "bias_constraint": null, "depthwise_constraint": null,
                "pointwise_constraint": null
            }))
        }
        LayerKind::Conv1D(c) => base(json!({
            "filters": c.filters, "kernel_size": [c.kernel_size.1], "strides": [c.strides.1],
            "padding": if c.same { "same" } else { "valid" }, "data_format": "channels_last",
            "dilation_rate": [c.dilation.1], "groups": 1, "activation": c.activation.name(), "use_bias": c.use_bias,
            "kernel_initializer": initializer_json(&c.kernel_initializer),
            "bias_initializer": initializer_json(&c.bias_initializer),
            "kernel_regularizer": null, "bias_regularizer": null, "activity_regularizer": null,
            "kernel_constraint": null, "bias_constraint": null
        })),
        LayerKind::MaxPooling1D(p) => base(json!({
            "pool_size": [p.pool_size.1], "padding": if p.same { "same" } else { "valid" },
            "strides": [p.strides.1], "data_format": "channels_last"
        })),
        LayerKind::Embedding(e) => base(json!({
            "input_dim": e.input_dim, "output_dim": e.output_dim,
            "embeddings_initializer": initializer_json(&e.initializer),
            "embeddings_regularizer": null, "activity_regularizer": null, "embeddings_constraint": null,
            "mask_zero": false, "input_length": null
        })),
        LayerKind::Merge(crate::layers::Merge::Concatenate) => base(json!({ "axis": -1 })),
        LayerKind::Merge(_) => base(json!({})),
        LayerKind::BatchNormalization(b) => base(json!({
            "axis": [-1], "momentum": b.momentum, "epsilon": b.epsilon, "center": b.center, "scale": b.scale,
            "beta_initializer": initializer_json(&Initializer::Zeros), "gamma_initializer": initializer_json(&Initializer::Ones),
            "moving_mean_initializer": initializer_json(&Initializer::Zeros),
            "moving_variance_initializer": initializer_json(&Initializer::Ones),
            "beta_regularizer": null, "gamma_regularizer": null, "beta_constraint": null, "gamma_constraint": null
        })),
        LayerKind::Reshape(r) => base(json!({
            "target_shape": r.target.iter().map(|d| d.map_or(json!(-1), |v| json!(v))).collect::<Vec<_>>()
        })),
        LayerKind::Dropout(d) => base(json!({ "rate": d.rate, "noise_shape": null, "seed": null })),
        LayerKind::Activation(a) => base(json!({ "activation": a.activation.name() })),
    }
}

/// The model's Keras `model_config` (a Sequential with its InputLayer).
pub fn model_config(model: &Model) -> Result<Value> {
    if let Some(graph) = &model.arch.graph {
        return Ok(functional_config(model, graph));
    }
    let input = model.arch.input_shape.as_ref().ok_or_else(|| {
        Error::State("the model is not built yet: give the first layer an `input_shape`, or fit/predict once, before saving".into())
    })?;
    let mut batch_input_shape = vec![Value::Null];
    batch_input_shape.extend(input.iter().map(|d| json!(d)));
    let mut layers = vec![json!({
        "class_name": "InputLayer",
        "config": { "batch_input_shape": batch_input_shape, "dtype": "float32", "sparse": false, "ragged": false,
                    "name": format!("{}_input", model.name) }
    })];
    layers.extend(model.arch.layers.iter().map(layer_json));
    Ok(json!({
        "class_name": "Sequential",
        "config": { "name": model.name, "layers": layers },
        "keras_version": KERAS_VERSION,
        "backend": "tensorflow"
    }))
}

fn pair_from(cfg: &Value, key: &str, default: (usize, usize)) -> Result<(usize, usize)> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => {
            let v = n.as_u64().unwrap_or(0) as usize;
            Ok((v, v))
        }
        Some(Value::Array(a)) if a.len() == 1 => {
            let v = a[0].as_u64().unwrap_or(0) as usize;
            Ok((v, v))
        }
        Some(Value::Array(a)) if a.len() == 2 => {
            let v: Vec<usize> = a.iter().map(|x| x.as_u64().unwrap_or(0) as usize).collect();
            Ok((v[0], v[1]))
        }
        Some(other) => Err(Error::Value(format!("layer config `{}` must be a pair of integers, got {}", key, other))),
    }
}

fn activation_from(cfg: &Value) -> Result<Activation> {
    match cfg.get("activation") {
        None | Some(Value::Null) => Ok(Activation::Linear),
        Some(Value::String(s)) => Activation::parse(s),
        Some(other) => Err(Error::Value(format!("unsupported activation config {}", other))),
    }
}

fn padding_same(cfg: &Value) -> Result<bool> {
    match cfg.get("padding").and_then(Value::as_str).unwrap_or("valid") {
        "same" => Ok(true),
        "valid" => Ok(false),
        other => Err(Error::Value(format!("unsupported padding \"{}\"", other))),
    }
}

fn shape_from(v: &Value) -> Option<Vec<usize>> {
    let a = v.as_array()?;
    a.iter().skip(1).map(|d| d.as_u64().map(|x| x as usize)).collect()
}

fn input_layer_json(name: &str, shape: &[usize]) -> Value {
    let mut batch_input_shape = vec![Value::Null];
    batch_input_shape.extend(shape.iter().map(|d| json!(d)));
    json!({
        "class_name": "InputLayer",
        "config": { "batch_input_shape": batch_input_shape, "dtype": "float32", "sparse": false, "ragged": false, "name": name },
        "name": name,
        "inbound_nodes": []
    })
}

/// Keras's "Functional" config: every layer with its `inbound_nodes`, each inbound tensor
/// as [layer name, node index (which application of that layer), tensor index, kwargs].
fn functional_config(model: &Model, graph: &Graph) -> Value {
    let arch = &model.arch;
    // Which application of its layer each node is.
    let mut uses = vec![0usize; arch.layers.len()];
    let node_index: Vec<usize> = graph
        .nodes
        .iter()
        .map(|n| {
            uses[n.layer] += 1;
            uses[n.layer] - 1
        })
        .collect();
    let reference = |s: &Source| -> Value {
        match *s {
            Source::Input(k) => json!([graph.input_names[k], 0, 0, {}]),
            Source::Node(j) => json!([arch.layers[graph.nodes[j].layer].name, node_index[j], 0, {}]),
        }
    };
    let mut layers: Vec<Value> = graph.input_names.iter().zip(&graph.input_shapes).map(|(n, s)| input_layer_json(n, s)).collect();
    for (li, layer) in arch.layers.iter().enumerate() {
        let inbound: Vec<Value> =
            graph.nodes.iter().filter(|n| n.layer == li).map(|n| Value::Array(n.inputs.iter().map(reference).collect())).collect();
        let mut v = layer_json(layer);
        v["name"] = json!(layer.name);
        v["inbound_nodes"] = Value::Array(inbound);
        layers.push(v);
    }
    let endpoint = |s: &Source| -> Value {
        let r = reference(s);
        json!([r[0], r[1], r[2]])
    };
    json!({
        "class_name": "Functional",
        "config": {
            "name": model.name,
            "trainable": true,
            "layers": layers,
            "input_layers": (0..graph.input_names.len()).map(|k| endpoint(&Source::Input(k))).collect::<Vec<_>>(),
            "output_layers": graph.outputs.iter().map(endpoint).collect::<Vec<_>>()
        },
        "keras_version": KERAS_VERSION,
        "backend": "tensorflow"
    })
}

/// Rebuilds a functional model: layers from their configs, nodes from `inbound_nodes`,
/// put in an order where every node comes after its inputs.
fn functional_from_config(cfg: &Value) -> Result<Model> {
    let name = cfg.get("name").and_then(Value::as_str).unwrap_or("model").to_string();
    let entries = cfg.get("layers").and_then(Value::as_array).ok_or_else(|| Error::Io("the model config has no layers".into()))?;
    let mut input_names = Vec::new();
    let mut input_shapes = Vec::new();
    let mut layers = Vec::new();
    // (layer index, inbound references) for every application, in file order.
    let mut pending: Vec<(usize, usize, Vec<(String, usize)>)> = Vec::new();
    for e in entries {
        let class = e.get("class_name").and_then(Value::as_str).unwrap_or("");
        let c = &e["config"];
        let lname = e.get("name").or_else(|| c.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
        if class == "InputLayer" {
            let shape = c.get("batch_input_shape").or_else(|| c.get("batch_shape")).and_then(shape_from);
            input_shapes.push(shape.ok_or_else(|| Error::Value(format!("input \"{}\" has no fixed shape", lname)))?);
            input_names.push(lname);
            continue;
        }
        let kind = layer_kind_from(class, c, &None)?;
        let li = layers.len();
        layers.push(Layer { name: lname, kind, seed: 0 });
        for (app, node) in e.get("inbound_nodes").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let refs = node
                .as_array()
                .ok_or_else(|| Error::Value("unsupported inbound node format (Keras 3 configs are not read yet)".into()))?
                .iter()
                .map(|r| {
                    let a = r.as_array().filter(|a| a.len() >= 2).ok_or_else(|| Error::Value("malformed inbound node".into()))?;
                    Ok((a[0].as_str().unwrap_or("").to_string(), a[1].as_u64().unwrap_or(0) as usize))
                })
                .collect::<Result<Vec<_>>>()?;
            pending.push((li, app, refs));
        }
    }
    // Order the applications so that each follows its inputs.
    let mut placed: Vec<(String, usize)> = Vec::new(); // (layer name, application) of each node
    let mut nodes: Vec<Node> = Vec::new();
    let resolve = |name: &str, app: usize, placed: &[(String, usize)]| -> Option<Source> {
        if let Some(k) = input_names.iter().position(|n| n == name) {
            return Some(Source::Input(k));
        }
        placed.iter().position(|(n, a)| n == name && *a == app).map(Source::Node)
    };
    while !pending.is_empty() {
        let before = pending.len();
        let mut i = 0;
        while i < pending.len() {
            let sources: Option<Vec<Source>> = pending[i].2.iter().map(|(n, a)| resolve(n, *a, &placed)).collect();
            if let Some(inputs) = sources {
                let (li, app, _) = pending.remove(i);
                placed.push((layers[li].name.clone(), app));
                nodes.push(Node { layer: li, inputs });
            } else {
                i += 1;
            }
        }
        if pending.len() == before {
            return Err(Error::Value("the model config's layers cannot be connected (a missing or cyclic input)".into()));
        }
    }
    let outputs = cfg
        .get("output_layers")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Io("the model config has no output_layers".into()))?
        .iter()
        .map(|o| {
            let a = o.as_array().ok_or_else(|| Error::Value("malformed output_layers".into()))?;
            let (n, app) = (a.first().and_then(Value::as_str).unwrap_or(""), a.get(1).and_then(Value::as_u64).unwrap_or(0) as usize);
            resolve(n, app, &placed).ok_or_else(|| Error::Value(format!("output layer \"{}\" is not in the model", n)))
        })
        .collect::<Result<Vec<_>>>()?;
    Model::functional(name, layers, Graph { input_names, input_shapes, nodes, outputs })
}

/// The layer a Keras layer config describes (InputLayer excluded).
fn layer_kind_from(class: &str, c: &Value, input_shape: &Option<Vec<usize>>) -> Result<LayerKind> {
    Ok(match class {
        "Dense" => {
            let units = c.get("units").and_then(Value::as_u64).unwrap_or(0) as usize;
            let mut d = Dense::new(units, activation_from(c)?, c.get("use_bias").and_then(Value::as_bool).unwrap_or(true))?;
            d.kernel_initializer = initializer_from(c.get("kernel_initializer"))?;
            d.bias_initializer = initializer_from(c.get("bias_initializer")).unwrap_or(Initializer::Zeros);
            LayerKind::Dense(d)
        }
        "Conv2D" => {
            if c.get("data_format").and_then(Value::as_str).is_some_and(|f| f != "channels_last") {
                return Err(Error::Value("only channels_last convolutions are supported".into()));
            }
            LayerKind::Conv2D(Conv2D {
                filters: c.get("filters").and_then(Value::as_u64).unwrap_or(0) as usize,
                kernel_size: pair_from(c, "kernel_size", (1, 1))?,
                strides: pair_from(c, "strides", (1, 1))?,
                same: padding_same(c)?,
                dilation: pair_from(c, "dilation_rate", (1, 1))?,
                activation: activation_from(c)?,
                use_bias: c.get("use_bias").and_then(Value::as_bool).unwrap_or(true),
                kernel_initializer: initializer_from(c.get("kernel_initializer"))?,
                bias_initializer: initializer_from(c.get("bias_initializer")).unwrap_or(Initializer::Zeros),
            })
        }
        "MaxPooling2D" => {
            let pool_size = pair_from(c, "pool_size", (2, 2))?;
            LayerKind::MaxPooling2D(MaxPooling2D { pool_size, strides: pair_from(c, "strides", pool_size)?, same: padding_same(c)? })
        }
        "Flatten" => LayerKind::Flatten,
        "Conv1D" => {
            if c.get("padding").and_then(Value::as_str) == Some("causal") {
                return Err(Error::Value("Conv1D with causal padding is not supported yet".into()));
            }
            let one = |k: &str, d: usize| -> Result<usize> { Ok(pair_from(c, k, (d, d))?.0) };
            LayerKind::Conv1D(Conv2D {
                filters: c.get("filters").and_then(Value::as_u64).unwrap_or(0) as usize,
                kernel_size: (1, one("kernel_size", 1)?),
                strides: (1, one("strides", 1)?),
                same: padding_same(c)?,
                dilation: (1, one("dilation_rate", 1)?),
                activation: activation_from(c)?,
                use_bias: c.get("use_bias").and_then(Value::as_bool).unwrap_or(true),
                kernel_initializer: initializer_from(c.get("kernel_initializer"))?,
                bias_initializer: initializer_from(c.get("bias_initializer")).unwrap_or(Initializer::Zeros),
            })
        }
        "MaxPooling1D" => {
            let pool = pair_from(c, "pool_size", (2, 2))?.0;
            let strides = pair_from(c, "strides", (pool, pool))?.0;
            LayerKind::MaxPooling1D(MaxPooling2D { pool_size: (1, pool), strides: (1, strides), same: padding_same(c)? })
        }
        "Embedding" => {
            if c.get("mask_zero").and_then(Value::as_bool).unwrap_or(false) {
                return Err(Error::Value("Embedding with mask_zero is not supported yet".into()));
            }
            LayerKind::Embedding(crate::layers::Embedding {
                input_dim: c.get("input_dim").and_then(Value::as_u64).unwrap_or(0) as usize,
                output_dim: c.get("output_dim").and_then(Value::as_u64).unwrap_or(0) as usize,
                initializer: initializer_from(c.get("embeddings_initializer")).unwrap_or(Initializer::RandomUniform { min: -0.05, max: 0.05 }),
            })
        }
        "Add" => LayerKind::Merge(crate::layers::Merge::Add),
        "Multiply" => LayerKind::Merge(crate::layers::Merge::Multiply),
        "Concatenate" => {
            if c.get("axis").and_then(Value::as_i64).is_some_and(|a| a != -1) {
                return Err(Error::Value("only concatenation along the last axis is supported".into()));
            }
            LayerKind::Merge(crate::layers::Merge::Concatenate)
        }
        "AveragePooling2D" => {
            let pool_size = pair_from(c, "pool_size", (2, 2))?;
            LayerKind::AveragePooling2D(AveragePooling2D {
                window: MaxPooling2D { pool_size, strides: pair_from(c, "strides", pool_size)?, same: padding_same(c)? },
            })
        }
        "GlobalAveragePooling2D" | "GlobalMaxPooling2D" => {
            if c.get("keepdims").and_then(Value::as_bool).unwrap_or(false) {
                return Err(Error::Value("global pooling with `keepdims = TRUE` is not supported yet".into()));
            }
            if class == "GlobalAveragePooling2D" { LayerKind::GlobalAveragePooling2D } else { LayerKind::GlobalMaxPooling2D }
        }
        "ZeroPadding2D" => {
            let p = &c["padding"];
            let pad = |v: &Value| -> Option<(usize, usize)> {
                match v {
                    Value::Number(n) => n.as_u64().map(|x| (x as usize, x as usize)),
                    Value::Array(a) if a.len() == 2 => Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize)),
                    _ => None,
                }
            };
            let padding = match p {
                Value::Number(_) => pad(p).map(|v| (v, v)),
                Value::Array(a) if a.len() == 2 => match (&a[0], &a[1]) {
                    (Value::Number(x), Value::Number(y)) => {
                        let (x, y) = (x.as_u64().unwrap_or(0) as usize, y.as_u64().unwrap_or(0) as usize);
                        Some(((x, x), (y, y)))
                    }
                    (x, y) => pad(x).zip(pad(y)),
                },
                _ => None,
            };
            LayerKind::ZeroPadding2D(ZeroPadding2D {
                padding: padding.ok_or_else(|| Error::Value(format!("unsupported ZeroPadding2D padding {}", p)))?,
            })
        }
        "DepthwiseConv2D" | "SeparableConv2D" => {
            if c.get("data_format").and_then(Value::as_str).is_some_and(|f| f != "channels_last") {
                return Err(Error::Value("only channels_last convolutions are supported".into()));
            }
            let depthwise = DepthwiseConv2D {
                kernel_size: pair_from(c, "kernel_size", (1, 1))?,
                strides: pair_from(c, "strides", (1, 1))?,
                same: padding_same(c)?,
                dilation: pair_from(c, "dilation_rate", (1, 1))?,
                depth_multiplier: c.get("depth_multiplier").and_then(Value::as_u64).unwrap_or(1) as usize,
                activation: activation_from(c)?,
                use_bias: c.get("use_bias").and_then(Value::as_bool).unwrap_or(true),
                depthwise_initializer: initializer_from(c.get("depthwise_initializer"))?,
                bias_initializer: initializer_from(c.get("bias_initializer")).unwrap_or(Initializer::Zeros),
            };
            if class == "DepthwiseConv2D" {
                LayerKind::DepthwiseConv2D(depthwise)
            } else {
                LayerKind::SeparableConv2D(SeparableConv2D {
                    depthwise,
                    filters: c.get("filters").and_then(Value::as_u64).unwrap_or(0) as usize,
                    pointwise_initializer: initializer_from(c.get("pointwise_initializer"))?,
                })
            }
        }
        "BatchNormalization" => {
            // Keras stores the axis as a positive index (e.g. [3] for NHWC images, [1] after a
            // Dense layer). Without the input's rank at hand, an axis is taken to be the last
            // one when it is -1 or the sample shape's length where that is known.
            let last = |v: i64| v == -1 || input_shape.as_ref().map_or(v > 0, |s| v == s.len() as i64);
            let axis_ok = match c.get("axis") {
                None => true,
                Some(Value::Number(n)) => n.as_i64().is_some_and(last),
                Some(Value::Array(a)) => a.len() == 1 && a[0].as_i64().is_some_and(last),
                _ => false,
            };
            if !axis_ok {
                return Err(Error::Value("only batch normalization over the last axis is supported".into()));
            }
            LayerKind::BatchNormalization(BatchNormalization {
                momentum: c.get("momentum").and_then(Value::as_f64).unwrap_or(0.99),
                epsilon: c.get("epsilon").and_then(Value::as_f64).unwrap_or(1e-3),
                center: c.get("center").and_then(Value::as_bool).unwrap_or(true),
                scale: c.get("scale").and_then(Value::as_bool).unwrap_or(true),
            })
        }
        "Reshape" => {
            let target = c["target_shape"]
                .as_array()
                .ok_or_else(|| Error::Value("Reshape needs `target_shape`".into()))?
                .iter()
                .map(|d| d.as_i64().and_then(|v| (v > 0).then_some(v as usize)))
                .collect();
            LayerKind::Reshape(Reshape { target })
        }
        "Dropout" => LayerKind::Dropout(Dropout::new(c.get("rate").and_then(Value::as_f64).unwrap_or(0.0))?),
        "Activation" => LayerKind::Activation(ActivationLayer { activation: activation_from(c)? }),
        other => {
            return Err(Error::Value(format!("layer class \"{}\" is not supported by rustgpu yet", other)));
        }
    })
}

/// Rebuilds a model from a Keras `model_config` (Sequential models of the layers rustgpu has).
pub fn model_from_config(config: &str) -> Result<Model> {
    let v: Value = serde_json::from_str(config).map_err(|e| Error::Io(format!("the model config is not valid JSON: {}", e)))?;
    let class = v.get("class_name").and_then(Value::as_str).unwrap_or("");
    match class {
        "Sequential" => {}
        "Functional" | "Model" => return functional_from_config(&v["config"]),
        other => return Err(Error::Value(format!("cannot load a \"{}\" model: rustgpu reads Sequential and Functional models", other))),
    }
    let cfg = &v["config"];
    let name = cfg.get("name").and_then(Value::as_str).unwrap_or("sequential").to_string();
    let layers = cfg.get("layers").and_then(Value::as_array).ok_or_else(|| Error::Io("the model config has no layers".into()))?;
    let mut model = Model::new(name);
    let mut input_shape: Option<Vec<usize>> = None;
    for l in layers {
        let class = l.get("class_name").and_then(Value::as_str).unwrap_or("");
        let c = &l["config"];
        if let Some(shape) = c.get("batch_input_shape").or_else(|| c.get("batch_shape")).and_then(shape_from) {
            input_shape.get_or_insert(shape);
        }
        if class == "InputLayer" {
            continue;
        }
        let kind = layer_kind_from(class, c, &input_shape)?;
        let layer_name = c.get("name").and_then(Value::as_str).unwrap_or("layer").to_string();
        let first = model.arch.layers.is_empty();
        model.add(Layer { name: layer_name, kind, seed: 0 }, if first { input_shape.clone() } else { None })?;
    }
    Ok(model)
}

fn optimizer_json(c: &OptimizerConfig) -> Value {
    let common = |name: &str, extra: Value| {
        let mut cfg = json!({ "name": name, "weight_decay": null, "clipnorm": null, "global_clipnorm": null, "clipvalue": null,
                              "use_ema": false, "ema_momentum": 0.99, "ema_overwrite_frequency": null, "jit_compile": false,
                              "is_legacy_optimizer": false });
        if let (Some(o), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        json!({ "class_name": name, "config": cfg })
    };
    match *c {
        OptimizerConfig::Sgd { learning_rate, momentum, nesterov } => {
            common("SGD", json!({ "learning_rate": learning_rate, "momentum": momentum, "nesterov": nesterov }))
        }
        OptimizerConfig::RmsProp { learning_rate, rho, momentum, epsilon, centered } => common(
            "RMSprop",
            json!({ "learning_rate": learning_rate, "rho": rho, "momentum": momentum, "epsilon": epsilon, "centered": centered }),
        ),
        OptimizerConfig::Adam { learning_rate, beta_1, beta_2, epsilon, amsgrad } => common(
            "Adam",
            json!({ "learning_rate": learning_rate, "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon, "amsgrad": amsgrad }),
        ),
    }
}

/// Keras's `training_config`.
pub fn training_config(c: &Compiled) -> Value {
    let loss = if c.losses.len() == 1 { json!(c.losses[0].name()) } else { json!(c.losses.iter().map(|l| l.name()).collect::<Vec<_>>()) };
    json!({
        "loss": loss,
        "metrics": c.metrics.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        "weighted_metrics": null,
        "loss_weights": if c.loss_weights.iter().all(|w| *w == 1.0) { Value::Null } else { json!(c.loss_weights) },
        "optimizer_config": optimizer_json(&c.optimizer.config)
    })
}

/// What `compile()` needs to restore a saved training setup.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingConfig {
    pub losses: Vec<String>,
    pub loss_weights: Option<Vec<f64>>,
    pub metrics: Vec<String>,
    pub optimizer: OptimizerConfig,
}

impl TrainingConfig {
    pub fn parse(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::Io(format!("the training config is not valid JSON: {}", e)))?;
        let one = |l: &Value| -> Result<String> {
            let name = match l {
                Value::String(s) => s.clone(),
                Value::Object(o) => keras_name(o.get("class_name").and_then(Value::as_str).unwrap_or("")),
                other => return Err(Error::Value(format!("unsupported loss config {}", other))),
            };
            Loss::parse(&name)?;
            Ok(name)
        };
        let losses = match &v["loss"] {
            Value::Array(a) => a.iter().map(one).collect::<Result<Vec<_>>>()?,
            Value::Object(o) if !o.contains_key("class_name") => o.values().map(one).collect::<Result<Vec<_>>>()?,
            l => vec![one(l)?],
        };
        let loss_weights = v["loss_weights"].as_array().map(|a| a.iter().map(|w| w.as_f64().unwrap_or(1.0)).collect());
        let mut metrics = Vec::new();
        collect_metric_names(&v["metrics"], &mut metrics);
        let opt = &v["optimizer_config"];
        let class = opt.get("class_name").and_then(Value::as_str).unwrap_or("");
        let class = class.trim_start_matches("Custom>").to_ascii_lowercase();
        let cfg = &opt["config"];
        let num = |k: &str| cfg.get(k).and_then(Value::as_f64);
        let mut optimizer = OptimizerConfig::by_name(&class)?;
        match &mut optimizer {
            OptimizerConfig::Sgd { learning_rate, momentum, nesterov } => {
                *learning_rate = num("learning_rate").unwrap_or(*learning_rate);
                *momentum = num("momentum").unwrap_or(*momentum);
                *nesterov = cfg.get("nesterov").and_then(Value::as_bool).unwrap_or(*nesterov);
            }
            OptimizerConfig::RmsProp { learning_rate, rho, momentum, epsilon, centered } => {
                *learning_rate = num("learning_rate").unwrap_or(*learning_rate);
                *rho = num("rho").unwrap_or(*rho);
                *momentum = num("momentum").unwrap_or(*momentum);
                *epsilon = num("epsilon").unwrap_or(*epsilon);
                *centered = cfg.get("centered").and_then(Value::as_bool).unwrap_or(*centered);
            }
            OptimizerConfig::Adam { learning_rate, beta_1, beta_2, epsilon, amsgrad } => {
                *learning_rate = num("learning_rate").unwrap_or(*learning_rate);
                *beta_1 = num("beta_1").unwrap_or(*beta_1);
                *beta_2 = num("beta_2").unwrap_or(*beta_2);
                *epsilon = num("epsilon").unwrap_or(*epsilon);
                *amsgrad = cfg.get("amsgrad").and_then(Value::as_bool).unwrap_or(*amsgrad);
            }
        }
        Ok(Self { losses, loss_weights, metrics, optimizer })
    }
}

/// "CategoricalCrossentropy" -> "categorical_crossentropy".
fn keras_name(class: &str) -> String {
    let mut out = String::new();
    for (i, ch) in class.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn collect_metric_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_metric_names(x, out)),
        Value::Object(o) => {
            if let Some(name) = o.get("config").and_then(|c| c.get("name")).and_then(Value::as_str) {
                out.push(name.to_string());
            }
        }
        _ => {}
    }
}
