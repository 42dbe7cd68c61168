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

#[cfg(feature = "mpi")]
use crate::collective::SumUnderWay;
use crate::collective::{Collective, Ranked};
use crate::error::{Error, Result};
use liveness::{FailureWatch, Liveness};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long rank 0 waits for the others to connect when the job starts.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// This process's place in the job.
pub struct Workers {
    rank: usize,
    size: usize,
    /// None for a job of one process.
    liveness: Option<Liveness>,
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
        return Ok(Workers { rank, size, liveness: None });
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
    Ok(Workers { rank, size, liveness: Some(liveness) })
}

impl Workers {
    pub fn is_chief(&self) -> bool {
        self.rank == 0
    }

    /// Why a wait for the others must stop: Ctrl-C, or another rank's failure.
    fn stop_reason(&self) -> Result<()> {
        stop_reason(self.rank, self.size, self.liveness.as_ref().map(Liveness::watch).as_ref())
    }

    /// `values` from rank 0 to every rank (weights, seeds).
    pub fn broadcast_f32(&self, values: &mut [f32]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        self.broadcast_bytes(bytes_of_mut(values))
    }

    #[cfg(feature = "mpi")]
    fn broadcast_bytes(&self, bytes: &mut [u8]) -> Result<()> {
        mpi::broadcast(bytes, 0, &mut || self.stop_reason())
    }

    #[cfg(not(feature = "mpi"))]
    fn broadcast_bytes(&self, _bytes: &mut [u8]) -> Result<()> {
        Err(Error::State("this build of rustgpu has no MPI".into()))
    }

    /// Leaving the job cleanly (the others do not take this rank's end for a failure), then
    /// MPI's `MPI_Finalize`; not after a failure, when the others may be gone.
    pub fn leave(&self) {
        if let Some(l) = &self.liveness {
            l.leave();
        }
        #[cfg(feature = "mpi")]
        if self.stop_reason().is_ok() {
            mpi::finalize();
        }
    }
}

/// Why a wait for the other ranks must stop: Ctrl-C, or another rank's failure.
fn stop_reason(rank: usize, size: usize, watch: Option<&FailureWatch>) -> Result<()> {
    crate::cancel::check()?;
    match watch.and_then(FailureWatch::failure) {
        Some((failed, text)) => Err(Error::Worker(format!("worker rank {} of {} failed: {} (this is rank {}; the job stops)", failed, size, text, rank))),
        None => Ok(()),
    }
}

/// A sum MPI works on (a bucket of gradients), with what stops a wait for it.
#[cfg(feature = "mpi")]
struct MpiSum {
    started: mpi::StartedSum,
    rank: usize,
    size: usize,
    watch: Option<FailureWatch>,
}

#[cfg(feature = "mpi")]
impl SumUnderWay for MpiSum {
    fn nudge(&mut self) -> Result<()> {
        self.started.nudge()
    }

    fn finish(self: Box<Self>) -> Result<Vec<f64>> {
        let (rank, size, watch) = (self.rank, self.size, self.watch);
        self.started.finish(&mut || stop_reason(rank, size, watch.as_ref()))
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
            mpi::all_reduce_sum(values, &mut || self.stop_reason())
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
        self.stop_reason()?;
        let started = mpi::start_sum(values)?;
        Ok(Box::new(MpiSum { started, rank: self.rank, size: self.size, watch: self.liveness.as_ref().map(Liveness::watch) }))
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
}
