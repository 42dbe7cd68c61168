//! numpy's `.npy` format (what `.npz` archives hold): a header (dtype, Fortran order, shape)
//! then the raw values; object arrays (imdb's and reuters's lists of word ids) are a pickle
//! of the array. Sizes come from the header and are checked against the file before use.
use super::pickle::{self, ArrayData, Value};
use crate::error::{Error, Result};

fn err(msg: impl Into<String>) -> Error {
    Error::Io(format!("npy: {}", msg.into()))
}

/// The array in a `.npy` file's bytes, as a [`Value::Array`].
pub fn read(data: &[u8]) -> Result<Value> {
    if data.len() < 10 || &data[..6] != b"\x93NUMPY" {
        return Err(err("not a .npy file (no \\x93NUMPY magic)"));
    }
    let (header_len, start): (usize, usize) = match data[6] {
        1 => (u16::from_le_bytes([data[8], data[9]]) as usize, 10),
        2 | 3 if data.len() >= 12 => (u32::from_le_bytes(data[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(err(format!("unsupported format version {}", v))),
    };
    let end = start.checked_add(header_len).filter(|e| *e <= data.len()).ok_or_else(|| err("truncated header"))?;
    let header = String::from_utf8_lossy(&data[start..end]).to_string();
    let field = |key: &str| -> Result<&str> {
        let at = header.find(&format!("'{}'", key)).ok_or_else(|| err(format!("header has no '{}'", key)))?;
        let rest = &header[at + key.len() + 2..];
        Ok(rest.trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")?;
    let dtype = descr.strip_prefix('\'').and_then(|d| d.split('\'').next()).ok_or_else(|| err("unsupported dtype (a structured array?)"))?.to_string();
    let fortran = field("fortran_order")?.starts_with("True");
    let shape_text = field("shape")?;
    let close = shape_text.find(')').ok_or_else(|| err("bad shape"))?;
    let shape = shape_text[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| err(format!("bad shape entry {}", s))))
        .collect::<Result<Vec<_>>>()?;
    let body = &data[end..];
    if dtype.ends_with('O') {
        return match pickle::read(body)? {
            Value::Array { data: ArrayData::Objects(objects), .. } => Ok(Value::Array { dtype, shape, fortran, data: ArrayData::Objects(objects) }),
            other => Err(err(format!("object array holds {:?}", std::mem::discriminant(&other)))),
        };
    }
    let count = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).ok_or_else(|| err("shape overflows"))?;
    let bytes = count.checked_mul(item_size(&dtype)?).ok_or_else(|| err("shape overflows"))?;
    if body.len() < bytes {
        return Err(err(format!("truncated: the header says {} bytes of data, the file has {}", bytes, body.len())));
    }
    Ok(Value::Array { dtype, shape, fortran, data: ArrayData::Raw(body[..bytes].to_vec()) })
}

/// Bytes per value of a numeric dtype ("<f8" -> 8).
pub fn item_size(dtype: &str) -> Result<usize> {
    let kind = dtype.trim_start_matches(['<', '>', '|', '=']);
    kind.get(1..).and_then(|n| n.parse().ok()).filter(|n| [1, 2, 4, 8].contains(n)).ok_or_else(|| err(format!("unsupported dtype \"{}\"", dtype)))
}

/// The values of a numeric array's raw bytes, in storage order.
pub fn numbers(dtype: &str, raw: &[u8]) -> Result<Vec<f64>> {
    let big = dtype.starts_with('>');
    let kind = dtype.trim_start_matches(['<', '>', '|', '=']);
    let size = item_size(dtype)?;
    let word = |c: &[u8]| -> [u8; 8] {
        let mut b = [0u8; 8];
        if big {
            for (i, x) in c.iter().rev().enumerate() {
                b[i] = *x;
            }
        } else {
            b[..c.len()].copy_from_slice(c);
        }
        b
    };
    let out = raw.chunks_exact(size).map(|c| {
        let b = word(c);
        match (kind.as_bytes()[0], size) {
            (b'u', 1) | (b'b', 1) => Ok(b[0] as f64),
            (b'i', 1) => Ok(b[0] as i8 as f64),
            (b'u', 2) => Ok(u16::from_le_bytes([b[0], b[1]]) as f64),
            (b'i', 2) => Ok(i16::from_le_bytes([b[0], b[1]]) as f64),
            (b'u', 4) => Ok(u32::from_le_bytes(b[..4].try_into().unwrap()) as f64),
            (b'i', 4) => Ok(i32::from_le_bytes(b[..4].try_into().unwrap()) as f64),
            (b'f', 4) => Ok(f32::from_le_bytes(b[..4].try_into().unwrap()) as f64),
            (b'u', 8) => Ok(u64::from_le_bytes(b) as f64),
            (b'i', 8) => Ok(i64::from_le_bytes(b) as f64),
            (b'f', 8) => Ok(f64::from_le_bytes(b)),
            _ => Err(err(format!("unsupported dtype \"{}\"", dtype))),
        }
    });
    out.collect()
}
