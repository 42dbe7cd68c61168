//! Adding layers to a model: R has validated types; the core checks values.
use crate::{guard, handle, seed_from};
use extendr_api::prelude::*;
use rustgpu_core::activation::Activation;
use rustgpu_core::initializer::Initializer;
use rustgpu_core::layers::{ActivationLayer, AveragePooling2D, BatchNormalization, DepthwiseConv2D, Embedding, Merge, SeparableConv2D, Conv2D, Dense, Dropout, Layer, LayerKind, MaxPooling2D, Reshape, ZeroPadding2D};
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

/// A length-2 vector of positive whole numbers (R has checked it).
fn pair(v: &[f64]) -> (usize, usize) {
    (v.first().copied().unwrap_or(1.0) as usize, v.get(1).or(v.first()).copied().unwrap_or(1.0) as usize)
}

fn padding_same(padding: &str) -> Result<bool> {
    match padding {
        "same" => Ok(true),
        "valid" => Ok(false),
        other => Err(Error::Value(format!("`padding` must be \"valid\" or \"same\", got \"{}\"", other))),
    }
}

/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rg_add_conv2d(ptr: Robj, name: &str, filters: f64, kernel_size: &[f64], strides: &[f64], padding: &str, dilation_rate: &[f64], activation: &str, use_bias: bool, kernel_initializer: &str, bias_initializer: &str, input_shape: Robj, seed: Robj) -> Robj {
    guard(|| {
        let conv = Conv2D {
            filters: filters as usize,
            kernel_size: pair(kernel_size),
            strides: pair(strides),
            same: padding_same(padding)?,
            dilation: pair(dilation_rate),
            activation: Activation::parse(activation)?,
            use_bias,
            kernel_initializer: Initializer::parse(kernel_initializer)?,
            bias_initializer: Initializer::parse(bias_initializer)?,
        };
        add(&ptr, name, LayerKind::Conv2D(conv), &input_shape, &seed)
    })
}

/// @noRd
#[extendr]
fn rg_add_max_pooling2d(ptr: Robj, name: &str, pool_size: &[f64], strides: &[f64], padding: &str, input_shape: Robj) -> Robj {
    guard(|| {
        let pool = MaxPooling2D { pool_size: pair(pool_size), strides: pair(strides), same: padding_same(padding)? };
        add(&ptr, name, LayerKind::MaxPooling2D(pool), &input_shape, &Robj::from(0.0))
    })
}

/// @noRd
#[extendr]
fn rg_add_average_pooling2d(ptr: Robj, name: &str, pool_size: &[f64], strides: &[f64], padding: &str, input_shape: Robj) -> Robj {
    guard(|| {
        let window = MaxPooling2D { pool_size: pair(pool_size), strides: pair(strides), same: padding_same(padding)? };
        add(&ptr, name, LayerKind::AveragePooling2D(AveragePooling2D { window }), &input_shape, &Robj::from(0.0))
    })
}

/// @noRd
#[extendr]
fn rg_add_global_pooling2d(ptr: Robj, name: &str, kind: &str, input_shape: Robj) -> Robj {
    guard(|| {
        let kind = if kind == "max" { LayerKind::GlobalMaxPooling2D } else { LayerKind::GlobalAveragePooling2D };
        add(&ptr, name, kind, &input_shape, &Robj::from(0.0))
    })
}

/// `padding` is (top, bottom, left, right).
/// @noRd
#[extendr]
fn rg_add_zero_padding2d(ptr: Robj, name: &str, padding: &[f64], input_shape: Robj) -> Robj {
    guard(|| {
        let p: Vec<usize> = padding.iter().map(|v| *v as usize).collect();
        if p.len() != 4 {
            return Err(Error::Value("`padding` must give top, bottom, left and right".into()));
        }
        add(&ptr, name, LayerKind::ZeroPadding2D(ZeroPadding2D { padding: ((p[0], p[1]), (p[2], p[3])) }), &input_shape, &Robj::from(0.0))
    })
}

/// `target_shape` may hold one -1 (inferred).
/// @noRd
#[extendr]
fn rg_add_reshape(ptr: Robj, name: &str, target_shape: &[f64], input_shape: Robj) -> Robj {
    guard(|| {
        let target = target_shape.iter().map(|v| (*v > 0.0).then_some(*v as usize)).collect();
        add(&ptr, name, LayerKind::Reshape(Reshape { target }), &input_shape, &Robj::from(0.0))
    })
}

