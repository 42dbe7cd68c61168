//! Data-set files (R/datasets.R): numpy `.npy` arrays, Python pickles and SHA-256 hashes,
//! read by the core and converted here to R values.
use crate::guard;
use extendr_api::prelude::*;
use rustgpu_core::io::{npy, numpy_random, pickle, sha256_file};
use rustgpu_core::memory;
use rustgpu_core::tensor::column_to_row_major;
use rustgpu_core::{Error, Result};
use std::path::Path;

fn read_file(path: &str) -> Result<Vec<u8>> {
    rustgpu_core::io::check_readable_file(Path::new(path))?;
    let size = std::fs::metadata(path).map_err(|e| Error::Io(format!("cannot read \"{}\": {}", path, e)))?.len();
    memory::check(&format!("reading \"{}\"", path), Some(size), "free memory, or use a smaller file")?;
    std::fs::read(path).map_err(|e| Error::Io(format!("cannot read \"{}\": {}", path, e)))
}

/// Values in C (row-major) order as R's column-major order for `shape`.
fn to_column_major<T: Copy + Default>(values: Vec<T>, shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 {
        return values;
    }
    let n = shape[0];
    let perm = column_to_row_major(&shape[1..]);
    let width = perm.len();
    let mut out = vec![T::default(); values.len()];
    for (k, &src) in perm.iter().enumerate() {
        for r in 0..n {
            out[k * n + r] = values[r * width + src];
        }
    }
    out
}

fn with_dims(mut robj: Robj, shape: &[usize]) -> Robj {
    if shape.len() > 1 {
        let _ = robj.set_attrib("dim", shape.iter().map(|d| *d as i32).collect::<Vec<_>>());
    }
    robj
}

/// A pickle or npy value as R: dicts as named lists, lists of numbers as vectors, numpy
/// arrays as R arrays (integers where the dtype fits R's integers).
fn to_r(v: &pickle::Value) -> Result<Robj> {
    use pickle::{ArrayData, Value};
    Ok(match v {
        Value::None => ().into(),
        Value::Bool(b) => (*b).into(),
        Value::Int(i) if i.abs() < i32::MAX as i64 => (*i as i32).into(),
        Value::Int(i) => (*i as f64).into(),
        Value::Float(f) => (*f).into(),
        Value::Str(s) => s.as_str().into(),
        Value::Bytes(b) => Raw::from_bytes(b).into(),
        Value::List(items) | Value::Tuple(items) => {
            if !items.is_empty() && items.iter().all(|i| matches!(i, Value::Int(x) if x.abs() < i32::MAX as i64)) {
                items.iter().map(|i| if let Value::Int(x) = i { *x as i32 } else { 0 }).collect::<Vec<i32>>().into()
            } else if !items.is_empty() && items.iter().all(|i| matches!(i, Value::Int(_) | Value::Float(_))) {
                items
                    .iter()
                    .map(|i| {
                        if let Value::Int(x) = i {
                            *x as f64
                        } else if let Value::Float(f) = i {
                            *f
                        } else {
                            0.0
                        }
                    })
                    .collect::<Vec<f64>>()
                    .into()
            } else if !items.is_empty() && items.iter().all(|i| matches!(i, Value::Str(_))) {
                items.iter().map(|i| if let Value::Str(s) = i { s.clone() } else { String::new() }).collect::<Vec<String>>().into()
            } else {
                List::from_values(items.iter().map(to_r).collect::<Result<Vec<_>>>()?).into()
            }
        }
        Value::Dict(entries) => {
            let names: Vec<String> = entries
                .iter()
                .map(|(k, _)| match k {
                    Value::Str(s) => s.clone(),
                    Value::Bytes(b) => String::from_utf8_lossy(b).to_string(),
                    Value::Int(i) => i.to_string(),
                    other => format!("{:?}", other),
                })
                .collect();
            let values = entries.iter().map(|(_, v)| to_r(v)).collect::<Result<Vec<_>>>()?;
            List::from_names_and_values(names, values).map(Robj::from).map_err(|e| Error::Io(e.to_string()))?
        }
        Value::Array { dtype, shape, fortran, data } => {
            // C order is permuted into R's column-major order; Fortran order already is it.
            let c_shape: &[usize] = if *fortran { &[] } else { shape };
            let robj: Robj = match data {
                ArrayData::Objects(objects) => List::from_values(objects.iter().map(to_r).collect::<Result<Vec<_>>>()?).into(),
                ArrayData::Raw(raw) => {
                    let kind = dtype.trim_start_matches(['<', '>', '|', '=']);
                    let size = npy::item_size(dtype)?;
                    // As R numbers (and their f64 copy on the way): 16 bytes a value.
                    memory::check("the array's values", memory::bytes((raw.len() / size) as u64, 16), "free memory, or use a smaller file")?;
                    let numbers = npy::numbers(dtype, raw)?;
                    if (kind.starts_with('u') && size <= 2) || (kind.starts_with('i') && size <= 4) || kind.starts_with('b') {
                        to_column_major(numbers.into_iter().map(|x| x as i32).collect(), c_shape).into()
                    } else {
                        to_column_major(numbers, c_shape).into()
                    }
                }
            };
            with_dims(robj, shape)
        }
    })
}

/// The array in a `.npy` file.
/// @noRd
#[extendr]
fn rg_read_npy(path: &str) -> Robj {
    guard(|| to_r(&npy::read(&read_file(path)?).map_err(|e| Error::Io(format!("\"{}\": {}", path, e)))?))
}

/// The value in a Python pickle file.
/// @noRd
#[extendr]
fn rg_read_pickle(path: &str) -> Robj {
    guard(|| to_r(&pickle::read(&read_file(path)?).map_err(|e| Error::Io(format!("\"{}\": {}", path, e)))?))
}

/// A file's SHA-256, in hex.
/// @noRd
#[extendr]
fn rg_sha256(path: &str) -> Robj {
    guard(|| Ok(sha256_file(Path::new(path))?.into()))
}

/// Keras's shuffles: for each size in turn, `RandomState(seed).shuffle(arange(size))` (one
/// generator for all), as 1-based R indices.
/// @noRd
#[extendr]
fn rg_numpy_shuffles(seed: f64, sizes: Vec<f64>) -> Robj {
    guard(|| {
        if !(0.0..=u32::MAX as f64).contains(&seed) || seed.fract() != 0.0 {
            return Err(Error::Value(format!("`seed` must be a whole number in 0..2^32-1, got {}", seed)));
        }
        let mut rng = numpy_random::RandomState::new(seed as u32);
        let out = sizes.iter().map(|n| rng.shuffled_indices(*n as usize).into_iter().map(|i| i as i32 + 1).collect::<Vec<i32>>());
        Ok(List::from_values(out).into())
    })
}

/// A JSON file as R (objects as named lists), e.g. a data set's word index.
/// @noRd
#[extendr]
fn rg_read_json(path: &str) -> Robj {
    guard(|| {
        let text = read_file(path)?;
        let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::Io(format!("\"{}\" is not valid JSON: {}", path, e)))?;
        Ok(crate::convert::json_to_r(&v))
    })
}

extendr_module! {
    mod datasets;
    fn rg_numpy_shuffles;
    fn rg_read_json;
    fn rg_read_npy;
    fn rg_read_pickle;
    fn rg_sha256;
}
