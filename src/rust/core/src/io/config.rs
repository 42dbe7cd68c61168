//! Keras's JSON configs: `model_config` (the architecture) and `training_config` (loss,
//! metrics, optimizer), written as tf-keras 2.x writes them and read from its files. Each
//! layer's own config is its layer type's (serde, `layers::registry`); this file knows only
//! how models wire layers together.
use crate::error::{Error, Result};
use crate::layers::Layer;
use crate::model::{Graph, Model, Node, Source};
use crate::optim::OptimizerConfig;
use crate::train::Compiled;
use serde_json::{json, Value};

pub const KERAS_VERSION: &str = "2.21.0";

/// The model's Keras `model_config` (a Sequential with its InputLayer).
pub fn model_config(model: &Model) -> Result<Value> {
    if let Some(graph) = &model.arch.graph {
        return Ok(functional_config(model, graph));
    }
    let input = model
        .arch
        .input_shape
        .as_ref()
        .ok_or_else(|| Error::State("the model is not built yet: give the first layer an `input_shape`, or fit/predict once, before saving".into()))?;
    let batch_input_shape = batch_shape_json(input);
    let mut layers = vec![json!({
        "class_name": "InputLayer",
        "config": { "batch_input_shape": batch_input_shape, "dtype": "float32", "sparse": false, "ragged": false,
                    "name": format!("{}_input", model.name) }
    })];
    layers.extend(model.arch.layers.iter().map(Layer::keras_config));
    Ok(json!({
        "class_name": "Sequential",
        "config": { "name": model.name, "layers": layers },
        "keras_version": KERAS_VERSION,
        "backend": "tensorflow"
    }))
}

/// A sample shape from Keras's `batch_input_shape` (`[null, null, 71]`): a null size after
/// the batch axis is a variable one.
fn shape_from(v: &Value) -> Option<Vec<usize>> {
    let a = v.as_array()?;
    a.iter().skip(1).map(|d| if d.is_null() { Some(crate::shape::VARIABLE) } else { d.as_u64().filter(|x| *x > 0).map(|x| x as usize) }).collect()
}

/// Keras's `batch_input_shape` for samples of `shape`: null for the batch and variable sizes.
fn batch_shape_json(shape: &[usize]) -> Vec<Value> {
    let mut batch_input_shape = vec![Value::Null];
    batch_input_shape.extend(shape.iter().map(|d| if *d == crate::shape::VARIABLE { Value::Null } else { json!(d) }));
    batch_input_shape
}

fn input_layer_json(name: &str, shape: &[usize]) -> Value {
    let batch_input_shape = batch_shape_json(shape);
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
            Source::State(j, k) => json!([arch.layers[graph.nodes[j].layer].name, node_index[j], k, {}]),
        }
    };
    let mut layers: Vec<Value> = graph.input_names.iter().zip(&graph.input_shapes).map(|(n, s)| input_layer_json(n, s)).collect();
    for (li, layer) in arch.layers.iter().enumerate() {
        let inbound: Vec<Value> = graph.nodes.iter().filter(|n| n.layer == li).map(|n| Value::Array(n.inputs.iter().map(reference).collect())).collect();
        let mut v = layer.keras_config();
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

/// A layer application read from `inbound_nodes`: its layer's index, which application of
/// that layer it is, and the (layer name, application, output) of each input.
type PendingNode = (usize, usize, Vec<(String, usize, usize)>);

/// Rebuilds a functional model: layers from their configs, nodes from `inbound_nodes`,
/// put in an order where every node comes after its inputs.
fn functional_from_config(cfg: &Value) -> Result<Model> {
    let name = cfg.get("name").and_then(Value::as_str).unwrap_or("model").to_string();
    let entries = cfg.get("layers").and_then(Value::as_array).ok_or_else(|| Error::Io("the model config has no layers".into()))?;
    let mut input_names = Vec::new();
    let mut input_shapes = Vec::new();
    let mut layers = Vec::new();
    // (layer index, application, inbound references) for every application, in file order.
    let mut pending: Vec<PendingNode> = Vec::new();
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
        let li = layers.len();
        layers.push(Layer::from_config(class, c, 0)?);
        for (app, node) in e.get("inbound_nodes").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let refs = node
                .as_array()
                .ok_or_else(|| Error::Value("unsupported inbound node format (Keras 3 configs are not read yet)".into()))?
                .iter()
                .map(|r| {
                    let a = r.as_array().filter(|a| a.len() >= 2).ok_or_else(|| Error::Value("malformed inbound node".into()))?;
                    let output = a.get(2).and_then(Value::as_u64).unwrap_or(0) as usize;
                    Ok((a[0].as_str().unwrap_or("").to_string(), a[1].as_u64().unwrap_or(0) as usize, output))
                })
                .collect::<Result<Vec<_>>>()?;
            pending.push((li, app, refs));
        }
    }
    // Order the applications so that each follows its inputs.
    let mut placed: Vec<(String, usize)> = Vec::new(); // (layer name, application) of each node
    let mut nodes: Vec<Node> = Vec::new();
    let resolve = |name: &str, app: usize, output: usize, placed: &[(String, usize)]| -> Option<Source> {
        if let Some(k) = input_names.iter().position(|n| n == name) {
            return Some(Source::Input(k));
        }
        let j = placed.iter().position(|(n, a)| n == name && *a == app)?;
        Some(if output == 0 { Source::Node(j) } else { Source::State(j, output) })
    };
    while !pending.is_empty() {
        let before = pending.len();
        let mut i = 0;
        while i < pending.len() {
            let sources: Option<Vec<Source>> = pending[i].2.iter().map(|(n, a, o)| resolve(n, *a, *o, &placed)).collect();
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
            resolve(n, app, a.get(2).and_then(Value::as_u64).unwrap_or(0) as usize, &placed)
                .ok_or_else(|| Error::Value(format!("output layer \"{}\" is not in the model", n)))
        })
        .collect::<Result<Vec<_>>>()?;
    Model::functional(name, layers, Graph { input_names, input_shapes, nodes, outputs })
}

