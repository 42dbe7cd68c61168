//! Adding layers to a model: every `layer_*()` function builds Keras's config list for its
//! layer and calls `rg_add_layer()`, which reads it with the same parser as a saved file.
use crate::convert::{json_to_r, r_to_json};
use crate::{guard, handle, seed_from};
use extendr_api::prelude::*;
use rustgpu_core::layers::Layer;
use rustgpu_core::{Error, Result};

fn shape_arg(input_shape: &Robj) -> Result<Option<Vec<usize>>> {
    if input_shape.is_null() {
        return Ok(None);
    }
    let v: Vec<f64> = match input_shape.as_real_vector().or_else(|| input_shape.as_integer_vector().map(|v| v.iter().map(|x| *x as f64).collect())) {
        Some(v) => v,
        None => return Err(Error::Value("`input_shape` must be a vector of positive integers".into())),
    };
    // 0: a size each batch gives (R's check_shape() writes NA and NULL so).
    if v.is_empty() || v.iter().any(|d| !d.is_finite() || *d < 0.0 || d.fract() != 0.0 || *d > i32::MAX as f64) {
        return Err(Error::Value(format!(
            "`input_shape` must be positive integers (0 for a size that varies), got c({})",
            v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(Some(v.into_iter().map(|d| d as usize).collect()))
}

/// Adds a layer of Keras class `class_name` made from `config` (a named list of Keras's
/// config fields, `name` included) to the model; `input_shape` only for the first layer.
/// @noRd
#[extendr]
fn rg_add_layer(mut ptr: Robj, class_name: &str, config: Robj, input_shape: Robj, seed: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let shape = shape_arg(&input_shape)?;
        let layer = Layer::from_config(class_name, &r_to_json(&config)?, seed_from(&seed))?;
        h.model.lock().unwrap_or_else(|e| e.into_inner()).add(layer, shape)?;
        Ok(().into())
    })
}

/// The layer types the registry has: Keras class names, default-name prefixes, and each
/// type's example (a config and input shapes), which the generic R test builds.
/// @noRd
#[extendr]
fn rg_layer_types() -> Robj {
    let types = rustgpu_core::layers::registry::LAYER_TYPES;
    let examples: Vec<_> = types.iter().map(|r| (r.example)()).collect();
    list!(
        class_name = types.iter().map(|r| r.class_name).collect::<Vec<_>>(),
        name_prefix = types.iter().map(|r| r.name_prefix).collect::<Vec<_>>(),
        example_config = List::from_values(examples.iter().map(|e| json_to_r(&e.config))),
        example_inputs =
            List::from_values(examples.iter().map(|e| List::from_values(e.inputs.iter().map(|s| s.iter().map(|d| *d as i32).collect::<Vec<_>>())))),
        example_index_bound = examples.iter().map(|e| e.index_bound.map_or(0, |b| b as i32)).collect::<Vec<_>>()
    )
    .into()
}

/// @noRd
#[extendr]
fn rg_pop_layer(mut ptr: Robj) -> Robj {
    guard(|| {
        handle(&mut ptr)?.model.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        Ok(().into())
    })
}

/// @noRd
#[extendr]
fn rg_reset_states(mut ptr: Robj) -> Robj {
    guard(|| {
        handle(&mut ptr)?.model.lock().unwrap_or_else(|e| e.into_inner()).reset_states();
        Ok(().into())
    })
}

/// @noRd
#[extendr]
fn rg_stateful_layers(mut ptr: Robj) -> Robj {
    guard(|| {
        let names = handle(&mut ptr)?.model.lock().unwrap_or_else(|e| e.into_inner()).arch.stateful_layers();
        Ok(names.into())
    })
}

/// @noRd
#[extendr]
fn rg_unique_name(prefix: &str) -> String {
    rustgpu_core::layers::unique_name(prefix)
}

/// @noRd
#[extendr]
fn rg_reset_unique_names() {
    rustgpu_core::layers::reset_unique_names()
}

extendr_module! {
    mod layers;
    fn rg_unique_name;
    fn rg_reset_unique_names;
    fn rg_add_layer;
    fn rg_layer_types;
    fn rg_pop_layer;
    fn rg_reset_states;
    fn rg_stateful_layers;
}
