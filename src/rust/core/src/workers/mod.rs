//! The worker processes of a multi-worker job: one process per device or node, started by
//! MPI's launcher (`mpirun -np 4 Rscript train.R`, SLURM's `srun`), rank and size from MPI.
//! Sums go through MPI's all-reduce (`mpi.rs`, a thin C layer built where `mpicc` is found:
//! the `mpi` feature); which ranks are still there, through `liveness.rs`. A wait for the
//! others polls, so that a failed or dead rank, or Ctrl-C, stops it with an error instead of
//! a hang.
// Without MPI only the liveness tests use the liveness side (a job cannot start).
#![cfg_attr(not(feature = "mpi"), allow(dead_code))]
mod liveness;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;

#[cfg(feature = "mpi")]
use crate::collective::SumUnderWay;
use crate::collective::{Collective, Ranked};
use crate::error::{Error, Result};
use liveness::{FailureWatch, Liveness};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long rank 0 waits for the others to connect when the job starts.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a wait under way goes on after a rank left the job: the data of a collective
/// operation that rank finished may still be on its way here.
const AFTER_LEAVING: Duration = Duration::from_secs(10);

/// This process's place in the job.
pub struct Workers {
    rank: usize,
    size: usize,
    /// None for a job of one process.
    liveness: Option<Liveness>,
    /// The GPUs' communicator, made at the first step on a GPU.
    #[cfg(feature = "nccl")]
    nccl: Mutex<Option<Arc<nccl::Nccl>>>,
}

static JOINED: Mutex<Option<Arc<Workers>>> = Mutex::new(None);

/// Whether this build can join a multi-worker job (it was built with MPI).
pub fn available() -> bool {
    cfg!(feature = "mpi")
}

