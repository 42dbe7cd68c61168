//! Shapes of samples (without the batch axis): how they are shown in messages and checked.
use crate::error::{Error, Result};

/// A dimension whose size each batch gives (Keras's `None`, R's `NULL` in `shape =
/// list(NULL, 32)`): declared input shapes, and the shapes inferred from them, may hold it;
/// data never does (arrays have no empty dimensions here). Shapes stay `Vec<usize>`: a layer's
/// shape arithmetic keeps a variable dimension variable ([`map_known`]), and a run computes
/// every shape again from its batch's sizes ([`crate::model::Architecture::node_shapes_for`]).
pub const VARIABLE: usize = 0;

/// `f(d)` for a known dimension, [`VARIABLE`] for a variable one.
pub fn map_known(d: usize, f: impl FnOnce(usize) -> usize) -> usize {
    if d == VARIABLE {
        VARIABLE
    } else {
        f(d)
    }
}

/// The product of dimensions, [`VARIABLE`] when one of them is variable.
pub fn known_product(dims: &[usize]) -> usize {
    if dims.contains(&VARIABLE) {
        VARIABLE
    } else {
        dims.iter().product()
    }
}

/// Whether a shape has a variable dimension.
pub fn has_variable(shape: &[usize]) -> bool {
    shape.contains(&VARIABLE)
}

/// Whether a sample of shape `actual` fits the declared shape `declared` (equal sizes, any
/// size where the declared one is variable).
pub fn fits(declared: &[usize], actual: &[usize]) -> bool {
    declared.len() == actual.len() && declared.iter().zip(actual).all(|(d, a)| *d == VARIABLE || d == a)
}

/// "2, 3, 4": a shape as Keras prints it inside parentheses ("None" for a variable size).
pub fn join_dims(shape: &[usize]) -> String {
    shape.iter().map(|d| if *d == VARIABLE { "None".to_string() } else { d.to_string() }).collect::<Vec<_>>().join(", ")
}

/// A declared input shape: positive or [`VARIABLE`] dimensions whose known part fits in a
/// tensor index.
pub fn check_input_shape(shape: &[usize]) -> Result<()> {
    if shape.is_empty() {
        return Err(Error::Value("an input shape needs at least one dimension, got ()".into()));
    }
    if shape.iter().filter(|d| **d != VARIABLE).try_fold(1usize, |acc, d| acc.checked_mul(*d)).is_none_or(|n| n > i32::MAX as usize) {
        return Err(Error::Value(format!("input shape ({}) is too large", join_dims(shape))));
    }
    Ok(())
}

/// `(height, width, channels)` of an image layer's input (without the batch axis), or an
/// error naming the layer when the input has another rank.
pub fn image_dims(name: &str, class: &str, input: &[usize]) -> Result<(usize, usize, usize)> {
    match *input {
        [h, w, c] => Ok((h, w, c)),
        _ => Err(Error::Value(format!("layer \"{}\" ({}) needs inputs of shape (height, width, channels), got ({})", name, class, join_dims(input)))),
    }
}

/// `(steps, channels)` of a sequence layer's input (without the batch axis), or an error
/// naming the layer when the input has another rank.
pub fn sequence_dims(name: &str, class: &str, input: &[usize]) -> Result<(usize, usize)> {
    match *input {
        [steps, c] => Ok((steps, c)),
        _ => Err(Error::Value(format!("layer \"{}\" ({}) needs inputs of shape (steps, channels), got ({})", name, class, join_dims(input)))),
    }
}
