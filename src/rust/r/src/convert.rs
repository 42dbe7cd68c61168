//! R values <-> core values. R arrays are column-major doubles with samples first;
//! the core wants row-major f32. Only the rows a batch needs are converted.
use extendr_api::prelude::*;
use rustgpu_core::tensor::{column_to_row_major, BatchSource};
use rustgpu_core::{Error, HostTensor, Result};

/// A numeric R array viewed without copying.
pub enum RNumbers<'a> {
    Real(&'a [f64]),
    Int(&'a [i32]),
    /// A row-major f32 copy made once per fit by [`stage`] (`x` is its external pointer).
    Staged(&'a HostTensor),
}

/// R class of the external pointer that holds a staged (row-major f32) copy of an array.
pub const STAGED_CLASS: &str = "rustgpu_staged_array";

/// An R array (samples along the first axis) that batches are gathered from.
pub struct RArray<'a> {
    pub values: RNumbers<'a>,
    /// R's dims; a plain vector is treated as one column (as Keras expands 1-d data).
    pub dims: Vec<usize>,
    /// For each element of a row in R's (column-major) order, its row-major offset.
    row_major_offset: Vec<usize>,
}

impl<'a> RArray<'a> {
    /// `what` names the argument in error messages ("x", "y", "weights[[2]]").
    pub fn new(robj: &'a Robj, what: &str, expand_vector: bool) -> Result<Self> {
        if let Some(staged) = staged_array(robj) {
            let dims = staged.shape.clone();
            return Ok(Self { values: RNumbers::Staged(staged), row_major_offset: Vec::new(), dims });
        }
        let values = match robj.rtype() {
            Rtype::Doubles => RNumbers::Real(robj.as_real_slice().unwrap_or(&[])),
            Rtype::Integers => RNumbers::Int(robj.as_integer_slice().unwrap_or(&[])),
            Rtype::Logicals => return Err(Error::Value(format!("`{}` is logical: convert it to numbers first (e.g. as.numeric())", what))),
            Rtype::Strings => return Err(Error::Value(format!("`{}` must be a numeric array, not character data", what))),
            Rtype::List => {
                let hint = if robj.inherits("data.frame") { " (convert a data frame with as.matrix())" } else { "" };
                return Err(Error::Value(format!("`{}` must be a numeric array, not a list{}", what, hint)));
            }
            other => return Err(Error::Value(format!("`{}` must be a numeric array, got R type {:?}", what, other))),
        };
        if robj.inherits("factor") {
            return Err(Error::Value(format!("`{}` is a factor: convert it with to_categorical() or as.integer() - 1", what)));
        }
        let len = robj.len();
        let dims: Vec<usize> = match robj.get_attrib("dim").and_then(|d| d.as_integer_vector()) {
            Some(d) => d.iter().map(|v| (*v).max(0) as usize).collect(),
            None if expand_vector => vec![len, 1],
            None => vec![len],
        };
        let row_major_offset = column_to_row_major(&dims[1..]);
        Ok(Self { values, dims, row_major_offset })
    }

    pub fn rows(&self) -> usize {
        self.dims[0]
    }

    /// Fails on the first NA, NaN or infinite value, naming the argument.
    /// No NA, NaN or infinite values, and none beyond float32's range (models compute in
    /// float32: such a value would become infinite silently).
    /// Scanned in blocks with a Ctrl-C check between them (60M values take a few tenths of a
    /// second, which Ctrl-C had to wait out).
    pub fn check_finite(&self, what: &str) -> Result<()> {
        fn first_bad<T>(v: &[T], bad: impl Fn(&T) -> bool) -> Result<Option<usize>> {
            const BLOCK: usize = 1 << 20;
            for (b, block) in v.chunks(BLOCK).enumerate() {
                rustgpu_core::cancel::check()?;
                if let Some(i) = block.iter().position(&bad) {
                    return Ok(Some(b * BLOCK + i));
                }
            }
            Ok(None)
        }
        let bad = match &self.values {
            RNumbers::Real(v) => first_bad(v, |x| !x.is_finite() || x.abs() > f32::MAX as f64)?,
            RNumbers::Int(v) => first_bad(v, |x| *x == i32::MIN)?,
            RNumbers::Staged(_) => None,
        };
        let Some(i) = bad else { return Ok(()) };
        let (element, row) = (i + 1, i % self.rows().max(1) + 1);
        match &self.values {
            RNumbers::Real(v) if v[i].is_finite() => Err(Error::Value(format!(
                "`{}` holds {:e} (element {}, row {}), beyond float32's range (about ±3.4e38), in which models compute: rescale the values",
                what, v[i], element, row
            ))),
            _ => Err(Error::Value(format!(
                "`{}` contains NA, NaN or infinite values (first at element {}, row {}): remove or impute them before training",
                what, element, row
            ))),
        }
    }

    pub fn all(&self) -> HostTensor {
        use rustgpu_core::tensor::BatchSource;
        let rows: Vec<usize> = (0..self.rows()).collect();
        self.gather(&rows)
    }
}

// Replicas read their rows straight from R's memory, concurrently. This reads plain numbers
// only (no R API call), while the main thread waits inside .Call, which keeps `x` alive and
// unchanged.
impl BatchSource for RArray<'_> {
    fn rows(&self) -> usize {
        self.dims[0]
    }

    fn sample_shape(&self) -> Vec<usize> {
        self.dims[1..].to_vec()
    }

    /// Rows `rows` (0-based) as a row-major f32 batch.
    fn gather(&self, rows: &[usize]) -> HostTensor {
        if let RNumbers::Staged(t) = &self.values {
            return t.gather(rows);
        }
        let n = self.rows();
        let width = self.row_major_offset.len();
        let mut data = vec![0f32; rows.len() * width];
        // Column by column: each of R's columns is read once, at the batch's rows.
        fn copy_columns<T: Copy + Into<f64>>(v: &[T], n: usize, offsets: &[usize], rows: &[usize], width: usize, data: &mut [f32]) {
            for (k, &dst) in offsets.iter().enumerate() {
                let column = &v[k * n..(k + 1) * n];
                for (b, &r) in rows.iter().enumerate() {
                    data[b * width + dst] = column[r].into() as f32;
                }
            }
        }
        match &self.values {
            RNumbers::Real(v) => copy_columns(v, n, &self.row_major_offset, rows, width, &mut data),
            RNumbers::Int(v) => copy_columns(v, n, &self.row_major_offset, rows, width, &mut data),
            RNumbers::Staged(_) => unreachable!("handled above"),
        }
        let mut shape = vec![rows.len()];
        shape.extend_from_slice(&self.dims[1..]);
        HostTensor { shape, data }
    }
}