/// Whether this process joined a job.
pub fn is_joined() -> bool {
    JOINED.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Joins the job this process was started in (MPI's `MPI_Init`), once per process; a
/// process not started by a launcher is a job of one.
pub fn join() -> Result<Arc<Workers>> {
    let mut joined = JOINED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = joined.as_ref() {
        return Ok(w.clone());
    }
    let workers = Arc::new(start()?);
    *joined = Some(workers.clone());
    Ok(workers)
}

#[cfg(not(feature = "mpi"))]
fn start() -> Result<Workers> {
    Err(Error::State(
        "this build of rustgpu has no MPI: install Open MPI (Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin) so that `mpicc` is found, then reinstall rustgpu".into(),
    ))
}

#[cfg(feature = "mpi")]
fn start() -> Result<Workers> {
    let (rank, size) = mpi::init()?;
    if size == 1 {
        return Ok(Workers {
            rank,
            size,
            liveness: None,
            #[cfg(feature = "cuda")]
            nccl: Mutex::new(None),
        });
    }
    // Rank 0 listens; the others learn where from MPI, then connect.
    let mut address = [0u8; 512];
    let listener = if rank == 0 {
        let listener = Liveness::listen()?;
        let port = listener.local_addr().map_err(|e| Error::Worker(format!("liveness port: {}", e)))?.port();
        let host = std::env::var("RUSTGPU_WORKERS_HOST").ok().filter(|h| !h.is_empty()).map_or_else(mpi::processor_name, Ok)?;
        let text = format!("{}:{}", host, port);
        address[..text.len().min(511)].copy_from_slice(&text.as_bytes()[..text.len().min(511)]);
        Some(listener)
    } else {
        None
    };
    mpi::broadcast(&mut address, 0, &mut || crate::cancel::check())?;
    let liveness = match listener {
        Some(listener) => Liveness::accept(listener, size, JOIN_TIMEOUT)?,
        None => {
            let end = address.iter().position(|b| *b == 0).unwrap_or(address.len());
            Liveness::connect(&String::from_utf8_lossy(&address[..end]), rank, size, JOIN_TIMEOUT)?
        }
    };
    Ok(Workers {
        rank,
        size,
        liveness: Some(liveness),
        #[cfg(feature = "cuda")]
        nccl: Mutex::new(None),
    })
}

impl Workers {
    pub fn is_chief(&self) -> bool {
        self.rank == 0
    }

    fn watch(&self) -> Option<FailureWatch> {
        self.liveness.as_ref().map(Liveness::watch)
    }

    /// The outcome of an MPI operation: a failure here (Ctrl-C, an MPI error, a wait given
    /// up) is this rank's, recorded so that it starts no more operations (nor MPI_Finalize)
    /// and told to the others, which wait for it; a failure heard of from another rank is
    /// recorded already.
    fn settled<T>(&self, outcome: Result<T>) -> Result<T> {
        if let (Err(e), Some(l)) = (&outcome, &self.liveness) {
            if !matches!(e, Error::Worker(_)) {
                l.report(&e.to_string());
            }
        }
        outcome
    }

    /// `values` from rank 0 to every rank (weights).
    pub fn broadcast_f32(&self, values: &mut [f32]) -> Result<()> {
        self.broadcast_bytes(bytes_of_mut(values))
    }

    /// `bytes` from rank 0 to every rank (seeds, NCCL's id).
    pub fn broadcast_bytes(&self, bytes: &mut [u8]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        #[cfg(feature = "mpi")]
        {
            let (started, watch) = (Instant::now(), self.watch());
            self.settled(mpi::broadcast(bytes, 0, &mut || stop_reason(self.rank, self.size, watch.as_ref(), started)))
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = bytes;
            Err(Error::State("this build of rustgpu has no MPI".into()))
        }
    }

    /// Leaving the job cleanly (the others do not take this rank's end for a failure), then
    /// MPI's `MPI_Finalize`; not after a failure, when the others may be gone (MPI_Finalize
    /// would wait for them) or MPI may still hold an abandoned operation's buffer.
    pub fn leave(&self) {
        if let Some(l) = &self.liveness {
            l.leave();
        }
        #[cfg(feature = "mpi")]
        if self.watch().and_then(|w| w.failure()).is_none() {
            mpi::finalize();
        }
    }
}

/// Why a wait for the other ranks, begun at `started`, must stop: Ctrl-C; another rank's
/// failure (or this one's); or a rank that left the job, which joins no more operations: at
/// once for an operation begun after it left, after [`AFTER_LEAVING`] for one under way.
fn stop_reason(rank: usize, size: usize, watch: Option<&FailureWatch>, started: Instant) -> Result<()> {
    crate::cancel::check()?;
    let Some(watch) = watch else { return Ok(()) };
    if let Some((failed, text)) = watch.failure() {
        return Err(Error::Worker(format!("worker rank {} of {} failed: {} (this is rank {}; the job stops)", failed, size, text, rank)));
    }
    match watch.first_left() {
        Some((left, at)) if at <= started || at.elapsed() > AFTER_LEAVING => Err(Error::Worker(format!(
            "worker rank {} of {} left the job (its script ended) while this rank (rank {}) waited for it: every rank must run the same training calls",
            left, size, rank
        ))),
        _ => Ok(()),
    }
}

/// A sum MPI works on (a bucket of gradients), with what stops a wait for it.
#[cfg(feature = "mpi")]
struct MpiSum {
    sum: mpi::StartedSum,
    workers: Arc<Workers>,
    started: Instant,
}

#[cfg(feature = "mpi")]
impl SumUnderWay for MpiSum {
    fn nudge(&mut self) -> Result<()> {
        let outcome = self.sum.nudge();
        self.workers.settled(outcome)
    }

    fn finish(self: Box<Self>) -> Result<Vec<f64>> {
        let MpiSum { sum, workers, started } = *self;
        let watch = workers.watch();
        let outcome = sum.finish(&mut || stop_reason(workers.rank, workers.size, watch.as_ref(), started));
        workers.settled(outcome)
    }
}

/// The bytes of a float slice (f32 has no padding and any bit pattern is a valid f32).
fn bytes_of_mut(values: &mut [f32]) -> &mut [u8] {
    // SAFETY: the same memory, viewed as its bytes for as long as the borrow of `values`.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

impl Collective for Workers {
    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        #[cfg(feature = "mpi")]
        {
            let (started, watch) = (Instant::now(), self.watch());
            self.settled(mpi::all_reduce_sum(values, &mut || stop_reason(self.rank, self.size, watch.as_ref(), started)))
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = values;
            Err(Error::State("this build of rustgpu has no MPI".into()))
        }
    }

    #[cfg(feature = "mpi")]
    fn start_sum(&self, mut values: Vec<f64>) -> Result<Box<dyn SumUnderWay>> {
        if self.size == 1 {
            self.all_reduce_sum(&mut values)?;
            return crate::collective::finished_sum(values);
        }
        let started = Instant::now();
        self.settled(stop_reason(self.rank, self.size, self.watch().as_ref(), started))?;
        let sum = self.settled(mpi::start_sum(values))?;
        // The job's one Workers (a sum outlives the call that starts it).
        let workers = join()?;
        Ok(Box::new(MpiSum { sum, workers, started }))
    }
}

impl Ranked for Workers {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn report_failure(&self, text: &str) {
        if let Some(l) = &self.liveness {
            l.report(text);
        }
    }

    #[cfg(feature = "nccl")]
    fn device_sums(&self, device: &candle_core::Device) -> Result<Option<Arc<dyn crate::collective::DeviceSums>>> {
        let candle_core::Device::Cuda(gpu) = device else { return Ok(None) };
        if self.size == 1 {
            return Ok(None);
        }
        let mut made = self.nccl.lock().unwrap_or_else(|e| e.into_inner());
        if made.is_none() {
            *made = Some(Arc::new(nccl::Nccl::new(self, gpu)?));
        }
        Ok(made.clone().map(|n| n as Arc<dyn crate::collective::DeviceSums>))
    }
}
