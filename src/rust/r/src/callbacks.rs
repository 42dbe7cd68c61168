//! Callbacks' file output (R/callbacks.R): TensorBoard event files, written by the core.
use crate::{guard, handle};
use extendr_api::prelude::*;
use rustgpu_core::io::tfevents;
use std::path::Path;

/// A new TensorBoard event file in `dir`; its path.
/// @noRd
#[extendr]
fn rg_tensorboard_create(dir: &str) -> Robj {
    guard(|| Ok(tfevents::EventWriter::create(Path::new(dir))?.path().to_string_lossy().to_string().into()))
}

/// Scalars appended to an event file at `step`.
/// @noRd
#[extendr]
fn rg_tensorboard_scalars(path: &str, step: f64, tags: Vec<String>, values: Vec<f64>) -> Robj {
    guard(|| {
        let w = tfevents::EventWriter::open(Path::new(path))?;
        let scalars: Vec<(String, f32)> = tags.into_iter().zip(values).map(|(t, v)| (t, v as f32)).collect();
        w.scalars(step as i64, &scalars)?;
        Ok(().into())
    })
}

/// Histograms of the model's weights appended to an event file at `step`, tagged as tf.keras
/// tags them (`dense/kernel_0`).
/// @noRd
#[extendr]
fn rg_tensorboard_weight_histograms(path: &str, mut ptr: Robj, step: f64) -> Robj {
    guard(|| {
        let w = tfevents::EventWriter::open(Path::new(path))?;
        let h = handle(&mut ptr)?;
        let model = h.model();
        let values = model.get_weights();
        let tagged: Vec<(String, &[f32])> = model.weights.iter().zip(&values).map(|(spec, v)| (spec.name.replace(':', "_"), v.data.as_slice())).collect();
        w.histograms(step as i64, &tagged)?;
        Ok(().into())
    })
}

extendr_module! {
    mod callbacks;
    fn rg_tensorboard_create;
    fn rg_tensorboard_scalars;
    fn rg_tensorboard_weight_histograms;
}
