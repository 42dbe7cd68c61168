//! MPI through the C layer in `mpi/shim.c` (built by build.rs with `mpicc`, the `mpi`
//! feature). Waits poll: `check` runs between polls and stops the wait with its error.
use crate::error::{Error, Result};
use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::time::Duration;

type KeepWaiting = extern "C" fn(*mut c_void) -> c_int;

extern "C" {
    fn rg_mpi_init(rank: *mut c_int, size: *mut c_int) -> c_int;
    fn rg_mpi_allreduce_sum_f64(values: *mut f64, n: c_longlong, keep_waiting: KeepWaiting, ctx: *mut c_void, abandoned: *mut c_int) -> c_int;
    fn rg_mpi_broadcast(buffer: *mut c_void, bytes: c_longlong, root: c_int, keep_waiting: KeepWaiting, ctx: *mut c_void, abandoned: *mut c_int) -> c_int;
    fn rg_mpi_processor_name(name: *mut c_char, capacity: c_int) -> c_int;
    fn rg_mpi_error_string(code: c_int, text: *mut c_char, capacity: c_int);
    fn rg_mpi_finalize() -> c_int;
    fn rg_mpi_start_sum_f64(values: *mut f64, n: c_longlong, pending: *mut *mut c_void) -> c_int;
    fn rg_mpi_nudge(pending: *mut c_void, done: *mut c_int) -> c_int;
    fn rg_mpi_finish_sum(pending: *mut c_void, keep_waiting: KeepWaiting, ctx: *mut c_void, abandoned: *mut c_int) -> c_int;
}

/// Polls that spin before each one sleeps: a collective of a training step usually completes
/// within a millisecond of the last rank's arrival, and sleeping ranks would leave the cores
/// to the ranks still computing.
const SPINNING_POLLS: u64 = 2000;
const SLEEP: Duration = Duration::from_micros(100);

struct Waiting<'a> {
    check: &'a mut dyn FnMut() -> Result<()>,
    polls: u64,
    stopped: Option<Error>,
}

extern "C" fn keep_waiting(ctx: *mut c_void) -> c_int {
    // SAFETY: `ctx` is the `Waiting` that `wait_with` passes along with this function, alive
    // and not otherwise borrowed for the length of the C call that calls back.
    let w = unsafe { &mut *ctx.cast::<Waiting>() };
    w.polls += 1;
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (w.check)()));
    match verdict {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            w.stopped = Some(e);
            return 0;
        }
        Err(_) => {
            w.stopped = Some(Error::Worker("the check between MPI polls panicked".into()));
            return 0;
        }
    }
    if w.polls > SPINNING_POLLS {
        std::thread::sleep(SLEEP);
    } else {
        std::hint::spin_loop();
    }
    1
}

fn error_string(code: c_int) -> String {
    let mut text = [0u8; 512];
    // SAFETY: the buffer's capacity is passed along; the C side writes a terminated string.
    unsafe { rg_mpi_error_string(code, text.as_mut_ptr().cast(), text.len() as c_int) };
    let end = text.iter().position(|b| *b == 0).unwrap_or(0);
    String::from_utf8_lossy(&text[..end]).into_owned()
}

fn checked(rc: c_int, what: &str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Worker(format!("MPI's {} failed: {} (code {})", what, error_string(rc), rc)))
    }
}

/// Runs a polling MPI call with `check` between polls.
fn wait_with(what: &str, check: &mut dyn FnMut() -> Result<()>, call: impl FnOnce(KeepWaiting, *mut c_void, *mut c_int) -> c_int) -> Result<()> {
    check()?;
    let mut waiting = Waiting { check, polls: 0, stopped: None };
    let mut abandoned: c_int = 0;
    let rc = call(keep_waiting, (&mut waiting as *mut Waiting).cast(), &mut abandoned);
    if let Some(e) = waiting.stopped {
        return Err(e);
    }
    checked(rc, what)?;
    if abandoned != 0 {
        return Err(Error::Worker(format!("MPI's {} was abandoned", what)));
    }
    Ok(())
}

/// MPI_Init (once) and this process's rank and the job's size.
pub(super) fn init() -> Result<(usize, usize)> {
    let (mut rank, mut size) = (0, 0);
    // SAFETY: two out-parameters the C side writes.
    checked(unsafe { rg_mpi_init(&mut rank, &mut size) }, "MPI_Init")?;
    Ok((rank.max(0) as usize, size.max(1) as usize))
}

