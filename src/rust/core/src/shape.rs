//! Shapes of samples (without the batch axis): how they are shown in messages and checked.
use crate::error::{Error, Result};

/// "2, 3, 4": a shape as Keras prints it inside parentheses.
pub fn join_dims(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

/// An input shape must have positive dimensions and fit in a tensor index.
pub fn check_input_shape(shape: &[usize]) -> Result<()> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::Value(format!("an input shape needs positive dimensions, got ({})", join_dims(shape))));
    }
    if shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).is_none_or(|n| n > i32::MAX as usize) {
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