/// The staged array behind `robj`, if it is one.
fn staged_array(robj: &Robj) -> Option<&HostTensor> {
    if robj.rtype() != Rtype::ExternalPtr || !robj.inherits(STAGED_CLASS) {
        return None;
    }
    let mut ptr = robj.clone();
    let ext: &mut ExternalPtr<HostTensor> = (&mut ptr).try_into().ok()?;
    let t: *const HostTensor = ext.try_addr().ok()?;
    // SAFETY: R owns the tensor for as long as `robj` (borrowed by the caller) is reachable.
    Some(unsafe { &*t })
}

/// The whole of `x` as one row-major f32 copy, made once per fit: shuffled batches then
/// gather whole rows (a copy each), where gathering them from R's column-major memory reads
/// one cache line per value. Costs half of R's own copy in memory (f32 against f64).
/// The conversion runs where the model's steps run (see `Executor::stage_column_major`).
pub fn stage(x: &RArray, executor: Option<&rustgpu_core::Executor>) -> Result<HostTensor> {
    let local = rustgpu_core::Executor::Local(rustgpu_core::device::cpu_device());
    let executor = executor.unwrap_or(&local);
    match &x.values {
        RNumbers::Real(v) => executor.stage_column_major(v, &x.dims),
        RNumbers::Int(v) => executor.stage_column_major(v, &x.dims),
        RNumbers::Staged(t) => Ok((*t).clone()),
    }
}

/// A row-major host tensor as an R double array with the same dims.
pub fn host_to_r(t: &HostTensor) -> Robj {
    let dims = if t.shape.is_empty() { vec![1] } else { t.shape.clone() };
    let n = dims[0];
    let inner = &dims[1..];
    let perm = column_to_row_major(inner);
    let width = perm.len();
    let mut out = vec![0f64; t.data.len()];
    for (k, &src) in perm.iter().enumerate() {
        for r in 0..n {
            out[k * n + r] = t.data[r * width + src] as f64;
        }
    }
    let mut robj: Robj = out.into();
    if dims.len() > 1 {
        let d: Vec<i32> = dims.iter().map(|v| *v as i32).collect();
        let _ = robj.set_attrib("dim", d);
    } else {
        let _ = robj.set_attrib("dim", vec![n as i32]);
    }
    robj
}

