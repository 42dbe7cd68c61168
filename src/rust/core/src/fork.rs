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
