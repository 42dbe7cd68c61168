//! Cooperative cancellation (Ctrl-C): long calls poll a hook that the host installs, between
//! batches, between layers of a forward pass and between the datasets of a file, and stop with
//! `Error::Interrupted`. The core knows nothing of R: the R binding's hook reads R's own
//! "interrupt pending" flag, which R's SIGINT handler sets. Polling is a load of one flag, so
//! checks are cheap enough to place anywhere a loop can run long.
use crate::error::{Error, Result};
use std::sync::OnceLock;

static HOOK: OnceLock<fn() -> bool> = OnceLock::new();

/// Installs the function that says whether the user asked to stop (the first install wins; it
/// must be callable from any thread).
pub fn install(hook: fn() -> bool) {
    let _ = HOOK.set(hook);
}

/// Whether the user asked to stop.
pub fn requested() -> bool {
    HOOK.get().is_some_and(|hook| hook())
}

/// `Err(Error::Interrupted)` when the user asked to stop.
pub fn check() -> Result<()> {
    if requested() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Runs `f` on a thread of its own while this thread polls for a stop request every 20 ms:
/// for work inside a C library that cannot poll (libhdf5 reading a corrupt file can take a
/// minute in one call, examples/h5_fuzz.rs). On a stop request the caller gets
/// `Error::Interrupted` at once; the work finishes in the background and its result is
/// dropped, so `f` must own everything it changes (work on a copy, commit after).
pub fn run_interruptibly<T: Send + 'static>(what: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    use std::sync::mpsc::{channel, RecvTimeoutError};
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name(format!("rustgpu {}", what))
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        })
        .map_err(|e| Error::Resource(format!("cannot start a thread for {}: {}", what, e)))?;
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(20)) {
            Ok(Ok(result)) => return result,
            // The caller's own panic guard reports it, as if it had run here.
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(RecvTimeoutError::Timeout) => check()?,
            Err(RecvTimeoutError::Disconnected) => return Err(Error::State(format!("{} stopped without a result", what))),
        }
    }
}