/// 1-based R row indices to 0-based, checked against the row count.
pub fn row_indices(rows: &Robj, n: usize) -> Result<Vec<usize>> {
    let v: Vec<i64> = match rows.rtype() {
        Rtype::Integers => rows.as_integer_slice().unwrap_or(&[]).iter().map(|v| *v as i64).collect(),
        Rtype::Doubles => rows.as_real_slice().unwrap_or(&[]).iter().map(|v| *v as i64).collect(),
        _ => return Err(Error::Value("row indices must be numeric".into())),
    };
    v.into_iter()
        .map(|r| if r >= 1 && (r as usize) <= n { Ok(r as usize - 1) } else { Err(Error::Value(format!("row index {} is outside 1..{}", r, n))) })
        .collect()
}

/// JSON -> R: objects become named lists, arrays lists (R keras's shape for a config).
pub fn json_to_r(v: &serde_json::Value) -> Robj {
    use serde_json::Value;
    match v {
        Value::Null => ().into(),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i.abs() < i32::MAX as i64 => (i as i32).into(),
            _ => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(a) => List::from_values(a.iter().map(json_to_r)).into(),
        Value::Object(o) => List::from_names_and_values(o.keys(), o.values().map(json_to_r)).map(Robj::from).unwrap_or_else(|_| ().into()),
    }
}

/// How deeply an R config may nest: Keras's own configs nest a few levels; a list nested
/// thousands deep would overflow the stack.
const MAX_CONFIG_DEPTH: usize = 64;

/// R -> JSON, the inverse of [`json_to_r`]: named lists become objects, other lists arrays,
/// length-1 vectors scalars (unless marked with `I()`, which keeps them arrays), longer
/// vectors arrays; NA is `null`; whole doubles are integers.
pub fn r_to_json(r: &Robj) -> Result<serde_json::Value> {
    r_to_json_at(r, 0)
}

fn r_to_json_at(r: &Robj, depth: usize) -> Result<serde_json::Value> {
    use serde_json::{json, Value};
    if depth > MAX_CONFIG_DEPTH {
        return Err(Error::Value(format!("the config is nested more than {} levels deep", MAX_CONFIG_DEPTH)));
    }
    let atomic = matches!(r.rtype(), Rtype::Logicals | Rtype::Integers | Rtype::Doubles | Rtype::Strings);
    let as_is = r.inherits("AsIs");
    if atomic && (r.len() != 1 || as_is) {
        let items: Vec<Value> = match r.rtype() {
            Rtype::Doubles => r.as_real_slice().unwrap_or(&[]).iter().map(|v| real_to_json(*v)).collect::<Result<_>>()?,
            Rtype::Integers => r.as_integer_slice().unwrap_or(&[]).iter().map(|v| if *v == i32::MIN { Value::Null } else { json!(v) }).collect(),
            Rtype::Logicals => r.as_logical_slice().unwrap_or(&[]).iter().map(|v| if v.is_na() { Value::Null } else { json!(v.is_true()) }).collect(),
            _ => r.as_str_iter().map(|it| it.map(|s| if s.is_na() { Value::Null } else { json!(s) }).collect()).unwrap_or_default(),
        };
        return Ok(Value::Array(items));
    }
    Ok(match r.rtype() {
        Rtype::Null => Value::Null,
        Rtype::List => {
            let list: List = r.clone().try_into().map_err(|_| Error::Value("malformed config list".into()))?;
            let named = list.names().map(|n| n.into_iter().all(|s| !s.is_empty())).unwrap_or(false) && !list.is_empty();
            if named {
                let mut map = serde_json::Map::new();
                for (k, v) in list.iter() {
                    map.insert(k.to_string(), r_to_json_at(&v, depth + 1)?);
                }
                Value::Object(map)
            } else {
                Value::Array(list.values().map(|v| r_to_json_at(&v, depth + 1)).collect::<Result<_>>()?)
            }
        }
        Rtype::Logicals => r.as_bool().map_or(Value::Null, Value::Bool),
        Rtype::Integers => r.as_integer().map_or(Value::Null, |v| json!(v)),
        Rtype::Doubles => r.as_real().map_or(Ok(Value::Null), real_to_json)?,
        Rtype::Strings => r.as_str().map_or(Value::Null, |s| json!(s)),
        other => return Err(Error::Value(format!("unsupported value of R type {:?} in a config", other))),
    })
}

/// A double as JSON: NA/NaN as `null`, whole numbers as integers (what Keras writes for
/// sizes; serde reads integers as floats where a field wants one).
fn real_to_json(v: f64) -> Result<serde_json::Value> {
    if v.is_nan() {
        return Ok(serde_json::Value::Null);
    }
    if v.is_infinite() {
        return Err(Error::Value("a config value is infinite".into()));
    }
    Ok(if v.fract() == 0.0 && v.abs() < 9.0e15 { serde_json::json!(v as i64) } else { serde_json::json!(v) })
}
