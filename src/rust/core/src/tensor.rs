//! Host tensors: the row-major f32 arrays that cross between the binding and the core.
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

/// A dense row-major f32 array on the host; `shape[0]` is the batch axis.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Value(format!("array of shape {:?} needs {} values, got {}", shape, n, data.len())));
        }
        Ok(Self { shape, data })
    }

    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Values per row (product of the non-batch axes).
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.data, self.shape.as_slice(), device)?)
    }

    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let shape = t.dims().to_vec();
        let data = t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        Ok(Self { shape, data })
    }

    /// A row-major copy of a column-major array (R's layout) of shape `dims`, samples first,
    /// converted in blocks of rows in parallel on the current thread pool.
    pub fn from_column_major<T: Copy + Into<f64> + Sync>(values: &[T], dims: &[usize]) -> Result<HostTensor> {
        // (The caller has checked the memory: see `Executor::stage_column_major`.)
        use rayon::prelude::*;
        let n = dims.first().copied().unwrap_or(0);
        let width: usize = dims.get(1..).unwrap_or(&[]).iter().product();
        let offsets = column_to_row_major(dims.get(1..).unwrap_or(&[]));
        let mut data = crate::memory::zeroed_f32(n * width, "a float copy of the data")?;
        if width > 0 {
            data.par_chunks_mut(ROW_BLOCK * width).enumerate().try_for_each(|(b, out)| column_major_rows_into(values, n, &offsets, b * ROW_BLOCK, out))?;
        }
        Ok(HostTensor { shape: dims.to_vec(), data })
    }

    /// Concatenate along the batch axis, in the given order.
    pub fn concat_rows(parts: &[HostTensor]) -> Result<HostTensor> {
        let first = parts.first().ok_or_else(|| Error::Value("nothing to concatenate".into()))?;
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.rows()).sum();
        let mut data = Vec::with_capacity(shape.iter().product());
        for p in parts {
            data.extend_from_slice(&p.data);
        }
        HostTensor::new(shape, data)
    }
}

/// Rows converted together: a block's rows stay in cache while each column is read.
pub const ROW_BLOCK: usize = 64;

/// Converts rows `first..first + out.len() / width` of a column-major array with `n` rows
/// into `out` (row-major), where `offsets` = [`column_to_row_major`] of the sample dims.
/// Stops with `Error::Interrupted` at a Ctrl-C, checked before each block of rows: a large
/// array's copy takes seconds (60,000 x 1,024 values: about half a second on two threads,
/// which Ctrl-C had to wait out).
pub fn column_major_rows_into<T: Copy + Into<f64>>(values: &[T], n: usize, offsets: &[usize], first: usize, out: &mut [f32]) -> Result<()> {
    let width = offsets.len();
    if width == 0 {
        return Ok(());
    }
    let count = out.len() / width;
    for start in (0..count).step_by(ROW_BLOCK) {
        crate::cancel::check()?;
        let rows = ROW_BLOCK.min(count - start);
        let block = &mut out[start * width..(start + rows) * width];
        for (k, &dst) in offsets.iter().enumerate() {
            let column = &values[k * n + first + start..k * n + first + start + rows];
            for (r, v) in column.iter().enumerate() {
                block[r * width + dst] = (*v).into() as f32;
            }
        }
    }
    Ok(())
}

/// For sample dims `d`, maps each column-major position to its row-major position.
pub fn column_to_row_major(d: &[usize]) -> Vec<usize> {
    // Row-major stride of each axis (the last axis moves fastest).
    let mut strides = vec![1usize; d.len()];
    for axis in (0..d.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * d[axis + 1];
    }
    let total: usize = d.iter().product();
    (0..total)
        .map(|mut k| {
            // Column-major: the first axis moves fastest.
            d.iter()
                .zip(&strides)
                .map(|(size, stride)| {
                    let i = k % size;
                    k /= size;
                    i * stride
                })
                .sum()
        })
        .collect()
}

/// Where a step's rows come from. The binding implements it over R's memory, so each replica
/// converts only its own rows, concurrently, straight from the caller's arrays.
pub trait BatchSource: Sync {
    /// Number of samples (rows).
    fn rows(&self) -> usize;
    /// Shape of one sample (without the batch axis).
    fn sample_shape(&self) -> Vec<usize>;
    /// The given rows (0-based, in order) as a row-major batch.
    fn gather(&self, rows: &[usize]) -> HostTensor;
}

impl BatchSource for HostTensor {
    fn rows(&self) -> usize {
        HostTensor::rows(self)
    }

    fn sample_shape(&self) -> Vec<usize> {
        self.shape[1..].to_vec()
    }

    fn gather(&self, rows: &[usize]) -> HostTensor {
        let w = self.row_len();
        let mut data = Vec::with_capacity(rows.len() * w);
        for &r in rows {
            data.extend_from_slice(&self.data[r * w..(r + 1) * w]);
        }
        let mut shape = self.shape.clone();
        shape[0] = rows.len();
        HostTensor { shape, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_maps_column_major_to_row_major() {
        // dims (2, 3): column-major k = i + 2j -> row-major 3i + j
        assert_eq!(column_to_row_major(&[2, 3]), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(column_to_row_major(&[4]), vec![0, 1, 2, 3]);
    }

    #[test]
    fn column_major_arrays_become_row_major_rows() {
        // 130 samples (more than one block) of shape (2, 3), value = 1000 r + 10 i + j.
        let (n, d) = (130usize, [2usize, 3]);
        let mut col = vec![0f64; n * 6];
        for r in 0..n {
            for i in 0..2 {
                for j in 0..3 {
                    col[r + n * (i + 2 * j)] = (1000 * r + 10 * i + j) as f64;
                }
            }
        }
        let t = HostTensor::from_column_major(&col, &[n, d[0], d[1]]).unwrap();
        assert_eq!(t.shape, vec![130, 2, 3]);
        for r in [0, 63, 64, 129] {
            let expect: Vec<f32> = (0..2).flat_map(|i| (0..3).map(move |j| (1000 * r + 10 * i + j) as f32)).collect();
            assert_eq!(&t.data[r * 6..r * 6 + 6], expect.as_slice());
        }
        assert_eq!(t.gather(&[129, 0]).data[0], 129000.0);
    }
}