/// Depthwise (filters = 0) or separable convolution.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rg_add_depthwise_conv2d(ptr: Robj, name: &str, filters: f64, kernel_size: &[f64], strides: &[f64], padding: &str, dilation_rate: &[f64], depth_multiplier: f64, activation: &str, use_bias: bool, depthwise_initializer: &str, pointwise_initializer: &str, bias_initializer: &str, input_shape: Robj, seed: Robj) -> Robj {
    guard(|| {
        let depthwise = DepthwiseConv2D {
            kernel_size: pair(kernel_size),
            strides: pair(strides),
            same: padding_same(padding)?,
            dilation: pair(dilation_rate),
            depth_multiplier: depth_multiplier as usize,
            activation: Activation::parse(activation)?,
            use_bias,
            depthwise_initializer: Initializer::parse(depthwise_initializer)?,
            bias_initializer: Initializer::parse(bias_initializer)?,
        };
        let kind = if filters > 0.0 {
            LayerKind::SeparableConv2D(SeparableConv2D { depthwise, filters: filters as usize, pointwise_initializer: Initializer::parse(pointwise_initializer)? })
        } else {
            LayerKind::DepthwiseConv2D(depthwise)
        };
        add(&ptr, name, kind, &input_shape, &seed)
    })
}

/// @noRd
#[extendr]
fn rg_add_batch_normalization(ptr: Robj, name: &str, momentum: f64, epsilon: f64, center: bool, scale: bool, input_shape: Robj) -> Robj {
    guard(|| {
        let bn = BatchNormalization { momentum, epsilon, center, scale };
        add(&ptr, name, LayerKind::BatchNormalization(bn), &input_shape, &Robj::from(0.0))
    })
}

/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rg_add_conv1d(ptr: Robj, name: &str, filters: f64, kernel_size: f64, strides: f64, padding: &str, dilation_rate: f64, activation: &str, use_bias: bool, kernel_initializer: &str, bias_initializer: &str, input_shape: Robj, seed: Robj) -> Robj {
    guard(|| {
        let conv = Conv2D {
            filters: filters as usize,
            kernel_size: (1, kernel_size as usize),
            strides: (1, strides as usize),
            same: padding_same(padding)?,
            dilation: (1, dilation_rate as usize),
            activation: Activation::parse(activation)?,
            use_bias,
            kernel_initializer: Initializer::parse(kernel_initializer)?,
            bias_initializer: Initializer::parse(bias_initializer)?,
        };
        add(&ptr, name, LayerKind::Conv1D(conv), &input_shape, &seed)
    })
}

/// @noRd
#[extendr]
fn rg_add_max_pooling1d(ptr: Robj, name: &str, pool_size: f64, strides: f64, padding: &str, input_shape: Robj) -> Robj {
    guard(|| {
        let pool = MaxPooling2D { pool_size: (1, pool_size as usize), strides: (1, strides as usize), same: padding_same(padding)? };
        add(&ptr, name, LayerKind::MaxPooling1D(pool), &input_shape, &Robj::from(0.0))
    })
}

/// @noRd
#[extendr]
fn rg_add_embedding(ptr: Robj, name: &str, input_dim: f64, output_dim: f64, initializer: &str, input_shape: Robj, seed: Robj) -> Robj {
    guard(|| {
        let e = Embedding { input_dim: input_dim as usize, output_dim: output_dim as usize, initializer: Initializer::parse(initializer)? };
        add(&ptr, name, LayerKind::Embedding(e), &input_shape, &seed)
    })
}

/// @noRd
#[extendr]
fn rg_add_merge(ptr: Robj, name: &str, mode: &str) -> Robj {
    guard(|| {
        let merge = match mode {
            "add" => Merge::Add,
            "multiply" => Merge::Multiply,
            "concatenate" => Merge::Concatenate,
            other => return Err(Error::Value(format!("unknown merge mode \"{}\"", other))),
        };
        add(&ptr, name, LayerKind::Merge(merge), &Robj::from(()), &Robj::from(0.0))
    })
}

/// @noRd
#[extendr]
fn rg_add_flatten(ptr: Robj, name: &str, input_shape: Robj) -> Robj {
    guard(|| add(&ptr, name, LayerKind::Flatten, &input_shape, &Robj::from(0.0)))
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
    fn rg_add_conv2d;
    fn rg_add_max_pooling2d;
    fn rg_add_flatten;
    fn rg_add_merge;
    fn rg_add_conv1d;
    fn rg_add_max_pooling1d;
    fn rg_add_embedding;
    fn rg_add_batch_normalization;
    fn rg_add_depthwise_conv2d;
    fn rg_add_average_pooling2d;
    fn rg_add_global_pooling2d;
    fn rg_add_zero_padding2d;
    fn rg_add_reshape;
    fn rg_pop_layer;
}