/// Rebuilds a model from a Keras `model_config` (Sequential models of the layers rustgpu has).
pub fn model_from_config(config: &str) -> Result<Model> {
    let v: Value = serde_json::from_str(config).map_err(|e| Error::Io(format!("the model config is not valid JSON: {}", e)))?;
    let Some(class) = v.get("class_name").and_then(Value::as_str) else {
        return Err(Error::Value("the model config has no \"class_name\" (\"Sequential\" or \"Functional\"): it is not a Keras model config".into()));
    };
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
        let first = model.arch.layers.is_empty();
        model.add(Layer::from_config(class, c, 0)?, if first { input_shape.clone() } else { None })?;
    }
    Ok(model)
}

/// Keras's `training_config`.
pub fn training_config(c: &Compiled) -> Value {
    let loss = if c.losses.len() == 1 { json!(c.losses[0].name()) } else { json!(c.losses.iter().map(|l| l.name()).collect::<Vec<_>>()) };
    json!({
        "loss": loss,
        "metrics": c.metrics.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        "weighted_metrics": null,
        "loss_weights": if c.loss_weights.iter().all(|w| *w == 1.0) { Value::Null } else { json!(c.loss_weights) },
        "optimizer_config": c.optimizer.config.keras_config()
    })
}

/// What `compile()` needs to restore a saved training setup.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingConfig {
    pub losses: Vec<String>,
    /// The output names of `losses` when the file gives them by name (else empty: in order).
    pub loss_names: Vec<String>,
    /// A weight per output, in order, or by output name (Keras writes either).
    pub loss_weights: Option<Vec<f64>>,
    /// The output names of `loss_weights` when the file gives them by name (else empty).
    pub loss_weight_names: Vec<String>,
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
            // A name this build does not know (a loss written in R, saved by name) is for the
            // caller to restore, from its custom objects.
            Ok(name)
        };
        let (losses, loss_names) = match &v["loss"] {
            Value::Array(a) => (a.iter().map(one).collect::<Result<Vec<_>>>()?, Vec::new()),
            Value::Object(o) if !o.contains_key("class_name") => (o.values().map(one).collect::<Result<Vec<_>>>()?, o.keys().cloned().collect()),
            l => (vec![one(l)?], Vec::new()),
        };
        let weight = |w: &Value| -> Result<f64> {
            w.as_f64().filter(|w| w.is_finite() && *w >= 0.0).ok_or_else(|| {
                Error::Value(format!("the training config's `loss_weights` must be numbers >= 0, got {}: the file is damaged; load it with compile = FALSE", w))
            })
        };
        let (loss_weights, loss_weight_names) = match &v["loss_weights"] {
            Value::Null => (None, Vec::new()),
            Value::Array(a) => (Some(a.iter().map(weight).collect::<Result<Vec<_>>>()?), Vec::new()),
            Value::Object(o) => (Some(o.values().map(weight).collect::<Result<Vec<_>>>()?), o.keys().cloned().collect()),
            w => (Some(vec![weight(w)?]), Vec::new()),
        };
        let mut metrics = Vec::new();
        collect_metric_names(&v["metrics"], &mut metrics);
        let opt = &v["optimizer_config"];
        let class = opt.get("class_name").and_then(Value::as_str).unwrap_or("");
        let optimizer = OptimizerConfig::from_config(class, opt.get("config").unwrap_or(&Value::Null))?;
        Ok(Self { losses, loss_names, loss_weights, loss_weight_names, metrics, optimizer })
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
