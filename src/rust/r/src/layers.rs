//! Adding layers to a model: R has validated types; the core checks values.
use crate::{guard, handle, seed_from};
use extendr_api::prelude::*;
use rustgpu_core::activation::Activation;
use rustgpu_core::initializer::Initializer;
use rustgpu_core::layers::{ActivationLayer, Dense, Dropout, Layer, LayerKind};
use rustgpu_core::{Error, Result};

fn shape_arg(input_shape: &Robj) -> Result<Option<Vec<usize>>> {
    if input_shape.is_null() {
        return Ok(None);
    }
    let v: Vec<f64> = match input_shape.as_real_vector().or_else(|| input_shape.as_integer_vector().map(|v| v.iter().map(|x| *x as f64).collect())) {
        Some(v) => v,
        None => return Err(Error::Value("`input_shape` must be a vector of positive integers".into())),
    };
    if v.is_empty() || v.iter().any(|d| !d.is_finite() || *d < 1.0 || d.fract() != 0.0 || *d > i32::MAX as f64) {
        return Err(Error::Value(format!("`input_shape` must be positive integers, got c({})", v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))));
    }
    Ok(Some(v.into_iter().map(|d| d as usize).collect()))
}

fn add(ptr: &Robj, name: &str, kind: LayerKind, input_shape: &Robj, seed: &Robj) -> Result<Robj> {
    let h = handle(ptr)?;
    let shape = shape_arg(input_shape)?;
    let layer = Layer { name: name.to_string(), kind, seed: seed_from(seed) };
    h.model.lock().unwrap_or_else(|e| e.into_inner()).add(layer, shape)?;
    Ok(().into())
}

/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rg_add_dense(ptr: Robj, name: &str, units: f64, activation: &str, use_bias: bool, kernel_initializer: &str, bias_initializer: &str, input_shape: Robj, seed: Robj) -> Robj {
    guard(|| {
        let mut dense = Dense::new(units as usize, Activation::parse(activation)?, use_bias)?;
        dense.kernel_initializer = Initializer::parse(kernel_initializer)?;
        dense.bias_initializer = Initializer::parse(bias_initializer)?;
        add(&ptr, name, LayerKind::Dense(dense), &input_shape, &seed)
    })
}

/// @noRd
#[extendr]
fn rg_add_activation(ptr: Robj, name: &str, activation: &str, input_shape: Robj) -> Robj {
    guard(|| {
        let kind = LayerKind::Activation(ActivationLayer { activation: Activation::parse(activation)? });
        add(&ptr, name, kind, &input_shape, &Robj::from(0.0))
    })
}

/// @noRd
#[extendr]
fn rg_add_dropout(ptr: Robj, name: &str, rate: f64, input_shape: Robj) -> Robj {
    guard(|| add(&ptr, name, LayerKind::Dropout(Dropout::new(rate)?), &input_shape, &Robj::from(0.0)))
}

/// @noRd
#[extendr]
fn rg_pop_layer(ptr: Robj) -> Robj {
    guard(|| {
        handle(&ptr)?.model.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        Ok(().into())
    })
}

extendr_module! {
    mod layers;
    fn rg_add_dense;
    fn rg_add_activation;
    fn rg_add_dropout;
    fn rg_pop_layer;
}
