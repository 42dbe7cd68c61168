//! Callbacks' file output (R/callbacks.R): TensorBoard event files, written by the core.
use crate::guard;
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

extendr_module! {
    mod callbacks;
    fn rg_tensorboard_create;
    fn rg_tensorboard_scalars;
}
