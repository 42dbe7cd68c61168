//! extendr bindings of rustgpu: convert R values, forward to rustgpu-core, convert back.
//! Every function returns an `Robj`; a core error or a panic comes back as a
//! `rustgpu_backend_failure` object that R turns into a classed condition (no longjmp
//! crosses Rust frames, and nothing here takes the R session down).
use extendr_api::prelude::*;
use rustgpu_core::device;
use rustgpu_core::{Compiled, Error, Executor, Model, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

// Rust's allocations (tensors, im2col buffers) go to mimalloc, which keeps freed memory for
// reuse; glibc would map and unmap every large buffer, paying page faults each step. R's own
// allocations are not affected.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backend;
mod callbacks;
mod convert;
mod datasets;
mod devices;
mod distribute;
mod functional;
mod layers;
mod losses;
mod model;
mod multi_gpu;
mod preprocessing;
mod saving;
mod testing;
mod training;

/// A model as R holds it: the (possibly shared) model, its compile state and where it runs.
/// A parallel model shares `model` with its template.
pub struct ModelHandle {
    model: Arc<Mutex<Model>>,
    compiled: Option<Compiled>,
    executor: Executor,
    /// Recorded for `summary()`: the master weights always live in host memory.
    cpu_relocation: bool,
    /// Steps run so far, used to derive per-step dropout seeds.
    steps: u64,
    /// The metric sums of the epoch so far: metrics report their value over the epoch, as
    /// Keras's do.
    epoch_metric_sums: Vec<f64>,
    /// The optimizer state read with the model by `load_model_hdf5()`, restored after its
    /// compile() (from the same read of the file).
    saved_optimizer_state: Option<rustgpu_core::io::SavedOptimizerState>,
}

impl ModelHandle {
    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new model of its own, run on the CPU, as an R external pointer.
    pub(crate) fn new_pointer(model: Model) -> Robj {
        Self::new_pointer_with_state(model, None)
    }

    /// [`Self::new_pointer`], keeping a loaded optimizer state for after compile().
    pub(crate) fn new_pointer_with_state(model: Model, saved_optimizer_state: Option<rustgpu_core::io::SavedOptimizerState>) -> Robj {
        let h = ModelHandle {
            model: Arc::new(Mutex::new(model)),
            compiled: None,
            executor: Executor::Local(device::cpu_device()),
            cpu_relocation: false,
            steps: 0,
            epoch_metric_sums: Vec::new(),
            saved_optimizer_state,
        };
        ExternalPtr::new(h).into()
    }
}

extern "C" {
    // libR's flags behind R_CheckUserInterrupt(): R's SIGINT handler sets the first.
    static R_interrupts_pending: std::os::raw::c_int;
    static R_interrupts_suspended: std::os::raw::c_int;
}

/// Whether the user pressed Ctrl-C (and R is not holding interrupts back): the core's
/// cancellation hook. Only reads two ints, so it is safe from worker threads too; R itself
/// raises the interrupt once the call returns (`call_backend()`).
fn r_interrupt_pending() -> bool {
    // SAFETY: two aligned ints exported by libR; volatile reads so each poll sees the signal
    // handler's write. Nothing is written.
    unsafe {
        std::ptr::read_volatile(std::ptr::addr_of!(R_interrupts_pending)) != 0 && std::ptr::read_volatile(std::ptr::addr_of!(R_interrupts_suspended)) == 0
    }
}

/// Runs `f`, turning an error or a panic into the failure object R expects.
pub(crate) fn guard<F: FnOnce() -> Result<Robj>>(f: F) -> Robj {
    rustgpu_core::fork::record_origin();
    rustgpu_core::cancel::install(r_interrupt_pending);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => failure(e.class(), &e.to_string()),
        Err(p) => {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into());
            failure("rustgpu_runtime_error", &format!("internal error in rustgpu: {}", msg))
        }
    }
}

fn failure(class: &str, message: &str) -> Robj {
    let mut obj: Robj = List::from_names_and_values(["class", "message"], [class, message]).map(|l| l.into()).unwrap_or_else(|_| Robj::from(message));
    let _ = obj.set_attrib("class", "rustgpu_backend_failure");
    obj
}

/// The handle behind an R model object; a clear error when the pointer is gone
/// (e.g. after saveRDS()/readRDS()) or is not a rustgpu model.
/// Borrowed mutably from the caller's own `Robj` for the length of one call: R runs one call
/// at a time on the main thread, so nothing else holds the handle meanwhile.
pub(crate) fn handle(ptr: &mut Robj) -> Result<&mut ModelHandle> {
    let ext: &mut ExternalPtr<ModelHandle> = ptr.try_into().map_err(|_| {
        Error::State("this model's compiled data is gone (models do not survive saveRDS()/readRDS() or a new R session): rebuild the model".into())
    })?;
    ext.try_addr_mut().map_err(|_| Error::State("this model's compiled data is gone".into()))
}

pub(crate) fn seed_from(r: &Robj) -> u64 {
    r.as_real().map(|v| v as u64).or_else(|| r.as_integer().map(|v| v as u64)).unwrap_or(0)
}

extern "C" {
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
}

/// mimalloc gives freed memory back to the OS ("purges" it) on a timer: the first free
/// after a purge sets the deadline (1 s by default in mimalloc v3), which later frees do not
/// push back, and at the deadline every free range goes, however recently it was freed. In
/// a fit or predict that allocates and frees the same buffers every step, each second the
/// whole working set went back and came again as fresh (huge) pages the kernel had to clear:
/// `clear_page_erms` 11-18% of the block net's predict samples. With 30 s: transparent huge
/// page faults of 5 fit epochs and 5 predicts of the block net 382-452 -> 128-132 (the first
/// touch only) and system time 1.6-2.5 s -> 1.3 s of 17 s (`bench/ab/workload.R blocks`,
/// MIMALLOC_PURGE_DELAY=1000 against 30000, interleaved). Memory still goes back within 30 s
/// of the allocator's next use. MIMALLOC_PURGE_DELAY, when set, wins.
fn keep_freed_memory_between_steps() {
    // mi_option_purge_delay: 15 in the option enums of both mimalloc v2 and v3 (libmimalloc-sys
    // builds v3 unless its v2 feature is on).
    const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 30_000) };
    }
}

/// Sets process-wide thread settings before any tensor work; called from .onLoad.
/// @noRd
#[extendr]
fn rg_init() -> Robj {
    device::configure_threads();
    keep_freed_memory_between_steps();
    if std::env::var_os("RUSTGPU_DEBUG").is_none() {
        // Errors reach R as conditions; panic backtraces on stderr would only confuse users.
        std::panic::set_hook(Box::new(|_| {}));
    }
    ().into()
}

extendr_module! {
    mod rustgpu;
    fn rg_init;
    use backend;
    use callbacks;
    use datasets;
    use devices;
    use distribute;
    use functional;
    use layers;
    use losses;
    use model;
    use multi_gpu;
    use preprocessing;
    use saving;
    use testing;
    use training;
}