/// Runs an MPI operation on a copy of `values` in a buffer of its own: given up midway, the
/// operation may still write its buffer, so the buffer is then never freed (the job is
/// failing) rather than left to the caller, who would free or reuse it.
fn on_own_buffer<T: Copy>(values: &mut [T], run: impl FnOnce(&mut [T]) -> Result<()>) -> Result<()> {
    let mut buffer = values.to_vec();
    match run(&mut buffer) {
        Ok(()) => {
            values.copy_from_slice(&buffer);
            Ok(())
        }
        Err(e) => {
            std::mem::forget(buffer);
            Err(e)
        }
    }
}

pub(super) fn all_reduce_sum(values: &mut [f64], check: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    on_own_buffer(values, |buffer| {
        let (ptr, n) = (buffer.as_mut_ptr(), buffer.len() as c_longlong);
        // SAFETY: the C side reads and writes `n` doubles at `ptr`, a buffer that lives until
        // the operation completes (or forever, when it is given up).
        wait_with("all-reduce", check, |f, ctx, abandoned| unsafe { rg_mpi_allreduce_sum_f64(ptr, n, f, ctx, abandoned) })
    })
}

pub(super) fn broadcast(bytes: &mut [u8], root: usize, check: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    on_own_buffer(bytes, |buffer| {
        let (ptr, n) = (buffer.as_mut_ptr().cast::<c_void>(), buffer.len() as c_longlong);
        // SAFETY: as in all_reduce_sum, for `n` bytes.
        wait_with("broadcast", check, |f, ctx, abandoned| unsafe { rg_mpi_broadcast(ptr, n, root as c_int, f, ctx, abandoned) })
    })
}

pub(super) fn processor_name() -> Result<String> {
    let mut name = [0u8; 256];
    // SAFETY: the buffer's capacity is passed along; the C side writes a terminated string.
    checked(unsafe { rg_mpi_processor_name(name.as_mut_ptr().cast(), name.len() as c_int) }, "MPI_Get_processor_name")?;
    let end = name.iter().position(|b| *b == 0).unwrap_or(0);
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

pub(super) fn finalize() {
    // SAFETY: no arguments; MPI_Finalize once, after the job's last collective.
    unsafe { rg_mpi_finalize() };
}

/// A sum MPI works on while the caller computes (`MPI_Iallreduce`): the values stay here, at
/// the same address, until it is finished.
pub(super) struct StartedSum {
    pending: *mut c_void,
    values: Vec<f64>,
    done: bool,
    /// Finished and its block freed: the values are the caller's.
    finished: bool,
}

// SAFETY: the request block is used by one thread at a time (the step's), as MPI was
// initialized for (MPI_THREAD_SERIALIZED); it moves between threads only with the value.
unsafe impl Send for StartedSum {}

pub(super) fn start_sum(mut values: Vec<f64>) -> Result<StartedSum> {
    let mut pending: *mut c_void = std::ptr::null_mut();
    // SAFETY: MPI reads and writes the vector's buffer until the sum is finished; the vector
    // is kept (and not resized) in the returned value until then, or leaked if abandoned.
    checked(unsafe { rg_mpi_start_sum_f64(values.as_mut_ptr(), values.len() as c_longlong, &mut pending) }, "all-reduce")?;
    Ok(StartedSum { pending, values, done: false, finished: false })
}

impl StartedSum {
    pub(super) fn nudge(&mut self) -> Result<()> {
        if !self.done {
            let mut done: c_int = 0;
            // SAFETY: the request block from rg_mpi_start_sum_f64, not yet freed.
            checked(unsafe { rg_mpi_nudge(self.pending, &mut done) }, "all-reduce")?;
            self.done = done != 0;
        }
        Ok(())
    }

    pub(super) fn finish(mut self, check: &mut dyn FnMut() -> Result<()>) -> Result<Vec<f64>> {
        let pending = self.pending;
        // SAFETY: the request block from rg_mpi_start_sum_f64, freed by this call when the
        // sum completes.
        let outcome = wait_with("all-reduce", check, |f, ctx, abandoned| unsafe { rg_mpi_finish_sum(pending, f, ctx, abandoned) });
        outcome?;
        self.finished = true;
        Ok(std::mem::take(&mut self.values))
    }
}

impl Drop for StartedSum {
    /// A sum dropped before it finished (its step failed, or the wait was given up): MPI may
    /// still write its values, so they are never freed (the job is failing), nor its block.
    fn drop(&mut self) {
        if !self.finished {
            std::mem::forget(std::mem::take(&mut self.values));
        }
    }
}
