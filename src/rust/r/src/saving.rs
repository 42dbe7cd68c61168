//! Saving and loading in Keras's HDF5 formats.
use crate::{guard, handle, ModelHandle};
use extendr_api::prelude::*;
use rustgpu_core::io;
use rustgpu_core::optim::OptimizerConfig;
use rustgpu_core::Error;
use std::path::Path;

/// @noRd
#[extendr]
fn rg_save_weights(ptr: Robj, path: &str, overwrite: bool) -> Robj {
    guard(|| {
        let h = handle(&ptr)?;
        io::save_weights(Path::new(path), &h.model.lock().unwrap_or_else(|e| e.into_inner()), overwrite)?;
        Ok(().into())
    })
}

/// @noRd
#[extendr]
fn rg_load_weights(ptr: Robj, path: &str, by_name: bool, skip_mismatch: bool) -> Robj {
    guard(|| {
        let h = handle(&ptr)?;
        let skipped = io::load_weights(Path::new(path), &mut h.model.lock().unwrap_or_else(|e| e.into_inner()), by_name, skip_mismatch)?;
        Ok(skipped.into())
    })
}

/// @noRd
#[extendr]
fn rg_save_model(ptr: Robj, path: &str, overwrite: bool, include_optimizer: bool) -> Robj {
    guard(|| {
        let h = handle(&ptr)?;
        let model = h.model.lock().unwrap_or_else(|e| e.into_inner());
        io::save_model(Path::new(path), &model, h.compiled.as_ref(), include_optimizer, overwrite)?;
        Ok(().into())
    })
}

fn optimizer_list(c: &OptimizerConfig) -> Robj {
    match *c {
        OptimizerConfig::Sgd { learning_rate, momentum, nesterov } => {
            list!(name = "sgd", learning_rate = learning_rate, momentum = momentum, nesterov = nesterov).into()
        }
        OptimizerConfig::RmsProp { learning_rate, rho, momentum, epsilon, centered } => list!(
            name = "rmsprop",
            learning_rate = learning_rate,
            rho = rho,
            momentum = momentum,
            epsilon = epsilon,
            centered = centered
        )
        .into(),
        OptimizerConfig::Adam { learning_rate, beta_1, beta_2, epsilon, amsgrad } => list!(
            name = "adam",
            learning_rate = learning_rate,
            beta_1 = beta_1,
            beta_2 = beta_2,
            epsilon = epsilon,
            amsgrad = amsgrad
        )
        .into(),
    }
}

/// A model from a file: list(ptr, name, training = list(loss, metrics, optimizer) or NULL).
/// @noRd
#[extendr]
fn rg_load_model(path: &str) -> Robj {
    guard(|| {
        let loaded = io::load_model(Path::new(path))?;
        let name = loaded.model.name.clone();
        let training: Robj = match &loaded.training {
            Some(t) => list!(
                loss = t.losses.clone(),
                loss_weights = t.loss_weights.clone().map(Robj::from).unwrap_or_else(|| Robj::from(())),
                metrics = t.metrics.clone(),
                optimizer = optimizer_list(&t.optimizer)
            )
            .into(),
            None => ().into(),
        };
        Ok(list!(ptr = ModelHandle::new_pointer(loaded.model), name = name, training = training).into())
    })
}

/// Restores a compiled model's optimizer state from a saved model file.
/// @noRd
#[extendr]
fn rg_load_optimizer_state(ptr: Robj, path: &str) -> Robj {
    guard(|| {
        let h = handle(&ptr)?;
        let model = h.model.lock().unwrap_or_else(|e| e.into_inner());
        let compiled = h.compiled.as_mut().ok_or_else(|| Error::State("compile the model before restoring its optimizer".into()))?;
        Ok(io::load_optimizer_state(Path::new(path), &model, &mut compiled.optimizer)?.into())
    })
}

/// JSON -> R: objects become named lists, arrays lists (R keras's shape for a config).
fn json_to_r(v: &serde_json::Value) -> Robj {
    use serde_json::Value;
    match v {
        Value::Null => ().into(),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i.abs() < i32::MAX as i64 => (i as i32).into(),
            _ => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(a) => List::from_values(a.iter().map(json_to_r)).into(),
        Value::Object(o) => List::from_names_and_values(o.keys(), o.values().map(json_to_r)).map(Robj::from).unwrap_or_else(|_| ().into()),
    }
}

/// R -> JSON, the inverse of `json_to_r` (length-1 vectors become scalars).
fn r_to_json(r: &Robj) -> rustgpu_core::Result<serde_json::Value> {
    use serde_json::{json, Value};
    let atomic = matches!(r.rtype(), Rtype::Logicals | Rtype::Integers | Rtype::Doubles | Rtype::Strings);
    if atomic && r.len() != 1 {
        // A vector (e.g. c(3, 3) typed in by hand) is a JSON array.
        let items: Vec<Robj> = (0..r.len()).map(|i| r.slice(i..i + 1).unwrap_or_else(|_| ().into())).collect();
        return Ok(Value::Array(items.iter().map(r_to_json).collect::<rustgpu_core::Result<_>>()?));
    }
    Ok(match r.rtype() {
        Rtype::Null => Value::Null,
        Rtype::List => {
            let list: List = r.clone().try_into().map_err(|_| Error::Value("malformed config list".into()))?;
            let named = list.names().map(|n| n.into_iter().all(|s| !s.is_empty())).unwrap_or(false) && list.len() > 0;
            if named {
                let mut map = serde_json::Map::new();
                for (k, v) in list.iter() {
                    map.insert(k.to_string(), r_to_json(&v)?);
                }
                Value::Object(map)
            } else {
                Value::Array(list.values().map(|v| r_to_json(&v)).collect::<rustgpu_core::Result<_>>()?)
            }
        }
        Rtype::Logicals => json!(r.as_bool().unwrap_or(false)),
        Rtype::Integers => json!(r.as_integer().unwrap_or(0)),
        Rtype::Doubles => {
            let v = r.as_real().unwrap_or(f64::NAN);
            if v.fract() == 0.0 && v.abs() < 1e15 { json!(v as i64) } else { json!(v) }
        }
        Rtype::Strings => json!(r.as_str().unwrap_or("")),
        other => return Err(Error::Value(format!("unsupported value of R type {:?} in a config", other))),
    })
}

/// The model's Keras config as an R list.
/// @noRd
#[extendr]
fn rg_get_config(ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&ptr)?;
        let config = io::model_config(&h.model.lock().unwrap_or_else(|e| e.into_inner()))?;
        Ok(json_to_r(&config))
    })
}

/// A new model from a Keras config (an R list as get_config() returns).
/// @noRd
#[extendr]
fn rg_from_config(config: Robj) -> Robj {
    guard(|| {
        let json = r_to_json(&config)?;
        let model = io::model_from_config(&json.to_string())?;
        let name = model.name.clone();
        Ok(list!(ptr = ModelHandle::new_pointer(model), name = name).into())
    })
}

/// Test hook: the next save fails midway.
/// @noRd
#[extendr]
fn rg_inject_write_failure() -> Robj {
    io::inject_write_failure();
    ().into()
}

extendr_module! {
    mod saving;
    fn rg_save_weights;
    fn rg_load_weights;
    fn rg_save_model;
    fn rg_load_model;
    fn rg_load_optimizer_state;
    fn rg_inject_write_failure;
    fn rg_get_config;
    fn rg_from_config;
}
