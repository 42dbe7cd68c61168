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
            return Err(Error::Value(format!(
                "array of shape {:?} needs {} values, got {}",
                shape,
                n,
                data.len()
            )));
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

    /// Rows `start..end` as a new host tensor (contiguous, order kept).
    pub fn slice_rows(&self, start: usize, end: usize) -> HostTensor {
        let w = self.row_len();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        HostTensor { shape, data: self.data[start * w..end * w].to_vec() }
    }

    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.data, self.shape.as_slice(), device)?)
    }

    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let shape = t.dims().to_vec();
        let data = t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        Ok(Self { shape, data })
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
