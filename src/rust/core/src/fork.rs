//! Forked processes (R's `parallel::mclapply()`, future's multicore plan). A fork copies only
//! the thread that forks: the parent's rayon pool and device workers do not exist in the
//! child, and a task handed to them waits forever (fit() in an mclapply child hung on a
//! futex). So the child computes on a rayon pool of its own, made on first use, and device
//! workers made in the parent are not used there.

use std::sync::{Arc, Mutex, OnceLock};

/// The process that first used the package (and made its threads).
static ORIGIN: OnceLock<u32> = OnceLock::new();

/// A forked child's own pool, with the pid it was made in.
static CHILD_POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// Records the current process as the one whose threads the package uses; called before the
/// package makes any thread (by the binding, on every call: only the first one counts).
pub fn record_origin() {
    ORIGIN.get_or_init(std::process::id);
}

/// Whether this is a process forked from the one that made the package's threads.
pub fn is_forked_child() -> bool {
    ORIGIN.get().is_some_and(|origin| *origin != std::process::id())
}

/// Runs `f` where its parallel loops have threads: on the current pool in the original
/// process, on a pool of the child's own (as many threads) in a forked child.
pub fn on_own_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if !is_forked_child() {
        return f();
    }
    match child_pool() {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Runs `f` on a thread of the pool its parallel loops use (see [`on_own_pool`]), the
/// calling thread waiting: then the serial parts of a step and its parallel loops run on the
/// same threads. Run on the calling thread (R's), a one-device step's data moved between the
/// two cores' caches whenever work passed between that thread and the pool's: with one
/// thread, the CNN fit took 1.24-1.27 s on the calling thread against 1.12-1.13 s with the
/// whole process held to one core (bench/NOTES.md).
pub fn on_pool_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if is_forked_child() {
        return on_own_pool(f);
    }
    // From a thread outside the global pool, `scope` hands its body to a pool thread and
    // blocks until it returns (inside the pool it runs in place); a panic comes back here.
    rayon::scope(|_| f())
}

fn child_pool() -> Option<Arc<rayon::ThreadPool>> {
    let pid = std::process::id();
    let mut guard = CHILD_POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, pool)) = guard.as_ref() {
        if *owner == pid {
            return Some(pool.clone());
        }
        // A pool made by a parent that was itself a forked child: its threads are not here
        // either; leaked, since dropping it would wait for them.
        if let Some((_, stale)) = guard.take() {
            std::mem::forget(stale);
        }
    }
    // The global pool's size is read from its registry, which the fork copied.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(rayon::current_num_threads()).thread_name(|i| format!("rustgpu-forked-{}", i)).build().ok()?;
    let pool = Arc::new(pool);
    *guard = Some((pid, pool.clone()));
    Some(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_pool_thread_runs_on_a_pool_thread_and_returns_its_result() {
        // From a thread of its own (not the pool's), as R's thread calls it.
        let (index, value) = std::thread::spawn(|| on_pool_thread(|| (rayon::current_thread_index(), 6 * 7))).join().unwrap();
        assert!(index.is_some(), "the work ran outside the pool");
        assert_eq!(value, 42);
        // Inside the pool it runs in place.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(pool.install(|| on_pool_thread(rayon::current_thread_index)), Some(0));
    }

    #[test]
    fn a_panic_on_the_pool_thread_comes_back_to_the_caller() {
        let caught = std::panic::catch_unwind(|| on_pool_thread(|| -> u8 { panic!("step failed") }));
        let message = caught.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>().copied(), Some("step failed"));
        // The pool still works afterwards.
        assert_eq!(on_pool_thread(|| 1 + 1), 2);
    }
}
