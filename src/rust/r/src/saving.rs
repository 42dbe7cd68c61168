//! Saving and loading in Keras's HDF5 formats.
use crate::convert::{json_to_r, r_to_json};
use crate::{guard, handle, ModelHandle};
use extendr_api::prelude::*;
use rustgpu_core::optim::OptimizerConfig;
use rustgpu_core::Error;
use rustgpu_core::{cancel, io};
use std::path::Path;

/// @noRd
#[extendr]
fn rg_save_weights(mut ptr: Robj, path: &str, overwrite: bool) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        io::save_weights(Path::new(path), &h.model.lock().unwrap_or_else(|e| e.into_inner()), overwrite)?;
        Ok(().into())
    })
}

/// @noRd
#[extendr]
fn rg_load_weights(mut ptr: Robj, path: &str, by_name: bool, skip_mismatch: bool) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let mut model = h.model.lock().unwrap_or_else(|e| e.into_inner());
        // Read into a copy, off this thread: Ctrl-C stops the wait, and the model is only
        // replaced by a complete load.
        let (mut copy, path) = (model.clone(), path.to_string());
        let (loaded, skipped) = cancel::run_interruptibly("loading weights", move || {
            let skipped = io::load_weights(Path::new(&path), &mut copy, by_name, skip_mismatch)?;
            Ok((copy, skipped))
        })?;
        *model = loaded;
        Ok(skipped.into())
    })
}

/// @noRd
#[extendr]
fn rg_save_model(mut ptr: Robj, path: &str, overwrite: bool, include_optimizer: bool) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let model = h.model.lock().unwrap_or_else(|e| e.into_inner());
        io::save_model(Path::new(path), &model, h.compiled.as_ref(), include_optimizer, overwrite)?;
        Ok(().into())
    })
}

/// An optimizer configuration as R's optimizer object: its name (lowercase) and fields.
fn optimizer_list(c: &OptimizerConfig) -> Robj {
    let mut fields = c.fields();
    if let Some(o) = fields.as_object_mut() {
        o.insert("name".into(), serde_json::json!(c.name().to_ascii_lowercase()));
    }
    json_to_r(&fields)
}

/// A model from a file: list(ptr, name, training = list(loss, metrics, optimizer) or NULL).
/// @noRd
#[extendr]
fn rg_load_model(path: &str, keep_optimizer_state: bool) -> Robj {
    guard(|| {
        let path = path.to_string();
        let loaded = cancel::run_interruptibly("loading a model", move || io::load_model(Path::new(&path)))?;
        let name = loaded.model.name.clone();
        let training: Robj = match &loaded.training {
            Some(t) => list!(
                loss = per_output(&t.loss_names, t.losses.iter().map(|l| Robj::from(l.as_str())))?,
                loss_weights = match &t.loss_weights {
                    Some(w) => per_output(&t.loss_weight_names, w.iter().map(|v| Robj::from(*v)))?,
                    None => Robj::from(()),
                },
                metrics = t.metrics.clone(),
                optimizer = optimizer_list(&t.optimizer)
            )
            .into(),
            None => ().into(),
        };
        // Kept for the compile() that follows (load_model_hdf5(compile = TRUE)) only.
        let state = if keep_optimizer_state { loaded.optimizer_state } else { None };
        Ok(list!(ptr = ModelHandle::new_pointer_with_state(loaded.model, state), name = name, training = training).into())
    })
}

/// Values given per model output: a list, named by output where the file names them (else
/// in the outputs' order).
fn per_output(names: &[String], values: impl Iterator<Item = Robj>) -> Result<Robj, Error> {
    let values: Vec<Robj> = values.collect();
    if names.is_empty() {
        return Ok(List::from_values(values).into());
    }
    List::from_names_and_values(names, values).map(Robj::from).map_err(|e| Error::State(e.to_string()))
}

/// The model's weights that hold NaN or infinite values: "name (first at value i)".
/// @noRd
#[extendr]
fn rg_nonfinite_weights(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let model = h.model.lock().unwrap_or_else(|e| e.into_inner());
        let found: Vec<String> = model.nonfinite_weights().into_iter().map(|(name, i)| format!("{} (first at value {})", name, i + 1)).collect();
        Ok(found.into())
    })
}

/// Restores a compiled model's optimizer state from a saved model file.
/// @noRd
#[extendr]
fn rg_load_optimizer_state(mut ptr: Robj, path: &str) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let model = h.model.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let saved = h.saved_optimizer_state.take();
        let compiled = h.compiled.as_mut().ok_or_else(|| Error::State("compile the model before restoring its optimizer".into()))?;
        // The state read with the model (load_model_hdf5()): the same version of the file.
        if let Some(state) = saved {
            io::restore_optimizer_state(&state, &model, &mut compiled.optimizer)?;
            return Ok(true.into());
        }
        let (mut optimizer, path) = (compiled.optimizer.clone(), path.to_string());
        let (optimizer, found) = cancel::run_interruptibly("loading optimizer state", move || {
            let found = io::load_optimizer_state(Path::new(&path), &model, &mut optimizer)?;
            Ok((optimizer, found))
        })?;
        compiled.optimizer = optimizer;
        Ok(found.into())
    })
}

/// The model's Keras config as an R list.
/// @noRd
#[extendr]
fn rg_get_config(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
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

/// The model's Keras config as JSON text (`model_to_json()`), as Keras writes it.
/// @noRd
#[extendr]
fn rg_model_to_json(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let config = io::model_config(&h.model.lock().unwrap_or_else(|e| e.into_inner()))?;
        Ok(config.to_string().into())
    })
}

/// A new model from JSON text (`model_from_json()`).
/// @noRd
#[extendr]
fn rg_model_from_json(text: &str) -> Robj {
    guard(|| {
        // The JSON is an argument here, not a file's content: what is wrong with it is a value error.
        let model = io::model_from_config(text).map_err(|e| match e {
            Error::Io(m) => Error::Value(m),
            other => other,
        })?;
        let name = model.name.clone();
        let functional = model.arch.graph.is_some();
        Ok(list!(ptr = ModelHandle::new_pointer(model), name = name, functional = functional).into())
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
    fn rg_nonfinite_weights;
    fn rg_load_optimizer_state;
    fn rg_inject_write_failure;
    fn rg_get_config;
    fn rg_from_config;
    fn rg_model_to_json;
    fn rg_model_from_json;
}
