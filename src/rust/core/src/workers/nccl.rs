//! Gradients summed on the GPUs over NCCL, for workers on CUDA devices (the `nccl` feature:
//! CUDA and MPI builds where libnccl is found):
//! the communicator is bootstrapped over MPI (rank 0's `ncclGetUniqueId`, broadcast to every
//! rank), one rank per GPU. NCCL's sums are queued on the device's stream, so a layer's
//! gradients start summing as soon as the backward pass has them, while it goes on with the
//! next layers (as PyTorch's DDP). Every rank must run the same build (a rank without NCCL
//! would sum through MPI while the others wait in NCCL).
//!
//! Compiled by CI (`tools/build_cuda_check.sh`); not yet run on a GPU: no GPU was lent since
//! it was written (README, "Distribution strategies").
use super::Workers;
use crate::collective::DeviceSums;
use crate::error::{Error, Result};
use candle_core::cuda::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::cuda::{CudaDevice, CudaStorage};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

/// A communicator over every rank's GPU.
pub struct Nccl {
    comm: Comm,
}

// SAFETY: the communicator is used by one thread at a time (a step's), behind the job's mutex
// (`Workers::nccl`); NCCL communicators may move between threads.
unsafe impl Send for Nccl {}
unsafe impl Sync for Nccl {}

impl Nccl {
    /// The job's communicator on `device` (this rank's GPU).
    pub(super) fn new(workers: &Workers, device: &CudaDevice) -> Result<Self> {
        let mut bytes = [0u8; 128];
        if workers.rank == 0 {
            let id = Id::new().map_err(|e| Error::Device(format!("NCCL could not make the job's id: {:?}", e)))?;
            for (b, c) in bytes.iter_mut().zip(id.internal().iter()) {
                *b = *c as u8;
            }
        }
        workers.broadcast_bytes(&mut bytes)?;
        let mut internal = [0 as std::ffi::c_char; 128];
        for (c, b) in internal.iter_mut().zip(bytes) {
            *c = b as std::ffi::c_char;
        }
        let comm = Comm::from_rank(device.cuda_stream(), workers.rank, workers.size, Id::uninit(internal))
            .map_err(|e| Error::Device(format!("NCCL could not join rank {} of {}: {:?}", workers.rank, workers.size, e)))?;
        Ok(Self { comm })
    }
}

impl DeviceSums for Nccl {
    /// The element-wise sum of `t` (float32, on this rank's GPU) over every rank: a new
    /// tensor, queued on the device's stream.
    fn sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.contiguous()?.apply_op1_no_bwd(&AllReduce { comm: &self.comm })?)
    }
}

struct AllReduce<'a> {
    comm: &'a Comm,
}

impl CustomOp1 for AllReduce<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("NCCL sums tensors on CUDA devices only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let (start, end) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("NCCL needs a contiguous tensor".into()))?;
        let slice = s.as_cuda_slice::<f32>()?.slice(start..end);
        let mut sum = s.device.alloc_zeros::<f32>(end - start)?;
        self.comm.all_reduce(&slice, &mut sum, &ReduceOp::Sum).map_err(|e| candle_core::Error::Cuda(format!("NCCL all-reduce failed: {:?}", e).into()))?;
        Ok((CudaStorage::wrap_cuda_slice(sum, s.device.clone()), l.shape().clone()))
    }
}
